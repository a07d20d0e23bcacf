"""A plain NumPy multilayer perceptron: the benchmark's "written by hand" baseline.

Forward: ``z = h Wᵀ + b``, ``h' = f(z)`` layer by layer. Backward by the chain rule, from the
loss's ∂L/∂output down: ``∂L/∂W = δᵀ h``, ``∂L/∂b = Σ_batch δ``, ``∂L/∂h = δ W`` with
``δ = ∂L/∂h' ⊙ f'(z)``. Optimizers with ``torch.optim``'s update rules (SGD with momentum, Adam).
Everything stays in the parameters' dtype (float32 here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# ----- activations: f and f' written in terms of f's output where that is cheapest ----------


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """f(z) for "tanh" or "relu"."""
    h: np.ndarray = np.tanh(z) if name == "tanh" else np.maximum(z, 0)
    return h


def activation_grad(name: str, h: np.ndarray, grad_h: np.ndarray) -> np.ndarray:
    """∂L/∂z = ∂L/∂h ⊙ f'(z), from the activation's output h = f(z)."""
    # tanh' = 1 - tanh²; relu' = 1 where z > 0
    grad_z: np.ndarray = grad_h * (1 - h * h) if name == "tanh" else grad_h * (h > 0)
    return grad_z


# ----- losses: mean over the batch, as torch.nn.MSELoss and CrossEntropyLoss ------------------


def mse(out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean of (out - y)² over all elements, and its gradient with respect to ``out``."""
    diff = out - y
    return float(np.mean(diff * diff)), (2 / diff.size) * diff


def cross_entropy(out: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean of -log softmax(out)[label], and its gradient ``(softmax - onehot) / n``."""
    n = out.shape[0]
    shifted = out - out.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_sum
    loss = -float(np.mean(log_p[np.arange(n), labels]))
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


# ----- optimizers: torch.optim's rules, one array per parameter ------------------------------


class SGDMomentum:
    """torch.optim.SGD(lr, momentum): ``buf = g`` on the first step, then
    ``buf = momentum·buf + g``; ``p -= lr·buf``."""

    def __init__(self, lr: float, momentum: float) -> None:
        self.lr, self.momentum = lr, momentum
        self.buffers: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Updates ``params`` in place."""
        if self.buffers is None:
            self.buffers = [g.copy() for g in grads]
        else:
            for buf, g in zip(self.buffers, grads):
                buf *= self.momentum
                buf += g
        for p, buf in zip(params, self.buffers):
            p -= self.lr * buf


class Adam:
    """torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8):
    ``m = β₁m + (1-β₁)g``, ``v = β₂v + (1-β₂)g²``,
    ``p -= lr/(1-β₁ᵗ) · m / (√v / √(1-β₂ᵗ) + eps)``."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.t = 0
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Updates ``params`` in place."""
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        step_size = self.lr / (1 - self.beta1**self.t)
        sqrt_bc2 = math.sqrt(1 - self.beta2**self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            denom = np.sqrt(v) / sqrt_bc2 + self.eps
            p -= step_size * (m / denom)


# ----- the network ---------------------------------------------------------------------------


class NumpyMLP:
    """Dense layers with ``activation`` between them; parameters named like bpcore's
    (``"0.weight"`` (out, in), ``"0.bias"``, ``"2.weight"``, ...), so ``bp.Network.parameters()``
    loads straight in."""

    def __init__(
        self,
        parameters: Mapping[str, np.ndarray],
        activation: str,
        loss: str,
        optimizer: SGDMomentum | Adam,
    ) -> None:
        names = list(parameters)
        self.weights = [np.array(parameters[n]) for n in names if n.endswith("weight")]
        self.biases = [np.array(parameters[n]) for n in names if n.endswith("bias")]
        self.activation = activation
        self.loss_and_grad = LOSSES[loss]
        self.optimizer = optimizer

    def parameters(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under bpcore's names."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"{2 * i}.weight"], out[f"{2 * i}.bias"] = w.copy(), b.copy()
        return out

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """The input of every dense layer, and the output last."""
        hs = [x]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = hs[-1] @ w.T + b
            hs.append(z if i == last else activate(self.activation, z))
        return hs

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The outputs for a batch ``x``."""
        return self._forward(x)[-1]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, backward by the chain rule, one optimizer step; returns the loss before it."""
        hs = self._forward(x)
        loss, delta = self.loss_and_grad(hs[-1], y)  # δ = ∂L/∂z of the last layer
        grad_w, grad_b = [], []
        for i in range(len(self.weights) - 1, -1, -1):
            grad_w.append(delta.T @ hs[i])
            grad_b.append(delta.sum(axis=0))
            if i > 0:  # ∂L/∂h of the layer below, then through its activation
                delta = activation_grad(self.activation, hs[i], delta @ self.weights[i])
        grads = grad_w[::-1] + grad_b[::-1]
        self.optimizer.step(self.weights + self.biases, grads)
        return loss

    def fit_epoch(
        self, X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> float:
        """One epoch of mini-batches in a shuffled order; returns the mean batch loss."""
        order = rng.permutation(len(X))
        losses = []
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            losses.append(self.train_step(X[idx], y[idx]))
        return float(np.mean(losses))
