"""`bp.explain`: its arguments, the pass of the sample, and the two checks of every number."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from bpcore import reference as ref
from bpcore._arrays import as_inputs, as_labels, as_values
from bpcore._checks import boolean
from bpcore.explain import backward, checks
from bpcore.explain.report import BackwardPass
from bpcore.explain.summary import pass_notes, summarize
from bpcore.explain.weight import Explanation, explain_weight
from bpcore.layers import SHAPED, Dense, PReLU

if TYPE_CHECKING:
    from bpcore.network import Network


def _position(value: Any, arg: str, size: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{arg}: expected an integer {what}, got {value!r}")
    if not 0 <= int(value) < size:
        raise ValueError(f"{arg}: expected 0 <= {arg} < {size}, got {value}")
    return int(value)


def _weight_index(index: Any, rows: int, cols: int) -> tuple[int, int]:
    if (
        not isinstance(index, Sequence)
        or len(index) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in index)
    ):
        raise TypeError(f"index: expected a pair of integers (i, j), got {index!r}")
    i, j = int(index[0]), int(index[1])
    if not (0 <= i < rows and 0 <= j < cols):
        raise ValueError(
            f"index: ({i}, {j}) is outside the weight's shape ({rows}, {cols}) "
            "(i = output unit, j = input)"
        )
    return i, j


def _dense_layer(net: Network, layer: Any) -> Dense:
    layers = net.layers
    k = _position(layer, "layer", len(layers), "position in net.layers")
    dense = layers[k]
    if not isinstance(dense, Dense):
        raise ValueError(
            f"layer: net.layers[{k}] is {type(dense).__name__}, not Dense; the Dense layers "
            f"are at {[p for p, lay in enumerate(layers) if isinstance(lay, Dense)]}"
        )
    return dense


def _batch(net: Network, x: Any, sample: Any) -> tuple[np.ndarray, int]:
    """x as an (n, features) array of the network's dtype, and the row explained."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or (a.shape[0] != 1 and sample is None):
        raise ValueError(
            f"x: expected one sample, shape ({net.n_features},) or (1, {net.n_features}), "
            f"got shape {np.shape(x)}; to explain one sample of a batch give the batch and "
            "sample=k"
        )
    X = as_inputs(a, net.dtype, net.n_features)
    row = 0 if sample is None else _position(sample, "sample", X.shape[0], "row of x")
    return X, row


@overload
def explain(
    net: Network,
    x: Any,
    y: Any,
    layer: None = None,
    index: None = None,
    *,
    training: bool = True,
    sample: int | None = None,
    top: int = 3,
) -> BackwardPass: ...


@overload
def explain(
    net: Network,
    x: Any,
    y: Any,
    layer: int,
    index: Any,
    *,
    training: bool = True,
    sample: int | None = None,
    top: int = 3,
) -> Explanation: ...


