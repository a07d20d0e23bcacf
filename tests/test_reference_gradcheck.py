"""bpcore.reference checked against central finite differences and hand computations.

The reference is the oracle for the Rust kernels, so it is checked on its own here: every
analytic gradient against (f(x+h) - f(x-h)) / 2h in float64, a tiny network against the
chain rule written out by hand, and every optimizer option against its update formula.
"""

from __future__ import annotations

import math
import pathlib
import random

import pytest

from bpcore import reference as ref

H = 1e-6  # finite-difference step
RTOL = 1e-6
ATOL = 1e-8


def assert_close(actual: float, expected: float, rtol: float = RTOL, atol: float = ATOL):
    assert math.isfinite(actual), actual
    assert abs(actual - expected) <= atol + rtol * abs(expected), (actual, expected)


def assert_all_close(actual, expected, rtol: float = RTOL, atol: float = ATOL):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_close(a, e, rtol, atol)


def flatten(value) -> list[float]:
    if value and isinstance(value[0], list):
        return [v for row in value for v in row]
    return list(value)


def numeric_gradient(f, values: list[float]) -> list[float]:
    """Central differences of the scalar function ``f`` of a flat list, entry by entry."""
    grad = []
    for j, v in enumerate(values):
        up, down = list(values), list(values)
        up[j], down[j] = v + H, v - H
        grad.append((f(up) - f(down)) / (2 * H))
    return grad


def reshape_like(flat: list[float], like):
    if like and isinstance(like[0], list):
        w = len(like[0])
        return [flat[r * w : (r + 1) * w] for r in range(len(like))]
    return flat


def check_network_gradients(net: ref.Network, X, y) -> None:
    """Every parameter's analytic gradient against finite differences of ``net.loss``."""
    params = net.parameters()
    analytic = net.gradients(X, y)
    assert list(analytic) == list(params)
    for name, value in params.items():

        def loss_at(flat, name=name, value=value):
            trial = dict(params)
            trial[name] = reshape_like(flat, value)
            net.set_parameters(trial)
            return net.loss(X, y)

        numeric = numeric_gradient(loss_at, flatten(value))
        net.set_parameters(params)
        assert_all_close(flatten(analytic[name]), numeric)


def random_rows(rng: random.Random, n: int, width: int, scale: float = 1.0):
    return [[rng.uniform(-scale, scale) for _ in range(width)] for _ in range(n)]


# ------------------------------------------------------------------- activations

# Inputs kept away from the kinks at 0 (relu, leaky_relu, elu) and, for softplus with
# threshold 1, away from the switch at beta*x = 1.
POINTS = [-3.1, -1.7, -0.9, -0.35, -0.05, 0.05, 0.3, 0.8, 1.4, 2.6, 4.2]

ACTIVATIONS = [
    {"type": "relu"},
    {"type": "leaky_relu"},
    {"type": "leaky_relu", "negative_slope": 0.2},
    {"type": "sigmoid"},
    {"type": "tanh"},
    {"type": "gelu"},
    {"type": "elu"},
    {"type": "elu", "alpha": 1.5},
    {"type": "softplus"},
    {"type": "softplus", "beta": 2.0, "threshold": 1.0},
    {"type": "silu"},
    {"type": "mish"},
    {"type": "identity"},
]


@pytest.mark.parametrize("spec", ACTIVATIONS, ids=lambda s: "-".join(map(str, s.values())))
def test_activation_gradient_matches_finite_differences(spec):
    weights = [0.3 + 0.1 * j for j in range(len(POINTS))]  # L = Σ w_j f(x_j)
    analytic = ref.activation_backward(spec, POINTS, weights)

    def loss(xs):
        return sum(w * v for w, v in zip(weights, ref.activation_forward(spec, xs)))

    assert_all_close(analytic, numeric_gradient(loss, POINTS))


