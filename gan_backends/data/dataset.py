"""The data set and its sampler: :class:`Dataset` (float32 samples and what is known about them),
:class:`BatchSampler` (real batches by shuffled epochs), :class:`DataError`, and the mode
metrics (:func:`mode_metrics`) that :meth:`Dataset.mode_metrics` scores a generator with.

The mode metrics live here, not beside the mixtures in :mod:`~gan_backends.data.synthetic`,
because :class:`Dataset` calls them and the mixtures build a :class:`Dataset`: one module each
way round would import the other. Imports numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int, ...]


class DataError(ValueError):
    """Data that cannot be loaded or used as asked; the message names the file or the shapes."""


# --------------------------------------------------------------------------------------------
# The data set and its sampler.


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples ready to train on, and what is known about them.

    ``data``: float32, ``(N, *sample_shape)``, channels-last; ``value_range``: ``(lo, hi)``, the
    interval the values lie in now (checked on construction, to float32 rounding);
    ``labels``: ``(N,)`` int64 class or mixture-component labels, or ``None``; ``centers``
    ``(modes, *sample_shape)`` and ``std`` (the per-coordinate standard deviation of every
    component) for the Gaussian mixtures, ``None`` otherwise.
    """

    name: str
    data: np.ndarray
    value_range: tuple[float, float]
    labels: np.ndarray | None = None
    centers: np.ndarray | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray) or data.dtype != np.float32:
            raise DataError(f"{self.name}: data must be a float32 numpy array, got {_describe(data)}")
        if data.ndim < 2 or data.shape[0] == 0 or 0 in data.shape:
            raise DataError(
                f"{self.name}: data must be (N, *sample_shape) with N >= 1 and no empty axis, got shape {data.shape}"
            )
        lo, hi = (float(v) for v in self.value_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"{self.name}: value_range must be finite with lo < hi, got {self.value_range}")
        object.__setattr__(self, "value_range", (lo, hi))
        d_lo, d_hi = float(data.min()), float(data.max())
        if not (math.isfinite(d_lo) and math.isfinite(d_hi)):
            raise DataError(f"{self.name}: data holds NaN or infinite values")
        tol = 1e-6 * (hi - lo)  # float32 rounding of an exact affine map
        if d_lo < lo - tol or d_hi > hi + tol:
            raise DataError(
                f"{self.name}: values span [{d_lo:g}, {d_hi:g}], outside value_range ({lo:g}, {hi:g}); "
                "pass the range the values are actually in"
            )
        if self.labels is not None and (self.labels.ndim != 1 or len(self.labels) != len(data)):
            raise DataError(f"{self.name}: labels must be ({len(data)},), got {self.labels.shape}")
        if (self.centers is None) != (self.std is None):
            raise DataError(f"{self.name}: centers and std go together (a Gaussian mixture), got one of them")
        if self.centers is not None:
            if self.centers.shape[1:] != self.sample_shape:
                raise DataError(
                    f"{self.name}: centers {self.centers.shape} do not match the sample shape {self.sample_shape}"
                )
            object.__setattr__(self, "std", float(self.std))  # type: ignore[arg-type]

    @property
    def sample_shape(self) -> Shape:
        """The shape of one sample (no batch axis)."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def scaled(self, to: tuple[float, float] = (-1.0, 1.0)) -> Dataset:
        """A new data set with the values mapped affinely from :attr:`value_range` onto ``to``.

        With ``(lo, hi) = value_range`` and ``(a, b) = to``:
        ``x' = a + (x - lo) · (b - a) / (hi - lo)``, so ``lo → a`` and ``hi → b`` exactly (uint8
        data in (0, 255): 0 → -1, 255 → 1). Computed in float64, stored as float32. A mixture's
        ``centers`` go through the same map and its ``std`` is multiplied by ``|b - a| / (hi - lo)``,
        so :meth:`mode_metrics` works in the scaled space. Labels are kept.
        """
        a, b = (float(v) for v in to)
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise DataError(f"{self.name}: scaled(to=...) needs a finite range with lo < hi, got {to}")
        lo, hi = self.value_range
        factor = (b - a) / (hi - lo)

        def affine(x: np.ndarray) -> np.ndarray:
            return a + (x.astype(np.float64) - lo) * (b - a) / (hi - lo)

        return Dataset(
            name=self.name,
            data=affine(self.data).astype(np.float32),
            value_range=(a, b),
            labels=self.labels,
            centers=None if self.centers is None else affine(self.centers),
            std=None if self.std is None else self.std * factor,
        )

    def reshaped(self, shape: Sequence[int]) -> Dataset:
        """A new data set whose samples have ``shape`` (a spec's ``data_shape``), in row-major order.

        The canonical layout is channels-last, so ``(H, W, 1)`` ↔ ``(H·W,)`` and ``(H, W, C)`` ↔
        ``(H·W·C,)`` are the flattenings the spec's ``Flatten``/``Reshape`` layers use. The element
        count must match: ``prod(shape) == prod(sample_shape)``; nothing is resized or cropped.
        """
        shape = tuple(int(d) for d in shape)
        if not shape or any(d <= 0 for d in shape):
            raise DataError(f"{self.name}: a sample shape needs positive dimensions, got {shape}")
        if math.prod(shape) != math.prod(self.sample_shape):
            raise DataError(
                f"{self.name}: samples of shape {self.sample_shape} ({math.prod(self.sample_shape)} values) cannot "
                f"be fitted to data_shape {shape} ({math.prod(shape)} values); pick a spec whose data_shape has "
                f"{math.prod(self.sample_shape)} values"
            )
        if shape == self.sample_shape:
            return self
        return Dataset(
            name=self.name,
            data=self.data.reshape((len(self), *shape)),
            value_range=self.value_range,
            labels=self.labels,
            centers=None if self.centers is None else self.centers.reshape((len(self.centers), *shape)),
            std=self.std,
        )

    def sampler(self, seed: int, *, start: int = 0) -> BatchSampler:
        """A :class:`BatchSampler` over these samples, repeatable from ``seed``."""
        return BatchSampler(self.data, seed, start=start)

    def mode_metrics(self, samples: np.ndarray, threshold: float = 3.0, min_count: int = 1) -> ModeMetrics:
        """:func:`mode_metrics` of generated ``samples`` against this mixture's centers and std."""
        if self.centers is None or self.std is None:
            raise DataError(
                f"{self.name}: mode metrics need a Gaussian mixture (ring, grid), this data set has no modes"
            )
        return mode_metrics(samples, self.centers, self.std, threshold=threshold, min_count=min_count)


class BatchSampler:
    """Real batches ``(n_critic, batch, *sample_shape)`` drawn by shuffled epochs.

    The samples are read in the order of a stream of permutations of ``range(N)``, one per epoch,
    each drawn from ``numpy.random.default_rng(seed)`` in turn; :meth:`draw` takes the next
    ``n_critic · batch`` indices of the stream. So the first ``N`` samples drawn (and every
    following block of ``N``) hold every sample exactly once, whatever the batch size: no sample
    is repeated within an epoch, none is dropped at its end, and a batch may straddle two epochs.
    The stream depends on ``seed`` only; ``start`` skips that many indices (resuming after
    ``start`` samples were drawn gives the same batches as drawing on).
    """

    def __init__(self, data: np.ndarray, seed: int, *, start: int = 0) -> None:
        if data.ndim < 2 or len(data) == 0:
            raise DataError(f"a sampler needs data of shape (N, *sample_shape) with N >= 1, got {data.shape}")
        if start < 0:
            raise DataError(f"start must be >= 0, got {start}")
        self.data = data
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0
        self.epoch = 0  # permutations drawn so far
        self.drawn = 0  # samples handed out so far
        for _ in range(start // len(data)):
            self._rng.permutation(len(data))
            self.epoch += 1
        self.drawn = start - start % len(data)
        if start % len(data):
            self._indices(start % len(data))

    @property
    def sample_shape(self) -> Shape:
        return tuple(self.data.shape[1:])

    def _indices(self, count: int) -> np.ndarray:
        parts = []
        while count > 0:
            if self._pos == len(self._order):
                self._order = self._rng.permutation(len(self.data))
                self._pos = 0
                self.epoch += 1
            take = min(count, len(self._order) - self._pos)
            parts.append(self._order[self._pos : self._pos + take])
            self._pos += take
            count -= take
            self.drawn += take
        return np.concatenate(parts)

    def draw(self, n_critic: int, batch: int) -> np.ndarray:
        """The next ``n_critic · batch`` samples of the stream, shaped ``(n_critic, batch, *sample_shape)``."""
        for label, value in (("n_critic", n_critic), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DataError(f"{label} must be a positive int, got {value!r}")
        indices = self._indices(n_critic * batch)
        return self.data[indices].reshape((n_critic, batch, *self.sample_shape))


@dataclass(frozen=True, eq=False)
class ModeMetrics:
    """The mode-collapse scores of :func:`mode_metrics`."""

    modes_covered: int
    total_modes: int
    high_quality_fraction: float
    per_mode_counts: np.ndarray = field(repr=False)
    threshold: float = 3.0
    min_count: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "modes_covered": self.modes_covered,
            "total_modes": self.total_modes,
            "high_quality_fraction": self.high_quality_fraction,
            "per_mode_counts": [int(c) for c in self.per_mode_counts],
            "threshold": self.threshold,
            "min_count": self.min_count,
        }


def mode_metrics(
    samples: np.ndarray,
    centers: np.ndarray,
    std: float,
    threshold: float = 3.0,
    min_count: int = 1,
) -> ModeMetrics:
    """Modes covered and the fraction of high-quality samples of generated ``samples``.

    For each sample ``x_i`` (``n`` of them) the nearest center is ``k(i) = argmin_k ‖x_i - c_k‖``
    and its distance ``d_i = ‖x_i - c_k(i)‖`` (Euclidean; every component has the same isotropic
    ``std``, so this is also the Mahalanobis distance times ``std``). Then

    * ``x_i`` is **high quality** when ``d_i < threshold · std`` (``threshold = 3``: "within three
      standard deviations of the nearest mode", VEEGAN, Srivastava et al. 2017, section 5.1;
      PacGAN, Lin et al. 2018, uses the same, with ``<``, in its ``MetricLogger``);
    * ``per_mode_counts[k] = #{i : k(i) = k and x_i high quality}``;
    * ``high_quality_fraction = Σ_k per_mode_counts[k] / n``;
    * mode ``k`` is **covered** when ``per_mode_counts[k] >= min_count``, and
      ``modes_covered = #{k : per_mode_counts[k] >= min_count}``.

    ``min_count = 1`` is the published definition: VEEGAN counts "the number of mixture
    components whose mean is nearest to at least one high quality sample", and PacGAN's code
    counts the modes with a non-zero count (``len(numpy.nonzero(detail_of_coverage)[0])``); both
    score 2500 generated samples. A stricter count (e.g. a fraction of the expected
    ``n / modes``) can be passed as ``min_count``; it makes the numbers incomparable with theirs.

    ``samples`` is ``(n, *shape)`` and ``centers`` ``(modes, *shape)``; both are flattened per sample.
    """
    samples = np.asarray(samples, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    if samples.ndim < 1 or len(samples) == 0:
        raise DataError(f"mode_metrics needs at least one sample, got shape {samples.shape}")
    if centers.ndim < 2 or len(centers) == 0:
        raise DataError(f"mode_metrics needs centers of shape (modes, *shape), got {centers.shape}")
    x = samples.reshape(len(samples), -1)
    c = centers.reshape(len(centers), -1)
    if x.shape[1] != c.shape[1]:
        raise DataError(f"samples of shape {samples.shape[1:]} do not match centers of shape {centers.shape[1:]}")
    if not (std > 0 and math.isfinite(std)):
        raise DataError(f"std must be a positive number, got {std!r}")
    if not (threshold > 0):
        raise DataError(f"threshold must be positive, got {threshold!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise DataError(f"min_count must be a positive int, got {min_count!r}")
    counts = np.zeros(len(c), dtype=np.int64)
    limit = threshold * std
    chunk = max(1, 2**22 // len(c))  # bound the (chunk, modes) distance matrix
    for begin in range(0, len(x), chunk):
        part = x[begin : begin + chunk]
        dist = np.sqrt(((part[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1))
        nearest = dist.argmin(axis=1)
        good = dist[np.arange(len(part)), nearest] < limit
        counts += np.bincount(nearest[good], minlength=len(c))
    return ModeMetrics(
        modes_covered=int((counts >= min_count).sum()),
        total_modes=len(c),
        high_quality_fraction=float(counts.sum() / len(x)),
        per_mode_counts=counts,
        threshold=float(threshold),
        min_count=int(min_count),
    )


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype}, shape {value.shape}"
    return type(value).__name__
