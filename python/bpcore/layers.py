"""Layers of a sequential network, as torch.nn's: Dense (Linear), the activations, the
normalizations, and the convolution and pooling layers over rows read as (C, H, W) or (C, L).

A layer here is a description: it holds its hyperparameters and gives the JSON-ready spec that
the Rust core builds from. Parameters live in the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bpcore._checks import MAX_SIZE, boolean, integer, real, width
from bpcore._spec import Described


class Layer(Described):
    """Base of all layers: a named description with a `to_spec()` dict."""


class Dense(Layer):
    """Fully connected layer `y = x Wᵀ + b`, weight (out_features, in_features): torch.nn.Linear.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(3, 2)], loss="mse", seed=0)
        >>> {name: p.shape for name, p in net.parameters().items()}
        {'0.weight': (2, 3), '0.bias': (2,)}
    """

    type_name = "dense"

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        self.in_features = width(in_features, "in_features")
        self.out_features = width(out_features, "out_features")
        self.bias = boolean(bias, "bias")

    def _hyper(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
        }


class ReLU(Layer):
    """max(0, x)."""

    type_name = "relu"


#: Largest magnitude of an activation's scale (LeakyReLU's negative_slope, ELU's alpha,
#: Softplus's beta and 1/beta): beyond it one layer multiplies float32 values towards infinity
#: (LeakyReLU(1e308) or Softplus(beta=1e-300) make every output infinite), far above any
#: useful setting (torch's defaults are 0.01 and 1).
MAX_ACTIVATION_SCALE = 1e3


def _scale(value: float, arg: str) -> float:
    return real(value, arg, low=-MAX_ACTIVATION_SCALE, high=MAX_ACTIVATION_SCALE)


class LeakyReLU(Layer):
    """x for x > 0, else negative_slope · x (|negative_slope| <= MAX_ACTIVATION_SCALE)."""

    type_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = _scale(negative_slope, "negative_slope")

    def _hyper(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Layer):
    """1 / (1 + e^-x)."""

    type_name = "sigmoid"


class Tanh(Layer):
    """tanh(x)."""

    type_name = "tanh"


class GELU(Layer):
    """The exact GELU, x Φ(x) = x (1 + erf(x/√2)) / 2."""

    type_name = "gelu"


class ELU(Layer):
    """x for x > 0, else alpha (e^x - 1) (|alpha| <= MAX_ACTIVATION_SCALE)."""

    type_name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _scale(alpha, "alpha")

    def _hyper(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Layer):
    """log(1 + e^(beta x)) / beta, and x where beta x > threshold (as torch); beta in
    [1/MAX_ACTIVATION_SCALE, MAX_ACTIVATION_SCALE]."""

    type_name = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = real(beta, "beta", low=1 / MAX_ACTIVATION_SCALE, high=MAX_ACTIVATION_SCALE)
        self.threshold = real(threshold, "threshold")

    def _hyper(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


class Identity(Layer):
    """x, unchanged."""

    type_name = "identity"


class SiLU(Layer):
    """x σ(x) = x / (1 + e^-x), as torch.nn.SiLU (also called swish)."""

    type_name = "silu"


class Mish(Layer):
    """x tanh(softplus(x)), as torch.nn.Mish; softplus(x) is taken as x above 20 (Softplus's
    default threshold), where the two agree to float64 precision."""

    type_name = "mish"


class PReLU(Layer):
    """x for x > 0, else a x with the slope a learned, as torch.nn.PReLU(num_parameters, init).

    `num_parameters` is 1 (one slope for every value) or the channels of the rows it reads:
    the features of flat rows, C of rows read as (C, L) or (C, H, W). The slopes are the
    parameter "i.weight" (num_parameters,), starting at `init` (|init| <=
    MAX_ACTIVATION_SCALE); their gradient sums g·x over the batch where x <= 0, and every
    optimizer updates them like any weight (weight decay included, as torch).

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(3, 4), bp.PReLU(4), bp.Dense(4, 1)], seed=0)
        >>> net.parameters()["1.weight"]
        array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """

    type_name = "prelu"

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        self.num_parameters = width(num_parameters, "num_parameters")
        self.init = _scale(init, "init")

    def _hyper(self) -> dict[str, Any]:
        return {"num_parameters": self.num_parameters, "init": self.init}


ACTIVATIONS: tuple[type[Layer], ...] = (
    ReLU,
    LeakyReLU,
    Sigmoid,
    Tanh,
    GELU,
    ELU,
    Softplus,
    Identity,
    SiLU,
    Mish,
)


def _eps(eps: float) -> float:
    return real(eps, "eps", low=0.0, low_open=True)


class Dropout(Layer):
    """Inverted dropout, as torch.nn.Dropout: in training mode (gradients, train_step, fit,
    loss(training=True)) each value is zeroed with probability p and the kept ones are scaled
    by 1/(1-p); in inference (forward, predict, evaluate) it is the identity.

    The masks are a hash of (network seed, training-forward count, layer index, row, column):
    the same seed and data give the same masks, however a step is split over threads.
    """

    type_name = "dropout"

    def __init__(self, p: float = 0.5) -> None:
        self.p = real(p, "p", low=0.0, high=1.0, high_open=True)

    def _hyper(self) -> dict[str, Any]:
        return {"p": self.p}


class BatchNorm1d(Layer):
    """Batch normalization over (n, num_features) inputs, as torch.nn.BatchNorm1d.

    Training mode normalizes by the batch's mean and biased variance and moves the running
    statistics: running_mean = (1 - momentum) running_mean + momentum mean, running_var likewise
    with the unbiased variance, num_batches_tracked += 1 — at every training-mode forward, as in
    torch (so gradients() and loss(training=True) move them too). Inference uses the running
    statistics. Parameters "i.weight" (1) and "i.bias" (0); buffers "i.running_mean",
    "i.running_var", "i.num_batches_tracked" (see Network.buffers()). A training batch needs at
    least 2 samples; a network with BatchNorm1d runs each step on one thread (whole-batch
    statistics).
    """

    type_name = "batch_norm1d"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        self.num_features = width(num_features, "num_features")
        self.eps = _eps(eps)
        if momentum is None:
            raise ValueError(
                "momentum: None (a cumulative average) is not supported; give a number in [0, 1]"
            )
        self.momentum = real(momentum, "momentum", low=0.0, high=1.0)
        if not boolean(affine, "affine"):
            raise ValueError("affine: only affine=True (learned weight and bias) is supported")
        if not boolean(track_running_stats, "track_running_stats"):
            raise ValueError("track_running_stats: only track_running_stats=True is supported")

    def _hyper(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class LayerNorm(Layer):
    """Layer normalization of each sample over its features, as torch.nn.LayerNorm: the same in
    training and inference. `normalized_shape` is the feature count (an int, or a 1-tuple).
    Parameters "i.weight" (1) and "i.bias" (0)."""

    type_name = "layer_norm"

    def __init__(
        self, normalized_shape: int | tuple[int], eps: float = 1e-5, elementwise_affine: bool = True
    ) -> None:
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError(
                    "normalized_shape: only the last dimension of (n, features) inputs can be "
                    f"normalized; give an int or a 1-tuple, got {tuple(normalized_shape)}"
                )
            normalized_shape = normalized_shape[0]
        self.normalized_shape = width(normalized_shape, "normalized_shape")
        self.eps = _eps(eps)
        if not boolean(elementwise_affine, "elementwise_affine"):
            raise ValueError(
                "elementwise_affine: only elementwise_affine=True (learned weight and bias) "
                "is supported"
            )

    def _hyper(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape, "eps": self.eps}


class Reshape(Layer):
    """Reads each row as an array of `shape`, row-major, as `torch.nn.Unflatten(1, shape)`: a
    flat row of 64 pixels as (1, 8, 8), the (C, H, W) of torch's NCHW that the 2-d layers read
    (or (C, L) for the 1-d ones). First in a network it states the shape of its input rows,
    whose width is the product of `shape`.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Reshape((1, 4, 4)), bp.Conv2d(1, 2, 3), bp.Flatten(),
        ...                   bp.Dense(8, 1)], seed=0)
        >>> net.n_features, net.parameters()["1.weight"].shape
        (16, (2, 1, 3, 3))
    """

    type_name = "reshape"

    def __init__(self, shape: Sequence[int]) -> None:
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
            raise TypeError(f"shape: expected a non-empty tuple of sizes, got {shape!r}")
        self.shape = tuple(width(d, f"shape[{i}]") for i, d in enumerate(shape))

    def _hyper(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}


class Flatten(Layer):
    """Makes each row flat again (C·H·W features), as `torch.nn.Flatten()`: the values stay
    where they are, in torch's order."""

    type_name = "flatten"

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        if integer(start_dim, "start_dim") != 1 or integer(end_dim, "end_dim") != -1:
            raise ValueError(
                "start_dim, end_dim: only the whole row is flattened (start_dim=1, end_dim=-1)"
            )