def test_activation_values():
    x = [-2.0, 0.0, 1.5]
    assert ref.activation_forward({"type": "relu"}, x) == [0.0, 0.0, 1.5]
    assert ref.activation_forward({"type": "leaky_relu"}, x) == [-0.02, 0.0, 1.5]
    assert ref.activation_forward({"type": "elu"}, x)[0] == math.expm1(-2.0)
    gelu = ref.activation_forward({"type": "gelu"}, x)
    assert_close(gelu[2], 1.5 * 0.5 * (1 + math.erf(1.5 / math.sqrt(2))), 1e-15, 0)
    # softplus: log1p(e^x) below the threshold, the identity above it
    sp = ref.activation_forward({"type": "softplus"}, [1.0, 25.0])
    assert sp == [math.log1p(math.e), 25.0]
    # torch's derivatives at the kinks
    assert ref.activation_backward({"type": "relu"}, [0.0], [1.0]) == [0.0]
    assert ref.activation_backward({"type": "leaky_relu"}, [0.0], [1.0]) == [0.01]
    assert ref.activation_backward({"type": "elu", "alpha": 2.0}, [0.0], [1.0]) == [2.0]
    # extreme inputs stay finite
    for spec in ACTIVATIONS:
        out = ref.activation_forward(spec, [-800.0, 800.0])
        grad = ref.activation_backward(spec, [-800.0, 800.0], [1.0, 1.0])
        assert all(math.isfinite(v) for v in out + grad), spec


# ------------------------------------------------------------------------- losses

LOSSES = [
    ("mse", False),
    ("l1", False),
    ({"type": "huber"}, False),
    ({"type": "huber", "delta": 0.5}, False),
    ("cross_entropy", True),
    ({"type": "cross_entropy", "label_smoothing": 0.1}, True),
    ("bce_with_logits", False),
]


def loss_case(spec, labels: bool):
    outputs = [
        [0.7, -1.3, 2.1],
        [-0.4, 0.9, -2.2],
        [1.8, 0.15, -0.6],
        [-1.1, -0.25, 0.45],
    ]
    if labels:
        return outputs, [2, 0, 1, 1]
    if ref.loss_spec(spec)["type"] == "bce_with_logits":
        return outputs, [[1.0, 0.0, 0.3], [0.0, 1.0, 0.7], [0.5, 1.0, 0.0], [1, 0, 0.2]]
    # differences o - t avoid 0 (l1, huber kink) and ±0.5, ±1 (huber's delta)
    offsets = [[0.3, -0.8, 1.7], [-1.6, 0.2, -0.35], [0.65, -2.4, 1.2], [-0.1, 0.85, -1.3]]
    return outputs, [[o - d for o, d in zip(orow, drow)] for orow, drow in zip(outputs, offsets)]


@pytest.mark.parametrize(("spec", "labels"), LOSSES, ids=lambda s: str(s))
def test_loss_gradient_matches_finite_differences(spec, labels):
    outputs, y = loss_case(spec, labels)
    value, grad = ref.loss_value_and_grad(spec, outputs, y)
    assert value == ref.loss_value(spec, outputs, y)

    def loss(flat):
        return ref.loss_value(spec, reshape_like(flat, outputs), y)

    assert_all_close(flatten(grad), numeric_gradient(loss, flatten(outputs)))


def test_loss_values_by_hand():
    o, t = [[2.0, -1.0]], [[0.5, 0.0]]  # d = 1.5, -1
    assert ref.loss_value("mse", o, t) == (2.25 + 1.0) / 2
    assert ref.loss_value("l1", o, t) == (1.5 + 1.0) / 2
    assert ref.loss_value("huber", o, t) == ((1.5 - 0.5) + 0.5) / 2
    assert ref.loss_value({"type": "huber", "delta": 2.0}, o, t) == (1.125 + 0.5) / 2
    assert ref.l1([[1.0]], [[1.0]])[1] == [[0.0]]  # sign(0) = 0
    x, y = 0.8, 0.25
    bce = -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
    assert_close(ref.loss_value("bce_with_logits", [[x]], [[y]]), bce, 1e-14, 0)
    # cross-entropy with smoothing: (1-ε)(-log p_y) + ε/C Σ_c -log p_c
    z = [1.0, 2.0, 0.5]
    lse = math.log(sum(math.exp(v) for v in z))
    nll = [lse - v for v in z]
    expected = 0.9 * nll[1] + 0.1 / 3 * sum(nll)
    assert_close(
        ref.loss_value({"type": "cross_entropy", "label_smoothing": 0.1}, [z], [1]),
        expected,
        1e-14,
        0,
    )


