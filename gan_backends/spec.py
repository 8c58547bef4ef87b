"""The GAN spec: one framework-free description that every backend builds from.

A spec is data: frozen, keyword-only dataclasses validated on construction, with a JSON
round-trip (:meth:`GANSpec.to_json` / :meth:`GANSpec.from_json`). Nothing here imports a
framework. Shapes are per sample (no batch axis); image shapes are channels-last ``(H, W, C)``,
the project's canonical layout (see ``docs/layouts.md``).

Every hyper-parameter whose framework default differs (Adam eps, LeakyReLU slope, the
discriminator-loss scale, the initialisation scheme) is a required or explicitly defaulted field
here, so each backend sets it from the spec and never inherits its framework's default.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

Shape = tuple[int, ...]


class SpecError(ValueError):
    """A spec that cannot describe a working GAN; the message names the layer and shapes."""


# --------------------------------------------------------------------------------------------
# Layers. Each layer knows its output shape and its parameter shapes; nothing else.


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Base class of every layer spec."""

    type_name: ClassVar[str] = ""

    def output_shape(self, input_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """Canonical parameter shapes, by short name (``kernel``, ``bias``, ``scale``)."""
        return {}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """State that is not trained by gradients (BatchNorm's running statistics)."""
        return {}

    def describe(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.type_name}({fields})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """Fully connected layer ``y = x @ kernel + bias``; canonical kernel shape ``(in, out)``."""

    type_name: ClassVar[str] = "Dense"
    units: int
    use_bias: bool = True

    def __post_init__(self) -> None:
        _require_positive_int("Dense.units", self.units)
        _require_bool("Dense.use_bias", self.use_bias)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise SpecError(f"expects a flat input (features,), got {input_shape}; add a Flatten first")
        return (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"kernel": (input_shape[0], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes


@dataclass(frozen=True, kw_only=True)
class _Elementwise(Layer):
    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


@dataclass(frozen=True, kw_only=True)
class ReLU(_Elementwise):
    """``max(x, 0)``."""

    type_name: ClassVar[str] = "ReLU"


@dataclass(frozen=True, kw_only=True)
class LeakyReLU(_Elementwise):
    """``x if x > 0 else slope * x``. The slope is required: the frameworks' defaults are
    0.01 (torch, Flax), 0.3 (Keras layer) and 0.2 (``tf.nn``)."""

    type_name: ClassVar[str] = "LeakyReLU"
    slope: float

    def __post_init__(self) -> None:
        if isinstance(self.slope, bool) or not isinstance(self.slope, (int, float)):
            raise SpecError(f"LeakyReLU.slope must be a number, got {self.slope!r}")
        if not (0.0 <= self.slope < 1.0):
            raise SpecError(f"LeakyReLU.slope must lie in [0, 1), got {self.slope}")
        object.__setattr__(self, "slope", float(self.slope))


@dataclass(frozen=True, kw_only=True)
class Tanh(_Elementwise):
    """``tanh(x)``."""

    type_name: ClassVar[str] = "Tanh"


@dataclass(frozen=True, kw_only=True)
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``."""

    type_name: ClassVar[str] = "Sigmoid"


@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    """Reshape each sample to ``shape`` (row-major, canonical channels-last order)."""

    type_name: ClassVar[str] = "Reshape"
    shape: Shape

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not shape:
            raise SpecError(f"Reshape.shape must be a non-empty tuple of ints, got {self.shape!r}")
        for dim in shape:
            _require_positive_int("Reshape.shape", dim)
        object.__setattr__(self, "shape", shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        if math.prod(input_shape) != math.prod(self.shape):
            raise SpecError(
                f"cannot reshape {input_shape} ({math.prod(input_shape)} values) "
                f"to {self.shape} ({math.prod(self.shape)} values)"
            )
        return self.shape


@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Flatten each sample to one axis (row-major, canonical channels-last order)."""

    type_name: ClassVar[str] = "Flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


# Convolutions. Padding is resolved once, here, to explicit (before, after) pairs per spatial
# axis; every backend applies those numbers, so 'same' means TensorFlow's 'same' everywhere.

Padding = int | str


def _check_padding(name: str, padding: Any) -> Padding:
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise SpecError(f"{name}.padding must be an int >= 0, 'same' or 'valid', got {padding!r}")
        return padding
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise SpecError(f"{name}.padding must be an int >= 0, 'same' or 'valid', got {padding!r}")
    return padding


def conv_pads(size: int, kernel: int, stride: int, padding: Padding) -> tuple[int, int]:
    """(before, after) zero padding of one spatial axis of a convolution's input.

    An int ``p`` pads ``p`` on both sides (PyTorch). ``'valid'`` pads nothing. ``'same'`` is
    TensorFlow's: output ``ceil(size / stride)``, total ``max((out - 1) * stride + kernel - size,
    0)``, the odd pixel after (bottom/right). PyTorch refuses ``padding='same'`` with stride > 1;
    these pairs are applied there with ``F.pad``.
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return int(padding), int(padding)


def conv_transpose_crops(size: int, kernel: int, stride: int, padding: Padding, output_padding: int) -> tuple[int, int]:
    """(before, after) crop of one spatial axis of a transposed convolution's full output.

    The full output of a transposed convolution has ``(size - 1) * stride + kernel`` pixels; the
    layer keeps it minus ``before`` pixels at the start and ``after`` at the end (a negative
    ``after`` appends that many pixels that no input reaches, as PyTorch's ``output_padding``
    does). An int ``p`` crops ``(p, p - output_padding)`` (PyTorch). ``'same'`` gives
    ``size * stride`` pixels, cropping ``k - s`` with the odd pixel at the end, which is the adjoint
    of TensorFlow's 'same' convolution (Keras ``Conv2DTranspose``, Flax ``'SAME'``). ``'valid'``
    crops nothing (output ``(size - 1) * stride + kernel``; with ``kernel < stride`` Keras
    gives ``size * stride``, the crop then is ``(0, kernel - stride)``).
    """
    if padding == "same":
        total = kernel - stride
        before = total // 2 if total >= 0 else 0
        return before, total - before
    if padding == "valid":
        return 0, min(kernel - stride, 0) - output_padding
    return int(padding), int(padding) - output_padding


@dataclass(frozen=True, kw_only=True)
class Conv2D(Layer):
    """2-D cross-correlation over channels-last ``(H, W, C)`` input, square kernel and stride.

    Canonical kernel ``(kh, kw, in, out)`` (HWIO: TensorFlow's and Flax's own; torch's
    ``Conv2d.weight`` is OIHW, ``kernel.transpose(3, 2, 0, 1)``). ``padding``: an int (both
    sides), ``'same'`` or ``'valid'`` with TensorFlow's meaning (see :func:`conv_pads`).
    """

    type_name: ClassVar[str] = "Conv2D"
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    use_bias: bool = True

    def __post_init__(self) -> None:
        _require_positive_int("Conv2D.filters", self.filters)
        _require_positive_int("Conv2D.kernel", self.kernel)
        _require_positive_int("Conv2D.stride", self.stride)
        object.__setattr__(self, "padding", _check_padding("Conv2D", self.padding))
        _require_bool("Conv2D.use_bias", self.use_bias)

    def pads(self, input_shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """Explicit ``((top, bottom), (left, right))`` zero padding for this input."""
        return tuple(conv_pads(n, self.kernel, self.stride, self.padding) for n in input_shape[:2])  # type: ignore[return-value]

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("Conv2D", input_shape)
        out = []
        for n, (lo, hi) in zip(input_shape[:2], self.pads(input_shape)):
            size = (n + lo + hi - self.kernel) // self.stride + 1
            if n + lo + hi < self.kernel:
                raise SpecError(f"kernel {self.kernel} is larger than the padded input {n + lo + hi}")
            out.append(size)
        return (out[0], out[1], self.filters)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"kernel": (self.kernel, self.kernel, input_shape[2], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes


@dataclass(frozen=True, kw_only=True)
class ConvTranspose2D(Layer):
    """The transposed (fractionally strided) convolution: the adjoint of :class:`Conv2D` with the
    same kernel, stride 1 input pixels scattered ``stride`` apart, channels-last.

    Canonical kernel ``(kh, kw, out, in)``: the HWIO kernel of the Conv2D it is the adjoint of,
    Keras' ``Conv2DTranspose`` layout. torch's ``ConvTranspose2d.weight`` is ``(in, out, kh,
    kw)`` = ``kernel.transpose(3, 2, 0, 1)``; Flax's ``ConvTranspose(transpose_kernel=True)``
    takes it as it is. Output size ``(H - 1) * stride + kernel - before - after`` with the crops
    of :func:`conv_transpose_crops`; ``output_padding`` only with an int padding, < stride.
    """

    type_name: ClassVar[str] = "ConvTranspose2D"
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    output_padding: int = 0
    use_bias: bool = True

    def __post_init__(self) -> None:
        _require_positive_int("ConvTranspose2D.filters", self.filters)
        _require_positive_int("ConvTranspose2D.kernel", self.kernel)
        _require_positive_int("ConvTranspose2D.stride", self.stride)
        object.__setattr__(self, "padding", _check_padding("ConvTranspose2D", self.padding))
        _require_bool("ConvTranspose2D.use_bias", self.use_bias)
        op = self.output_padding
        if isinstance(op, bool) or not isinstance(op, int) or not (0 <= op < self.stride):
            raise SpecError(f"ConvTranspose2D.output_padding must be an int in [0, stride={self.stride}), got {op!r}")
        if op and isinstance(self.padding, str):
            raise SpecError("ConvTranspose2D.output_padding needs an int padding (as in PyTorch), not 'same'/'valid'")

    def crops(self, input_shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))`` cropped from the full output (negative: appended)."""
        return tuple(
            conv_transpose_crops(n, self.kernel, self.stride, self.padding, self.output_padding)
            for n in input_shape[:2]
        )  # type: ignore[return-value]

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("ConvTranspose2D", input_shape)
        out = []
        for n, (lo, hi) in zip(input_shape[:2], self.crops(input_shape)):
            size = (n - 1) * self.stride + self.kernel - lo - hi
            if size <= 0:
                raise SpecError(f"padding {self.padding} leaves no output pixels")
            out.append(size)
        return (out[0], out[1], self.filters)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"kernel": (self.kernel, self.kernel, self.filters, input_shape[2])}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes


RunningVariance = Literal["unbiased", "biased"]


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels), PyTorch's conventions::

        train: y = (x - mean_B) / sqrt(var_B + eps) * scale + bias      (var_B biased, 1/n)
               running_mean <- (1 - momentum) * running_mean + momentum * mean_B
               running_var  <- (1 - momentum) * running_var  + momentum * var_B * n / (n - 1)
        eval:  y = (x - running_mean) / sqrt(running_var + eps) * scale + bias

    ``momentum`` is the weight of the NEW batch statistic (torch 0.1); Keras and Flax call
    ``1 - momentum`` their momentum (0.99). ``running_var='unbiased'`` stores var_B·n/(n−1) as
    torch does; ``'biased'`` stores var_B as Keras and Flax do. Parameters ``scale`` (gamma) and
    ``bias`` (beta), shape ``(C,)``; buffers ``running_mean`` (starts 0) and ``running_var``
    (starts 1). Every network call in training updates the running statistics once.
    """

    type_name: ClassVar[str] = "BatchNorm"
    momentum: float = 0.1
    eps: float = 1e-5
    running_var: RunningVariance = "unbiased"

    def __post_init__(self) -> None:
        for fname in ("momentum", "eps"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"BatchNorm.{fname} must be a number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if not (0.0 <= self.momentum <= 1.0):
            raise SpecError(
                f"BatchNorm.momentum (weight of the new batch statistic) must lie in [0, 1], got {self.momentum}"
            )
        if self.eps <= 0:
            raise SpecError(f"BatchNorm.eps must be positive, got {self.eps}")
        if self.running_var not in ("unbiased", "biased"):
            raise SpecError(f"BatchNorm.running_var must be 'unbiased' or 'biased', got {self.running_var!r}")

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"scale": (input_shape[-1],), "bias": (input_shape[-1],)}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"running_mean": (input_shape[-1],), "running_var": (input_shape[-1],)}


def _require_image(name: str, input_shape: Shape) -> None:
    if len(input_shape) != 3:
        raise SpecError(f"{name} expects an image (H, W, C), got {input_shape}; add a Reshape first")


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (Dense, Conv2D, ConvTranspose2D, BatchNorm, ReLU, LeakyReLU, Tanh, Sigmoid, Reshape, Flatten)
}


def layer_from_dict(data: dict[str, Any]) -> Layer:
    if not isinstance(data, dict) or "type" not in data:
        raise SpecError(f"a layer must be an object with a 'type' field, got {data!r}")
    kwargs = dict(data)
    type_name = kwargs.pop("type")
    cls = LAYER_TYPES.get(type_name)
    if cls is None:
        raise SpecError(f"unknown layer type {type_name!r}; known: {', '.join(LAYER_TYPES)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SpecError(f"bad fields for layer {type_name}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Loss, optimiser, numerics, initialisation.

LossName = Literal["minimax", "non_saturating", "least_squares", "hinge", "wasserstein"]
LOSS_NAMES: tuple[str, ...] = ("minimax", "non_saturating", "least_squares", "hinge", "wasserstein")
PenaltyName = Literal["none", "wgan_gp", "r1"]
PENALTIES: tuple[str, ...] = ("none", "wgan_gp", "r1")


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """Which GAN loss, on discriminator logits; formulas in :mod:`gan_backends.losses`.

    ``d_scale`` multiplies the discriminator loss: 1.0 in the original paper and most code,
    0.5 in the pix2pix/CycleGAN-style tutorials. It changes the D gradients, so it is explicit.
    ``a``, ``b``, ``c`` are least squares' targets (Mao et al. 2017, eq. 2): D pushes fakes to
    ``a`` and reals to ``b``, G pushes fakes to ``c``; the default ``(0, 1, 1)`` is the paper's
    eq. 9 (``(-1, 1, 0)`` is its eq. 8). Other losses ignore them.

    ``penalty`` adds a gradient penalty to D's loss, weighted by ``penalty_weight`` (λ of
    WGAN-GP, γ of R1), not by ``d_scale``: ``wgan_gp`` (Gulrajani et al. 2017) on interpolates
    whose coefficients are drawn in NumPy, with the norm ``sqrt(sum g^2 + norm_eps)`` so its
    gradient is finite at 0; ``r1`` (Mescheder et al. 2018) on real data. ``clip_value`` clips
    every D parameter to ``[-c, c]`` after each D update (the original WGAN, Arjovsky et al.
    2017, c = 0.01).
    """

    name: LossName = "non_saturating"
    d_scale: float = 1.0
    a: float = 0.0
    b: float = 1.0
    c: float = 1.0
    penalty: PenaltyName = "none"
    penalty_weight: float = 10.0
    norm_eps: float = 1e-12
    clip_value: float | None = None

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise SpecError(f"unknown loss {self.name!r}; known: {', '.join(LOSS_NAMES)}")
        if self.penalty not in PENALTIES:
            raise SpecError(f"unknown gradient penalty {self.penalty!r}; known: {', '.join(PENALTIES)}")
        for fname in ("d_scale", "penalty_weight"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SpecError(f"loss.{fname} must be a positive number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or self.norm_eps < 0:
            raise SpecError(f"loss.norm_eps must be a number >= 0, got {self.norm_eps!r}")
        object.__setattr__(self, "norm_eps", float(self.norm_eps))
        for target in ("a", "b", "c"):
            value = getattr(self, target)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"loss.{target} must be a finite number, got {value!r}")
            object.__setattr__(self, target, float(value))
        if self.clip_value is not None:
            value = self.clip_value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SpecError(f"loss.clip_value must be a positive number or null, got {value!r}")
            object.__setattr__(self, "clip_value", float(value))


@dataclass(frozen=True, kw_only=True)
class AdamSpec:
    """Adam in PyTorch's form (Kingma & Ba, Algorithm 1, eps outside the square root)::

        g  <- g + weight_decay * p                (L2, as torch.optim.Adam; not decoupled)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g**2
        p  <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Keras' Adam uses the "epsilon-hat" form, which no eps makes equal to this; the TensorFlow
    backend therefore writes this update with TF ops.
    """

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float = 0.0
    name: Literal["adam"] = "adam"

    def __post_init__(self) -> None:
        if self.name != "adam":
            raise SpecError(f"AdamSpec.name must be 'adam', got {self.name!r}")
        for fname in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"adam.{fname} must be a finite number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise SpecError(f"adam needs lr > 0, eps > 0, weight_decay >= 0; got {self}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SpecError(f"adam betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")


@dataclass(frozen=True, kw_only=True)
class RMSpropSpec:
    """RMSprop in PyTorch's form (``torch.optim.RMSprop``; the original WGAN's optimiser)::

        g  <- g + weight_decay * p
        v  <- alpha * v + (1 - alpha) * g**2                        (slot ``v``, torch ``square_avg``)
        gc <- alpha * gc + (1 - alpha) * g    if centered           (slot ``grad_avg``)
        d  <- sqrt(v - gc**2) if centered else sqrt(v);  d <- d + eps   (eps OUTSIDE the root)
        b  <- momentum * b + g / d;  p <- p - lr * b   if momentum  (slot ``momentum``)
        p  <- p - lr * g / d                            otherwise

    Keras' RMSprop defaults to rho 0.9, eps 1e-7; optax's puts eps inside the root
    (``eps_in_sqrt=True``) and starts ``v`` at ``initial_scale``: all set from here.
    """

    lr: float
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0
    name: Literal["rmsprop"] = "rmsprop"

    def __post_init__(self) -> None:
        _check_numbers(self, ("lr", "alpha", "eps", "momentum", "weight_decay"))
        _require_bool("rmsprop.centered", self.centered)
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.momentum < 0:
            raise SpecError(f"rmsprop needs lr > 0, eps > 0, momentum >= 0, weight_decay >= 0; got {self}")
        if not (0 <= self.alpha < 1):
            raise SpecError(f"rmsprop.alpha must lie in [0, 1), got {self.alpha}")


@dataclass(frozen=True, kw_only=True)
class SGDSpec:
    """SGD with momentum in PyTorch's form (``torch.optim.SGD``, dampening 0)::

        g <- g + weight_decay * p
        b <- g at the first step, then momentum * b + g              (slot ``momentum``)
        g <- g + momentum * b  if nesterov  else  b                  (when momentum > 0)
        p <- p - lr * g

    Since ``b`` starts at 0 this equals ``optax.sgd``'s trace; Keras' SGD folds lr into its
    velocity (``v <- m v - lr g``), the same update only while lr is constant.
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name: Literal["sgd"] = "sgd"

    def __post_init__(self) -> None:
        _check_numbers(self, ("lr", "momentum", "weight_decay"))
        _require_bool("sgd.nesterov", self.nesterov)
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise SpecError(f"sgd needs lr > 0, momentum >= 0, weight_decay >= 0; got {self}")
        if self.nesterov and self.momentum == 0:
            raise SpecError("sgd.nesterov needs momentum > 0 (as in torch.optim.SGD)")