def explain(
    net: Network,
    x: Any,
    y: Any,
    layer: int | None = None,
    index: Any = None,
    *,
    training: bool = True,
    sample: int | None = None,
    top: int = 3,
) -> BackwardPass | Explanation:
    """Backpropagation of one sample, made visible.

    Without `layer` and `index`: the whole backward pass (a `BackwardPass`), from the loss down
    to the input: at each layer the error signal δ = ∂L/∂z, how it was formed from the layer
    above (δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f'(z_l), with its largest terms), its norm and the norms
    of the layer's gradients, and notes where the numbers explain the gradient (inactive ReLUs,
    saturated sigmoids, exploding factors, a vanished gradient).

    With `layer` and `index` = (i, j): the chain rule for the weight ``weight[i, j]`` of that
    Dense layer (an `Explanation`): ∂L/∂w_ij = ∂L/∂h_i · ∂h_i/∂z_i · ∂z_i/∂w_ij, and the sum
    Σ_k ∂L/∂z_k · w_ki that forms ∂L/∂h_i from the layer above.

    Every number is computed in float64 on the network's own parameters, and every gradient
    is checked against `net.gradients` (the Rust kernels) and `bpcore.reference` (see
    ``.checks`` and ``.matches``). The network is left as it was.

    Args:
        net: a bpcore Network (any layers).
        x: one sample, shape (n_features,) or (1, n_features); or a batch (n, n_features)
            with `sample`.
        y: its target (a class label for cross_entropy, else the output's values); for a
            batch, the batch's targets.
        layer, index: the Dense layer's position in ``net.layers`` and (i, j) = (output
            unit, input) of one of its weights; both or neither.
        training: explain the training-mode pass (Dropout applies this sample's mask,
            BatchNorm1d uses the batch's statistics) or, False, the inference-mode one
            (Dropout the identity, BatchNorm1d its running statistics).
        sample: the row of a batch `x` to explain: the loss of that sample alone, with the
            batch's statistics (BatchNorm1d needs a batch in training mode).
        top: how many of the largest entries and terms to show.

    Example:
        >>> import numpy as np, bpcore as bp
        >>> net = bp.Network([bp.Dense(2, 3), bp.ReLU(), bp.Dense(3, 1)], loss="mse",
        ...                  dtype="float64", seed=0)
        >>> p = bp.explain(net, np.array([0.5, -1.0]), np.array([1.0]))
        >>> p.matches, sorted(p.deltas)
        (True, [0, 2])
    """
    arrays = [
        f"layers[{i}] ({type(la).__name__})"
        for i, la in enumerate(net.layers)
        if isinstance(la, (*SHAPED, PReLU))
    ]
    if arrays:
        raise ValueError(
            f"net: explain shows the backward pass of Dense, element-wise activation, Dropout "
            f"and normalization layers over flat rows; it cannot show {', '.join(arrays)}"
        )
    if (layer is None) != (index is None):
        raise TypeError("layer, index: give both (one weight) or neither (the whole pass)")
    dense = None if layer is None else _dense_layer(net, layer)
    ij = None if dense is None else _weight_index(index, dense.out_features, dense.in_features)
    training = boolean(training, "training")
    if isinstance(top, bool) or not isinstance(top, numbers.Integral):
        raise TypeError(f"top: expected an integer, got {top!r}")
    if top < 1:
        raise ValueError(f"top: expected at least 1 entry to show, got {top}")
    X, row = _batch(net, x, sample)
    n = X.shape[0]
    takes_labels = net.loss_function.takes_labels
    t = (
        as_labels(np.reshape(y, -1), n)
        if takes_labels
        else as_values(y if n > 1 else np.reshape(y, (1, -1)), net.dtype, n, net.n_outputs)
    )
    specs = [ref.layer_spec(lay.to_spec()) for lay in net.layers]
    if training and n < 2 and any(s["type"] == "batch_norm1d" for s in specs):
        raise ValueError(
            "x: BatchNorm1d in training mode normalizes by the batch's statistics; give the "
            "batch (n >= 2 rows) and sample=k, or training=False for the running statistics"
        )
    loss_spec = ref.loss_spec(net.loss_function.to_spec())
    weights = None if n == 1 else [float(n) if r == row else 0.0 for r in range(n)]
    rust_weights = None if weights is None else np.array(weights, dtype=net.dtype)

    params = {k: v.astype(np.float64) for k, v in net.parameters().items()}
    buffers = {k: np.asarray(v, dtype=np.float64) for k, v in net.buffers().items()}
    X64 = X.astype(np.float64)
    targets = t.tolist() if takes_labels else t.astype(np.float64).tolist()

    folds = not training and any(s["type"] in ("dropout", "batch_norm1d") for s in specs)
    with checks.network_left_as_it_was(net) as forwards:
        if not folds:
            rust = net.gradients(X, t, rust_weights)
    if folds:
        rust = _folded_rust_gradients(net, specs, params, buffers, X, t, rust_weights)
    try:
        if folds:
            layers, values = checks.fold_for_inference(net.layers, specs, params, buffers)
            reference = checks.unfold_gradients(
                specs,
                checks.reference_gradients(
                    layers, loss_spec, values, {}, X64, targets, weights, net.seed, forwards
                ),
                buffers,
            )
        else:
            reference = checks.reference_gradients(
                specs, loss_spec, params, buffers, X64, targets, weights, net.seed, forwards
            )
        computed = backward.run(
            specs,
            loss_spec,
            params,
            buffers,
            X64,
            targets,
            weights,
            training=training,
            seed=net.seed,
            forwards=forwards,
        )
    except ArithmeticError as e:  # Python floats raise where NumPy would give inf
        raise ValueError(
            f"x: the backward pass of this sample through these parameters leaves the range "
            f"of float64 ({e}); nothing to explain"
        ) from None
    gradients = {name: g for step in computed.steps for name, g in step.gradients.items()}
    magnitudes = {name: m for step in computed.steps for name, m in step.magnitudes.items()}
    summaries = summarize(computed.steps, row, training, int(top))
    result = BackwardPass(
        layers=summaries,
        notes=pass_notes(summaries),
        loss=computed.loss,
        output=computed.outputs[row],
        output_gradient=computed.output_gradient[row],
        gradients=gradients,
        rust_gradients={k: np.asarray(v) for k, v in rust.items()},
        reference_gradients=reference,
        checks=checks.compare(
            gradients, magnitudes, rust, "net.gradients", checks.RUST_TOLERANCE[net.dtype.name]
        )
        + checks.compare(
            gradients, magnitudes, reference, "bpcore.reference", checks.REFERENCE_TOLERANCE
        ),
        training=training,
        sample=row,
        batch_size=n,
        dtype=net.dtype.name,
        loss_name=str(loss_spec["type"]),
        target=targets[row],
        raw=computed,
    )
    if layer is None or ij is None:
        return result
    return explain_weight(result, int(layer), ij)


def _folded_rust_gradients(
    net: Network,
    specs: list[dict[str, Any]],
    params: dict[str, np.ndarray],
    buffers: dict[str, np.ndarray],
    X: np.ndarray,
    t: np.ndarray,
    weights: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The Rust kernels' gradients of the inference-mode function (see checks.py)."""
    from bpcore.network import Network

    layers, values = checks.fold_for_inference(net.layers, specs, params, buffers)
    folded = Network(layers, loss=net.loss_function, dtype=net.dtype, seed=net.seed)
    folded.set_parameters(values)
    return checks.unfold_gradients(specs, folded.gradients(X, t, weights), buffers)