def test_cross_entropy_with_huge_logits_is_finite():
    logits = [[1000.0, -1000.0], [1000.0, -1000.0], [-1000.0, 1000.0]]
    value, grad = ref.loss_value_and_grad("cross_entropy", logits, [0, 1, 1])
    # right, wrong (-log p = 2000), right: mean 2000/3; gradient p - onehot over n
    assert value == 2000.0 / 3
    assert grad == [[0.0, 0.0], [1 / 3, -1 / 3], [0.0, 0.0]]
    smoothed, sgrad = ref.loss_value_and_grad(
        {"type": "cross_entropy", "label_smoothing": 0.1}, logits, [0, 1, 1]
    )
    assert math.isfinite(smoothed) and all(math.isfinite(g) for g in flatten(sgrad))
    assert_close(smoothed, (0.05 * 2000 + 0.95 * 2000 + 0.05 * 2000) / 3, 1e-12, 0)


def test_bce_with_huge_logits_is_finite():
    value, grad = ref.loss_value_and_grad("bce_with_logits", [[800.0, -800.0]], [[0.0, 0.0]])
    assert value == 400.0
    assert grad == [[0.5, 0.0]]


# -------------------------------------------------------------------- dense layer


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients_match_finite_differences(bias):
    net = ref.Network(
        [{"type": "dense", "in_features": 4, "out_features": 3, "bias": bias}], seed=1
    )
    rng = random.Random(5)
    params = net.parameters()
    if bias:
        params["0.bias"] = [0.1, -0.2, 0.3]
        net.set_parameters(params)
    else:
        assert list(params) == ["0.weight"]
    X = random_rows(rng, 5, 4)
    Y = random_rows(rng, 5, 3)
    check_network_gradients(net, X, Y)


def test_dense_input_gradient_matches_finite_differences():
    rng = random.Random(2)
    X, W, b = random_rows(rng, 3, 4), random_rows(rng, 2, 4), [0.5, -0.5]
    G = random_rows(rng, 3, 2)  # L = Σ G ⊙ z
    _, _, grad_x = ref.dense_backward(X, W, G)

    def loss(flat):
        z = ref.dense_forward(reshape_like(flat, X), W, b)
        return sum(g * v for grow, zrow in zip(G, z) for g, v in zip(grow, zrow))

    assert_all_close(flatten(grad_x), numeric_gradient(loss, flatten(X)))
    assert ref.dense_backward(X, W, G, input_grad=False)[2] is None


