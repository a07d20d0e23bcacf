"""The whole table of bad inputs, entry point by entry point.

Each bad call raises ValueError or TypeError whose message names the argument, and leaves the
parameters, the optimizer's state and the generator bit-identical (test_errors.py's twin
technique: one more shuffled epoch on the network and on an untouched twin must agree). Arrays
of unusual layout (Fortran order, strided views, read-only, other numeric dtypes, lists) are
accepted and give exactly what their C-contiguous copies give.
"""

import numpy as np
import pytest
from test_errors import V, X, Y, make, twin_state, with_nan

import bpcore as bp

EMPTY = np.zeros((0, 4))


def replaced(n, key, value):
    """The parameters with entry `key` replaced by `value(its shape)`."""
    p = n.parameters()
    p[key] = value(p[key].shape)
    return p


def grads_with(n, key, value):
    g = n.gradients(X, Y)
    g[key] = value(g[key].shape)
    return g


def bad_int_labels(value):
    return np.r_[Y[:-1], value]


BAD_CALLS = [
    # (description, loss, call, exception, words the message must contain)
    # --- forward / predict / predict_proba: every X problem
    ("forward X 3-d", "cross_entropy", lambda n: n.forward(X[None]), ValueError, "X"),
    ("forward X 0-d", "cross_entropy", lambda n: n.forward(np.float64(1)), ValueError, "X"),
    ("forward X None", "cross_entropy", lambda n: n.forward(None), TypeError, "X"),
    (
        "forward X bytes",
        "cross_entropy",
        lambda n: n.forward(np.zeros((2, 4), "S1")),
        TypeError,
        "X",
    ),
    (
        "forward X datetime",
        "cross_entropy",
        lambda n: n.forward(np.zeros((2, 4), "M8[s]")),
        TypeError,
        "X",
    ),
    (
        "forward X zero width",
        "cross_entropy",
        lambda n: n.forward(np.zeros((3, 0))),
        ValueError,
        "X",
    ),
    ("forward X -inf", "cross_entropy", lambda n: n.forward(-np.inf * X), ValueError, "X"),
    ("predict X empty", "cross_entropy", lambda n: n.predict(EMPTY), ValueError, "X"),
    (
        "predict X strings",
        "cross_entropy",
        lambda n: n.predict(np.full((2, 4), "1")),
        TypeError,
        "X",
    ),
    (
        "predict_proba X NaN",
        "cross_entropy",
        lambda n: n.predict_proba(with_nan(X)),
        ValueError,
        "X",
    ),
    (
        "predict_proba X wide",
        "cross_entropy",
        lambda n: n.predict_proba(np.ones((2, 5))),
        ValueError,
        "X",
    ),
    ("predict_proba regression", "mse", lambda n: n.predict_proba(X), ValueError, "predict_proba"),
    # --- evaluate / loss
    ("evaluate y short", "cross_entropy", lambda n: n.evaluate(X, Y[:-1]), ValueError, "y"),
    ("evaluate X empty", "cross_entropy", lambda n: n.evaluate(EMPTY, Y[:0]), ValueError, "X"),
    (
        "evaluate label big",
        "cross_entropy",
        lambda n: n.evaluate(X, bad_int_labels(3)),
        ValueError,
        "y",
    ),
    ("evaluate targets NaN", "mse", lambda n: n.evaluate(X, with_nan(V)), ValueError, "y"),
    ("evaluate bce above 1", "bce_with_logits", lambda n: n.evaluate(X, 2 * V), ValueError, "y"),
    ("loss label NaN", "cross_entropy", lambda n: n.loss(X, with_nan(Y)), ValueError, "y"),
    ("loss label inf", "cross_entropy", lambda n: n.loss(X, Y + np.inf), ValueError, "y"),
    (
        "loss label int64 min",
        "cross_entropy",
        lambda n: n.loss(X, bad_int_labels(np.iinfo(np.int64).min)),
        ValueError,
        "y",
    ),
    (
        "loss label uint64 max",
        "cross_entropy",
        lambda n: n.loss(X, np.full(12, 2**64 - 1, np.uint64)),
        ValueError,
        "y",
    ),
    ("loss label 1e30", "cross_entropy", lambda n: n.loss(X, np.full(12, 1e30)), ValueError, "y"),
    ("loss labels complex", "cross_entropy", lambda n: n.loss(X, Y + 0j), TypeError, "y"),
    (
        "loss labels objects",
        "cross_entropy",
        lambda n: n.loss(X, np.array([None] * 12)),
        TypeError,
        "y",
    ),
    ("loss labels 3-d", "cross_entropy", lambda n: n.loss(X, Y.reshape(12, 1, 1)), ValueError, "y"),
    ("loss targets 1-d for 3 outputs", "mse", lambda n: n.loss(X, V[:, 0]), ValueError, "y"),
    ("loss targets strings", "mse", lambda n: n.loss(X, np.full((12, 3), "a")), TypeError, "y"),
    (
        "loss training=None",
        "cross_entropy",
        lambda n: n.loss(X, Y, training=None),
        TypeError,
        "training",
    ),
    (
        "training loss label bad",
        "cross_entropy",
        lambda n: n.loss(X, bad_int_labels(-1), training=True),
        ValueError,
        "y",
    ),
    # --- gradients / train_step, with sample_weight
    ("gradients X NaN", "cross_entropy", lambda n: n.gradients(with_nan(X), Y), ValueError, "X"),
    ("gradients y long", "cross_entropy", lambda n: n.gradients(X, np.r_[Y, 0]), ValueError, "y"),
    (
        "gradients weights NaN",
        "cross_entropy",
        lambda n: n.gradients(X, Y, sample_weight=with_nan(np.ones(12))),
        ValueError,
        "sample_weight",
    ),
    (
        "gradients weights short",
        "cross_entropy",
        lambda n: n.gradients(X, Y, sample_weight=np.ones(3)),
        ValueError,
        "sample_weight",
    ),
    ("train_step X 1-d", "cross_entropy", lambda n: n.train_step(X[0], Y[:1]), ValueError, "X"),
    ("train_step X empty", "cross_entropy", lambda n: n.train_step(EMPTY, Y[:0]), ValueError, "X"),
    (
        "train_step X objects",
        "cross_entropy",
        lambda n: n.train_step(X.astype(object), Y),
        TypeError,
        "X",
    ),
    (
        "train_step label fractional",
        "cross_entropy",
        lambda n: n.train_step(X, Y + 0.25),
        ValueError,
        "y",
    ),
    (
        "train_step label big",
        "cross_entropy",
        lambda n: n.train_step(X, bad_int_labels(2**40)),
        ValueError,
        "y",
    ),
    ("train_step targets inf", "mse", lambda n: n.train_step(X, V * np.inf), ValueError, "y"),
    ("train_step targets short", "l1", lambda n: n.train_step(X, V[:5]), ValueError, "y"),
    (
        "train_step weights negative",
        "cross_entropy",
        lambda n: n.train_step(X, Y, sample_weight=-np.ones(12)),
        ValueError,
        "sample_weight",
    ),
    (
        "train_step weights 2-d",
        "huber",
        lambda n: n.train_step(X, V, sample_weight=np.ones((12, 1))),
        ValueError,
        "sample_weight",
    ),
    (
        "train_step weights strings",
        "mse",
        lambda n: n.train_step(X, V, sample_weight=["a"] * 12),
        TypeError,
        "sample_weight",
    ),
    (
        "train_step weights inf",
        "mse",
        lambda n: n.train_step(X, V, sample_weight=np.full(12, np.inf)),
        ValueError,
        "sample_weight",
    ),
    # --- apply_gradients / set_parameters / set_buffers
    (
        "apply_gradients NaN",
        "cross_entropy",
        lambda n: n.apply_gradients(grads_with(n, "0.weight", lambda s: np.full(s, np.nan))),
        ValueError,
        "0.weight",
    ),
    (
        "apply_gradients strings",
        "cross_entropy",
        lambda n: n.apply_gradients(grads_with(n, "0.bias", lambda s: np.full(s, "a"))),
        TypeError,
        "0.bias",
    ),
    (
        "apply_gradients wrong shape",
        "cross_entropy",
        lambda n: n.apply_gradients(grads_with(n, "2.weight", lambda s: np.zeros(s[::-1]))),
        ValueError,
        "2.weight",
    ),
    (
        "apply_gradients missing",
        "cross_entropy",
        lambda n: n.apply_gradients({}),
        ValueError,
        "gradients",
    ),
    (
        "set_parameters inf",
        "cross_entropy",
        lambda n: n.set_parameters(replaced(n, "2.bias", lambda s: np.full(s, np.inf))),
        ValueError,
        "2.bias",
    ),
    (
        "set_parameters complex",
        "cross_entropy",
        lambda n: n.set_parameters(replaced(n, "0.weight", lambda s: np.zeros(s, complex))),
        TypeError,
        "0.weight",
    ),
    (
        "set_parameters not a dict",
        "cross_entropy",
        lambda n: n.set_parameters([1.0]),
        TypeError,
        "parameters",
    ),
    (
        "set_buffers unknown",
        "cross_entropy",
        lambda n: n.set_buffers({"0.running_mean": np.zeros(5)}),
        ValueError,
        "buffers",
    ),
    ("set_buffers not a dict", "cross_entropy", lambda n: n.set_buffers(3), TypeError, "buffers"),
    # --- fit: every argument
    ("fit X NaN", "cross_entropy", lambda n: n.fit(with_nan(X), Y), ValueError, "X"),
    ("fit X wide", "cross_entropy", lambda n: n.fit(np.ones((12, 5)), Y), ValueError, "X"),
    ("fit y short", "mse", lambda n: n.fit(X, V[:-1]), ValueError, "y"),
    ("fit epochs -1", "cross_entropy", lambda n: n.fit(X, Y, epochs=-1), ValueError, "epochs"),
    ("fit epochs float", "cross_entropy", lambda n: n.fit(X, Y, epochs=1.0), TypeError, "epochs"),
    (
        "fit batch_size -5",
        "cross_entropy",
        lambda n: n.fit(X, Y, batch_size=-5),
        ValueError,
        "batch_size",
    ),
    (
        "fit batch_size None",
        "cross_entropy",
        lambda n: n.fit(X, Y, batch_size=None),
        TypeError,
        "batch_size",
    ),
    (
        "fit validation_split 1",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split=1.0),
        ValueError,
        "validation_split",
    ),
    (
        "fit validation_split -0.1",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split=-0.1),
        ValueError,
        "validation_split",
    ),
    (
        "fit validation_split NaN",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split=float("nan")),
        ValueError,
        "validation_split",
    ),
    (
        "fit validation_split str",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split="0.1"),
        TypeError,
        "validation_split",
    ),
    (
        "fit validation_split tiny",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split=1e-20),
        ValueError,
        "validation_split",
    ),
    (
        "fit validation both",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_split=0.2, validation_data=(X, Y)),
        ValueError,
        "validation_data",
    ),
    (
        "fit validation_data triple",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_data=(X, Y, Y)),
        TypeError,
        "validation_data",
    ),
    (
        "fit validation_data X wide",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_data=(np.ones((3, 5)), Y[:3])),
        ValueError,
        r"validation_data\[0\]",
    ),
    (
        "fit validation_data y short",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_data=(X, Y[:3])),
        ValueError,
        r"validation_data\[1\]",
    ),
    (
        "fit validation_data X NaN",
        "mse",
        lambda n: n.fit(X, V, validation_data=(with_nan(X), V)),
        ValueError,
        "X",
    ),
    (
        "fit validation label big",
        "cross_entropy",
        lambda n: n.fit(X, Y, validation_data=(X, Y + 3)),
        ValueError,
        "y",
    ),
    (
        "fit sample_weight negative",
        "cross_entropy",
        lambda n: n.fit(X, Y, sample_weight=-np.ones(12)),
        ValueError,
        "sample_weight",
    ),
    (
        "fit sample_weight short",
        "cross_entropy",
        lambda n: n.fit(X, Y, sample_weight=np.ones(11)),
        ValueError,
        "sample_weight",
    ),
    (
        "fit sample_weight complex",
        "cross_entropy",
        lambda n: n.fit(X, Y, sample_weight=np.ones(12) + 1j),
        TypeError,
        "sample_weight",
    ),
    (
        "fit callbacks str",
        "cross_entropy",
        lambda n: n.fit(X, Y, callbacks="stop"),
        TypeError,
        "callbacks",
    ),
    (
        "fit callbacks int",
        "cross_entropy",
        lambda n: n.fit(X, Y, callbacks=3),
        TypeError,
        "callbacks",
    ),
    (
        "fit callbacks [None]",
        "cross_entropy",
        lambda n: n.fit(X, Y, callbacks=[None]),
        TypeError,
        r"callbacks\[0\]",
    ),
    (
        "fit schedule function",
        "cross_entropy",
        lambda n: n.fit(X, Y, schedule=lambda e: 0.1),
        TypeError,
        "schedule",
    ),
    (
        "fit metrics unknown",
        "cross_entropy",
        lambda n: n.fit(X, Y, metrics=["f1"]),
        ValueError,
        "metrics",
    ),
    (
        "fit metrics str",
        "cross_entropy",
        lambda n: n.fit(X, Y, metrics="accuracy"),
        TypeError,
        "metrics",
    ),
    (
        "fit clip_grad_norm 0",
        "cross_entropy",
        lambda n: n.fit(X, Y, clip_grad_norm=0.0),
        ValueError,
        "clip_grad_norm",
    ),
    (
        "fit clip_grad_norm inf",
        "cross_entropy",
        lambda n: n.fit(X, Y, clip_grad_norm=float("inf")),
        ValueError,
        "clip_grad_norm",
    ),
    (
        "fit progress str",
        "cross_entropy",
        lambda n: n.fit(X, Y, progress="yes"),
        TypeError,
        "progress",
    ),
    ("fit BN last batch of 1", "cross_entropy", None, ValueError, "batch_size"),  # see below
    # --- learning rate
    ("lr -1", "cross_entropy", lambda n: setattr(n, "lr", -1.0), ValueError, "lr"),
    ("lr NaN", "cross_entropy", lambda n: setattr(n, "lr", float("nan")), ValueError, "lr"),
    ("lr str", "cross_entropy", lambda n: setattr(n, "lr", "0.1"), TypeError, "lr"),
    # --- explain
    (
        "explain layer not Dense",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], Y[0], 1, (0, 0)),
        ValueError,
        "layer",
    ),
    (
        "explain layer out of range",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], Y[0], 7, (0, 0)),
        ValueError,
        "layer",
    ),
    (
        "explain layer str",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], Y[0], "0", (0, 0)),
        TypeError,
        "layer",
    ),
    (
        "explain index outside",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], Y[0], 0, (5, 0)),
        ValueError,
        "index",
    ),
    (
        "explain index str",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], Y[0], 0, "ab"),
        TypeError,
        "index",
    ),
    (
        "explain two samples",
        "cross_entropy",
        lambda n: bp.explain(n, X[:2], Y[:2], 0, (0, 0)),
        ValueError,
        "x",
    ),
    (
        "explain x NaN",
        "cross_entropy",
        lambda n: bp.explain(n, np.full(4, np.nan), Y[0], 0, (0, 0)),
        ValueError,
        "X",
    ),
    (
        "explain label big",
        "cross_entropy",
        lambda n: bp.explain(n, X[0], 9, 0, (0, 0)),
        ValueError,
        "y",
    ),
]