OptimizerSpec = AdamSpec | RMSpropSpec | SGDSpec
OPTIMIZER_TYPES: dict[str, type] = {"adam": AdamSpec, "rmsprop": RMSpropSpec, "sgd": SGDSpec}


def optimizer_slots(opt: OptimizerSpec) -> tuple[str, ...]:
    """The per-parameter buffers of ``opt`` in canonical form (see ``OptimizerState``)."""
    if isinstance(opt, AdamSpec):
        return ("m", "v")
    if isinstance(opt, RMSpropSpec):
        return ("v", *(("grad_avg",) if opt.centered else ()), *(("momentum",) if opt.momentum else ()))
    return ("momentum",) if opt.momentum else ()


def optimizer_from_dict(data: dict[str, Any]) -> OptimizerSpec:
    kwargs = dict(data)
    name = kwargs.get("name", "adam")
    cls = OPTIMIZER_TYPES.get(name)
    if cls is None:
        raise SpecError(f"unknown optimiser {name!r}; known: {', '.join(OPTIMIZER_TYPES)}")
    return cls(**kwargs)


def _check_numbers(obj: Any, names: tuple[str, ...]) -> None:
    for fname in names:
        value = getattr(obj, fname)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{obj.name}.{fname} must be a finite number, got {value!r}")
        object.__setattr__(obj, fname, float(value))