def test_dense_forward_is_x_w_transpose_plus_b():
    z = ref.dense_forward([[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], [0.5, 0.0, -1.0])
    assert z == [[11.5, 17.0, 22.0]]


# ----------------------------------------------------------------------- networks


def test_mixed_network_cross_entropy_gradients():
    layers = [
        {"type": "dense", "in_features": 5, "out_features": 6},
        {"type": "tanh"},
        {"type": "dense", "in_features": 6, "out_features": 5},
        {"type": "gelu"},
        {"type": "dense", "in_features": 5, "out_features": 4, "bias": False},
        {"type": "sigmoid"},
        {"type": "dense", "in_features": 4, "out_features": 3},
    ]
    net = ref.Network(layers, loss={"type": "cross_entropy", "label_smoothing": 0.1}, seed=3)
    rng = random.Random(3)
    X = random_rows(rng, 6, 5, 2.0)
    check_network_gradients(net, X, [0, 2, 1, 1, 0, 2])


@pytest.mark.parametrize("spec", ACTIVATIONS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("loss", ["mse", "bce_with_logits"])
def test_network_gradients_through_each_activation(spec, loss):
    # Smooth activations only get random data; kinked ones would make finite differences
    # straddle a kink at random, so their pre-activations are kept away from 0 by a bias.
    layers = [
        {"type": "dense", "in_features": 3, "out_features": 4},
        spec,
        {"type": "dense", "in_features": 4, "out_features": 2},
    ]
    net = ref.Network(layers, loss=loss, seed=7)
    params = net.parameters()
    params["0.weight"] = [[0.2, -0.1, 0.15], [-0.3, 0.25, 0.1], [0.1, 0.1, -0.2], [0.3, 0.2, 0.1]]
    params["0.bias"] = [0.9, -0.8, 0.7, -0.6]  # |z| >= 0.6 - 0.45 > 0 for |x| <= 0.6
    net.set_parameters(params)
    rng = random.Random(11)
    X = random_rows(rng, 4, 3, 0.6)
    Y = [[rng.random() for _ in range(2)] for _ in range(4)]
    check_network_gradients(net, X, Y)


def test_smallest_network_chain_rule_by_hand():
    """x -> h = σ(w1 x + b1) -> o = σ(w2 h + b2), L = (o - t)², as in the article."""
    x, t = 0.7, 0.2
    w1, b1, w2, b2 = 0.5, -0.1, -1.2, 0.3
    net = ref.Network(
        [
            {"type": "dense", "in_features": 1, "out_features": 1},
            {"type": "sigmoid"},
            {"type": "dense", "in_features": 1, "out_features": 1},
            {"type": "sigmoid"},
        ],
        loss="mse",
    )
    net.set_parameters({"0.weight": [[w1]], "0.bias": [b1], "2.weight": [[w2]], "2.bias": [b2]})

    def sigma(v):
        return 1 / (1 + math.exp(-v))

    h = sigma(w1 * x + b1)
    o = sigma(w2 * h + b2)
    dL_do = 2 * (o - t)  # the loss
    do_dh = o * (1 - o) * w2  # the output neuron's activation and the weight between
    dh_dw1 = h * (1 - h) * x  # the hidden neuron's activation and its input
    expected = {
        "0.weight": [[dL_do * do_dh * dh_dw1]],
        "0.bias": [dL_do * do_dh * h * (1 - h)],
        "2.weight": [[dL_do * o * (1 - o) * h]],
        "2.bias": [dL_do * o * (1 - o)],
    }
    assert_close(net.loss([[x]], [t]), (o - t) ** 2, 1e-15, 0)
    grads = net.gradients([[x]], [t])
    for name, value in expected.items():
        assert_close(flatten(grads[name])[0], flatten(value)[0], 1e-14, 0)


# --------------------------------------------------------------------- optimizers

A = 1.7  # the quadratic f(p) = ½ A p², so ∂f/∂p = A p
P0 = 1.3
STEPS = 5


def by_formula(kind: str, o: dict) -> list[float]:
    """The parameter after each step, from the update rules of torch.optim's docs."""
    p, trajectory = P0, []
    m = v = v_max = buf = sq = ga = 0.0
    acc = o.get("initial_accumulator_value", 0.0)
    for t in range(1, STEPS + 1):
        g = A * p
        if kind == "sgd":
            g += o.get("weight_decay", 0.0) * p
            mu, damp = o.get("momentum", 0.0), o.get("dampening", 0.0)
            if mu:
                buf = g if t == 1 else mu * buf + (1 - damp) * g
                g = g + mu * buf if o.get("nesterov") else buf
            p -= o["lr"] * g
        elif kind in ("adam", "adamw"):
            lr, (b1, b2), eps = o.get("lr", 1e-3), o.get("betas", (0.9, 0.999)), o.get("eps", 1e-8)
            wd = o.get("weight_decay", 1e-2 if kind == "adamw" else 0.0)
            if kind == "adamw":
                p -= lr * wd * p
            else:
                g += wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            v_max = max(v_max, v)
            m_hat = m / (1 - b1**t)
            v_hat = (v_max if o.get("amsgrad") else v) / (1 - b2**t)
            p -= lr * m_hat / (math.sqrt(v_hat) + eps)
        elif kind == "rmsprop":
            lr, alpha, eps = o.get("lr", 1e-2), o.get("alpha", 0.99), o.get("eps", 1e-8)
            g += o.get("weight_decay", 0.0) * p
            sq = alpha * sq + (1 - alpha) * g * g
            var = sq
            if o.get("centered"):
                ga = alpha * ga + (1 - alpha) * g
                var = sq - ga * ga
            step = g / (math.sqrt(var) + eps)
            if o.get("momentum", 0.0):
                buf = o["momentum"] * buf + step
                step = buf
            p -= lr * step
        elif kind == "adagrad":
            lr, eps = o.get("lr", 1e-2), o.get("eps", 1e-10)
            g += o.get("weight_decay", 0.0) * p
            acc += g * g
            p -= lr / (1 + (t - 1) * o.get("lr_decay", 0.0)) * g / (math.sqrt(acc) + eps)
        trajectory.append(p)
    return trajectory


OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.3}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-3, "weight_decay": 0.2}),
    ("adam", {"lr": 0.3, "amsgrad": True}),
    ("adamw", {"lr": 0.05}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.5, "amsgrad": True}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.05, "alpha": 0.9, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.05, "centered": True}),
    ("rmsprop", {"lr": 0.05, "momentum": 0.7}),
    ("rmsprop", {"lr": 0.05, "momentum": 0.7, "centered": True, "eps": 1e-3}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.2, "lr_decay": 0.3}),
    ("adagrad", {"lr": 0.2, "weight_decay": 0.4, "initial_accumulator_value": 0.5}),
]


