"""The spec's ``sn_u``, ``sn_v`` from what Keras' and Flax's own spectral normalisations store.

The spec's inference divides the kernel by ``σ = uᵀ W v`` from the stored vectors, no
iteration (torch's ``spectral_norm`` in eval mode; ``W = kernel.reshape(-1, out).T``,
:mod:`gan_backends.spec.spectral`). Neither framework stores that pair, so each is derived from
its file, in float64, so that the spec's σ is the one the framework's own inference applies:

* **Keras** ``SpectralNormalization`` stores ``vector_u`` ``(1, out)`` and a kernel it already
  divided by σ in its last training call; its inference applies that kernel as stored, no σ.
  With ``v = Wᵀu / ‖Wᵀu‖²`` the spec's ``σ = uᵀWv = ‖Wᵀu‖² / ‖Wᵀu‖² = 1`` exactly, so the spec
  applies the stored kernel as Keras does. ``v`` is not a unit vector, but nothing reads its
  norm: a training call recomputes ``v = normalize(Wᵀu)`` from ``u`` first, as torch does.
* **Flax** ``nn.SpectralNorm`` stores ``u`` ``(1, out)`` (and the ``sigma`` of its last update,
  which its inference does not read) and, even with ``update_stats=False``, runs ``n_steps``
  of ``v = l2n(u Wᵀ)``, ``u = l2n(v W)`` from the stored ``u`` before ``σ = v W uᵀ``
  (``l2n(x) = x · rsqrt(Σx² + eps)``, flax/linen/normalization.py). Running that same
  iteration here and storing its last ``(u, v)`` makes the spec's ``uᵀWv`` Flax's σ.
"""

from __future__ import annotations

import numpy as np

from .native import PortError


def _matrix(kernel: np.ndarray) -> np.ndarray:
    """``W`` ``(out, fan_in)``, the spec's (and both frameworks') matrix view of a kernel."""
    kernel = np.asarray(kernel, np.float64)
    return kernel.reshape(-1, kernel.shape[-1]).T


def keras_vectors(kernel: np.ndarray, vector_u: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(sn_u, sn_v)`` of a Keras ``SpectralNormalization`` layer: ``u`` as stored, ``v = Wᵀu /
    ‖Wᵀu‖²`` so that ``uᵀWv = 1`` and the spec applies the stored kernel as Keras' inference does."""
    w = _matrix(kernel)
    u = np.asarray(vector_u, np.float64).reshape(-1)
    if u.shape != (w.shape[0],):
        raise PortError(f"{where}: vector_u {np.shape(vector_u)} does not fit the kernel {np.shape(kernel)}")
    wtu = w.T @ u
    squared = float(wtu @ wtu)
    if not np.isfinite(squared) or squared == 0.0:
        raise PortError(f"{where}: Wᵀu is {'zero' if squared == 0.0 else 'not finite'}: no v gives uᵀWv = 1")
    return u, wtu / squared


def flax_l2_normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """Flax's ``_l2_normalize``: ``x · rsqrt(Σx² + eps)``, the eps inside the root (torch floors the norm)."""
    return x / np.sqrt(float(x @ x) + eps)


def flax_vectors(kernel: np.ndarray, u: np.ndarray, n_steps: int, eps: float, where: str) -> tuple[np.ndarray, ...]:
    """``(sn_u, sn_v)`` of a Flax ``nn.SpectralNorm`` layer: the ``(u, v)`` its inference call
    computes from the stored ``u`` (``n_steps`` iterations, ``l2n`` with its ``eps``)."""
    w = _matrix(kernel)
    u = np.asarray(u, np.float64).reshape(-1)
    if u.shape != (w.shape[0],):
        raise PortError(f"{where}: u {np.shape(u)} does not fit the kernel {np.shape(kernel)}")
    v = np.zeros(w.shape[1])
    for _ in range(n_steps):
        v = flax_l2_normalize(w.T @ u, eps)
        u = flax_l2_normalize(w @ v, eps)
    return u, v


__all__ = ["flax_l2_normalize", "flax_vectors", "keras_vectors"]
