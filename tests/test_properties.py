"""No panic reaches Python, whatever goes in.

Hypothesis draws small architectures (every layer type), dtypes, shapes and values (NaN, inf,
huge, empty, wrong shapes, odd dtypes) and drives them through every public method. Only the
documented exceptions may come out: ValueError and TypeError for bad input, and
bp.TrainingDivergedError (an ArithmeticError) when values overflow in training; never
RuntimeError (a caught panic), pyo3's PanicException, SystemError or an abort.
"""

import contextlib
import warnings

import numpy as np
import pytest

import bpcore as bp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DOCUMENTED = (ValueError, TypeError, bp.TrainingDivergedError)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LOSSES = ["mse", "l1", "huber", "cross_entropy", "bce_with_logits"]
OPTIMIZERS = [
    lambda: bp.SGD(lr=0.1, momentum=0.9),
    lambda: bp.Adam(lr=1e308),
    lambda: bp.AdamW(amsgrad=True),
    lambda: bp.RMSprop(centered=True, momentum=0.5),
    lambda: bp.Adagrad(lr_decay=0.1),
    lambda: bp.SGD(lr=1e-300),
]
VALUES = st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e30, -1e30, 1e308, 1e-310, np.nan, np.inf, -np.inf])


@st.composite
def layer_lists(draw):
    """A chain of layers whose widths fit, starting and ending with a Dense."""
    width = draw(st.integers(1, 5))
    n_in = width
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["dense", "act", "dropout", "batch", "layer"]))
        if kind == "dense":
            out = draw(st.integers(1, 5))
            layers.append(bp.Dense(width, out, bias=draw(st.booleans())))
            width = out
        elif kind == "act":
            layers.append(
                draw(
                    st.sampled_from(
                        [
                            bp.ReLU(),
                            bp.LeakyReLU(0.2),
                            bp.Sigmoid(),
                            bp.Tanh(),
                            bp.GELU(),
                            bp.ELU(),
                            bp.Softplus(beta=2.0),
                            bp.Identity(),
                        ]
                    )
                )
            )
        elif kind == "dropout":
            layers.append(bp.Dropout(draw(st.sampled_from([0.0, 0.3, 0.99]))))
        elif kind == "batch":
            layers.append(bp.BatchNorm1d(width, momentum=draw(st.sampled_from([0.0, 0.1, 1.0]))))
        else:
            layers.append(bp.LayerNorm(width, eps=draw(st.sampled_from([1e-5, 1e-300]))))
    n_out = draw(st.integers(1, 4))
    layers = [bp.Dense(n_in, n_in), *layers, bp.Dense(width, n_out)]
    return layers, n_in, n_out


@st.composite
def networks(draw):
    layers = draw(layer_lists())[0]
    loss = draw(st.sampled_from(LOSSES))
    net = bp.Network(
        layers,
        loss=loss,
        optimizer=draw(st.sampled_from(OPTIMIZERS))(),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        seed=draw(st.integers(0, 2**64 - 1)),
    )
    return net


@st.composite
def arrays(draw, rows, cols):
    """Mostly well-formed arrays, sometimes wrong in shape, dtype or values."""
    kind = draw(st.sampled_from(["good", "good", "good", "values", "shape", "dtype", "empty"]))
    if kind == "shape":
        shape = draw(st.lists(st.integers(0, 4), max_size=3).map(tuple))
    elif kind == "empty":
        shape = (0, cols) if draw(st.booleans()) else (rows, 0)
    else:
        shape = (rows, cols)
    a = np.random.default_rng(draw(st.integers(0, 1000))).normal(size=shape) * 3
    if kind == "values" and a.size:
        for _ in range(draw(st.integers(1, 3))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(VALUES)
    if kind == "dtype":
        a = a.astype(
            draw(st.sampled_from([object, str, complex, bool, np.float16, np.int8, np.uint64]))
        )
    if draw(st.booleans()) and a.ndim == 2:
        a = np.asfortranarray(a)
    return a


@st.composite
def targets(draw, net, rows):
    if net.loss_function.takes_labels:
        kind = draw(st.sampled_from(["good", "good", "bad", "float", "array"]))
        if kind == "good":
            return np.asarray(
                draw(st.lists(st.integers(0, net.n_outputs - 1), min_size=rows, max_size=rows)),
                np.int64,
            )
        if kind == "bad":
            return np.full(
                rows, draw(st.sampled_from([-1, net.n_outputs, -(2**63), 2**63 - 1])), np.int64
            )
        if kind == "float":
            return np.full(rows, draw(VALUES))
    y = draw(arrays(rows, net.n_outputs))
    if net.loss_function.type_name == "bce_with_logits" and y.dtype.kind == "f":
        y = np.clip(y, 0, 1) if draw(st.booleans()) else y
    return y


def call(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(*DOCUMENTED):
            fn(*args, **kwargs)


@SETTINGS
@given(data=st.data())
def test_every_method_raises_only_documented_errors(data):
    try:
        net = data.draw(networks())
    except DOCUMENTED:
        return
    rows = data.draw(st.integers(1, 9))
    x = data.draw(arrays(rows, net.n_features))
    y = data.draw(targets(net, rows))
    w = data.draw(
        st.one_of(st.none(), arrays(rows, 1).map(lambda a: a.reshape(-1) if a.ndim == 2 else a))
    )
    call(net.forward, x)
    call(net.predict, x)
    call(net.predict_proba, x)
    call(net.evaluate, x, y)
    call(net.loss, x, y)
    call(net.loss, x, y, training=True)
    call(net.gradients, x, y, sample_weight=w)
    call(net.train_step, x, y, sample_weight=w)
    call(
        net.fit,
        x,
        y,
        epochs=data.draw(st.integers(1, 2)),
        batch_size=data.draw(st.sampled_from([1, 2, 3, 10**6, 2**70])),
        shuffle=data.draw(st.booleans()),
        validation_split=data.draw(st.sampled_from([0.0, 0.3, 0.9])),
        sample_weight=w,
        clip_grad_norm=data.draw(st.sampled_from([None, 1e-300, 1.0, 1e308])),
    )
    call(net.fit, x, y, validation_data=(x, y), schedule=bp.CosineAnnealingLR(2), epochs=2)
    params = net.parameters()
    scale = data.draw(VALUES)
    with np.errstate(all="ignore"):
        call(net.set_parameters, {k: v * scale for k, v in params.items()})
        call(net.apply_gradients, {k: np.full_like(v, scale) for k, v in params.items()})
    call(net.set_buffers, {k: v * scale for k, v in net.buffers().items()})
    call(setattr, net, "lr", data.draw(VALUES))
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, bp.Dense)]
    call(
        bp.explain,
        net,
        x[:1] if x.ndim == 2 else x,
        y[:1] if hasattr(y, "__len__") else y,
        data.draw(st.sampled_from([*dense, -1, 99])),
        (data.draw(st.integers(-1, 5)), 0),
    )
    # Whatever happened, the network still answers on good input.
    good = np.zeros((2, net.n_features))
    assert net.forward(good).shape == (2, net.n_outputs)


@SETTINGS
@given(
    in_features=st.one_of(st.integers(1, 8), st.integers(2**36, 2**62)),
    out_features=st.one_of(st.integers(1, 8), st.integers(2**36, 2**62)),
    rows=st.integers(1, 4),
)
def test_huge_widths_are_refused_not_aborted(in_features, out_features, rows):
    try:
        net = bp.Network([bp.Dense(in_features, out_features)])
    except DOCUMENTED:
        return
    call(net.forward, np.zeros((rows, in_features), np.float32))
