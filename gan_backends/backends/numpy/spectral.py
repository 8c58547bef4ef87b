"""Spectral normalisation in the float64 reference: the power iteration, σ, and the backward
through ``W / σ(W)`` (semantics: :mod:`gan_backends.spec.spectral`).

:func:`spectral` wraps a kernel layer's ``(forward, backward)`` pair of ``LAYER_MATH``: with the
layer's ``spectral_norm`` set, the forward hands the layer ``kernel / σ`` and keeps ``u``, ``v``,
σ; the backward turns the layer's gradient w.r.t. that normalised kernel into the gradient
w.r.t. the kernel. Derivation, in matrix form (``W`` ``(out, fan_in)``, ``W_sn = W / σ``,
``σ = uᵀ W v`` with ``u``, ``v`` held constant, ``G = dL/dW_sn``)::

    dσ = uᵀ dW v = ⟨u vᵀ, dW⟩
    dW_sn = dW / σ − W dσ / σ²
    dL = ⟨G, dW_sn⟩ = ⟨G, dW⟩ / σ − ⟨G, W⟩ ⟨u vᵀ, dW⟩ / σ²
    dL/dW = (G − ⟨G, W_sn⟩ u vᵀ) / σ

``tests/test_spectral_norm.py`` holds it against central differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...spec.spectral import SpectralNormSpec


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """``x / max(‖x‖, eps)``: torch's ``F.normalize``."""
    return x / max(float(np.linalg.norm(x)), eps)


def power_iteration(w: np.ndarray, u: np.ndarray, v: np.ndarray, sn: SpectralNormSpec) -> tuple[np.ndarray, np.ndarray]:
    """``n_power_iterations`` of ``v = normalize(Wᵀu)``, ``u = normalize(W v)`` (torch's order;
    the starting ``v`` is not read, as in torch)."""
    for _ in range(sn.n_power_iterations):
        v = normalize(w.T @ u, sn.eps)
        u = normalize(w @ v, sn.eps)
    return u, v


@dataclass
class SNCache:
    """What the backward and the buffer update need: the inner layer's cache, the matrix, the
    vectors used and σ."""

    inner: Any
    w: np.ndarray  # (out, fan_in)
    u: np.ndarray
    v: np.ndarray
    sigma: float
    training: bool


def normalised_kernel(layer: Any, p: dict[str, np.ndarray], training: bool) -> tuple[np.ndarray, SNCache]:
    """``kernel / σ`` and its cache (``inner`` unset); training iterates from the stored ``u``."""
    kernel = p["kernel"]
    w = kernel.reshape(-1, kernel.shape[-1]).T
    u, v = p["sn_u"], p["sn_v"]
    if training:
        u, v = power_iteration(w, u, v, layer.spectral_norm)
    sigma = float(u @ (w @ v))
    return kernel / sigma, SNCache(None, w, u, v, sigma, training)


def kernel_grad(g_sn: np.ndarray, cache: SNCache) -> np.ndarray:
    """``dL/dkernel`` from ``g_sn = dL/d(kernel / σ)`` (canonical kernel shape): the module
    docstring's ``(G − ⟨G, W_sn⟩ u vᵀ) / σ``."""
    g = g_sn.reshape(-1, g_sn.shape[-1]).T  # G as (out, fan_in), as W
    inner = float(np.sum(g * cache.w)) / cache.sigma  # ⟨G, W_sn⟩
    dw = (g - inner * np.outer(cache.u, cache.v)) / cache.sigma
    return dw.T.reshape(g_sn.shape)


def spectral(forward, backward):
    """A kernel layer's ``(forward, backward)`` with its ``spectral_norm`` applied when set."""

    def fwd(layer, p, x, *, training: bool = False):
        if layer.spectral_norm is None:
            return forward(layer, p, x, training=training)
        kernel, cache = normalised_kernel(layer, p, training)
        y, cache.inner = forward(layer, {**p, "kernel": kernel}, x, training=training)
        return y, cache

    def bwd(layer, p, cache, dy):
        if layer.spectral_norm is None:
            return backward(layer, p, cache, dy)
        kernel = cache.w.T.reshape(p["kernel"].shape) / cache.sigma  # what the forward applied
        dx, grads = backward(layer, {**p, "kernel": kernel}, cache.inner, dy)
        grads["kernel"] = kernel_grad(grads["kernel"], cache)
        return dx, grads

    return fwd, bwd


def buffer_update(cache: SNCache) -> dict[str, np.ndarray]:
    """The stored vectors after one training call: the ones its power iteration ended with."""
    return {"sn_u": cache.u, "sn_v": cache.v}
