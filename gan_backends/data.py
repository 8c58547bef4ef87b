"""Training data for ``gan-backends train``: nothing is downloaded at run time.

Sources:

* :func:`ring` and :func:`grid`, the 2-D Gaussian mixtures of the mode-collapse literature, with
  :func:`mode_metrics` (modes covered, fraction of high-quality samples) to score a generator;
* :func:`digits`, scikit-learn's bundled 8×8 digits (imported lazily; ``pip install scikit-learn``
  or the ``gan-backends[data]`` extra);
* :func:`mnist`, MNIST read from the standard IDX files (plain or gzipped) in a directory the
  user gives; the parser is written here, nothing is unpickled;
* :func:`load_array`, any ``.npy``/``.npz`` array of samples, read with ``allow_pickle=False``.

:func:`load_dataset` resolves a command-line name (``ring``, ``grid``, ``digits``, ``mnist:DIR``,
a directory of IDX files, an array file) to one of them.

Every source returns a :class:`Dataset`: float32 samples ``(N, *sample_shape)``, channels-last
like the spec (``docs/layouts.md``), with the ``value_range`` the values are in *now*. Nothing is
rescaled behind the user's back: :meth:`Dataset.scaled` maps to the generator's output range
(``(-1, 1)`` for a Tanh output, see :func:`generator_output_range`) and :meth:`Dataset.reshaped`
fits the samples to a spec's ``data_shape``. :meth:`Dataset.sampler` draws the
``(n_critic, batch, *data_shape)`` real batches of :class:`~gan_backends.backends.base.TrainBatch`.

This module imports numpy only.
"""

from __future__ import annotations

import gzip
import itertools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .spec import Flatten, GANSpec, Reshape, Sigmoid, Tanh

Shape = tuple[int, ...]

#: Names :func:`load_dataset` resolves, besides a ``.npy``/``.npz`` path and a directory of IDX files.
DATASET_NAMES: tuple[str, ...] = ("ring", "grid", "digits", "mnist:DIR")

#: Samples :func:`load_dataset` draws from a mixture by default (PacGAN's 2-D experiments train on
#: 100,000 samples, ``num_sample`` in its configs).
DEFAULT_MIXTURE_SIZE = 100_000

SKLEARN_HINT = "pip install scikit-learn (or pip install 'gan-backends[data]')"


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


# --------------------------------------------------------------------------------------------
# 2-D Gaussian mixtures and their metrics.


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


# --------------------------------------------------------------------------------------------
# Bundled and on-disk image data.