@pytest.mark.parametrize(("kind", "options"), OPTIMIZER_CASES, ids=str)
def test_optimizer_steps_match_formulas(kind, options):
    opt = ref.make_optimizer({"type": kind, **options})
    p = [P0]
    trajectory = []
    for _ in range(STEPS):
        opt.step([p], [[A * p[0]]])
        trajectory.append(p[0])
    assert_all_close(trajectory, by_formula(kind, options), 1e-12, 1e-15)


@pytest.mark.parametrize(("kind", "options"), OPTIMIZER_CASES[::3], ids=str)
def test_network_train_step_uses_the_optimizer(kind, options):
    """train_step = gradients, then the optimizer's step on each parameter."""
    layers = [
        {"type": "dense", "in_features": 2, "out_features": 2},
        {"type": "tanh"},
        {"type": "dense", "in_features": 2, "out_features": 1},
    ]
    spec = {"type": kind, **options}
    net = ref.Network(layers, optimizer=spec, seed=4)
    X, y = [[0.5, -1.0], [1.5, 0.25], [-0.3, 0.8]], [0.2, -0.4, 1.0]
    opt = ref.make_optimizer(spec)
    params = {k: flatten(v) for k, v in net.parameters().items()}
    for _ in range(3):
        grads = net.gradients(X, y)
        before = net.loss(X, y)
        assert net.train_step(X, y) == before  # the loss before the update
        opt.step(list(params.values()), [flatten(grads[k]) for k in params])
        for name, value in net.parameters().items():
            assert flatten(value) == params[name]


def test_first_adam_step_is_lr_times_sign():
    opt = ref.Adam(lr=0.01)
    p = [1.0, -2.0]
    opt.step([p], [[3.0, -0.5]])
    assert_close(p[0], 1.0 - 0.01 * 3.0 / (3.0 + 1e-8), 1e-15, 0)
    assert_close(p[1], -2.0 + 0.01 * 0.5 / (0.5 + 1e-8), 1e-15, 0)


def test_optimizer_defaults_and_validation():
    assert ref.make_optimizer(None).to_spec() == ref.optimizer_spec({"type": "sgd", "lr": 0.01})
    assert ref.AdamW().spec["weight_decay"] == 1e-2
    assert ref.Adam().spec["betas"] == [0.9, 0.999]
    with pytest.raises(ValueError, match="nesterov"):
        ref.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown key"):
        ref.make_optimizer({"type": "adam", "beta": 0.9})
    with pytest.raises(ValueError, match="unknown optimizer type"):
        ref.make_optimizer({"type": "lbfgs"})


