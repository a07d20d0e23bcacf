"""Exchange with PyTorch: a network trained by bpcore becomes a `torch.nn.Sequential` and back.

A digits classifier with batch normalization trains in bpcore (float64); `bp.to_torch(net)`
builds the equal torch module, weights and running statistics included, whose outputs in eval
mode agree with bpcore's to rounding (1e-10 here, in float64). One SGD step in torch, on the
module in training mode, is then compared with the same step taken by bpcore (torch's rules,
step for step), and `bp.from_torch(module)` reads the stepped module back into a bpcore network,
buffers included. Without torch installed the example says how to get it and exits cleanly.

    pip install ".[sklearn,torch]" && python examples/torch_exchange.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore as bp

LR = 0.05
TOLERANCE = 1e-10


def largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between two state dicts with the same names."""
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def main() -> dict[str, float] | None:
    """Runs the exchange; returns the largest differences ("forward", "step", "read_back") and
    the test accuracy of the network read back from torch, or None without torch."""
    try:
        import torch
    except ImportError:
        print(
            "This example needs PyTorch, which is not installed: "
            'pip install "bpcore[torch]" (or pip install torch), then run it again. Skipping.'
        )
        return None

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # float64, as the network
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    net = bp.Network(
        [bp.Dense(64, 64), bp.BatchNorm1d(64), bp.ReLU(), bp.Dense(64, 10)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=2e-3),
        dtype="float64",
        seed=0,
    )
    net.fit(X_train, y_train, epochs=10, batch_size=32, progress=False)
    print(f"bpcore network trained: test accuracy {net.evaluate(X_test, y_test)['accuracy']:.2%}")

    # bpcore -> torch: the same layers, weights and batch-norm buffers.
    module = bp.to_torch(net)
    print(f"bp.to_torch(net):\n{module}")
    module.eval()  # batch norm by its running statistics, as net.forward
    with torch.no_grad():
        torch_out = module(torch.from_numpy(X_test)).numpy()
    forward = float(np.max(np.abs(torch_out - net.forward(X_test))))
    print(f"outputs in eval mode, largest difference from bpcore's: {forward:.2g}")

    # One SGD step on one batch, taken by torch and by bpcore from the same weights.
    twin = bp.from_torch(module, loss="cross_entropy", optimizer=bp.SGD(lr=LR))
    xb, yb = X_train[:64], y_train[:64]
    module.train()  # batch statistics, running statistics updated
    optimizer = torch.optim.SGD(module.parameters(), lr=LR)
    optimizer.zero_grad()
    torch_loss = torch.nn.functional.cross_entropy(
        module(torch.from_numpy(xb)), torch.from_numpy(yb)
    )
    torch.autograd.backward(torch_loss)  # torch_loss.backward(), in a typed spelling
    optimizer.step()
    bp_loss = twin.train_step(xb, yb)
    torch_state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    step = largest_difference(twin.state_dict(), torch_state)
    print(
        f"one SGD step (lr={LR}) on {len(xb)} samples: loss {torch_loss.item():.6f} in torch, "
        f"{bp_loss:.6f} in bpcore; weights and buffers after it differ by {step:.2g}"
    )

    # torch -> bpcore: the stepped module, running statistics included.
    back = bp.from_torch(module, loss="cross_entropy")
    read_back = largest_difference(back.state_dict(), torch_state)
    module.eval()
    with torch.no_grad():
        torch_out = module(torch.from_numpy(X_test)).numpy()
    read_back = max(read_back, float(np.max(np.abs(torch_out - back.forward(X_test)))))
    accuracy = float(back.evaluate(X_test, y_test)["accuracy"])
    print(
        f"bp.from_torch(module): state_dict {list(back.state_dict())}; state and outputs "
        f"differ from torch's by {read_back:.2g}; test accuracy {accuracy:.2%}"
    )

    for name, value in (("forward", forward), ("step", step), ("read_back", read_back)):
        if value > TOLERANCE:
            raise AssertionError(f"{name}: bpcore and torch differ by {value:.3g} > {TOLERANCE}")
    print(f"bpcore and torch agree to {TOLERANCE:g} both ways")
    return {"forward": forward, "step": step, "read_back": read_back, "accuracy": accuracy}


if __name__ == "__main__":
    main()
