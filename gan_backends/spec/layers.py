"""The layer specs: each layer knows its output shape and its parameter shapes; nothing else.

``Dense``, the activations (``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``), ``Reshape``,
``Flatten``, ``Conv2D`` and ``ConvTranspose2D`` (with the padding and crop rules every backend
applies, :func:`conv_pads` and :func:`conv_transpose_crops`) and ``BatchNorm`` (with the one
running-statistics rule, :meth:`BatchNorm.running_update`). Every type is registered in one
table, :data:`LAYER_TYPES`, which :func:`layer_from_dict` reads: adding a layer type is one
class here plus one entry there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .base import Shape, SpecError, _require_bool, _require_positive_int
from .fields import did_you_mean, field_problems
from .spectral import SpectralNormSpec, parse_spectral_norm
from .spectral import buffer_shapes as sn_buffer_shapes


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
        shown = [f for f in dataclasses.fields(self) if not (getattr(self, f.name) is None and f.default is None)]
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in shown)
        return f"{self.type_name}({fields})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:  # an unset option: absent, as in the files before it
                continue
            if dataclasses.is_dataclass(value):  # an option object (spectral_norm)
                value = dataclasses.asdict(value)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """Fully connected layer ``y = x @ kernel + bias``; canonical kernel shape ``(in, out)``.
    ``spectral_norm``: the kernel divided by its spectral norm (:mod:`.spectral`)."""

    type_name: ClassVar[str] = "Dense"
    units: int
    use_bias: bool = True
    spectral_norm: SpectralNormSpec | None = None

    def __post_init__(self) -> None:
        _require_positive_int("Dense.units", self.units)
        _require_bool("Dense.use_bias", self.use_bias)
        object.__setattr__(self, "spectral_norm", parse_spectral_norm("Dense", self.spectral_norm))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise SpecError(f"expects a flat input (features,), got {input_shape}; add a Flatten first")
        return (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"kernel": (input_shape[0], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {} if self.spectral_norm is None else sn_buffer_shapes((input_shape[0], self.units))


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
    """Reshape each sample to ``shape`` (row-major, canonical channels-last order).

    ``order="channels_first"`` (an image ``shape`` only) reads the features in ``(C, H, W)``
    order and gives the same channels-last image: what torch's ``h.view(N, C, H, W)`` after a
    ``Linear`` computes (SNGAN's generators), so such a model is described without permuting
    its ``Linear``'s rows."""

    type_name: ClassVar[str] = "Reshape"
    shape: Shape
    order: str | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not shape:
            raise SpecError(f"Reshape.shape must be a non-empty tuple of ints, got {self.shape!r}")
        for dim in shape:
            _require_positive_int("Reshape.shape", dim)
        object.__setattr__(self, "shape", shape)
        if self.order not in (None, "channels_first"):
            raise SpecError(f"Reshape.order must be 'channels_first' or absent, got {self.order!r}")
        if self.order and len(shape) != 3:
            raise SpecError(f"Reshape.order 'channels_first' needs an image shape (H, W, C), got {shape}")

    @property
    def read_shape(self) -> Shape:
        """The shape the features are read in: ``(C, H, W)`` for ``channels_first``; then
        axes ``(1, 2, 0)`` of it are the canonical ``shape``."""
        return (self.shape[2], self.shape[0], self.shape[1]) if self.order else self.shape

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
    ``spectral_norm``: the kernel divided by its spectral norm (:mod:`.spectral`).
    """

    type_name: ClassVar[str] = "Conv2D"
    filters: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    use_bias: bool = True
    spectral_norm: SpectralNormSpec | None = None

    def __post_init__(self) -> None:
        _require_positive_int("Conv2D.filters", self.filters)
        _require_positive_int("Conv2D.kernel", self.kernel)
        _require_positive_int("Conv2D.stride", self.stride)
        object.__setattr__(self, "padding", _check_padding("Conv2D", self.padding))
        _require_bool("Conv2D.use_bias", self.use_bias)
        object.__setattr__(self, "spectral_norm", parse_spectral_norm("Conv2D", self.spectral_norm))

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

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kernel = (self.kernel, self.kernel, input_shape[2], self.filters)
        return {} if self.spectral_norm is None else sn_buffer_shapes(kernel)


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
    ``1 - momentum`` their momentum (0.99). A momentum above 0.5 is almost surely Keras' or
    Flax's number written where torch's is meant (their 0.99 is torch's 0.01: running statistics
    that hardly move), so it is refused unless ``momentum_convention`` says which is meant:
    ``"keras"`` (also Flax's: the weight of the running value; stored as ``1 - momentum``) or
    ``"torch"`` (the number as given). ``running_var='unbiased'`` stores var_B·n/(n−1) as
    torch does; ``'biased'`` stores var_B as Keras and Flax do. Parameters ``scale`` (gamma) and
    ``bias`` (beta), shape ``(C,)``; buffers ``running_mean`` (starts 0) and ``running_var``
    (starts 1). Every network call in training updates the running statistics once.
    """

    type_name: ClassVar[str] = "BatchNorm"
    momentum: float = 0.1
    eps: float = 1e-5
    running_var: RunningVariance = "unbiased"
    momentum_convention: Literal["torch", "keras"] | None = None

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
        if self.momentum_convention not in (None, "torch", "keras"):
            raise SpecError(
                f"BatchNorm.momentum_convention must be 'torch' or 'keras', got {self.momentum_convention!r}"
            )
        if self.momentum_convention == "keras":  # stored in torch's form, said so explicitly
            object.__setattr__(self, "momentum", 1.0 - self.momentum)
            object.__setattr__(self, "momentum_convention", "torch")
        elif self.momentum > 0.5 and self.momentum_convention is None:
            raise SpecError(
                f"BatchNorm.momentum {self.momentum:g} is the weight of the new batch statistic here (torch's "
                f"convention, default 0.1); {self.momentum:g} looks like Keras'/Flax's momentum, the weight of the "
                f"running value, which is {1.0 - self.momentum:.6g} here. Write {1.0 - self.momentum:.6g}, or add "
                '"momentum_convention": "keras" to keep Keras\' number, or "momentum_convention": "torch" if '
                f"{self.momentum:g} is meant"
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

    def variance_factor(self, n: int) -> float:
        """What the biased batch variance over ``n`` values per channel is multiplied by before it
        enters the running variance: ``n / (n - 1)`` for ``running_var='unbiased'`` (torch's
        Bessel correction, which needs ``n ≥ 2``), 1 for ``'biased'`` (Keras, Flax)."""
        if self.running_var == "biased":
            return 1.0
        if n < 2:
            raise ValueError(f"BatchNorm with running_var='unbiased' needs more than 1 value per channel, got {n}")
        return n / (n - 1)

    def running_update(self, running_mean: Any, running_var: Any, mean: Any, var: Any, n: int) -> tuple[Any, Any]:
        """The running statistics after one training call whose batch mean is ``mean`` and whose
        biased variance is ``var`` over ``n`` values per channel (arrays of any framework)::

            running_mean <- (1 - momentum) * running_mean + momentum * mean
            running_var  <- (1 - momentum) * running_var  + momentum * var * variance_factor(n)
        """
        m, factor = self.momentum, self.variance_factor(n)
        return (1.0 - m) * running_mean + m * mean, (1.0 - m) * running_var + m * (var * factor)


def _require_image(name: str, input_shape: Shape) -> None:
    if len(input_shape) != 3:
        raise SpecError(f"{name} expects an image (H, W, C), got {input_shape}; add a Reshape first")


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (Dense, Conv2D, ConvTranspose2D, BatchNorm, ReLU, LeakyReLU, Tanh, Sigmoid, Reshape, Flatten)
}


def layer_from_dict(data: dict[str, Any], where: str = "layer") -> Layer:
    """The layer described by ``data`` (``{"type": "Dense", "units": 8}``); a :class:`SpecError`
    names ``where`` it is (``generator layer 3``), its type, and every unknown or missing field
    with the field meant."""
    if not isinstance(data, dict) or "type" not in data:
        raise SpecError(f"{where}: a layer must be an object with a 'type' field, got {data!r}")
    kwargs = dict(data)
    type_name = kwargs.pop("type")
    cls = LAYER_TYPES.get(type_name)
    if cls is None:
        hint = did_you_mean(str(type_name), LAYER_TYPES)
        raise SpecError(f"{where}: unknown layer type {type_name!r}{hint}; known: {', '.join(LAYER_TYPES)}")
    if hasattr(cls, "from_fields"):  # a block (spec/blocks.py): its sublayers' errors name their paths
        return cls.from_fields(kwargs, where)
    problems = field_problems(cls, kwargs)
    if problems:
        raise SpecError(f"{where} {type_name}: {'; '.join(problems)}")
    try:
        return cls(**kwargs)
    except SpecError as exc:
        raise SpecError(f"{where} {type_name}: {exc}") from None
