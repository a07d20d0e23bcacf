"""Networks to and from PyTorch: `to_torch(net)` builds the equal `torch.nn.Sequential` and
`from_torch(module)` reads one back, weights and batch-norm buffers included.

torch is optional (``pip install bpcore[torch]``) and imported only when these are called.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from bpcore.layers import (
    ELU,
    GELU,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    Embeddings,
    Flatten,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    MaxPool1d,
    MaxPool2d,
    Mish,
    PReLU,
    ReLU,
    Reshape,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from bpcore.losses import LossLike
from bpcore.network import Network
from bpcore.optimizers import Optimizer


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "bpcore's PyTorch exchange needs torch, which is not installed: "
            "pip install 'bpcore[torch]' (or pip install torch)"
        ) from None
    return torch


def _torch_layer(nn: Any, layer: Layer) -> Any:
    """The torch module equal to one bpcore layer."""
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, ELU):
        return nn.ELU(layer.alpha)
    if isinstance(layer, Softplus):
        return nn.Softplus(beta=layer.beta, threshold=layer.threshold)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, BatchNorm1d):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps)
    if isinstance(layer, GELU):
        return nn.GELU(approximate="none")
    if isinstance(layer, PReLU):
        return nn.PReLU(layer.num_parameters, init=layer.init)
    shaped = _torch_shaped_layer(nn, layer)
    if shaped is not None:
        return shaped
    simple = {
        ReLU: nn.ReLU,
        Sigmoid: nn.Sigmoid,
        Tanh: nn.Tanh,
        Identity: nn.Identity,
        SiLU: nn.SiLU,
        Mish: nn.Mish,
    }
    for cls, module in simple.items():
        if isinstance(layer, cls):
            return module()
    raise TypeError(f"to_torch: no torch module for the layer {layer!r}")


@functools.cache
def _embedding_modules(torch: Any) -> tuple[Any, Any]:
    """The torch modules of bpcore's Embedding and Embeddings, whose input rows are floats:
    an `nn.Embedding` that reads float indices, and the tabular layer (one `nn.Embedding` per
    embedded column under "tables.<column>", the other columns passed through)."""
    nn = torch.nn

    class FloatIndexEmbedding(nn.Embedding):  # type: ignore[misc,name-defined,unused-ignore]
        """`nn.Embedding` of indices stored as floats (bpcore's rows)."""

        def forward(self, x: Any) -> Any:
            return super().forward(x.long())

    class TabularEmbeddings(nn.Module):  # type: ignore[misc,name-defined,unused-ignore]
        """bpcore.Embeddings: the embedded columns' table rows and the numeric columns,
        concatenated in column order."""

        def __init__(self, columns: dict[int, tuple[int, int]], in_features: int) -> None:
            super().__init__()
            self.in_features = in_features
            self.tables = nn.ModuleDict({str(c): nn.Embedding(*t) for c, t in columns.items()})

        def forward(self, x: Any) -> Any:
            parts = []
            for c in range(self.in_features):
                table = self.tables[str(c)] if str(c) in self.tables else None  # noqa: SIM401
                parts.append(x[:, c : c + 1] if table is None else table(x[:, c].long()))
            return torch.cat(parts, dim=1)

    return FloatIndexEmbedding, TabularEmbeddings


def _torch_shaped_layer(nn: Any, layer: Layer) -> Any:
    """The torch module of a layer over (C, H, W) or (C, L) rows, or None for another layer."""
    if isinstance(layer, Reshape):
        return nn.Unflatten(1, layer.shape)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, (Embedding, Embeddings)):
        index_embedding, tabular = _embedding_modules(_torch())
        if isinstance(layer, Embedding):
            return index_embedding(layer.num_embeddings, layer.embedding_dim)
        return tabular(layer.columns, layer.in_features)
    if isinstance(layer, (Conv1d, Conv2d)):
        conv = nn.Conv1d if isinstance(layer, Conv1d) else nn.Conv2d
        return conv(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=layer.bias,
        )
    pools: tuple[tuple[type[Layer], Any], ...] = (
        (MaxPool1d, nn.MaxPool1d),
        (MaxPool2d, nn.MaxPool2d),
        (AvgPool1d, nn.AvgPool1d),
        (AvgPool2d, nn.AvgPool2d),
    )
    for cls, module in pools:
        if isinstance(layer, cls):
            pool: Any = layer
            return module(pool.kernel_size, stride=pool.stride, padding=pool.padding)
    return None


