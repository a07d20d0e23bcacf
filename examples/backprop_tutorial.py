"""Backpropagation, three ways: by hand with the chain rule, by bpcore's pure-Python reference,
and by bpcore's Rust kernels; then the whole backward pass of one digit through the digits
network with `bp.explain`, one hidden weight's chain, and vanishing gradients in a deep sigmoid
network against ReLU with He initialization.

    pip install ".[sklearn,plot]" && python examples/backprop_tutorial.py [gradient_norms.png]

With a path, the pictures are saved there and beside it: gradient_norms.png (per-layer norms
over an epoch), backward_pass_digits.png and vanishing_backward_pass.png (`.plot()` of the
backward passes); docs/ holds the ones docs/backprop.md shows.

The first part is the article's smallest example: one hidden neuron h, one output neuron o and a
loss L. For the hidden weight w,

    ∂L/∂w = ∂L/∂o · ∂o/∂h · ∂h/∂w

∂L/∂o depends on the loss, ∂o/∂h on the output neuron's activation and the weight between the
two neurons, ∂h/∂w on the hidden neuron's activation and its input.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

import bpcore as bp
from bpcore import reference as ref
from bpcore.demo import digits_network, load_digits_split


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z)."""
    return 1.0 / (1.0 + math.exp(-z))


def by_hand(x: float, y: float, w1: float, b1: float, w2: float, b2: float) -> dict[str, float]:
    """The forward pass and the chain rule for w1, written out for x → h → o → L."""
    z1 = w1 * x + b1
    h = sigmoid(z1)
    z2 = w2 * h + b2
    o = sigmoid(z2)
    loss = (o - y) ** 2  # mean squared error over one output
    dL_do = 2.0 * (o - y)  # from the loss
    do_dh = o * (1.0 - o) * w2  # σ'(z2) · w2: the output neuron's activation and weight
    dh_dw = h * (1.0 - h) * x  # σ'(z1) · x: the hidden neuron's activation and input
    return {
        "h": h,
        "o": o,
        "L": loss,
        "∂L/∂o": dL_do,
        "∂o/∂h": do_dh,
        "∂h/∂w": dh_dw,
        "∂L/∂w": dL_do * do_dh * dh_dw,
    }


def part_one() -> None:
    """The smallest example, computed by hand, by the reference and by the Rust kernels."""
    x, y = 0.5, 1.0
    w1, b1, w2, b2 = 0.8, -0.1, -1.2, 0.3
    print("1. One hidden neuron, one output neuron, mean squared error")
    print(f"   x = {x}, y = {y}, w = {w1}, b = {b1}, w_out = {w2}, b_out = {b2}\n")
    hand = by_hand(x, y, w1, b1, w2, b2)
    for name, value in hand.items():
        print(f"   {name:6} = {value: .12f}")

    layers = [bp.Dense(1, 1), bp.Sigmoid(), bp.Dense(1, 1), bp.Sigmoid()]
    params = {
        "0.weight": np.array([[w1]]),
        "0.bias": np.array([b1]),
        "2.weight": np.array([[w2]]),
        "2.bias": np.array([b2]),
    }
    reference = ref.Network(layers, loss="mse")
    reference.set_parameters(params)
    by_reference = reference.gradients([[x]], [y])["0.weight"][0][0]
    net = bp.Network(layers, loss="mse", dtype="float64")
    net.set_parameters(params)
    by_rust = float(net.gradients(np.array([[x]]), np.array([y]))["0.weight"][0, 0])
    print(f"\n   ∂L/∂w by hand             {hand['∂L/∂w']: .15f}")
    print(f"   ∂L/∂w by bpcore.reference {by_reference: .15f}")
    print(f"   ∂L/∂w by the Rust kernels {by_rust: .15f}")
    assert abs(by_reference - hand["∂L/∂w"]) < 1e-14
    assert abs(by_rust - hand["∂L/∂w"]) < 1e-14

    # bp.explain names the same factors: ∂L/∂h = ∂L/∂o · ∂o/∂h (a sum of one term, through
    # the output neuron's σ' and weight), ∂h/∂z = σ'(z₁), ∂z/∂w = x.
    chain = bp.explain(net, np.array([x]), np.array([y]), layer=0, index=(0, 0))
    print("\n   bp.explain(net, x, y, layer=0, index=(0, 0)):\n")
    print("\n".join("   " + line for line in str(chain).splitlines()))
    assert abs(chain.terms[0][1] - hand["∂L/∂o"] * hand["∂o/∂h"]) < 1e-14
    assert abs(chain.terms[1][1] * chain.terms[2][1] - hand["∂h/∂w"]) < 1e-14


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits, scaled to [0, 1]."""
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float64), y


def deep_network(activation: type[bp.Layer], depth: int, dtype: str = "float32") -> bp.Network:
    """`depth` Dense layers of 32 units with `activation` between, for the digits."""
    layers: list[bp.Layer] = [bp.Dense(64, 32), activation()]
    for _ in range(depth - 2):
        layers += [bp.Dense(32, 32), activation()]
    layers.append(bp.Dense(32, 10))
    return bp.Network(layers, loss="cross_entropy", optimizer=bp.SGD(lr=0.05), dtype=dtype, seed=0)


def part_two(picture: str | None) -> None:
    """The whole backward pass of one digit through the demo's network, and one hidden
    weight's chain with the sum that forms its ∂L/∂h_i."""
    X_train, X_test, y_train, y_test = load_digits_split(0)
    net = digits_network(0, dtype="float64")
    net.fit(X_train, y_train, epochs=5, batch_size=32, progress=False)
    print("\n2. The digits network of `python -m bpcore demo` (64-128-64-10, ReLU, trained 5")
    print("   epochs): the backward pass of the first test image, from the loss down\n")
    backward = bp.explain(net, X_test[0], y_test[0])
    print(backward)
    assert backward.matches
    grad = backward.gradients["2.weight"]
    i, j = (int(v) for v in np.unravel_index(np.abs(grad).argmax(), grad.shape))
    print(f"\n   One hidden weight, the whole chain: weight ({i}, {j}) of the second Dense layer,")
    print("   the one with the largest gradient for this image\n")
    explanation = bp.explain(net, X_test[0], y_test[0], layer=2, index=(i, j))
    print(explanation)
    assert explanation.matches
    if picture:
        backward.plot(picture, title=f"one digit ({y_test[0]}), from the loss down")
        print(f"   the backward pass plotted to {picture}")


