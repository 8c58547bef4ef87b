"""The GAN spec: one framework-free description that every backend builds from.

A spec is data: frozen, keyword-only dataclasses validated on construction, with a JSON
round-trip (:meth:`GANSpec.to_json` / :meth:`GANSpec.from_json`). Nothing here imports a
framework. Shapes are per sample (no batch axis); image shapes are channels-last ``(H, W, C)``,
the project's canonical layout (see ``docs/layouts.md``).

Every hyper-parameter whose framework default differs (Adam eps, LeakyReLU slope, the
discriminator-loss scale, the initialisation scheme) is a required or explicitly defaulted field
here, so each backend sets it from the spec and never inherits its framework's default.

Layout: :mod:`~gan_backends.spec.base` (``Shape``, :class:`SpecError`, the field checks),
:mod:`~gan_backends.spec.layers` (the layer specs and their one registry, ``LAYER_TYPES``),
:mod:`~gan_backends.spec.resample` (``Upsample``, ``AvgPool2D``, ``GlobalSumPool``, registered there too),
:mod:`~gan_backends.spec.blocks` (the residual block, and the walks into blocks),
:mod:`~gan_backends.spec.training` (loss, optimisers, numerics, initialisation, data
parallelism) and :mod:`~gan_backends.spec.gan` (:class:`GANSpec`, loading and saving). Every
name is imported from here, ``gan_backends.spec``.
"""

from __future__ import annotations

from .attention import SelfAttention
from .base import Shape, SpecError
from .batchnorm import BatchNorm, RunningVariance
from .blocks import Residual, describe_path, layer_at, walk
from .ema import EmaSpec
from .gan import NETWORKS, GANSpec
from .layers import (
    LAYER_TYPES,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    Padding,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
    conv_pads,
    conv_transpose_crops,
    layer_from_dict,
)
from .resample import RESAMPLE_LAYERS, AvgPool2D, GlobalSumPool, Upsample, UpsampleMethod
from .spectral import SpectralNormSpec
from .training import (
    ALL_LOSS_NAMES,
    CROSS_DEVICE_BATCHNORM,
    INIT_SCHEMES,
    LOSS_NAMES,
    OPTIMIZER_TYPES,
    PENALTIES,
    RELATIVISTIC_LOSSES,
    AdamSpec,
    DataParallelSpec,
    DType,
    InitSpec,
    LossName,
    LossSpec,
    MatmulPrecision,
    Numerics,
    OptimizerSpec,
    PenaltyName,
    RMSpropSpec,
    SGDSpec,
    optimizer_from_dict,
    optimizer_slots,
)

__all__ = [
    "ALL_LOSS_NAMES",
    "CROSS_DEVICE_BATCHNORM",
    "INIT_SCHEMES",
    "LAYER_TYPES",
    "LOSS_NAMES",
    "NETWORKS",
    "OPTIMIZER_TYPES",
    "PENALTIES",
    "RELATIVISTIC_LOSSES",
    "RESAMPLE_LAYERS",
    "AdamSpec",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "ConvTranspose2D",
    "DType",
    "DataParallelSpec",
    "Dense",
    "EmaSpec",
    "Flatten",
    "GANSpec",
    "GlobalSumPool",
    "InitSpec",
    "Layer",
    "LeakyReLU",
    "LossName",
    "LossSpec",
    "MatmulPrecision",
    "Numerics",
    "OptimizerSpec",
    "Padding",
    "PenaltyName",
    "RMSpropSpec",
    "ReLU",
    "Reshape",
    "Residual",
    "RunningVariance",
    "SGDSpec",
    "SpectralNormSpec",
    "Shape",
    "Sigmoid",
    "SpecError",
    "Tanh",
    "SelfAttention",
    "Upsample",
    "UpsampleMethod",
    "conv_pads",
    "conv_transpose_crops",
    "describe_path",
    "layer_at",
    "layer_from_dict",
    "optimizer_from_dict",
    "optimizer_slots",
    "walk",
]