DType = Literal["float32", "float64"]
MatmulPrecision = Literal["highest", "tf32", "bf16"]


@dataclass(frozen=True, kw_only=True)
class Numerics:
    """Precision policy, applied identically by every backend.

    ``matmul_precision="highest"`` is IEEE float32 everywhere: it switches TF32 off where a
    framework would use it by default (TensorFlow and JAX on Ampere+ GPUs, cuDNN convs in
    torch). ``"tf32"`` switches it on in all three; on a CPU there is no TF32 and both agree.

    ``"bf16"`` is bfloat16 mixed precision, defined once and written out the same way in every
    backend (rather than each framework's autocast, whose op lists differ): every Dense matmul
    rounds both operands to bfloat16, multiplies (float32 accumulation) and rounds the product
    to bfloat16, as autocast and Keras' ``mixed_bfloat16`` do; the bias add, activations,
    losses, gradients' accumulation and Adam stay float32, as do the master weights. The
    backward matmuls follow from differentiating the casts, so they run in bfloat16 too. It
    works on CPUs (slowly) and GPUs; it needs ``dtype="float32"``.
    """

    dtype: DType = "float32"
    matmul_precision: MatmulPrecision = "highest"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise SpecError(f"numerics.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.matmul_precision not in ("highest", "tf32", "bf16"):
            raise SpecError(
                f"numerics.matmul_precision must be 'highest', 'tf32' or 'bf16', got {self.matmul_precision!r}"
            )
        if self.matmul_precision == "bf16" and self.dtype != "float32":
            raise SpecError("numerics.matmul_precision 'bf16' is mixed precision over float32: set dtype 'float32'")


INIT_SCHEMES: tuple[str, ...] = ("torch_default", "normal", "glorot_uniform", "lecun_normal")


@dataclass(frozen=True, kw_only=True)
class InitSpec:
    """How :func:`gan_backends.params.init_params` draws the weights, in NumPy.

    ``torch_default``: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's
    ``nn.Linear`` default (kaiming_uniform with a=sqrt(5)). ``normal``: kernel ~ N(0, std^2),
    bias 0 (the DCGAN scheme with std=0.02). ``glorot_uniform`` (Keras' default): kernel ~
    U(±sqrt(6/(fan_in+fan_out))), bias 0. ``lecun_normal`` (Flax's default): kernel ~ N(0,
    1/fan_in) truncated at ±2 std (std corrected for the truncation, as in
    ``jax.nn.initializers.variance_scaling``), bias 0.
    """

    scheme: str = "torch_default"
    std: float = 0.02

    def __post_init__(self) -> None:
        if self.scheme not in INIT_SCHEMES:
            raise SpecError(f"unknown init scheme {self.scheme!r}; known: {', '.join(INIT_SCHEMES)}")
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise SpecError(f"init.std must be positive, got {self.std!r}")


CROSS_DEVICE_BATCHNORM: tuple[str, ...] = ("sync", "per_device")


@dataclass(frozen=True, kw_only=True)
class DataParallelSpec:
    """What changes when a step's batch is split over devices (``--devices N``).

    ``batchnorm``: where BatchNorm takes its batch statistics. ``"sync"``: over the global batch
    (torch ``SyncBatchNorm``, Keras ``BatchNormalization(synchronized=True)``, a mean over the
    mesh's batch axis in JAX), so the N-device step is the one-device step on the concatenated
    batch. ``"per_device"``: over each device's rows (the default of DDP, of Keras under
    ``MirroredStrategy`` and of a Flax BatchNorm without ``axis_name``), so an N-device step
    differs from the one-device step; running statistics are device 0's. Stated here once and
    converted per framework (``docs/data-parallel.md``); no effect without BatchNorm.
    """

    batchnorm: str = "sync"

    def __post_init__(self) -> None:
        if self.batchnorm not in CROSS_DEVICE_BATCHNORM:
            raise SpecError(
                f"data_parallel.batchnorm must be one of {', '.join(CROSS_DEVICE_BATCHNORM)}, got {self.batchnorm!r}"
            )


# --------------------------------------------------------------------------------------------
# The GAN.

NETWORKS: tuple[str, str] = ("generator", "discriminator")


@dataclass(frozen=True, kw_only=True)
class GANSpec:
    """A whole GAN: shapes, the two networks, the loss, the optimisers and the numerics.

    ``data_shape`` is one sample (e.g. ``(784,)`` or ``(28, 28, 1)``); the generator maps
    ``(latent_dim,)`` to it, the discriminator maps it to one logit ``(1,)``. One training step
    is ``n_critic`` discriminator updates followed by one generator update.
    """

    name: str
    data_shape: Shape
    latent_dim: int
    generator: tuple[Layer, ...]
    discriminator: tuple[Layer, ...]
    loss: LossSpec = field(default_factory=LossSpec)
    g_optimizer: OptimizerSpec
    d_optimizer: OptimizerSpec
    n_critic: int = 1
    numerics: Numerics = field(default_factory=Numerics)
    init: InitSpec = field(default_factory=InitSpec)
    data_parallel: DataParallelSpec = field(default_factory=DataParallelSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_shape", tuple(self.data_shape))
        object.__setattr__(self, "generator", tuple(self.generator))
        object.__setattr__(self, "discriminator", tuple(self.discriminator))
        if not self.data_shape:
            raise SpecError("data_shape must have at least one axis")
        for dim in self.data_shape:
            _require_positive_int("data_shape", dim)
        _require_positive_int("latent_dim", self.latent_dim)
        _require_positive_int("n_critic", self.n_critic)
        for net in NETWORKS:
            layers = getattr(self, net)
            if not layers:
                raise SpecError(f"{net} has no layers")
            for i, layer in enumerate(layers):
                if not isinstance(layer, Layer):
                    raise SpecError(f"{net} layer {i} is not a layer spec: {layer!r}")
        g_out = self.layer_shapes("generator")[-1][1]
        if g_out != self.data_shape:
            raise SpecError(f"generator output shape {g_out} does not match data_shape {self.data_shape}")
        d_out = self.layer_shapes("discriminator")[-1][1]
        if d_out != (1,):
            raise SpecError(f"discriminator must end in one logit per sample, shape (1,), got {d_out}")
        for key in ("g_optimizer", "d_optimizer"):
            if not isinstance(getattr(self, key), tuple(OPTIMIZER_TYPES.values())):
                raise SpecError(
                    f"{key} must be an optimiser spec ({', '.join(OPTIMIZER_TYPES)}), got {getattr(self, key)!r}"
                )
        if self.loss.penalty != "none":
            for i, layer in enumerate(self.discriminator):
                if isinstance(layer, BatchNorm):
                    raise SpecError(
                        f"discriminator layer {i} {layer.describe()}: a gradient penalty ({self.loss.penalty}) is "
                        "per sample, and BatchNorm mixes the batch; drop it from the critic (Gulrajani et al. "
                        "2017, section 4) or use no penalty"
                    )

    def input_shape(self, net: str) -> Shape:
        return (self.latent_dim,) if net == "generator" else self.data_shape

    def layers(self, net: str) -> tuple[Layer, ...]:
        if net not in NETWORKS:
            raise ValueError(f"unknown network {net!r}; known: {', '.join(NETWORKS)}")
        return getattr(self, net)

    def has_buffers(self) -> bool:
        """Whether any layer keeps running state (BatchNorm)."""
        return any(isinstance(layer, BatchNorm) for net in NETWORKS for layer in self.layers(net))

    def layer_shapes(self, net: str) -> list[tuple[Shape, Shape]]:
        """``(input_shape, output_shape)`` of every layer of ``net``, inferred in order."""
        shape = self.input_shape(net)
        shapes = []
        for i, layer in enumerate(self.layers(net)):
            try:
                out = layer.output_shape(shape)
            except SpecError as exc:
                raise SpecError(f"{net} layer {i} {layer.describe()}: input shape {shape}: {exc}") from None
            shapes.append((shape, out))
            shape = out
        return shapes

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_shape": list(self.data_shape),
            "latent_dim": self.latent_dim,
            "generator": [layer.to_dict() for layer in self.generator],
            "discriminator": [layer.to_dict() for layer in self.discriminator],
            "loss": dataclasses.asdict(self.loss),
            "g_optimizer": dataclasses.asdict(self.g_optimizer),
            "d_optimizer": dataclasses.asdict(self.d_optimizer),
            "n_critic": self.n_critic,
            "numerics": dataclasses.asdict(self.numerics),
            "init": dataclasses.asdict(self.init),
            "data_parallel": dataclasses.asdict(self.data_parallel),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        try:
            for net in NETWORKS:
                if net in kwargs:
                    kwargs[net] = tuple(layer_from_dict(item) for item in kwargs[net])
            sections = (
                ("loss", LossSpec),
                ("numerics", Numerics),
                ("init", InitSpec),
                ("data_parallel", DataParallelSpec),
            )
            for key, sub in sections:
                if key in kwargs:
                    kwargs[key] = sub(**kwargs[key])
            for key in ("g_optimizer", "d_optimizer"):
                if key in kwargs:
                    kwargs[key] = optimizer_from_dict(kwargs[key])
            return cls(**kwargs)
        except TypeError as exc:
            raise SpecError(f"bad spec: {exc}") from None

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> GANSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> GANSpec:
        return cls.from_json(Path(path).read_text())

    def to_fields(self) -> dict[str, Any]:
        """The constructor's keyword arguments (the inverse of ``GANSpec(**fields)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> GANSpec:
        return dataclasses.replace(self, **changes)


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def _require_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{name} must be true or false, got {value!r}")
