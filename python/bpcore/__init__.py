"""bpcore: neural networks trained by backpropagation, with Rust kernels under a Pythonic API.

>>> import bpcore as bp
>>> net = bp.Network([bp.Dense(4, 16), bp.ReLU(), bp.Dense(16, 3)], loss="cross_entropy")
"""

from bpcore import distributed
from bpcore.bpcore import NetworkBusyError, TrainingDivergedError
from bpcore.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from bpcore.explain import BackwardPass, Explanation, explain
from bpcore.gradient_health import GradientWarning
from bpcore.history import History
from bpcore.layers import (
    ELU,
    GELU,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    Embeddings,
    Flatten,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    MaxPool1d,
    MaxPool2d,
    Mish,
    PReLU,
    ReLU,
    Reshape,
    Sigmoid,
    SiLU,
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
    PoissonNLLLoss,
)
from bpcore.network import Network
from bpcore.onnx_export import to_onnx
from bpcore.onnx_import import from_onnx
from bpcore.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from bpcore.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    OneCycleLR,
    Schedule,
    SequentialLR,
    StepLR,
)
from bpcore.threads import get_num_threads, set_num_threads
from bpcore.torch_exchange import from_torch, to_torch

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "AvgPool1d",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BackwardPass",
    "BatchNorm1d",
    "Callback",
    "Conv1d",
    "Conv2d",
    "CosineAnnealingLR",
    "CrossEntropyLoss",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Embedding",
    "Embeddings",
    "Explanation",
    "ExponentialLR",
    "Flatten",
    "GradientWarning",
    "History",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LearningRateScheduler",
    "LinearLR",
    "Loss",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Mish",
    "ModelCheckpoint",
    "Network",
    "NetworkBusyError",
    "OneCycleLR",
    "Optimizer",
    "PReLU",
    "PoissonNLLLoss",
    "RMSprop",
    "ReLU",
    "ReduceLROnPlateau",
    "Reshape",
    "Schedule",
    "SequentialLR",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "StepLR",
    "Tanh",
    "TrainingDivergedError",
    "distributed",
    "explain",
    "from_onnx",
    "from_torch",
    "get_num_threads",
    "set_num_threads",
    "to_onnx",
    "to_torch",
]
