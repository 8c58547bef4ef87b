"""The resampling and pooling layers of SNGAN/SAGAN-style ResNets: ``Upsample``, ``AvgPool2D``,
``GlobalSumPool``.

None has parameters; each is linear in its input. Their meanings are pinned down here once,
as explicit rules every backend applies (:meth:`Upsample.taps`, :meth:`AvgPool2D.pads`,
:meth:`AvgPool2D.divisors`), because the frameworks' defaults disagree (docs/framework-differences.md):
torch's ``nn.Upsample`` and Keras' ``UpSampling2D`` default to nearest while
``jax.image.resize`` has no default method; torch's ``avg_pool2d`` counts padded zeros
(``count_include_pad=True``), TensorFlow's 'SAME' average pooling does not. The classes are
registered in :data:`~gan_backends.spec.layers.LAYER_TYPES` on import (the package imports this
module), so ``layer_from_dict`` reads them like every other layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from .base import Shape, SpecError, _require_bool, _require_positive_int
from .layers import LAYER_TYPES, Layer, Padding, _check_padding, _require_image, conv_pads

UpsampleMethod = Literal["nearest", "bilinear"]
#: One output pixel of a 1-D resampling: ``(i0, i1, lam)``, the value ``(1 - lam)·x[i0] + lam·x[i1]``.
Tap = tuple[int, int, float]


@dataclass(frozen=True, kw_only=True)
class Upsample(Layer):
    """Upsampling of a channels-last ``(H, W, C)`` image by an integer ``factor`` k to ``(H·k, W·k, C)``.

    Separable: each spatial axis of size ``n`` is resampled on its own, output pixel ``o`` being
    ``(1 - lam)·x[i0] + lam·x[i1]`` with ``(i0, i1, lam) = taps(n)[o]``:

    - ``method='nearest'``: ``i0 = i1 = floor(o / k)`` (torch 'nearest' and 'nearest-exact',
      ``tf.image.resize``'s and ``jax.image.resize``'s 'nearest' and Keras ``UpSampling2D`` all
      agree for an integer factor: each pixel repeated k times).
    - ``method='bilinear'``, ``align_corners=False``: half-pixel centres, the source coordinate
      ``src = max((o + 0.5) / k - 0.5, 0)``, ``i0 = floor(src)``, ``i1 = min(i0 + 1, n - 1)``,
      ``lam = src - i0`` (edges clamped): torch ``F.interpolate(mode='bilinear',
      align_corners=False)``, TF2 ``tf.image.resize(method='bilinear')``, Keras
      ``UpSampling2D(interpolation='bilinear')``, ``jax.image.resize(method='bilinear')``.
    - ``method='bilinear'``, ``align_corners=True``: the corner pixels' centres align,
      ``src = o·(n - 1)/(n·k - 1)`` (0 when ``n·k = 1``): torch's ``align_corners=True``, TF1's
      ``tf.compat.v1.image.resize(align_corners=True)``; JAX has no flag for it.

    ``method`` is required: the frameworks' defaults differ (torch and Keras nearest, JAX none).
    ``align_corners`` with nearest is refused, as torch refuses it.
    """

    type_name: ClassVar[str] = "Upsample"
    factor: int
    method: UpsampleMethod
    align_corners: bool = False

    def __post_init__(self) -> None:
        _require_positive_int("Upsample.factor", self.factor)
        if self.method not in ("nearest", "bilinear"):
            raise SpecError(f"Upsample.method must be 'nearest' or 'bilinear', got {self.method!r}")
        _require_bool("Upsample.align_corners", self.align_corners)
        if self.align_corners and self.method == "nearest":
            raise SpecError("Upsample.align_corners applies to method='bilinear' only (torch refuses it with nearest)")

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("Upsample", input_shape)
        h, w, c = input_shape
        return (h * self.factor, w * self.factor, c)

    def taps(self, size: int) -> list[Tap]:
        """``(i0, i1, lam)`` of every output pixel along an input axis of ``size`` pixels (class docstring)."""
        k, out = self.factor, size * self.factor
        if self.method == "nearest":
            return [(o // k, o // k, 0.0) for o in range(out)]
        taps = []
        for o in range(out):
            if self.align_corners:
                src = o * (size - 1) / (out - 1) if out > 1 else 0.0
            else:
                src = max((o + 0.5) / k - 0.5, 0.0)
            i0 = min(int(math.floor(src)), size - 1)
            taps.append((i0, min(i0 + 1, size - 1), src - i0))
        return taps


@dataclass(frozen=True, kw_only=True)
class AvgPool2D(Layer):
    """Average pooling over ``pool × pool`` windows of a channels-last image, moved by ``stride``
    (default ``pool``), after the zero padding ``pads`` (:func:`~gan_backends.spec.conv_pads`:
    an int both sides, ``'same'`` TensorFlow's, odd pixel at the bottom/right, ``'valid'`` none)::

        y[o] = (sum of the pool² values of window o of the padded input) / divisors[o]

    ``divisors[o]`` is ``pool²`` when ``count_include_pad`` (the padded zeros count: torch's
    ``avg_pool2d`` default, Flax ``nn.avg_pool``'s default) and the number of the window's pixels
    inside the unpadded image when not (TensorFlow/Keras 'same', torch
    ``count_include_pad=False``). Where padding is applied, ``count_include_pad`` must be given:
    the frameworks' defaults differ. An int padding must be smaller than ``pool`` (no window of
    padding only); output size ``(H + top + bottom - pool) // stride + 1``.
    """

    type_name: ClassVar[str] = "AvgPool2D"
    pool: int
    stride: int | None = None
    padding: Padding = 0
    count_include_pad: bool | None = None

    def __post_init__(self) -> None:
        _require_positive_int("AvgPool2D.pool", self.pool)
        if self.stride is None:
            object.__setattr__(self, "stride", self.pool)
        _require_positive_int("AvgPool2D.stride", self.stride)
        object.__setattr__(self, "padding", _check_padding("AvgPool2D", self.padding))
        if self.count_include_pad is not None:
            _require_bool("AvgPool2D.count_include_pad", self.count_include_pad)
        if isinstance(self.padding, int) and self.padding >= self.pool:
            raise SpecError(
                f"AvgPool2D.padding {self.padding} must be smaller than pool {self.pool}: a window of padding only"
            )
        if isinstance(self.padding, int) and self.padding:
            self._require_count_include_pad()

    def _require_count_include_pad(self) -> None:
        if self.count_include_pad is None:
            raise SpecError(
                f"AvgPool2D.count_include_pad must be given with padding {self.padding!r}: whether the padded zeros "
                "count in the average differs by framework (torch avg_pool2d and flax avg_pool: true; TensorFlow/"
                "Keras 'same': false)"
            )

    def pads(self, input_shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """Explicit ``((top, bottom), (left, right))`` zero padding for this input."""
        return tuple(conv_pads(n, self.pool, self.stride, self.padding) for n in input_shape[:2])  # type: ignore[return-value, arg-type]

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("AvgPool2D", input_shape)
        pads = self.pads(input_shape)
        if any(p for pair in pads for p in pair):
            self._require_count_include_pad()
        out = []
        for n, (lo, hi) in zip(input_shape[:2], pads):
            if n + lo + hi < self.pool:
                raise SpecError(f"pool {self.pool} is larger than the padded input {n + lo + hi}")
            out.append((n + lo + hi - self.pool) // self.stride + 1)  # type: ignore[operator]
        return (out[0], out[1], input_shape[2])

    def divisors(self, input_shape: Shape) -> tuple[tuple[int, ...], ...]:
        """The ``(Ho, Wo)`` divisor of every output pixel (class docstring)."""
        ho, wo, _ = self.output_shape(input_shape)
        if self.count_include_pad or not any(p for pair in self.pads(input_shape) for p in pair):
            return tuple((self.pool**2,) * wo for _ in range(ho))
        (top, _), (left, _) = self.pads(input_shape)
        h, w = input_shape[:2]

        def inside(o: int, before: int, size: int) -> int:
            start = o * self.stride - before  # type: ignore[operator]
            return min(start + self.pool, size) - max(start, 0)

        return tuple(tuple(inside(i, top, h) * inside(j, left, w) for j in range(wo)) for i in range(ho))


@dataclass(frozen=True, kw_only=True)
class GlobalSumPool(Layer):
    """``(H, W, C) -> (C,)``: the sum over both spatial axes, ``y[c] = Σ_{h,w} x[h, w, c]``
    (SNGAN's discriminator head, ``torch.sum(h, dim=(2, 3))``; a sum, not Keras' global mean)."""

    type_name: ClassVar[str] = "GlobalSumPool"

    def output_shape(self, input_shape: Shape) -> Shape:
        _require_image("GlobalSumPool", input_shape)
        return (input_shape[2],)


RESAMPLE_LAYERS: tuple[type[Layer], ...] = (Upsample, AvgPool2D, GlobalSumPool)
LAYER_TYPES.update({cls.type_name: cls for cls in RESAMPLE_LAYERS})