# ---------------------------------------------------------------------- interface


class Spec:
    def __init__(self, **spec):
        self.spec = spec

    def to_spec(self):
        return self.spec


def test_parameter_names_shapes_and_initialization():
    layers = [
        Spec(type="dense", in_features=3, out_features=8),
        {"type": "relu"},
        {"type": "dense", "in_features": 8, "out_features": 4, "bias": False},
        {"type": "sigmoid"},
        {"type": "dense", "in_features": 4, "out_features": 2},
    ]
    net = ref.Network(layers, seed=42)
    params = net.parameters()
    assert list(params) == ["0.weight", "0.bias", "2.weight", "4.weight", "4.bias"]
    assert len(params["0.weight"]) == 8 and len(params["0.weight"][0]) == 3
    assert params["0.bias"] == [0.0] * 8
    he, glorot = math.sqrt(6 / 3), math.sqrt(6 / (8 + 4))
    assert max(abs(v) for v in flatten(params["0.weight"])) <= he
    assert max(abs(v) for v in flatten(params["0.weight"])) > glorot  # He's wider bound
    assert max(abs(v) for v in flatten(params["2.weight"])) <= glorot
    assert ref.Network(layers, seed=42).parameters() == params
    assert ref.Network(layers, seed=43).parameters() != params
    params["0.bias"][0] = 99.0  # a copy
    assert net.parameters()["0.bias"][0] == 0.0


def test_set_parameters_checks_names_and_shapes():
    net = ref.Network([{"type": "dense", "in_features": 2, "out_features": 3}])
    good = net.parameters()
    with pytest.raises(ValueError, match=r"0\.bias"):
        net.set_parameters({"0.weight": good["0.weight"]})
    with pytest.raises(ValueError, match=r"1\.weight"):
        net.set_parameters({**good, "1.weight": [[1.0]]})
    with pytest.raises(ValueError, match=r"0\.weight"):
        net.set_parameters({**good, "0.weight": [[1.0, 2.0, 3.0]] * 2})
    with pytest.raises(ValueError, match=r"0\.bias"):
        net.set_parameters({**good, "0.bias": [1.0, 2.0]})
    assert net.parameters() == good


def test_accepts_tolist_objects_and_flat_targets():
    np = pytest.importorskip("numpy")
    net = ref.Network([{"type": "dense", "in_features": 2, "out_features": 1}], seed=0)
    net.set_parameters({"0.weight": np.array([[2.0, -1.0]]), "0.bias": np.array([0.5])})
    X = np.array([[1.0, 1.0], [0.0, 2.0]])
    assert net.forward(X) == [[1.5], [-1.5]]
    flat = net.loss(X, np.array([1.0, -1.0]))
    assert flat == net.loss(X.tolist(), [[1.0], [-1.0]]) == (0.25 + 0.25) / 2
    grads = net.gradients(X, [1.0, -1.0])
    net.apply_gradients({k: np.array(v) for k, v in grads.items()})


def test_input_and_spec_errors():
    net = ref.Network(
        [{"type": "dense", "in_features": 2, "out_features": 3}], loss="cross_entropy"
    )
    with pytest.raises(ValueError, match="X"):
        net.forward([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="label"):
        net.loss([[1.0, 2.0]], [3])
    with pytest.raises(ValueError, match="in_features"):
        ref.Network(
            [
                {"type": "dense", "in_features": 2, "out_features": 3},
                {"type": "dense", "in_features": 4, "out_features": 1},
            ]
        )
    with pytest.raises(ValueError, match="unknown layer type"):
        ref.Network([{"type": "conv3d"}])
    with pytest.raises(ValueError, match="unknown loss type"):
        ref.Network([{"type": "dense", "in_features": 1, "out_features": 1}], loss="hinge")


def test_reference_imports_no_numpy():
    package = pathlib.Path(ref.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import numpy" not in text and "from numpy" not in text, source