def layer_norms(activation: type[bp.Layer], depth: int) -> list[float]:
    """Mean gradient norm of each Dense layer's weight over one epoch of a deep network."""
    X, y = digits()
    net = deep_network(activation, depth)
    history = net.fit(X, y, epochs=1, batch_size=32, progress=False)
    weights = [name for name in history.grad_norms if name.endswith(".weight")]
    return [history.grad_norms[name][0] for name in weights]


def part_three(plot_path: str | None, picture: str | None) -> None:
    """Vanishing gradients: a deep sigmoid network against ReLU with He initialization, over
    an epoch and in the backward pass of one image."""
    depth = 10
    sig = layer_norms(bp.Sigmoid, depth)
    relu = layer_norms(bp.ReLU, depth)
    print(f"\n3. Vanishing gradients: {depth} Dense layers, mean gradient norm per layer over one")
    print("   epoch (input layer first)\n")
    print("   layer   sigmoid (Glorot)   ReLU (He)")
    for k, (s, r) in enumerate(zip(sig, relu)):
        print(f"   {k:5d}   {s:16.3e}   {r:9.3e}")
    print(
        f"\n   first/last layer ratio: sigmoid {sig[0] / sig[-1]:.1e}, "
        f"ReLU {relu[0] / relu[-1]:.1e}"
    )
    if plot_path:
        plot_norms(sig, relu, plot_path)
        print(f"   per-layer gradient norms plotted to {plot_path}")

    X, y = digits()
    passes = {
        name: bp.explain(deep_network(activation, depth, "float64"), X[0], y[0])
        for name, activation in (("sigmoid, Glorot init", bp.Sigmoid), ("ReLU, He init", bp.ReLU))
    }
    print("\n   The backward pass of the first image, ‖δ‖ per Dense layer (from the loss down):\n")
    print("   layer   sigmoid (Glorot)   ReLU (He)")
    sigmoid_pass, relu_pass = passes.values()
    for sigmoid_layer in reversed(sigmoid_pass.layers):
        if sigmoid_layer.kind == "dense":
            relu_norm = relu_pass.layers[sigmoid_layer.index].delta_norm
            print(
                f"   {sigmoid_layer.index:5d}   {sigmoid_layer.delta_norm:16.3e}   {relu_norm:9.3e}"
            )
    for name, backward in passes.items():
        assert backward.matches
        for note in backward.notes:
            print(f"   {name}: {note}")
    if picture:
        plot_side_by_side(passes, picture)
        print(f"   both backward passes plotted to {picture}")


def plot_side_by_side(passes: dict[str, bp.BackwardPass], path: str) -> None:
    """The `.plot()` of each backward pass, one above the other, on one shared norm scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(len(passes), 2, gridspec_kw={"width_ratios": [1, 1.3]})
    for row, (name, backward) in zip(axes, passes.items()):
        backward.plot(axes=row, title=f"{name}: norms from the loss down")
    low = min(ax.get_xlim()[0] for ax in axes[:, 0])
    high = max(ax.get_xlim()[1] for ax in axes[:, 0])
    for ax in axes[:, 0]:
        ax.set_xlim(low, high)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_norms(sigmoid_norms: list[float], relu_norms: list[float], path: str) -> None:
    """Both networks' per-layer gradient norms on a log scale, saved as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    layers = range(len(sigmoid_norms))
    ax.semilogy(layers, sigmoid_norms, "o-", label="sigmoid, Glorot init")
    ax.semilogy(layers, relu_norms, "s-", label="ReLU, He init")
    ax.set_xlabel("Dense layer (input first)")
    ax.set_ylabel("mean ‖∂L/∂W‖ over one epoch")
    ax.set_title("Vanishing gradients in a 10-layer network")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(plot_path: str | None = None) -> None:
    """Runs the three parts; with `plot_path`, saves the pictures there and beside it."""
    folder = os.path.dirname(plot_path) if plot_path else None
    beside = (lambda name: os.path.join(folder or ".", name)) if plot_path else (lambda _: None)
    part_one()
    part_two(beside("backward_pass_digits.png"))
    part_three(plot_path, beside("vanishing_backward_pass.png"))


if __name__ == "__main__":
    main(*sys.argv[1:2])