def digits() -> Dataset:
    """scikit-learn's bundled 8×8 digits (``sklearn.datasets.load_digits``; ships in the package).

    1797 images, shape ``(1797, 8, 8, 1)``, integer grey levels 0..16 (``value_range (0, 16)``),
    labels 0..9. Needs scikit-learn, imported here only.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError(f"the digits data set needs scikit-learn: {SKLEARN_HINT}") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[..., None]
    return Dataset(name="digits", data=images, value_range=(0.0, 16.0), labels=np.asarray(bunch.target, np.int64))


#: IDX element types: the third byte of the magic number (LeCun et al., "THE MNIST DATABASE").
_IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain, or gzip-compressed: detected from its first bytes, not its name).

    Layout (big-endian): a 4-byte magic ``0x00 0x00 TT ND`` (``TT`` the element type, 0x08 =
    unsigned byte; ``ND`` the number of dimensions), ``ND`` 4-byte sizes, then
    ``prod(sizes) · itemsize`` bytes of data in row-major order. ``magic`` (e.g. 2051 images, 2049
    labels) is checked when given. The file must be exactly that long; every error names it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a readable gzip file (truncated or corrupt): {exc}") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise DataError(
            f"{path}: bad magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x}); not an IDX file "
            "of the expected kind"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: bad magic number 0x{found:08x}; not an IDX file")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:
        raise DataError(f"{path}: empty dimension in {dims}")
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "too long"
        raise DataError(
            f"{path}: {what}: dimensions {dims} need {expected} bytes ({header} header + "
            f"{expected - header} data), the file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


_MNIST_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}


def _idx_candidates(prefix: str, kind: str, rank: int) -> list[str]:
    names = [f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"]
    return [name + suffix for name in names for suffix in ("", ".gz")]


def _find(directory: Path, names: list[str]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def has_idx_files(directory: str | Path) -> bool:
    """Whether ``directory`` holds MNIST-style training images (any accepted spelling)."""
    return _find(Path(directory), _idx_candidates("train", "images", 3)) is not None


def mnist(directory: str | Path, split: str = "train") -> Dataset:
    """MNIST (or any data set in its IDX files: Fashion-MNIST, KMNIST) read from ``directory``.

    ``split`` is ``"train"`` (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``) or
    ``"test"`` (``t10k-...``). Each file may be plain or ``.gz``, and spelt ``-idx3-ubyte`` or
    ``.idx3-ubyte`` (as some mirrors unpack it). The images file must carry magic 2051 and three
    dimensions ``(N, rows, cols)``; the labels file, if present, magic 2049 and ``(N,)``.
    Returns ``(N, rows, cols, 1)`` (``(N, 28, 28, 1)`` for MNIST), ``value_range (0, 255)``,
    and the labels (``None`` when there is no labels file). Nothing is downloaded or unpickled.
    """
    directory = Path(directory)
    if split not in _MNIST_SPLITS:
        raise DataError(f"unknown MNIST split {split!r}; known: train, test")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (MNIST is read from its IDX files; nothing is downloaded)")
    prefix = _MNIST_SPLITS[split]
    names = _idx_candidates(prefix, "images", 3)
    images_path = _find(directory, names)
    if images_path is None:
        raise DataError(
            f"{directory}: no MNIST {split} images; looked for {', '.join(names)}. Put the IDX files "
            "there (nothing is downloaded at run time)"
        )
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = None
    labels_path = _find(directory, _idx_candidates(prefix, "labels", 1))
    if labels_path is not None:
        labels = read_idx(labels_path, IDX_LABELS_MAGIC)
        if len(labels) != len(images):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
        labels = labels.astype(np.int64)
    return Dataset(
        name="mnist" if split == "train" else "mnist-test",
        data=images.astype(np.float32)[..., None],
        value_range=(0.0, 255.0),
        labels=labels,
    )


def load_array(path: str | Path, key: str | None = None, *, value_range: tuple[float, float] | None = None) -> Dataset:
    """Samples from a ``.npy`` or ``.npz`` file, read with ``allow_pickle=False``.

    Accepted shapes: ``(N, D)`` flat samples, ``(N, H, W)`` grey images (a channel axis is
    added: ``(N, H, W, 1)``) and ``(N, H, W, C)`` channels-last images. A ``.npz`` with several
    arrays needs ``key``. ``value_range``: given, it is used (and checked); otherwise ``(0, 255)``
    for uint8 and ``(min, max)`` of the data for every other integer or float type.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: expected a .npy or .npz file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".npy" and key is not None:
        raise DataError(f"{path}: key={key!r} applies to .npz files only")
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if not keys:
                    raise DataError(f"{path}: the archive holds no arrays")
                if key is None:
                    if len(keys) > 1:
                        raise DataError(f"{path}: holds several arrays ({', '.join(keys)}); choose one with key")
                    key = keys[0]
                elif key not in keys:
                    raise DataError(f"{path}: no array {key!r}; the archive holds {', '.join(keys)}")
                array = archive[key]
    except DataError:
        raise
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataError(
                f"{path}: holds a pickled object array; it is not loaded, since unpickling can run code. "
                "Save a numeric array instead (np.save(path, np.asarray(x, dtype=np.float32)))"
            ) from exc
        if "pickle" in str(exc):
            raise DataError(
                f"{path}: not a numpy array file (numpy would read it as pickled data, which is never unpickled here)"
            ) from exc
        raise DataError(f"{path}: not a readable numpy file: {exc}") from exc
    except (OSError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: not a readable numpy file: {exc}") from exc
    name = path.name if key is None else f"{path.name}:{key}"
    if array.dtype.kind not in "uif":
        raise DataError(f"{name}: expected an integer or float array, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4:
        if array.shape[1] in (1, 3, 4) and array.shape[3] not in (1, 3, 4):
            raise DataError(
                f"{name}: shape {array.shape} looks channels-first (N, C, H, W); this project is channels-last "
                "(N, H, W, C): save np.moveaxis(x, 1, -1)"
            )
    elif array.ndim != 2:
        raise DataError(f"{name}: expected (N, D), (N, H, W) or (N, H, W, C), got shape {array.shape}")
    if len(array) == 0:
        raise DataError(f"{name}: holds no samples (shape {array.shape})")
    if value_range is None:
        if array.dtype == np.uint8:
            value_range = (0.0, 255.0)
        else:
            lo, hi = float(array.min()), float(array.max())
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise DataError(f"{name}: holds NaN or infinite values")
            if lo == hi:
                raise DataError(f"{name}: every value is {lo:g}; pass value_range= to say what range it is in")
            value_range = (lo, hi)
    return Dataset(name=name, data=np.asarray(array, dtype=np.float32), value_range=value_range)


# --------------------------------------------------------------------------------------------
# Resolving a name, and the generator's range.


def load_dataset(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    n: int = DEFAULT_MIXTURE_SIZE,
    split: str = "train",
    key: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> Dataset:
    """The data set a command line names.

    ``"ring"`` / ``"grid"``: ``n`` samples drawn with ``seed`` (:func:`ring`, :func:`grid`);
    ``"digits"``: :func:`digits`; ``"mnist:DIR"`` or a directory holding IDX files:
    :func:`mnist` (``split``); a ``.npy``/``.npz`` path: :func:`load_array` (``key``,
    ``value_range``). Anything else is refused with the list of choices.
    """
    text = str(name_or_path)
    lowered = text.lower()
    if lowered == "ring":
        return ring(n, seed)
    if lowered == "grid":
        return grid(n, seed)
    if lowered == "digits":
        return digits()
    if lowered == "mnist":
        raise DataError("mnist needs the directory of its IDX files: mnist:DIR (nothing is downloaded at run time)")
    if lowered.startswith("mnist:"):
        return mnist(text[len("mnist:") :], split=split)
    path = Path(text)
    if path.is_dir():
        if has_idx_files(path):
            return mnist(path, split=split)
        raise DataError(f"{path}: a directory without MNIST IDX files (train-images-idx3-ubyte[.gz])")
    if path.suffix.lower() in (".npy", ".npz"):
        return load_array(path, key=key, value_range=value_range)
    raise DataError(
        f"unknown data set {text!r}; choose one of {', '.join(DATASET_NAMES)}, a directory of MNIST IDX files, "
        "or a .npy/.npz file"
    )


def generator_output_range(spec: GANSpec) -> tuple[float, float] | None:
    """The range the generator's last activation bounds its output to: Tanh ``(-1, 1)``,
    Sigmoid ``(0, 1)``; ``None`` when the output is unbounded (a linear last layer).
    Shape-only layers (``Reshape``, ``Flatten``) after the activation are looked through."""
    for layer in reversed(spec.generator):
        if isinstance(layer, (Reshape, Flatten)):
            continue
        if isinstance(layer, Tanh):
            return (-1.0, 1.0)
        if isinstance(layer, Sigmoid):
            return (0.0, 1.0)
        return None
    return None


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype}, shape {value.shape}"
    return type(value).__name__
