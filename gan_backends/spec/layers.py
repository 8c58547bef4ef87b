"""The layer specs: each layer knows its output shape and its parameter shapes; nothing else.

``Dense``, the activations (``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``), ``Reshape``,
``Flatten``, ``Conv2D`` and ``ConvTranspose2D`` (with the padding and crop rules every backend
applies, :func:`conv_pads` and :func:`conv_transpose_crops`); ``BatchNorm`` is in
:mod:`~gan_backends.spec.batchnorm`. Every type is registered in one
table, :data:`LAYER_TYPES`, which :func:`layer_from_dict` reads: adding a layer type is one
class here plus one entry there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

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


def _require_image(name: str, input_shape: Shape) -> None:
    if len(input_shape) != 3:
        raise SpecError(f"{name} expects an image (H, W, C), got {input_shape}; add a Reshape first")


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls for cls in (Dense, Conv2D, ConvTranspose2D, ReLU, LeakyReLU, Tanh, Sigmoid, Reshape, Flatten)
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
