"""`sample_weight` in fit, train_step and gradients: Keras's semantics, checked against the
reference. A batch's loss is Σ_i w_i·l_i / n_batch ("sum over batch size"), its gradient that
of the weighted loss; validation and evaluate stay unweighted.
"""

import numpy as np
import pytest
from parity_helpers import DTYPES, assert_close, assert_dicts_close, in_dtype, make_pair

import bpcore as bp
from bpcore import reference as ref

LOSSES = ["mse", "l1", "huber", "bce_with_logits", "cross_entropy", "cross_entropy_smoothed"]


def loss_object(name):
    if name == "cross_entropy_smoothed":
        return bp.CrossEntropyLoss(label_smoothing=0.1)
    return name


def data(name, n=7, n_in=4, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if name.startswith("cross_entropy"):
        y = rng.integers(0, n_out, size=n)
    elif name == "bce_with_logits":
        y = rng.uniform(size=(n, n_out))
    else:
        y = rng.normal(size=(n, n_out))
    w = rng.uniform(0.0, 3.0, size=n)
    w[1] = 0.0
    return X, y, w


def layers(n_in=4, n_out=3):
    return [bp.Dense(n_in, 5), bp.Tanh(), bp.Dense(5, n_out)]


def network(name, dtype="float64", seed=0, n_in=4, n_out=3, optimizer=None):
    return bp.Network(
        layers(n_in, n_out),
        loss=loss_object(name),
        optimizer=optimizer or bp.SGD(lr=0.1),
        dtype=dtype,
        seed=seed,
    )


def ref_targets(name, y, dtype):
    return y if name.startswith("cross_entropy") else in_dtype(y, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_gradients_and_train_step_match_the_reference(name, dtype):
    X, y, w = data(name)
    net, oracle = make_pair(layers(), loss=loss_object(name), optimizer=bp.SGD(lr=0.1), dtype=dtype)
    Xr, yr, wr = in_dtype(X, dtype), ref_targets(name, y, dtype), in_dtype(w, dtype)
    assert_dicts_close(
        net.gradients(X, y, sample_weight=w), oracle.gradients(Xr, yr, wr), dtype, "gradient"
    )
    got = net.train_step(X, y, sample_weight=w)
    want = oracle.train_step(Xr, yr, wr)
    assert_close(got, want, dtype, "loss")
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, "after a step")


@pytest.mark.parametrize("name", LOSSES)
def test_reference_weighted_loss_is_the_definition(name):
    # Σ_i w_i·l_i / n, with l_i the loss of sample i alone.
    X, y, w = data(name)
    net = network(name)
    oracle = ref.Network(layers(), loss=loss_object(name), seed=0)
    oracle.set_parameters(net.parameters())
    out = oracle.forward(X)
    spec = oracle.loss_spec
    per_sample = [
        ref.loss_value(spec, [o], [t] if name.startswith("cross_entropy") else [list(t)])
        for o, t in zip(out, y)
    ]
    want = sum(wi * li for wi, li in zip(w, per_sample)) / len(w)
    got, _ = ref.loss_value_and_grad(
        spec, out, list(y) if name.startswith("cross_entropy") else [list(t) for t in y], list(w)
    )
    assert got == pytest.approx(want, rel=1e-13)
    assert net.train_step(X, y, sample_weight=w) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_all_ones_equal_unweighted_bit_for_bit(name, dtype):
    X, y, _ = data(name)
    a, b = network(name, dtype), network(name, dtype)
    ga, gb = a.gradients(X, y), b.gradients(X, y, sample_weight=np.ones(len(X)))
    for k in ga:
        assert ga[k].tobytes() == gb[k].tobytes()
    ha = a.fit(X, y, epochs=3, batch_size=3, progress=False)
    hb = b.fit(X, y, epochs=3, batch_size=3, progress=False, sample_weight=np.ones(len(X)))
    assert ha.history["loss"] == hb.history["loss"]
    for k, v in a.parameters().items():
        assert v.tobytes() == b.parameters()[k].tobytes()


@pytest.mark.parametrize("name", LOSSES)
def test_zero_weight_drops_the_sample_but_keeps_n(name):
    X, y, w = data(name)
    w[3] = 0.0
    net = network(name)
    full = net.gradients(X, y, sample_weight=w)
    keep = np.arange(len(X)) != 3
    # Without sample 3, the mean over n - 1 samples: rescale to the denominator n.
    dropped = net.gradients(X[keep], y[keep], sample_weight=w[keep])
    for k in full:
        np.testing.assert_allclose(full[k], dropped[k] * (len(X) - 1) / len(X), rtol=1e-12)
    # Whatever the sample's targets or loss.
    y2 = y.copy()
    y2[3] = y[0]
    other = net.gradients(X, y2, sample_weight=w)
    for k in full:
        np.testing.assert_allclose(other[k], full[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", LOSSES)
def test_weight_two_equals_duplicating_with_n_kept(name):
    # With the /n reduction, weight 2 on sample 0 = sample 0 twice in a batch of n + 1,
    # rescaled by (n + 1) / n; and weights c·w scale loss and gradient by c.
    X, y, w = data(name)
    n = len(X)
    w2 = np.ones(n)
    w2[0] = 2.0
    net = network(name)
    weighted = net.gradients(X, y, sample_weight=w2)
    idx = np.r_[0, np.arange(n)]
    duplicated = net.gradients(X[idx], y[idx])
    for k in weighted:
        np.testing.assert_allclose(weighted[k], duplicated[k] * (n + 1) / n, rtol=1e-12)
    a = net.gradients(X, y, sample_weight=w)
    b = net.gradients(X, y, sample_weight=2.5 * w)
    for k in a:
        np.testing.assert_allclose(b[k], 2.5 * a[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
def test_fit_epoch_matches_reference_steps(name, dtype):
    # Unshuffled fit: each batch a weighted reference step; the epoch loss the weighted mean.
    X, y, w = data(name, n=10)
    net, oracle = make_pair(layers(), loss=loss_object(name), optimizer=bp.SGD(lr=0.1), dtype=dtype)
    hist = net.fit(X, y, epochs=1, batch_size=4, shuffle=False, progress=False, sample_weight=w)
    Xr, yr, wr = in_dtype(X, dtype), ref_targets(name, y, dtype), in_dtype(w, dtype)
    total = 0.0
    for a in range(0, 10, 4):
        b = min(a + 4, 10)
        total += oracle.train_step(Xr[a:b], yr[a:b], wr[a:b]) * (b - a)
    assert_close(hist.history["loss"][0], total / 10, dtype, "epoch loss")
    assert_dicts_close(net.parameters(), oracle.parameters(), dtype, "after an epoch")


def test_shuffled_fit_is_deterministic_and_gathers_weights():
    X, y, w = data("cross_entropy", n=40)
    runs = []
    for _ in range(2):
        net = network("cross_entropy", seed=3)
        h = net.fit(X, y, epochs=3, batch_size=8, progress=False, sample_weight=w)
        runs.append((h.history["loss"], net.parameters()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        assert v.tobytes() == runs[1][1][k].tobytes()
    # The weights travel with their rows through the shuffle: with weight 1 on sample 5 and 0
    # elsewhere, an epoch is one SGD step on sample 5 alone, at weight 1/8 (its batch's n),
    # wherever the shuffle put it.
    only = np.zeros(40)
    only[5] = 1.0
    a = network("cross_entropy", seed=3)
    a.fit(X, y, epochs=1, batch_size=8, progress=False, sample_weight=only)
    b = network("cross_entropy", seed=3, optimizer=bp.SGD(lr=0.1))
    # The same update as one step on sample 5 alone with weight 1/8 (its batch has 8 rows).
    b.train_step(X[5:6], y[5:6], sample_weight=[1 / 8])
    for k, v in a.parameters().items():
        np.testing.assert_allclose(v, b.parameters()[k], rtol=1e-12, atol=1e-15)


def test_validation_and_evaluate_stay_unweighted():
    X, y, w = data("mse", n=20)
    net = network("mse")
    h = net.fit(
        X,
        y,
        epochs=1,
        batch_size=20,
        shuffle=False,
        progress=False,
        sample_weight=w,
        validation_split=0.25,
    )
    assert h.history["val_loss"][0] == pytest.approx(net.loss(X[15:], y[15:]), rel=1e-12)
    assert net.evaluate(X, y)["loss"] == pytest.approx(net.loss(X, y), rel=1e-12)


@pytest.fixture
def restore_threads():
    n = bp.get_num_threads()
    yield
    bp.set_num_threads(n)


@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
def test_one_and_two_threads_agree(name, restore_threads):
    # 256 rows of a 64-128-64-10 network: parts() splits it in two on two threads.
    X, y, w = data(name, n=256, n_in=64, n_out=10, seed=1)

    def run(threads):
        bp.set_num_threads(threads)
        net = bp.Network(
            [bp.Dense(64, 128), bp.ReLU(), bp.Dense(128, 64), bp.Tanh(), bp.Dense(64, 10)],
            loss=name,
            optimizer=bp.SGD(lr=0.05),
            dtype="float64",
            seed=0,
        )
        g = net.gradients(X, y, sample_weight=w)
        loss = net.train_step(X, y, sample_weight=w)
        h = net.fit(X, y, epochs=2, batch_size=128, progress=False, sample_weight=w)
        return g, loss, h.history["loss"], net.parameters()

    g1, l1, h1, p1 = run(1)
    g2, l2, h2, p2 = run(2)
    assert l2 == pytest.approx(l1, rel=1e-12)
    np.testing.assert_allclose(h2, h1, rtol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(p2[k], p1[k], rtol=1e-12, atol=1e-14)


BAD = [
    (lambda n: -np.ones(n), ValueError, ">= 0"),
    (lambda n: np.r_[np.ones(n - 1), np.nan], ValueError, "NaN"),
    (lambda n: np.r_[np.ones(n - 1), np.inf], ValueError, "NaN or infinity"),
    (lambda n: np.ones(n - 1), ValueError, "weights"),
    (lambda n: np.ones((n, 1)), ValueError, "1-d"),
    (lambda n: np.array(["a"] * n), TypeError, "dtype"),
    (lambda n: 1e300 * np.ones(n), ValueError, "infinity"),  # inf in float32 only
]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("make", "exc", "word"), BAD)
def test_bad_weights_are_refused_and_change_nothing(make, exc, word, dtype):
    X, y, _ = data("cross_entropy", n=8)
    w = make(8)
    if word == "infinity" and dtype == "float64" and np.isfinite(w).all():
        w = w * np.inf
    net = network("cross_entropy", dtype=dtype)
    before = net.parameters()
    calls = [
        lambda: net.fit(X, y, epochs=1, batch_size=4, progress=False, sample_weight=w),
        lambda: net.train_step(X, y, sample_weight=w),
        lambda: net.gradients(X, y, sample_weight=w),
    ]
    for call in calls:
        with pytest.raises(exc, match="sample_weight") as info:
            call()
        assert word in str(info.value)
    assert net.native.steps == 0
    for k, v in before.items():
        assert v.tobytes() == net.parameters()[k].tobytes()
