"""Layout conversions between the canonical tree and the frameworks' native storage, written once.

The canonical layout (``docs/layouts.md``) is channels-last: Dense kernel ``(in, out)``, Conv2D
kernel HWIO ``(kh, kw, in, out)``, ConvTranspose2D kernel ``(kh, kw, out, in)``. Biases,
BatchNorm scales and statistics are 1-D everywhere. The native layouts:

``torch``
    ``nn.Linear.weight`` ``(out, in)`` = kernel.T; ``nn.Conv2d.weight`` OIHW and
    ``nn.ConvTranspose2d.weight`` ``(in, out, kh, kw)`` are both ``kernel.transpose(3, 2, 0, 1)``
    (no spatial flip). Spectral norm's ``weight_v`` of a ``Conv2d`` runs ``(in, kh, kw)`` (the
    columns of ``weight.reshape(out, -1)``), the canonical ``sn_v`` ``(kh, kw, in)``
    (:func:`gan_backends.spec.spectral.v_to_torch`); it needs the spec layer.
``flax``
    Dense and Conv as canonical; ``nn.ConvTranspose`` with ``transpose_kernel=False`` (its
    default) stores ``(kh, kw, in, out)`` and runs a plain correlation over the stride-dilated
    input, so its kernel is the canonical one flipped in both spatial axes with the channel axes
    swapped: ``canonical[::-1, ::-1].transpose(0, 1, 3, 2)`` (an involution).
``canonical``
    Keras (``Dense`` ``(in, out)``, ``Conv2D`` HWIO, ``Conv2DTranspose`` ``(kh, kw, out, in)``),
    this project's JAX backend and safetensors files.

Used by the backends at their boundary and by the port when it reads and writes native files.
"""

from __future__ import annotations

import numpy as np

from .spec import Conv2D, ConvTranspose2D, Layer
from .spec.spectral import v_from_torch, v_to_torch

LAYOUTS: tuple[str, ...] = ("canonical", "torch", "flax")


def _check(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


# torch's kernel axes, by kernel rank: the permutation canonical -> torch and its inverse.
_TORCH_PERMUTATION = {2: ((1, 0), (1, 0)), 4: ((3, 2, 0, 1), (2, 3, 1, 0))}


def _convert(layout: str, role: str, array: np.ndarray, layer: Layer | None, *, inverse: bool) -> np.ndarray:
    _check(layout)
    if role == "sn_v" and layout == "torch" and isinstance(layer, Conv2D):
        return _torch_conv_v(array, layer, inverse=inverse)
    if role != "kernel":
        return array
    if layout == "torch" and array.ndim in _TORCH_PERMUTATION:
        return array.transpose(_TORCH_PERMUTATION[array.ndim][inverse])
    if layout == "flax" and isinstance(layer, ConvTranspose2D) and array.ndim == 4:
        return array[::-1, ::-1].transpose(0, 1, 3, 2)  # an involution: its own inverse
    return array


def _torch_conv_v(array: np.ndarray, layer: Conv2D, *, inverse: bool) -> np.ndarray:
    """A Conv2D's spectral-norm ``v`` between canonical ``(kh, kw, in)`` and torch's ``(in, kh,
    kw)`` order; a length that is no ``k·k·in`` is left as it is (the port's shape check names it)."""
    k = layer.kernel
    if array.ndim != 1 or array.size % (k * k):
        return array
    kernel_shape = (k, k, array.size // (k * k), layer.filters)
    return (v_from_torch if inverse else v_to_torch)(array, kernel_shape)


def to_native(layout: str, role: str, array: np.ndarray, layer: Layer | None = None) -> np.ndarray:
    """A canonical array of a layer's ``role`` (``kernel``, ``bias``, ...) in ``layout``.
    ``layer`` (the spec layer) is needed for Flax's transposed-convolution kernel and torch's
    conv ``sn_v`` only."""
    return _convert(layout, role, array, layer, inverse=False)


def from_native(layout: str, role: str, array: np.ndarray, layer: Layer | None = None) -> np.ndarray:
    """The inverse of :func:`to_native`: a native array of ``role`` in canonical layout."""
    return _convert(layout, role, array, layer, inverse=True)


def role_of(name: str) -> str:
    """The role of a canonical tree name: ``generator.0.kernel`` → ``kernel``; a layer with several
    kernels names each ``<part>_kernel`` (SelfAttention's ``query_kernel``), whose role is ``kernel``."""
    role = name.rsplit(".", 1)[-1]
    return "kernel" if role.endswith("_kernel") else role


__all__ = ["LAYOUTS", "from_native", "role_of", "to_native"]
