"""The API's defaults and the reference's are one fact: every layer, loss and optimizer built
with its defaults describes itself (`to_spec()`) as the reference completes a bare spec of its
type, so that the oracle checks what a user who gives no arguments gets."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from bpcore import reference as ref
from bpcore.layers import LAYERS
from bpcore.losses import LOSSES
from bpcore.optimizers import OPTIMIZERS

# What each layer needs to be built at all (no default): the reference's required keys.
REQUIRED = {
    "in_features": 3,
    "out_features": 2,
    "num_features": 4,
    "normalized_shape": 4,
    "in_channels": 2,
    "out_channels": 4,
    "kernel_size": 3,
    "shape": (2, 3),
    "num_embeddings": 5,
    "embedding_dim": 2,
    "columns": {1: (5, 2)},
}


def _built_with_defaults(cls: type) -> Any:
    needed = {
        name: REQUIRED[name]
        for name, p in inspect.signature(cls).parameters.items()
        if p.default is inspect.Parameter.empty and name in REQUIRED
    }
    return cls(**needed), needed


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_defaults_are_the_references(name: str) -> None:
    layer, needed = _built_with_defaults(LAYERS[name])
    assert layer.to_spec() == ref.layer_spec({"type": name, **needed})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_defaults_are_the_references(name: str) -> None:
    loss, _ = _built_with_defaults(LOSSES[name])
    assert loss.to_spec() == ref.loss_spec(name)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_defaults_are_the_references(name: str) -> None:
    optimizer, _ = _built_with_defaults(OPTIMIZERS[name])
    assert optimizer.to_spec() == ref.optimizer_spec(name)