def _pair(value: Any, arg: str, low: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= `low`, as a (height, width) pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{arg}: expected an int or a pair of ints, got {tuple(value)}")
        return (
            integer(value[0], f"{arg}[0]", low=low, high=MAX_SIZE),
            integer(value[1], f"{arg}[1]", low=low, high=MAX_SIZE),
        )
    number = integer(value, arg, low=low, high=MAX_SIZE)
    return (number, number)


def _single(value: Any, arg: str, low: int) -> int:
    """An int >= `low` (or a 1-tuple of one, as torch accepts)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{arg}: expected an int, got {tuple(value)}")
        value = value[0]
    return integer(value, arg, low=low, high=MAX_SIZE)


def _only(arg: str, value: Any, supported: Any) -> None:
    """Refuses a torch option bpcore does not implement (any value but `supported`)."""
    if value != supported or type(value) is not type(supported):
        raise ValueError(f"{arg}: only {arg}={supported!r} is supported, got {value!r}")


class _Conv(Layer):
    """What Conv1d and Conv2d share: torch's arguments, checked; `_size` reads one of them."""

    _size: Any = staticmethod(_pair)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        self.in_channels = width(in_channels, "in_channels")
        self.out_channels = width(out_channels, "out_channels")
        if isinstance(padding, str):
            raise ValueError(f"padding: only sizes are supported, got {padding!r}")
        self.kernel_size = self._size(kernel_size, "kernel_size", 1)
        self.stride = self._size(stride, "stride", 1)
        self.padding = self._size(padding, "padding", 0)
        self.dilation = self._size(dilation, "dilation", 1)
        _only("groups", groups, 1)
        self.bias = boolean(bias, "bias")
        _only("padding_mode", padding_mode, "zeros")

    def _hyper(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": plain(self.kernel_size),
            "stride": plain(self.stride),
            "padding": plain(self.padding),
            "dilation": plain(self.dilation),
            "bias": self.bias,
        }


class Conv2d(_Conv):
    """2-d convolution of (C, H, W) rows, as `torch.nn.Conv2d` (groups=1, zero padding): weight
    (out_channels, in_channels, kh, kw), bias (out_channels); `kernel_size`, `stride`,
    `padding` and `dilation` an int or an (h, w) pair. The rows' shape comes from the layers
    before (a Reshape first); the output is (out_channels, OH, OW), with torch's
    OH = (H + 2·padding - dilation·(kh - 1) - 1) // stride + 1.

    Runs as one matrix product per batch over the receptive fields (im2col), forward and
    backward, in Rust.
    """

    type_name = "conv2d"


class Conv1d(_Conv):
    """1-d convolution of (C, L) rows, as `torch.nn.Conv1d` (groups=1, zero padding): weight
    (out_channels, in_channels, k), bias (out_channels); the output is (out_channels, OL)."""

    type_name = "conv1d"
    _size = staticmethod(_single)


class _Pool(Layer):
    """What the pooling layers share: kernel_size, stride (default kernel_size) and padding
    (at most half the kernel, as torch), without ceil_mode."""

    _size: Any = staticmethod(_pair)

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False
    ) -> None:
        self.kernel_size = self._size(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else self._size(stride, "stride", 1)
        self.padding = self._size(padding, "padding", 0)
        kernel = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,)
        pad = self.padding if isinstance(self.padding, tuple) else (self.padding,)
        if any(2 * p > k for p, k in zip(pad, kernel)):
            raise ValueError(
                f"padding: must be at most half of kernel_size, got {self.padding} for "
                f"kernel_size {self.kernel_size}"
            )
        _only("ceil_mode", ceil_mode, False)

    def _hyper(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {
            "kernel_size": plain(self.kernel_size),
            "stride": plain(self.stride),
            "padding": plain(self.padding),
        }


class _MaxPool(_Pool):
    """torch's max-pooling arguments, of which dilation 1 and no indices are supported."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if self._size(dilation, "dilation", 1) != self._size(1, "dilation", 1):
            raise ValueError(f"dilation: only dilation=1 is supported, got {dilation!r}")
        _only("return_indices", return_indices, False)


class MaxPool2d(_MaxPool):
    """The largest value of each window of each channel of (C, H, W) rows, as
    `torch.nn.MaxPool2d` (dilation 1, padding never taken); the gradient goes to the first
    largest value of the window, as in torch."""

    type_name = "max_pool2d"


class MaxPool1d(_MaxPool):
    """The largest value of each window of each channel of (C, L) rows, as
    `torch.nn.MaxPool1d`."""

    type_name = "max_pool1d"
    _size = staticmethod(_single)


class AvgPool2d(_Pool):
    """The mean of each window of each channel of (C, H, W) rows, as `torch.nn.AvgPool2d` with
    count_include_pad=True (padding counts as zeros in the mean)."""

    type_name = "avg_pool2d"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        _only("count_include_pad", count_include_pad, True)
        _only("divisor_override", divisor_override, None)


class AvgPool1d(_Pool):
    """The mean of each window of each channel of (C, L) rows, as `torch.nn.AvgPool1d` with
    count_include_pad=True."""

    type_name = "avg_pool1d"
    _size = staticmethod(_single)

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        _only("count_include_pad", count_include_pad, True)


class Embedding(Layer):
    """A table of `num_embeddings` vectors of `embedding_dim`, as `torch.nn.Embedding`: rows of
    L indices (integers stored in the float row) become (L, embedding_dim) arrays, the table
    rows they name; weight (num_embeddings, embedding_dim), drawn from N(0, 1) as torch, with a
    dense gradient. It reads the network's input, so it comes first, after a Reshape((L,)) that
    states L; a Flatten then gives L·embedding_dim features. An index that is not an integer
    in [0, num_embeddings) is refused with its column and row named.
    """

    type_name = "embedding"

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> None:
        self.num_embeddings = width(num_embeddings, "num_embeddings")
        self.embedding_dim = width(embedding_dim, "embedding_dim")
        _only("padding_idx", padding_idx, None)
        _only("max_norm", max_norm, None)
        real(norm_type, "norm_type")
        _only("scale_grad_by_freq", scale_grad_by_freq, False)
        _only("sparse", sparse, False)

    def _hyper(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}


class Embeddings(Layer):
    """The tabular input layer: rows of `in_features` columns of which those in `columns`
    ({column: (num_embeddings, embedding_dim)}) hold category indices, each looked up in a
    table of its own (as `torch.nn.Embedding`), the others numbers that pass through; the
    outputs are concatenated in column order, flat. Tables "i.tables.<column>.weight"
    (num_embeddings, embedding_dim). First in a network; an index that is not an integer in
    [0, num_embeddings) is refused with its column and row named.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Embeddings({0: (3, 2)}, in_features=3), bp.Dense(4, 1)])
        >>> {name: p.shape for name, p in net.parameters().items()}
        {'0.tables.0.weight': (3, 2), '1.weight': (1, 4), '1.bias': (1,)}
    """

    type_name = "embeddings"

    def __init__(self, columns: Any, in_features: int) -> None:
        self.in_features = width(in_features, "in_features")
        items = columns.items() if isinstance(columns, Mapping) else _triples(columns)
        tables: dict[int, tuple[int, int]] = {}
        for column, table in items:
            where = f"columns[{column!r}]"
            c = integer(column, "columns: a column", low=0, high=self.in_features - 1)
            if c in tables:
                raise ValueError(f"{where}: the column is listed twice")
            if not isinstance(table, (tuple, list)) or len(table) != 2:
                raise TypeError(f"{where}: expected (num_embeddings, embedding_dim)")
            tables[c] = (width(table[0], f"{where}[0]"), width(table[1], f"{where}[1]"))
        if not tables:
            raise ValueError("columns: at least one column to embed")
        self.columns = dict(sorted(tables.items()))

    def _hyper(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "columns": [[c, num, dim] for c, (num, dim) in self.columns.items()],
        }


def _triples(columns: Any) -> list[tuple[Any, Any]]:
    """(column, (num, dim)) of a list of [column, num, dim] (the saved form)."""
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
        raise TypeError(
            f"columns: expected a dict of column -> (num_embeddings, embedding_dim), "
            f"got {type(columns).__name__}"
        )
    out = []
    for item in columns:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise TypeError(f"columns: expected [column, num, dim] entries, got {item!r}")
        out.append((item[0], (item[1], item[2])))
    return out


#: The layers over rows read as arrays (C, H, W), (C, L) or (L,) of indices, and the tabular one.
SHAPED: tuple[type[Layer], ...] = (
    Reshape,
    Flatten,
    Conv1d,
    Conv2d,
    MaxPool1d,
    MaxPool2d,
    AvgPool1d,
    AvgPool2d,
    Embedding,
    Embeddings,
)

#: Every layer class by its spec type name (what saved files and the core call it).
_ALL: tuple[type[Layer], ...] = (
    Dense,
    *ACTIVATIONS,
    PReLU,
    Dropout,
    BatchNorm1d,
    LayerNorm,
    *SHAPED,
)
LAYERS: dict[str, type[Layer]] = {cls.type_name: cls for cls in _ALL}
