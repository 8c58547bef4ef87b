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

Layout: :mod:`~gan_backends.data.dataset` (:class:`Dataset`, :class:`BatchSampler`,
:class:`DataError`, :func:`mode_metrics`), :mod:`~gan_backends.data.synthetic` (the mixtures)
and :mod:`~gan_backends.data.files` (digits, MNIST IDX, arrays); this module resolves a name
(:func:`load_dataset`) and reads a spec's output range (:func:`generator_output_range`). Every
name is imported from here, ``gan_backends.data``.

This package imports numpy only.
"""

from __future__ import annotations

from pathlib import Path

from ..spec import Flatten, GANSpec, Reshape, Sigmoid, Tanh
from .dataset import BatchSampler, DataError, Dataset, ModeMetrics, Shape, mode_metrics
from .files import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    SKLEARN_HINT,
    digits,
    has_idx_files,
    load_array,
    mnist,
    read_idx,
)
from .synthetic import grid, grid_centers, ring, ring_centers

#: Names :func:`load_dataset` resolves, besides a ``.npy``/``.npz`` path and a directory of IDX files.
DATASET_NAMES: tuple[str, ...] = ("ring", "grid", "digits", "mnist:DIR")

#: Samples :func:`load_dataset` draws from a mixture by default (PacGAN's 2-D experiments train on
#: 100,000 samples, ``num_sample`` in its configs).
DEFAULT_MIXTURE_SIZE = 100_000


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


__all__ = [
    "DATASET_NAMES",
    "DEFAULT_MIXTURE_SIZE",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "SKLEARN_HINT",
    "BatchSampler",
    "DataError",
    "Dataset",
    "ModeMetrics",
    "Shape",
    "digits",
    "generator_output_range",
    "grid",
    "grid_centers",
    "has_idx_files",
    "load_array",
    "load_dataset",
    "mnist",
    "mode_metrics",
    "read_idx",
    "ring",
    "ring_centers",
]
