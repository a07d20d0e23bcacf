"""Networks from ONNX: `from_onnx(model)` reads the sequential graphs that torch
(``torch.onnx.export`` of an ``nn.Sequential``: MLPs and small CNNs), Keras-style converters
(MatMul + Add) and skl2onnx (MLPClassifier, MLPRegressor) write, and `to_onnx`'s own (every layer
bpcore has), into a bpcore Network.

The graph is read as a chain from its one input: at each tensor, the nodes that consume it must
form one layer, found by matching the operator patterns of `bpcore._onnx_patterns` (a layer is
one node, or a few that compute one formula, such as GELU's Erf form or torch's Softplus with
beta and threshold). The
chain ends at a graph output, or at a classifier's probability head: a Softmax (skl2onnx's and
to_onnx's) or skl2onnx's binary head (Sigmoid, then 1 - p beside p). What follows a head (ArgMax,
label lookup, ZipMap) is post-processing, not part of the network. Anything else (a branch, an
operator of another domain such as skl2onnx's Scaler, an attribute bpcore has no layer for, such
as a Conv's group=2 or a pooling's ceil_mode=1) is refused with a ValueError naming the first
node that cannot be taken and why.

Each layer's rows have a shape, followed from the graph's input: (features,) for an input
(batch, features), (C, H, W) or (C, L) for an input of more axes, which becomes a first
Reshape((C, H, W)) layer (the network then reads the same values as flat rows, as bpcore's
networks do). A reshape of each sample to (batch, k) is nothing on flat rows of k and a Flatten
of shaped ones.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import numpy as np

from bpcore._onnx_patterns import (
    COMMUTATIVE,
    LAYER_INPUT,
    PATTERNS,
    SOFTPLUS_WITHOUT_THRESHOLD,
    SUPPORTED,
    Const,
    FlatReshape,
    Made,
    Match,
)
from bpcore.layers import (
    BatchNorm1d,
    Dense,
    Embedding,
    Embeddings,
    Flatten,
    Layer,
    PReLU,
    Reshape,
)
from bpcore.losses import LOSSES, Loss, LossLike
from bpcore.network import Network
from bpcore.onnx_export import (
    LOSS_METADATA_KEY,
    PRELU_INIT_METADATA_KEY,
    VARIANCE_METADATA_KEY,
    PathLike,
    onnx_module,
)
from bpcore.optimizers import Optimizer
from bpcore.reference.convolution import output_size
from bpcore.reference.shapes import CONVOLUTIONS, POOLS, as_2d, geometry
from bpcore.reference.specs import layer_spec

#: A sample's shape as a layer reads it; None where the graph leaves the input's width open.
Shape = Optional[tuple[int, ...]]


def _fold(onnx: Any, node: Any, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    """The value of a node computed from constants alone (exporters leave a few), else None."""
    if node.op_type == "Constant":
        attribute = node.attribute[0]
        value = onnx.helper.get_attribute_value(attribute)
        if attribute.name == "value":
            return np.asarray(onnx.numpy_helper.to_array(value))
        if attribute.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attribute.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
        return None
    if not node.input or any(i not in constants for i in node.input):
        return None
    args = [constants[i] for i in node.input]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Identity":
        return args[0]
    if node.op_type == "Transpose":
        return np.transpose(args[0], attributes.get("perm"))
    if node.op_type == "Cast":
        return args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]))
    return None


class _Graph:
    """The nodes of a graph with what a walk along it needs: producers, consumers, constants."""

    def __init__(self, onnx: Any, graph: Any) -> None:
        self.constants: dict[str, np.ndarray] = {
            t.name: np.asarray(onnx.numpy_helper.to_array(t)) for t in graph.initializer
        }
        self.nodes: list[Any] = []
        for node in graph.node:
            value = _fold(onnx, node, self.constants) if node.domain in ("", "ai.onnx") else None
            if value is not None and len(node.output) == 1:
                self.constants[node.output[0]] = value
            else:
                self.nodes.append(node)
        self.order = {id(n): k for k, n in enumerate(self.nodes)}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(n.input):
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = [o.name for o in graph.output]
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(
                f"from_onnx: expected a graph with one input, got {[i.name for i in inputs]}"
            )
        self.input = inputs[0]

    def used(self, tensor: str) -> bool:
        return tensor in self.consumers or tensor in self.outputs

    def match(self, pattern: Any, tensor: str, x: str, m: Match) -> Match | None:
        """`m` extended by `pattern` matched at `tensor` (the layer's input being `x`)."""
        if pattern == LAYER_INPUT:
            return m if tensor == x else None
        if isinstance(pattern, Const):
            value = self.constants.get(tensor)
            if value is None or value.dtype.kind not in pattern.kinds:
                return None
            known = m.constants.get(pattern.key)
            if known is not None and not np.array_equal(known, value):
                return None
            m = m.copy()
            m.constants[pattern.key] = value
            return m
        node = self.producer.get(tensor)
        if node is None or node.op_type != pattern.op or node.domain not in ("", "ai.onnx"):
            return None
        inputs = list(node.input)
        while inputs and not inputs[-1]:
            inputs.pop()  # trailing optional inputs left out
        if len(inputs) != len(pattern.inputs):
            return None
        orders = [inputs]
        if pattern.op in COMMUTATIVE:
            orders.append(inputs[::-1])
        for order in orders:
            found: Match | None = m
            for sub, t in zip(pattern.inputs, order):
                found = self.match(sub, t, x, found) if found is not None else None
            if found is not None:
                if all(n is not node for n in found.nodes):
                    found.nodes.append(node)
                return found
        return None

    def layer_at(self, x: str) -> tuple[Match, Callable[[Match], Made]] | None:
        """The largest pattern taking all consumers of `x` and only their chain."""
        best: tuple[Match, Callable[[Match], Made]] | None = None
        users = {id(n) for n in self.consumers.get(x, [])}
        for pattern, make in PATTERNS:
            for node in self.nodes:
                if node.op_type != pattern.op or not node.output:
                    continue
                m = self.match(pattern, node.output[0], x, Match())
                if m is None or (best is not None and len(m.nodes) <= len(best[0].nodes)):
                    continue
                taken = {id(n) for n in m.nodes}
                private = all(
                    c is not None and id(c) in taken
                    for n in m.nodes[:-1]
                    for o in n.output
                    for c in self.consumers.get(o, [None])
                ) and not any(o in self.outputs for n in m.nodes[:-1] for o in n.output)
                extra = any(self.used(o) for o in m.root.output[1:])
                if users <= taken and private and not extra:
                    m.nodes.sort(key=lambda n: self.order[id(n)])
                    m.nodes.remove(node)
                    m.nodes.append(node)
                    best = (m, make)
        return best

    def embeddings_at(self, x: str) -> tuple[Match, Callable[[Match], Made]] | None:
        """to_onnx's Embeddings reading `x`: a Gather (axis 1) of every column, the embedded
        ones cast to indices and looked up in their table (Gather, axis 0), all concatenated
        (axis 1) in column order; None if the consumers of `x` are not that."""
        users = self.consumers.get(x, [])
        nodes: list[Any] = []
        tables: dict[int, np.ndarray] = {}
        tails: dict[str, int] = {}
        joins: set[int] = set()
        concat = None
        for gather in users:
            column = self.constants.get(gather.input[1]) if len(gather.input) == 2 else None
            if (
                gather.op_type != "Gather"
                or gather.domain not in ("", "ai.onnx")
                or gather.input[0] != x
                or _attribute(gather, "axis", 0) != 1
                or column is None
                or column.dtype.kind not in "iu"
                or column.size != 1
            ):
                return None
            c = int(column.reshape(-1)[0])
            nodes.append(gather)
            tail = gather.output[0]
            if column.ndim == 0:  # an embedded column: its values, cast, looked up
                cast = self._only_user(tail, "Cast")
                lookup = None if cast is None else self._only_user(cast.output[0], "Gather")
                table = None if lookup is None else self.constants.get(lookup.input[0])
                if (
                    cast is None
                    or _attribute(cast, "to", 0) not in (6, 7)  # INT32, INT64
                    or lookup is None
                    or lookup.input[1] != cast.output[0]
                    or table is None
                    or table.ndim != 2
                    or _attribute(lookup, "axis", 0) != 0
                ):
                    return None
                tables[c] = table
                nodes += [cast, lookup]
                tail = lookup.output[0]
            concat = self._only_user(tail, "Concat")
            if concat is None:
                return None
            tails[tail] = c
            joins.add(id(concat))
        if concat is None or len(joins) != 1 or _attribute(concat, "axis", 0) not in (1, -1):
            return None
        if [tails.get(i) for i in concat.input] != list(range(len(users))):
            return None
        m = Match([*sorted(nodes, key=lambda n: self.order[id(n)]), concat], {})

        def make(m: Match) -> Made:
            columns = {c: (int(t.shape[0]), int(t.shape[1])) for c, t in tables.items()}
            state = {f"tables.{c}.weight": t for c, t in tables.items()}
            return Embeddings(columns, in_features=len(users)), state

        return m, make

    def _only_user(self, tensor: str, op: str) -> Any:
        """The one node reading `tensor`, if it is an `op` of the default domain."""
        users = self.consumers.get(tensor, [])
        if tensor in self.outputs or len(users) != 1:
            return None
        node = users[0]
        return node if node.op_type == op and node.domain in ("", "ai.onnx") else None

    def head_at(self, x: str) -> str | None:
        """The loss a probability head reading `x` implies, if `x`'s consumers are one."""
        users = self.consumers.get(x, [])
        if len(users) != 1 or users[0].domain not in ("", "ai.onnx"):
            return None
        head = users[0]
        if head.op_type in ("Softmax", "LogSoftmax"):
            axis = next((a.i for a in head.attribute if a.name == "axis"), -1)
            return "cross_entropy" if axis in (-1, 1) else None
        if head.op_type == "Sigmoid":  # skl2onnx's binary classifier: [1 - p, p]
            after = sorted(n.op_type for n in self.consumers.get(head.output[0], []))
            return "bce_with_logits" if after == ["Concat", "Sub"] else None
        return None

    def downstream(self, tensor: str) -> set[int]:
        """The nodes computed from `tensor`."""
        seen: set[int] = set()
        todo = [tensor]
        while todo:
            for n in self.consumers.get(todo.pop(), []):
                if id(n) not in seen:
                    seen.add(id(n))
                    todo.extend(n.output)
        return seen


def _attribute(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx_module().helper.get_attribute_value(a)
    return default


def _input_shape(graph: _Graph) -> Shape:
    """A sample's shape from the graph's input (batch, ...): None for (batch, features) of an
    unknown width; a ValueError for more axes of unknown sizes."""
    dims = [d.dim_value if d.HasField("dim_value") else None for d in _dims(graph.input)]
    rest = dims[1:]
    if len(rest) > 1 and (None in rest or len(rest) > 3):
        raise ValueError(
            f"from_onnx: the input {graph.input.name!r} has the shape {dims}: a network reads "
            "(batch, features), or (batch, C, L) and (batch, C, H, W) of known sizes"
        )
    if not rest or rest[0] is None:
        return None
    return tuple(int(d) for d in rest if d is not None)


def _dims(value_info: Any) -> list[Any]:
    return list(value_info.type.tensor_type.shape.dim)


def _shape_after(shape: Shape, layer: Layer) -> Shape:
    """The shape of a sample after `layer` reads one of `shape`."""
    if isinstance(layer, Dense):
        return (layer.out_features,)
    if isinstance(layer, Reshape):
        return layer.shape
    if shape is None:
        return None
    spec = layer_spec(layer.to_spec())
    if isinstance(layer, Flatten):
        return (int(np.prod(shape)),)
    if isinstance(layer, Embedding):
        return (shape[0], layer.embedding_dim)
    if isinstance(layer, Embeddings):
        dims = {c: dim for c, (_, dim) in layer.columns.items()}
        return (sum(dims.get(c, 1) for c in range(layer.in_features)),)
    if spec["type"] in CONVOLUTIONS | POOLS and len(shape) in (2, 3):
        g = geometry(spec)
        sizes = as_2d(shape)[1:]
        out = [
            output_size(sizes[a], g["kernel"][a], g["stride"][a], g["padding"][a], g["dilation"][a])
            for a in range(2)
        ]
        channels = spec["out_channels"] if spec["type"] in CONVOLUTIONS else shape[0]
        return (channels, *out[3 - len(shape) :])
    return shape


def _on_rows(layer: Layer, m: Match, shape: Shape, layers: list[Layer]) -> list[Layer]:
    """The layers `layer` is on rows of `shape` after `layers`: a flat reshape as nothing or a
    Flatten, an Embedding after the Reshape((L,)) that bpcore's needs first; a ValueError for a
    shape the layer cannot read."""
    if isinstance(layer, FlatReshape):
        if shape is None:  # the width is the last Dense layer's
            widths = [la.out_features for la in layers if isinstance(la, Dense)]
            if layer.k == -1 or (widths and layer.k == widths[-1]):
                return []
            width = widths[-1] if widths else "unknown"
            raise ValueError(f"a reshape of {width} features to {layer.k}")
        size = int(np.prod(shape))
        if layer.k not in (-1, size):
            raise ValueError(f"a reshape of {size} values (rows of {shape}) to {layer.k}")
        return [] if len(shape) == 1 else [Flatten()]
    if isinstance(layer, Reshape) and shape is not None and np.prod(layer.shape) != np.prod(shape):
        raise ValueError(f"a reshape of rows of {shape} to {layer.shape}")
    if isinstance(layer, Embedding) and not layers:
        if shape is None or len(shape) != 1:
            raise ValueError("an embedding of indices needs the input's width: (batch, L)")
        return [Reshape(shape), layer]
    if isinstance(layer, PReLU) and layer.num_parameters > 1 and shape is not None:
        slope = list(m.constants["slope"].shape)
        while len(slope) > len(shape) and slope[0] == 1:
            slope.pop(0)  # the batch's axis, or broadcast ones before it
        if slope != [shape[0]] + [1] * (len(shape) - 1):
            raise ValueError(
                f"the slope has shape {tuple(m.constants['slope'].shape)} for rows of {shape}: "
                "only one slope, or one per channel (C, 1, ...), is a PReLU"
            )
    return [layer]


def _refuse(node: Any, why: str) -> ValueError:
    return ValueError(f"from_onnx: cannot take node {node.name!r} ({node.op_type}): {why}")


def _read_model(path_or_model: Any) -> Any:
    onnx = onnx_module()
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        try:
            return onnx.load_model(os.fspath(path_or_model))
        except OSError:
            raise
        except Exception as e:
            raise ValueError(f"path_or_model: {path_or_model!s} is not an ONNX model: {e}") from e
    raise TypeError(
        f"path_or_model: expected a path or an onnx.ModelProto, got {type(path_or_model).__name__}"
    )


def _loss_from_metadata(metadata: dict[str, str]) -> Loss | None:
    """The loss `to_onnx` kept in the metadata, if the model has one bpcore can read."""
    if LOSS_METADATA_KEY not in metadata:
        return None
    try:
        spec = json.loads(metadata[LOSS_METADATA_KEY])
        hyper = {k: v for k, v in spec.items() if k != "type"}
        loss: Loss = LOSSES[spec["type"]](**hyper)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return loss


def _with_prelu_inits(layers: list[Layer], metadata: dict[str, str]) -> list[Layer]:
    """`layers` with the PReLU inits `to_onnx` kept in the metadata, if it kept one per PReLU
    layer (else torch's default 0.25 stays)."""
    try:
        inits = json.loads(metadata.get(PRELU_INIT_METADATA_KEY, "[]"))
    except ValueError:
        return layers
    at = [i for i, layer in enumerate(layers) if isinstance(layer, PReLU)]
    if not isinstance(inits, list) or len(inits) != len(at):
        return layers
    layers = list(layers)
    for i, init in zip(at, inits):
        try:
            layers[i] = PReLU(layers[i].to_spec()["num_parameters"], init=init)
        except (TypeError, ValueError):
            return layers  # not to_onnx's numbers: the defaults stay
    return layers


def from_onnx(
    path_or_model: PathLike | Any,
    loss: LossLike | None = None,
    optimizer: Optimizer | str | None = None,
    seed: int = 0,
) -> Network:
    """The bpcore Network computing an ONNX model's sequential MLP graph, with its weights.

    Read are: Gemm (either weight layout, transB=0 or 1, alpha and beta folded in) and MatMul
    (+ Add of a bias) as Dense; Relu, LeakyRelu, Sigmoid, Tanh, Identity; Gelu (exact) and its
    Erf form; Elu; Softplus, also with torch's beta and threshold (a plain Softplus has
    threshold 40, see SOFTPLUS_WITHOUT_THRESHOLD); Sigmoid·Mul as SiLU; Mish and
    x·tanh(softplus(x)) as Mish; PRelu (one slope or one per channel; `init` as to_onnx kept
    it in the metadata, else torch's 0.25) as PReLU; Dropout (inference) as Dropout;
    BatchNormalization (num_batches_tracked 0) and LayerNormalization; Conv (group 1, the same
    pads at both ends) as Conv1d/Conv2d; MaxPool and AveragePool (ceil_mode 0; padding counted
    in the mean) as the pooling layers; Flatten and Reshape of each sample; Gather of a table
    as Embedding (after its Cast to indices, if any) and to_onnx's Gathers and Concat as
    Embeddings; Casts to float32/float64 are passed through. The chain ends at a graph output
    or a probability head (see the module docstring). The dtype is the weights' (float32 or
    float64). An input of more than two axes (batch, C, H, W) gives a first Reshape((C, H, W)):
    the network reads its rows flat.

    Example:
        >>> import bpcore as bp
        >>> net = bp.Network([bp.Dense(4, 8), bp.GELU(), bp.Dense(8, 3)], loss="cross_entropy")
        >>> back = bp.from_onnx(bp.to_onnx(net))  # doctest: +SKIP
        >>> back.layers  # doctest: +SKIP
        [Dense(in_features=4, out_features=8, bias=True), GELU(), Dense(...)]

    Args:
        path_or_model: a .onnx file or an `onnx.ModelProto`.
        loss: the network's loss; default the one `to_onnx` stored in the model, else
            "cross_entropy" after a Softmax head, "bce_with_logits" after skl2onnx's binary
            head, and "mse" otherwise.
        optimizer, seed: the Network's own arguments (ONNX models hold none).

    Raises:
        ImportError: onnx is not installed.
        TypeError: `path_or_model` is neither a path nor a ModelProto.
        ValueError: the graph is not a sequential MLP: the message names the first node that
            cannot be taken.
    """
    onnx = onnx_module()
    model = _read_model(path_or_model)
    graph = _Graph(onnx, model.graph)
    layers: list[Layer] = []
    state: dict[str, np.ndarray] = {}
    taken: set[int] = set()
    x = graph.input.name
    shape = _input_shape(graph)
    if shape is not None and len(shape) > 1:
        layers.append(Reshape(shape))
    head: str | None = None
    while x not in graph.outputs:
        head = graph.head_at(x)
        if head is not None:
            break
        found = graph.layer_at(x) or graph.embeddings_at(x)
        if found is None:
            users = sorted(graph.consumers.get(x, []), key=lambda n: graph.order[id(n)])
            if not users:
                raise ValueError(f"from_onnx: the tensor {x!r} leads to no graph output")
            if len(users) > 1:
                # Name the node where the branches meet if there is one (a residual Add).
                joins = [
                    n for n in users if any(i != x and i not in graph.constants for i in n.input)
                ]
                node = joins[0] if joins else users[0]
                others = ", ".join(repr(n.name) for n in users if n is not node)
                raise _refuse(node, f"its input {x!r} also feeds {others}: the graph branches")
            raise _refuse(users[0], f"not a layer of a sequential network (supported: {SUPPORTED})")
        m, make = found
        try:
            made = make(m)
        except (ValueError, TypeError) as e:  # also a layer refusing its hyperparameters
            raise _refuse(m.root, str(e)) from None
        layer, values = made
        if layer is not None:
            try:
                read = _on_rows(layer, m, shape, layers)
            except ValueError as e:
                raise _refuse(m.root, str(e)) from None
            for each in read:
                if each is layer:
                    state.update({f"{len(layers)}.{k}": v for k, v in values.items()})
                layers.append(each)
                shape = _shape_after(shape, each)
        taken.update(id(n) for n in m.nodes)
        x = m.root.output[0]
    if head is None:  # a head after the output (to_onnx's probabilities) still says the loss
        ops = {n.op_type for n in graph.consumers.get(x, [])}
        head = "cross_entropy" if ops & {"Softmax", "LogSoftmax"} else None
    after = graph.downstream(x)
    for node in graph.nodes:
        if id(node) not in taken and id(node) not in after:
            raise _refuse(node, "it is not on the chain from the input to the output")
    if not layers:
        raise ValueError("from_onnx: the graph has no layer")
    dtypes = {v.dtype for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if not dtypes:
        element = graph.input.type.tensor_type.elem_type
        dtypes = {np.dtype(onnx.helper.tensor_dtype_to_np_dtype(element))}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(
            f"from_onnx: weights must all be float32 or all float64, got {sorted(map(str, dtypes))}"
        )
    metadata = {p.key: p.value for p in model.metadata_props}
    if metadata.get(VARIANCE_METADATA_KEY) == "true":  # to_onnx's eps rounding, taken out
        for index, layer in enumerate(layers):
            name = f"{index}.running_var"
            if isinstance(layer, BatchNorm1d) and state[name].dtype == np.float64:
                moved = state[name] + (float(np.float32(layer.eps)) - layer.eps)
                state[name] = np.maximum(moved, 0.0)
    layers = _with_prelu_inits(layers, metadata)
    if loss is None:
        loss = _loss_from_metadata(metadata) or head or "mse"
    net = Network(layers, loss=loss, optimizer=optimizer, dtype=next(iter(dtypes)), seed=seed)
    net.load_state_dict(state)
    return net


__all__ = ["SOFTPLUS_WITHOUT_THRESHOLD", "from_onnx"]
