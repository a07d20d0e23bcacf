"""bpcore: neural networks trained by backpropagation, with Rust kernels under a Pythonic API.

>>> import bpcore as bp
>>> net = bp.Network([bp.Dense(4, 16), bp.ReLU(), bp.Dense(16, 3)], loss="cross_entropy")
"""

from bpcore.bpcore import TrainingDivergedError, get_num_threads, set_num_threads
from bpcore.history import History
from bpcore.layers import (
    ELU,
    GELU,
    Dense,
    Identity,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
)
from bpcore.losses import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
)
from bpcore.network import Network
from bpcore.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Dense",
    "History",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "Layer",
    "LeakyReLU",
    "Loss",
    "MSELoss",
    "Network",
    "Optimizer",
    "RMSprop",
    "ReLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "TrainingDivergedError",
    "get_num_threads",
    "set_num_threads",
]