def fit_bn_last_batch_of_one(n):
    n.fit(X[:9], Y[:9], batch_size=4)


BAD_CALLS = [
    (d, loss, fit_bn_last_batch_of_one if call is None else call, exc, words)
    for d, loss, call, exc, words in BAD_CALLS
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_raises_naming_the_argument_and_changes_nothing(case):
    description, loss, call, exception, words = case
    outputs = 3
    net, targets = make(loss, outputs)
    twin, _ = make(loss, outputs)
    if "BN" in description:  # a network with batch norm: its last batch must have 2 samples
        net = bp.Network([bp.Dense(4, 3), bp.BatchNorm1d(3)], loss="cross_entropy", seed=1)
        twin = bp.Network([bp.Dense(4, 3), bp.BatchNorm1d(3)], loss="cross_entropy", seed=1)
    with pytest.raises(exception, match=words) as info:
        call(net)
    assert type(info.value) in (ValueError, TypeError), description
    after, expected = twin_state(net, targets), twin_state(twin, targets)
    for name, value in expected.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


BAD_CONSTRUCTIONS = [
    # every layer
    (lambda: bp.Dense(2**41, 1), ValueError, "in_features"),
    (lambda: bp.Dense(2**64, 2), ValueError, "in_features"),
    (lambda: bp.Dense(3, -1), ValueError, "out_features"),
    (lambda: bp.Dense(3, None), TypeError, "out_features"),
    (lambda: bp.Dense(True, 3), TypeError, "in_features"),
    (lambda: bp.LeakyReLU(float("inf")), ValueError, "negative_slope"),
    (lambda: bp.LeakyReLU("a"), TypeError, "negative_slope"),
    (lambda: bp.ELU("a"), TypeError, "alpha"),
    (lambda: bp.ELU(float("nan")), ValueError, "alpha"),
    (lambda: bp.Softplus(threshold=float("nan")), ValueError, "threshold"),
    (lambda: bp.Dropout(1.0), ValueError, "p"),
    (lambda: bp.Dropout(-0.1), ValueError, "p"),
    (lambda: bp.Dropout(float("nan")), ValueError, "p"),
    (lambda: bp.Dropout("0.5"), TypeError, "p"),
    (lambda: bp.BatchNorm1d(0), ValueError, "num_features"),
    (lambda: bp.BatchNorm1d(3, eps=0), ValueError, "eps"),
    (lambda: bp.BatchNorm1d(3, momentum=2), ValueError, "momentum"),
    (lambda: bp.LayerNorm(0), ValueError, "normalized_shape"),
    (lambda: bp.LayerNorm(3, eps=-1), ValueError, "eps"),
    (lambda: bp.LayerNorm(2.0), TypeError, "normalized_shape"),
    # every loss
    (lambda: bp.HuberLoss(delta=float("inf")), ValueError, "delta"),
    (lambda: bp.HuberLoss(delta="1"), TypeError, "delta"),
    (lambda: bp.CrossEntropyLoss(label_smoothing=-0.1), ValueError, "label_smoothing"),
    # every optimizer
    (lambda: bp.SGD(lr=-1), ValueError, "lr"),
    (lambda: bp.SGD(lr="a"), TypeError, "lr"),
    (lambda: bp.SGD(lr=0.1, momentum=-1), ValueError, "momentum"),
    (lambda: bp.Adam(lr=-1e-3), ValueError, "lr"),
    (lambda: bp.Adam(weight_decay=-1), ValueError, "weight_decay"),
    (lambda: bp.Adam(amsgrad="x"), TypeError, "amsgrad"),
    (lambda: bp.AdamW(lr=float("inf")), ValueError, "lr"),
    (lambda: bp.RMSprop(lr=-0.1), ValueError, "lr"),
    (lambda: bp.RMSprop(momentum=-1), ValueError, "momentum"),
    (lambda: bp.Adagrad(lr=-0.01), ValueError, "lr"),
    (lambda: bp.Adagrad(lr_decay=-1), ValueError, "lr_decay"),
    # every schedule and callback
    (lambda: bp.StepLR(0), ValueError, "step_size"),
    (lambda: bp.StepLR(1.5), TypeError, "step_size"),
    (lambda: bp.ExponentialLR(0), ValueError, "gamma"),
    (lambda: bp.CosineAnnealingLR(0), ValueError, "T_max"),
    (lambda: bp.CosineAnnealingLR(10, eta_min=-1), ValueError, "eta_min"),
    (lambda: bp.EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: bp.EarlyStopping(mode="up"), ValueError, "mode"),
    (lambda: bp.ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
    (lambda: bp.ReduceLROnPlateau(factor=0), ValueError, "factor"),
    (lambda: bp.LearningRateScheduler(3), TypeError, "schedule"),
    # the network, with unknown names
    (lambda: bp.Network([]), ValueError, "layers"),
    (lambda: bp.Network([bp.Dense(4, 3)], loss="MSE!"), ValueError, "loss"),
    (lambda: bp.Network([bp.Dense(4, 3)], loss=bp.Adam()), TypeError, "loss"),
    (lambda: bp.Network([bp.Dense(4, 3)], optimizer="adamx"), ValueError, "optimizer"),
    (lambda: bp.Network([bp.Dense(4, 3)], optimizer=bp.MSELoss()), TypeError, "optimizer"),
    (lambda: bp.Network([bp.Dense(4, 3)], seed=2**64), ValueError, "seed"),
    (lambda: bp.Network([bp.Dense(4, 3)], dtype="float16"), ValueError, "dtype"),
    (lambda: bp.Network([bp.Dense(4, 3), bp.BatchNorm1d(4)]), ValueError, r"layers\[1\]"),
    (lambda: bp.Network([bp.Dense(4, 3), bp.LayerNorm(2)]), ValueError, r"layers\[1\]"),
    # sizes that cannot be allocated: refused, never an abort of the interpreter
    (lambda: bp.Network([bp.Dense(2**30, 2**10)]), ValueError, "layers"),
    (lambda: bp.Network([bp.Dense(2**20, 2**20), bp.Dense(2**20, 2**20)]), ValueError, "layers"),
    (lambda: bp.Network([bp.Dense(2**40, 2)]), ValueError, r"layers\[0\]"),
    # threads
    (lambda: bp.set_num_threads(0), ValueError, "n"),
    (lambda: bp.set_num_threads(-1), ValueError, "n"),
    (lambda: bp.set_num_threads(10**6), ValueError, "n"),
    (lambda: bp.set_num_threads("2"), TypeError, "n"),
]


@pytest.mark.parametrize("make_bad,exception,words", BAD_CONSTRUCTIONS)
def test_bad_construction_raises_naming_the_argument(make_bad, exception, words):
    n_threads = bp.get_num_threads()
    with pytest.raises(exception, match=words) as info:
        make_bad()
    assert type(info.value) in (ValueError, TypeError)
    assert bp.get_num_threads() == n_threads


def test_a_batch_too_large_for_memory_is_refused_not_an_abort():
    net = bp.Network([bp.Dense(1, 2**20), bp.ReLU(), bp.Dense(2**20, 1)], dtype="float64")
    x = np.zeros((2**21, 1))  # outputs of the hidden layer: 2^41 values
    with pytest.raises(ValueError, match="X"):
        net.train_step(x, np.zeros((2**21, 1)))
    with pytest.raises(ValueError, match="X"):
        net.fit(x, np.zeros((2**21, 1)), batch_size=2**21)


# ----- accepted layouts: the same results as C-contiguous float copies ------------------


def fortran(a):
    return np.asfortranarray(a)


def strided(a):
    """A view of every second row of a twice-as-long array: not contiguous."""
    big = np.repeat(np.asarray(a), 2, axis=0)
    return big[::2]


def read_only(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def as_list(a):
    return np.asarray(a).tolist()


LAYOUTS = {
    "fortran": fortran,
    "strided": strided,
    "read_only": read_only,
    "list": as_list,
    "float32": lambda a: np.asarray(a, np.float32).astype(np.float64).astype(np.float32),
    "int": lambda a: np.rint(np.asarray(a) * 4).astype(np.int32),
    "bool": lambda a: np.asarray(a) > 0,
}


def canonical(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_unusual_layouts_are_accepted_and_equal_contiguous_copies(layout):
    convert = LAYOUTS[layout]
    xs = convert(X)
    xc = canonical(xs)
    for loss, targets in (("cross_entropy", Y), ("mse", V)):
        a, _ = make(loss)
        b, _ = make(loss)
        t_odd = convert(targets) if loss == "mse" and layout not in ("int", "bool") else targets
        t_odd = strided(Y) if loss == "cross_entropy" and layout == "strided" else t_odd
        tc = np.ascontiguousarray(np.asarray(t_odd, dtype=np.float64))
        if loss == "cross_entropy":
            tc = tc.astype(np.int64)
        np.testing.assert_array_equal(a.forward(xs), b.forward(xc))
        np.testing.assert_array_equal(a.predict(xs), b.predict(xc))
        assert a.loss(xs, t_odd) == b.loss(xc, tc)
        assert a.evaluate(xs, t_odd) == b.evaluate(xc, tc)
        ga, gb = a.gradients(xs, t_odd), b.gradients(xc, tc)
        for name in gb:
            np.testing.assert_array_equal(ga[name], gb[name], err_msg=name)
        w = strided(np.linspace(0.5, 1.5, 12)) if layout == "strided" else np.linspace(0.5, 1, 12)
        assert a.train_step(xs, t_odd, sample_weight=w) == b.train_step(
            xc, tc, sample_weight=np.ascontiguousarray(w)
        )
        a.fit(xs, t_odd, epochs=2, batch_size=5, validation_data=(xs, t_odd))
        b.fit(xc, tc, epochs=2, batch_size=5, validation_data=(xc, tc))
        a.set_parameters(
            {
                k: convert(v) if layout in ("fortran", "strided", "read_only", "list") else v
                for k, v in b.parameters().items()
            }
        )
        for name, value in b.parameters().items():
            np.testing.assert_array_equal(a.parameters()[name], value, err_msg=name)


def test_float32_network_reads_float64_and_fortran_inputs_as_float32_copies():
    net = bp.Network([bp.Dense(4, 3)], dtype="float32", seed=0)
    x64 = fortran(X)
    np.testing.assert_array_equal(net.forward(x64), net.forward(X.astype(np.float32)))


def test_c_contiguous_inputs_of_the_network_dtype_are_not_copied():
    from bpcore._arrays import as_inputs, as_labels, as_values

    x = np.ones((5, 4), np.float32)
    assert as_inputs(x, np.dtype(np.float32), 4) is x
    y = np.arange(5, dtype=np.int64)
    assert np.shares_memory(as_labels(y, 5), y)
    v = np.ones((5, 2), np.float32)
    assert np.shares_memory(as_values(v, np.dtype(np.float32), 5, 2), v)
