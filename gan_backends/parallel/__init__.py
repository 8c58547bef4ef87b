"""Data parallelism on each framework's own engine, and the proof that it changes nothing.

Each engine is its framework package's ``parallel`` module, the only place that imports it (so
this package imports with none installed): ``backends/torch/parallel.py``
(``DistributedDataParallel`` over a process group), ``backends/tensorflow/parallel.py``
(``tf.distribute.MirroredStrategy``), ``backends/jax/parallel.py`` (``jax.jit`` over a device
``Mesh`` with ``NamedSharding``; ``shard_map`` for per-device BatchNorm). Each wraps the
single-device backend of its framework and reuses its networks, losses and optimisers: only
how the batch is split and how gradients and BatchNorm statistics meet is new. This package
holds what they share: the split of the batch, the state read back, :mod:`.launch`, and the
proof (:mod:`.reference`, :mod:`.agreement`).

Every data-parallel step takes the *global* batch as a :class:`~gan_backends.backends.base.TrainBatch`
and gives device ``k`` of ``N`` the rows ``[k·b, (k+1)·b)`` of the batch axis (:func:`shard_batch`),
so the N-device step can be held against the one-device step on the same arrays
(:mod:`.reference`, ``docs/data-parallel.md``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, get_args

import numpy as np

from ..backends import REGISTRY
from ..backends.base import Backend, OptimizerState, TrainBatch
from ..params import ParamTree
from ..spec import DataParallelSpec, GANSpec, SpecError

#: How BatchNorm computes its batch statistics when the batch is split over devices (the spec's
#: ``data_parallel.batchnorm``, :class:`~gan_backends.spec.DataParallelSpec`): ``per_device``
#: over each device's rows (DDP's default; the N-device step then differs from the one-device
#: step), ``sync`` over the global batch (the one-device step, exactly).
BatchNormMode = Literal["per_device", "sync"]
BATCHNORM_MODES: tuple[str, ...] = get_args(BatchNormMode)
#: The name of the batch axis of every device mesh here (JAX) and in the docs.
BATCH_AXIS = "batch"
#: The execution modes of the backend each engine runs, by framework (the manifests' own).
DATA_PARALLEL_MODES: dict[str, tuple[str, ...]] = {
    name: m.data_parallel_modes for name, m in REGISTRY.items() if m.data_parallel_modes
}


def batchnorm_mode(spec: GANSpec) -> BatchNormMode:
    """The spec's cross-device BatchNorm choice."""
    return spec.data_parallel.batchnorm  # type: ignore[return-value]


def refuse_unsupported(spec: GANSpec) -> None:
    """What the engines do not train is refused here, by every engine's constructor and by
    ``train --devices N``, rather than trained otherwise: G's moving average (``spec.ema``), and a
    summed loss (``loss.reduction="sum"``: the engines average the devices' gradients, which is
    the global gradient of a mean, not of a sum)."""
    if spec.loss.reduction != "mean":
        raise SpecError(
            f"spec {spec.name!r} sums its loss over the batch (loss.reduction = 'sum'); the data-parallel "
            "engines average the devices' gradients, which is right for a mean only: train it on one device, "
            'or set "reduction": "mean"'
        )
    if spec.ema is not None:
        raise SpecError(
            f"spec {spec.name!r} keeps a moving average of G (ema), which the data-parallel engines do not "
            'support yet: train it on one device, or set "ema": null'
        )


def with_batchnorm(spec: GANSpec, mode: str) -> GANSpec:
    """``spec`` with its cross-device BatchNorm set to ``mode`` (``sync`` or ``per_device``)."""
    return spec.replace(data_parallel=DataParallelSpec(batchnorm=mode))


def local_rows(batch_size: int, index: int, count: int) -> slice:
    """Device ``index`` of ``count``'s rows of a global batch: equal contiguous blocks, so each
    device's loss is a mean over the same number of samples and the mean of the device means is
    the global mean."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"device index {index} out of range for {count} devices")
    if batch_size % count:
        raise ValueError(f"global batch {batch_size} does not split evenly over {count} devices")
    size = batch_size // count
    return slice(index * size, (index + 1) * size)


def shard_batch(batch: TrainBatch, index: int, count: int) -> TrainBatch:
    """Device ``index``'s part of a global batch (batch axis 1 of ``real``, ``z_d``, ``alpha``,
    axis 0 of ``z_g``)."""
    rows = local_rows(batch.z_g.shape[0], index, count)
    return replace(
        batch,
        real=batch.real[:, rows],
        z_d=batch.z_d[:, rows],
        z_g=batch.z_g[rows],
        alpha=None if batch.alpha is None else batch.alpha[:, rows],
    )


class WrapsBackend:
    """A data-parallel step over a single-device ``backend`` whose state it trains in place: the
    parameters, BatchNorm statistics and optimiser state read back are the backend's, in the
    canonical layout (replicas hold identical copies; per-device statistics are device 0's)."""

    backend: Backend

    #: Whether this process writes what a run writes (checkpoints, samples): one process holds
    #: every device here; under torch's process group it is rank 0.
    is_main: bool = True

    def get_params(self) -> ParamTree:
        return self.backend.get_params()

    def get_buffers(self) -> ParamTree:
        return self.backend.get_buffers()

    def get_optimizer_state(self) -> OptimizerState:
        return self.backend.get_optimizer_state()

    def set_buffers(self, buffers: ParamTree) -> None:
        self.backend.set_buffers(buffers)

    def set_optimizer_state(self, state: OptimizerState) -> None:
        self.backend.set_optimizer_state(state)

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self.backend.generate(z)

    def read_losses(self, outputs: Any) -> dict[str, float]:
        return {k: float(v) for k, v in outputs.items()}

    def agree(self, count: int) -> int:
        """The count every process of the group uses, given this one's (one process: its own)."""
        return count


__all__ = [
    "WrapsBackend",
    "refuse_unsupported",
    "BATCHNORM_MODES",
    "BATCH_AXIS",
    "DATA_PARALLEL_MODES",
    "BatchNormMode",
    "batchnorm_mode",
    "with_batchnorm",
    "local_rows",
    "shard_batch",
]
