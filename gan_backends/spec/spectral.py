"""Spectral normalisation of a kernel (Miyato et al. 2018), as SNGAN's discriminator uses it.

The option ``"spectral_norm": {"n_power_iterations": 1, "eps": 1e-12}`` on a ``Dense`` or
``Conv2D`` layer (absent: off) replaces the kernel by ``kernel / σ`` before the layer applies
it. The semantics are ``torch.nn.utils.spectral_norm``'s (the form SNGAN ports use):

* The kernel viewed as a matrix ``W`` of shape ``(out, fan_in)``: ``W = kernel.reshape(-1,
  out).T``, the row-major reshape of the canonical kernel (Dense ``(in, out)``: ``W =
  kernel.T``, torch's ``Linear.weight``; Conv2D HWIO: ``fan_in`` ordered ``(kh, kw, in)``, where
  torch's ``Conv2d.weight.reshape(out, -1)`` orders it ``(in, kh, kw)``). σ does not depend on
  the column order, the stored ``v`` does: ``sn_v`` is canonical in ``(kh, kw, in)`` order and
  the torch backend permutes it at its boundary (:func:`v_to_torch`, :func:`v_from_torch`).
* Buffers ``sn_u`` ``(out,)`` and ``sn_v`` ``(fan_in,)``, drawn once in NumPy (N(0, 1),
  normalised; :func:`gan_backends.params.init_buffers`).
* A training-mode call runs ``n_power_iterations`` of ``v = normalize(Wᵀu)``, ``u =
  normalize(W v)`` from the stored ``u`` (``normalize(x) = x / max(‖x‖, eps)``, torch's
  ``F.normalize``), then ``σ = uᵀ W v`` with ``u``, ``v`` constants of the gradient, so
  ``dL/dW = (G − ⟨G, W/σ⟩ u vᵀ) / σ`` with ``G = dL/d(W/σ)``. Only ``train_step``'s calls store
  the new ``u``, ``v`` (one update per call, BatchNorm's rule, docs/conv-gans.md); every other
  training-mode call (``loss_terms``, ``gradients``, ``activations(training=True)``) iterates
  from the stored vectors and keeps nothing.
* An inference call iterates nothing: ``σ = uᵀ W v`` from the stored ``u``, ``v``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Shape, SpecError, _require_positive_int
from .fields import field_problems


@dataclass(frozen=True, kw_only=True)
class SpectralNormSpec:
    """``n_power_iterations`` per training call (torch's default 1) and ``eps``, the floor of a
    norm in ``normalize`` (torch's 1e-12; Flax adds its eps to the squared norm instead)."""

    n_power_iterations: int = 1
    eps: float = 1e-12

    def __post_init__(self) -> None:
        _require_positive_int("spectral_norm.n_power_iterations", self.n_power_iterations)
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise SpecError(f"spectral_norm.eps must be a positive number, got {eps!r}")
        object.__setattr__(self, "eps", float(eps))


def parse_spectral_norm(owner: str, value: Any) -> SpectralNormSpec | None:
    """The option as given in a layer: ``None`` (off), a :class:`SpectralNormSpec`, or its dict
    (``{}`` takes the defaults); any problem is a :class:`SpecError` naming ``owner.spectral_norm``."""
    if value is None or isinstance(value, SpectralNormSpec):
        return value
    if not isinstance(value, dict):
        raise SpecError(f'{owner}.spectral_norm must be an object like {{"n_power_iterations": 1}}, got {value!r}')
    problems = field_problems(SpectralNormSpec, value)
    if problems:
        raise SpecError(f"{owner}.spectral_norm: {'; '.join(problems)}")
    try:
        return SpectralNormSpec(**value)
    except SpecError as exc:
        raise SpecError(f"{owner}.{exc}") from None


def matrix_shape(kernel_shape: Shape) -> tuple[int, int]:
    """``(out, fan_in)`` of the matrix ``W = kernel.reshape(-1, out).T`` of a Dense or Conv2D kernel."""
    return kernel_shape[-1], math.prod(kernel_shape[:-1])


def buffer_shapes(kernel_shape: Shape) -> dict[str, Shape]:
    """The layer's spectral-norm buffers: ``sn_u`` ``(out,)``, ``sn_v`` ``(fan_in,)``."""
    out, fan_in = matrix_shape(kernel_shape)
    return {"sn_u": (out,), "sn_v": (fan_in,)}


def initial_vector(rng: np.random.Generator, size: int, eps: float) -> np.ndarray:
    """A starting ``u`` or ``v``: N(0, 1) normalised, as torch's ``spectral_norm`` draws them."""
    x = rng.standard_normal(size)
    return x / max(float(np.linalg.norm(x)), eps)


def _conv_dims(kernel_shape: Shape) -> tuple[int, ...] | None:
    """``(kh, kw, in)`` of a conv kernel, None for a Dense one (whose v needs no permutation)."""
    return tuple(kernel_shape[:-1]) if len(kernel_shape) == 4 else None


def v_to_torch(v: np.ndarray, kernel_shape: Shape) -> np.ndarray:
    """Canonical ``sn_v`` (``(kh, kw, in)`` order) -> torch's ``weight_v`` (``(in, kh, kw)``)."""
    dims = _conv_dims(kernel_shape)
    return v if dims is None else np.asarray(v).reshape(dims).transpose(2, 0, 1).reshape(-1)


def v_from_torch(v: np.ndarray, kernel_shape: Shape) -> np.ndarray:
    """torch's ``weight_v`` -> canonical ``sn_v``: the inverse of :func:`v_to_torch`."""
    dims = _conv_dims(kernel_shape)
    if dims is None:
        return v
    kh, kw, c = dims
    return np.asarray(v).reshape(c, kh, kw).transpose(1, 2, 0).reshape(-1)


__all__ = [
    "SpectralNormSpec",
    "buffer_shapes",
    "initial_vector",
    "matrix_shape",
    "parse_spectral_norm",
    "v_from_torch",
    "v_to_torch",
]