def to_torch(net: Network) -> Any:
    """The `torch.nn.Sequential` equal to `net`: the same layers (Linear for Dense, GELU exact,
    Softplus with its beta and threshold, ...), the same weights and batch-norm buffers, in the
    network's dtype, on the CPU. Like every new torch module it is in training mode; call
    `.eval()` for the outputs of `net.forward`. The loss and optimizer are not part of it.

    Raises:
        ImportError: torch is not installed (it is the `torch` extra of bpcore).
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a bpcore.Network, got {type(net).__name__}")
    torch = _torch()
    nn = torch.nn
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    module = nn.Sequential(*(_torch_layer(nn, layer) for layer in net.layers)).to(dtype)
    state = {
        name: torch.from_numpy(np.ascontiguousarray(value))
        for name, value in net.state_dict().items()
    }
    module.load_state_dict(state, strict=True)
    return module


def _bpcore_layer(nn: Any, module: Any, index: int) -> Layer:
    """The bpcore layer equal to one torch module, or a ValueError naming what is not."""
    where = f"module[{index}] ({type(module).__name__})"
    if isinstance(module, nn.Linear):
        return Dense(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm1d):
        if not module.affine or not module.track_running_stats or module.momentum is None:
            raise ValueError(
                f"from_torch: {where}: only affine=True, track_running_stats=True and a numeric "
                "momentum are supported"
            )
        return BatchNorm1d(module.num_features, eps=module.eps, momentum=module.momentum)
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        if len(shape) != 1 or not module.elementwise_affine or getattr(module, "bias", 1) is None:
            raise ValueError(
                f"from_torch: {where}: only a 1-d normalized_shape with elementwise_affine=True "
                "and a bias is supported"
            )
        return LayerNorm(shape[0], eps=module.eps)
    if isinstance(module, nn.GELU):
        if module.approximate != "none":
            raise ValueError(
                f"from_torch: {where}: only the exact GELU (approximate='none') is supported"
            )
        return GELU()
    if isinstance(module, nn.LeakyReLU):
        return LeakyReLU(module.negative_slope)
    if isinstance(module, nn.ELU):
        return ELU(module.alpha)
    if isinstance(module, nn.Softplus):
        return Softplus(beta=float(module.beta), threshold=float(module.threshold))
    if isinstance(module, nn.Dropout):
        return Dropout(module.p)
    if isinstance(module, nn.PReLU):
        # torch keeps init only to build the weight; the weight itself is loaded below.
        return PReLU(module.num_parameters, init=float(module.init))
    shaped = _bpcore_shaped_layer(nn, module, where)
    if shaped is not None:
        return shaped
    simple = {
        nn.ReLU: ReLU,
        nn.Sigmoid: Sigmoid,
        nn.Tanh: Tanh,
        nn.Identity: Identity,
        nn.SiLU: SiLU,
        nn.Mish: Mish,
    }
    for cls, layer in simple.items():
        if type(module) is cls:
            return layer()
    raise ValueError(
        f"from_torch: {where} is not supported; supported are Linear, ReLU, LeakyReLU, Sigmoid, "
        "Tanh, GELU, ELU, Softplus, SiLU, Mish, PReLU, Identity, Dropout, BatchNorm1d, "
        "LayerNorm, Unflatten, "
        "Flatten, Conv1d, Conv2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, Embedding and "
        "to_torch's TabularEmbeddings"
    )


def _bpcore_shaped_layer(nn: Any, module: Any, where: str) -> Layer | None:
    """The bpcore layer of a torch module over arrays (Unflatten, Flatten, convolutions,
    pooling), None for another module, or a ValueError naming an option bpcore lacks."""
    try:
        if isinstance(module, nn.Unflatten):
            if module.dim != 1:
                raise ValueError(
                    f"only dim=1 (each sample's features) is supported, got {module.dim}"
                )
            return Reshape(tuple(module.unflattened_size))
        if isinstance(module, nn.Flatten):
            return Flatten(module.start_dim, module.end_dim)
        if isinstance(module, nn.Embedding):
            return Embedding(
                module.num_embeddings,
                module.embedding_dim,
                padding_idx=module.padding_idx,
                max_norm=module.max_norm,
                scale_grad_by_freq=module.scale_grad_by_freq,
                sparse=module.sparse,
            )
        tabular = _embedding_modules(_torch())[1]
        if isinstance(module, tabular):
            columns = {
                int(c): (t.num_embeddings, t.embedding_dim) for c, t in module.tables.items()
            }
            return Embeddings(columns, module.in_features)
        for cls, layer in ((nn.Conv1d, Conv1d), (nn.Conv2d, Conv2d)):
            if type(module) is cls:
                return layer(
                    module.in_channels,
                    module.out_channels,
                    module.kernel_size,
                    stride=module.stride,
                    padding=module.padding,
                    dilation=module.dilation,
                    groups=module.groups,
                    bias=module.bias is not None,
                    padding_mode=module.padding_mode,
                )
        for cls, max_layer in ((nn.MaxPool1d, MaxPool1d), (nn.MaxPool2d, MaxPool2d)):
            if type(module) is cls:
                return max_layer(
                    module.kernel_size,
                    stride=module.stride,
                    padding=module.padding,
                    dilation=module.dilation,
                    return_indices=module.return_indices,
                    ceil_mode=module.ceil_mode,
                )
        if type(module) is nn.AvgPool1d:
            return AvgPool1d(
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                ceil_mode=module.ceil_mode,
                count_include_pad=module.count_include_pad,
            )
        if type(module) is nn.AvgPool2d:
            return AvgPool2d(
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                ceil_mode=module.ceil_mode,
                count_include_pad=module.count_include_pad,
                divisor_override=module.divisor_override,
            )
    except (TypeError, ValueError) as e:
        raise ValueError(f"from_torch: {where}: {e}") from None
    return None


def from_torch(
    module: Any,
    loss: LossLike = "mse",
    optimizer: Optimizer | str | None = None,
    seed: int = 0,
) -> Network:
    """The bpcore Network equal to a `torch.nn.Sequential` of supported modules (Linear, ReLU,
    LeakyReLU, Sigmoid, Tanh, GELU (exact), ELU, Softplus, SiLU, Mish, PReLU, Identity,
    Dropout, BatchNorm1d, LayerNorm, and the array and embedding layers), with its weights and
    buffers; float32 or float64 as the module's parameters.
    The loss, optimizer and seed are the Network's own arguments (torch modules hold none).

    Raises:
        ImportError: torch is not installed.
        TypeError: `module` is not a torch.nn.Sequential.
        ValueError: a module (named by index and type) is not supported, or the dtype is not
            float32/float64.
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch: expected a torch.nn.Sequential, got {type(module).__name__}")
    layers = [_bpcore_layer(nn, m, i) for i, m in enumerate(module)]
    if not layers:
        raise ValueError("from_torch: the Sequential is empty")
    dtypes = {p.dtype for p in module.parameters()} | {
        b.dtype for b in module.buffers() if b.is_floating_point()
    }
    if not dtypes:
        raise ValueError("from_torch: the Sequential has no parameters (no Linear layer)")
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        raise ValueError(
            "from_torch: parameters must all be float32 or all float64, got "
            f"{sorted(map(str, dtypes))}"
        )
    dtype = "float64" if next(iter(dtypes)) == torch.float64 else "float32"
    net = Network(layers, loss=loss, optimizer=optimizer, dtype=dtype, seed=seed)
    net.load_state_dict(module.state_dict())
    return net


__all__ = ["from_torch", "to_torch"]
