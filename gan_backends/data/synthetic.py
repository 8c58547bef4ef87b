"""The 2-D Gaussian mixtures of the mode-collapse literature: :func:`ring` and :func:`grid`, and
their centers (:func:`ring_centers`, :func:`grid_centers`).

Each returns a :class:`~gan_backends.data.dataset.Dataset` with ``centers`` and ``std`` set, so
:meth:`~gan_backends.data.dataset.Dataset.mode_metrics` can score a generator against it.
Imports numpy only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .dataset import DataError, Dataset


def _mixture(name: str, centers: np.ndarray, n: int, seed: int, std: float) -> Dataset:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"{name}: n must be a positive int, got {n!r}")
    if not (isinstance(std, (int, float)) and std > 0 and math.isfinite(std)):
        raise DataError(f"{name}: std must be a positive number, got {std!r}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(centers), size=n)
    points = centers[labels] + std * rng.standard_normal((n, centers.shape[1]))
    data = points.astype(np.float32)
    bound = float(np.abs(data).max())
    return Dataset(
        name=name, data=data, value_range=(-bound, bound), labels=labels.astype(np.int64), centers=centers, std=std
    )


def ring_centers(modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """``modes`` points evenly on a circle: ``c_k = radius · (cos 2πk/modes, sin 2πk/modes)``, ``k = 0..modes-1``."""
    if isinstance(modes, bool) or not isinstance(modes, int) or modes < 1:
        raise DataError(f"ring: modes must be a positive int, got {modes!r}")
    if not (radius > 0):
        raise DataError(f"ring: radius must be positive, got {radius!r}")
    angles = 2.0 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centers(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """``side²`` points on a square grid centred at 0: ``c_ij = spacing · (i - (side-1)/2, j - (side-1)/2)``.

    For ``side=5, spacing=2``: ``{-4, -2, 0, 2, 4}²``, ordered with the first coordinate outer
    (as ``itertools.product``).
    """
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise DataError(f"grid: side must be a positive int, got {side!r}")
    if not (spacing > 0):
        raise DataError(f"grid: spacing must be positive, got {spacing!r}")
    ticks = spacing * (np.arange(side) - (side - 1) / 2.0)
    return np.array(list(itertools.product(ticks, ticks)), dtype=np.float64)


def ring(n: int, seed: int, modes: int = 8, radius: float = 2.0, std: float = 0.02) -> Dataset:
    """``n`` samples of the ring: ``modes`` isotropic Gaussians evenly on a circle, equal weights.

    ``k ~ Uniform{0..modes-1}``, ``x = c_k + std · ε``, ``ε ~ N(0, I₂)``, ``c_k`` from
    :func:`ring_centers`. The defaults are Metz et al. 2017 (*Unrolled Generative Adversarial
    Networks*, the 2-D mixture experiment): 8 Gaussians on a circle of radius 2, std 0.02.
    (VEEGAN and PacGAN use radius 1, std 0.01: ``ring(n, seed, radius=1.0, std=0.01)``.)

    Labels are the component ``k``; ``centers`` and ``std`` are set. ``value_range`` is
    ``(-m, m)`` with ``m = max |x|`` over every coordinate drawn: the smallest interval symmetric
    about the mixture's centre 0 that holds every value, so :meth:`Dataset.scaled` keeps 0 at 0
    and scales both axes alike (circles stay circles). It depends on the draw (≈ radius + 4·std).
    """
    return _mixture("ring", ring_centers(modes, radius), n, seed, std)


def grid(n: int, seed: int, side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Dataset:
    """``n`` samples of the grid: ``side²`` isotropic Gaussians on a square grid, equal weights.

    ``k ~ Uniform{0..side²-1}``, ``x = c_k + std · ε``, ``ε ~ N(0, I₂)``, ``c_k`` from
    :func:`grid_centers`. The defaults are the 25 Gaussians at ``{-4, -2, 0, 2, 4}²`` with std 0.05
    of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018; its configs:
    ``MEANS = product(range(-4, 5, 2), range(-4, 5, 2))``, variance ``0.05² I``).

    ``value_range`` is ``(-m, m)``, ``m = max |x|``, as for :func:`ring`.
    """
    return _mixture("grid", grid_centers(side, spacing), n, seed, std)
