"""Bundled and on-disk image data: scikit-learn's 8×8 :func:`digits` (imported lazily), MNIST
from its IDX files (:func:`read_idx`, :func:`mnist`, written here: nothing is unpickled) and any
``.npy``/``.npz`` array of samples (:func:`load_array`, ``allow_pickle=False``).

Nothing is downloaded: every function reads what the user already has. Imports numpy only.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset

SKLEARN_HINT = "pip install scikit-learn (or pip install 'gan-backends[data]')"


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
