"""bpcore.reference: the pure-Python oracle (lists and ``math`` only, float64).

It computes what the Rust core computes — forward pass, backward pass by the chain rule,
optimizer steps with ``torch.optim``'s rules — in plain loops written to be read. Tests
compare the core against it, and the benchmark uses it as its baseline.

Public surface:

- ``Network(layers, loss="mse", optimizer=None, seed=0)`` with ``parameters()``,
  ``set_parameters(d)``, ``forward(X)``, ``loss(X, y)``, ``gradients(X, y)``,
  ``train_step(X, y)``, ``apply_gradients(grads)``, ``buffers()``, ``set_buffers(d)``;
  ``loss(X, y, training=True)``, ``gradients`` and ``train_step`` run in training mode
  (see ``network.py``).
- Layers: ``dense_forward(x, weight, bias)``, ``dense_backward(x, weight, grad_z)``,
  ``dropout_mask/forward/backward`` (bpcore's hashed masks), ``batch_norm_forward_train``,
  ``batch_norm_forward_infer``, ``batch_norm_backward``, ``layer_norm_forward``,
  ``layer_norm_backward``,
  ``activation_forward(spec, row)``, ``activation_backward(spec, row, grad_out)``,
  ``conv2d_forward``, ``conv2d_backward``, ``pool2d_forward``, ``pool2d_backward`` (the 1-d
  layers as H = 1), ``embeddings_forward``, ``embeddings_backward``, and ``layer_shapes``
  (the shape each layer reads its rows as),
  ``scalar_functions(spec) -> (f, f')``, ``sigmoid(x)``.
- Losses: ``loss_value_and_grad(spec, outputs, y)``, ``loss_value(spec, outputs, y)`` and
  the functions ``mse``, ``l1``, ``huber``, ``cross_entropy``, ``bce_with_logits``.
- Optimizers: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad`` (keyword options as
  ``torch.optim``; ``.step(params, grads)`` on flat lists, in place; ``.to_spec()``) and
  ``make_optimizer(spec)``.
- Specs: ``layer_spec``, ``loss_spec``, ``optimizer_spec`` complete a spec dict with its
  defaults; ``LAYER_DEFAULTS``, ``LOSS_DEFAULTS``, ``OPTIMIZER_DEFAULTS``.
"""

from .activations import (
    activation_backward,
    activation_forward,
    scalar_functions,
    sigmoid,
)
from .convolution import conv2d_backward, conv2d_forward, pool2d_backward, pool2d_forward
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward, dropout_forward, dropout_mask
from .embedding import embeddings_backward, embeddings_forward
from .losses import (
    bce_with_logits,
    cross_entropy,
    huber,
    l1,
    loss_value,
    loss_value_and_grad,
    mse,
)
from .network import Network
from .normalization import (
    batch_norm_backward,
    batch_norm_forward_infer,
    batch_norm_forward_train,
    layer_norm_backward,
    layer_norm_forward,
)
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop, make_optimizer
from .shapes import layer_shapes
from .specs import (
    LAYER_DEFAULTS,
    LOSS_DEFAULTS,
    OPTIMIZER_DEFAULTS,
    layer_spec,
    loss_spec,
    optimizer_spec,
)

__all__ = [
    "LAYER_DEFAULTS",
    "LOSS_DEFAULTS",
    "OPTIMIZER_DEFAULTS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Network",
    "Optimizer",
    "RMSprop",
    "activation_backward",
    "activation_forward",
    "batch_norm_backward",
    "batch_norm_forward_infer",
    "batch_norm_forward_train",
    "bce_with_logits",
    "conv2d_backward",
    "conv2d_forward",
    "cross_entropy",
    "dense_backward",
    "dense_forward",
    "dropout_backward",
    "dropout_forward",
    "dropout_mask",
    "embeddings_backward",
    "embeddings_forward",
    "huber",
    "l1",
    "layer_norm_backward",
    "layer_norm_forward",
    "layer_shapes",
    "layer_spec",
    "loss_spec",
    "loss_value",
    "loss_value_and_grad",
    "make_optimizer",
    "mse",
    "optimizer_spec",
    "pool2d_backward",
    "pool2d_forward",
    "scalar_functions",
    "sigmoid",
]
