"""gan-backends: one GAN spec, run and cross-checked in PyTorch, TensorFlow 2 and JAX/Flax.

Importing this package imports no framework; backends load lazily through
:func:`get_backend`.
"""

from .backends import (
    Backend,
    BackendUnavailable,
    TrainBatch,
    available_backends,
    get_backend,
)
from .params import init_params, load_params, param_shapes, save_params
from .presets import PRESETS, get_preset
from .spec import (
    AdamSpec,
    DataParallelSpec,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    ReLU,
    Reshape,
    Sigmoid,
    SpecError,
    Tanh,
)

__version__ = "0.1.0"

__all__ = [
    "AdamSpec",
    "Backend",
    "BackendUnavailable",
    "DataParallelSpec",
    "Dense",
    "Flatten",
    "GANSpec",
    "InitSpec",
    "LeakyReLU",
    "LossSpec",
    "Numerics",
    "PRESETS",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "SpecError",
    "Tanh",
    "TrainBatch",
    "available_backends",
    "get_backend",
    "get_preset",
    "init_params",
    "load_params",
    "param_shapes",
    "save_params",
]
