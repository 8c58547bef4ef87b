"""JAX data parallelism: the backend's own training step, ``jax.jit`` over a device ``Mesh``.

BatchNorm ``sync`` (the spec's ``data_parallel.batchnorm``): the step is
:meth:`JaxBackend.train_step_fn` itself, compiled with the batch sharded along the mesh's
``batch`` axis (``NamedSharding(mesh, P(None, "batch"))``) and the state replicated (``P()``).
The program is written for the global batch, so every mean (the losses, BatchNorm's statistics)
is a global mean: XLA's partitioner inserts the all-reduces. Nothing is averaged by hand; the
N-device step is the one-device step up to summation order.

BatchNorm ``per_device``: the same step under ``jax.shard_map``, which runs it once per device
on that device's rows, so BatchNorm sees only local statistics. Inside ``shard_map`` the
gradient with respect to a replicated parameter is psum'd over the axis by JAX's autodiff (the
transpose of the implicit broadcast of an unvarying value), so each device's loss is its share
of the global mean, ``mean_local / N`` (:func:`local_share_ops`), as ``tf.nn.compute_average_loss``
does under ``tf.distribute``. Running statistics differ per device; device 0's are kept (what
DDP's ``broadcast_buffers`` does), loss terms are psum'd back to global means.

Several hosts: call ``jax.distributed.initialize(coordinator_address=..., num_processes=...,
process_id=...)`` before anything else; ``jax.devices()`` then lists every host's devices, and
:func:`global_array` builds each global array from the process's data with
``jax.make_array_from_callback`` (see ``docs/data-parallel.md``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ...losses import LossOps
from ...parallel import BATCH_AXIS, WrapsBackend, batchnorm_mode, refuse_unsupported
from ...params import ParamTree
from ...spec import GANSpec
from ..base import OptimizerState, TrainBatch
from . import host_device_flag
from .backend import JAX_OPS, JaxBackend, TrainState

#: Where the batch axis is in each input of the step: ``real``/``z_d``/``alpha`` are stacked per
#: D update (``(n_critic, batch, ...)``), ``z_g`` is one batch.
INPUT_SPECS = {
    "real": P(None, BATCH_AXIS),
    "z_d": P(None, BATCH_AXIS),
    "z_g": P(BATCH_AXIS),
    "alpha": P(None, BATCH_AXIS),
}


def make_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``batch`` over the first ``devices`` devices (all by default)."""
    if devices is None or isinstance(devices, int):
        available = jax.devices()
        count = len(available) if devices is None else devices
        if count > len(available):
            raise ValueError(
                f"{count} devices requested, jax sees {len(available)}; on a CPU set XLA_FLAGS="
                f"{host_device_flag(count)} before importing jax"
            )
        devices = available[:count]
    return Mesh(np.array(list(devices)), (BATCH_AXIS,))


def global_array(mesh: Mesh, array: np.ndarray, spec: P) -> jax.Array:
    """``array`` (the global value, present in every process) as one array laid out by ``spec``
    over ``mesh``; each process places only its own devices' blocks, so this works across hosts."""
    return jax.make_array_from_callback(array.shape, NamedSharding(mesh, spec), lambda index: array[index])


def local_share_ops(ops: LossOps, count: int) -> LossOps:
    """The loss primitives with each batch mean divided by the device count: a device's loss is
    then its share of the global mean, and the psum of the shares (which shard_map's autodiff
    performs on the gradients) is the gradient of the global mean."""
    return ops._replace(mean=lambda x: ops.mean(x) / count)


class JaxDataParallel(WrapsBackend):
    """One :class:`~gan_backends.backends.jax.backend.JaxBackend` training step on ``devices``.

    Speaks the backend's boundary (canonical NumPy trees in and out); ``train_step`` takes the
    global batch, whose batch size the device count must divide.
    """

    def __init__(
        self,
        spec: GANSpec,
        params: ParamTree,
        *,
        devices: int | Sequence[jax.Device] | None = None,
    ):
        refuse_unsupported(spec)
        self.batchnorm = batchnorm_mode(spec)
        self.mesh = make_mesh(devices)
        self.count = self.mesh.devices.size
        self.is_main = jax.process_index() == 0  # several hosts: process 0 writes
        # "eager": the backend compiles nothing of its own; its pure step is compiled here.
        self.backend = JaxBackend(spec, params, mode="eager", device=str(self.mesh.devices.flat[0].platform))
        self.spec = spec
        self._replicated = NamedSharding(self.mesh, P())
        self._replicate_state()
        if self.batchnorm == "sync":
            self._step = jax.jit(self.backend.train_step_fn, out_shardings=self._replicated)
        else:
            self.backend.loss_ops = local_share_ops(JAX_OPS, self.count)
            self._step = jax.jit(self._per_device_step)

    def _per_device_step(self, state: TrainState, real, z_d, z_g, alpha) -> tuple[TrainState, dict]:
        state_spec = TrainState(P(), P(), P(), P(), P(BATCH_AXIS), P(BATCH_AXIS))

        def local(state: TrainState, real, z_d, z_g, alpha):
            new, terms = self.backend.train_step_fn(state, real, z_d, z_g, alpha)
            # Running statistics of this device's rows: one leading entry per device.
            stacked = jax.tree.map(lambda s: s[None], (new.g_stats, new.d_stats))
            return new._replace(g_stats=stacked[0], d_stats=stacked[1]), jax.lax.psum(terms, BATCH_AXIS)

        in_specs = (
            TrainState(P(), P(), P(), P(), P(), P()),
            *(INPUT_SPECS[k] for k in ("real", "z_d", "z_g", "alpha")),
        )
        new, terms = jax.shard_map(local, mesh=self.mesh, in_specs=in_specs, out_specs=(state_spec, P()))(
            state, real, z_d, z_g, alpha
        )
        first = jax.tree.map(lambda s: s[0], (new.g_stats, new.d_stats))  # device 0's, as DDP keeps rank 0's
        return new._replace(g_stats=first[0], d_stats=first[1]), terms

    def _inputs(self, batch: TrainBatch) -> tuple[jax.Array | None, ...]:
        batch.validate(self.spec)
        dtype = self.backend.dtype
        alpha = batch.alpha if self.spec.loss.penalty == "wgan_gp" else None
        arrays = {"real": batch.real, "z_d": batch.z_d, "z_g": batch.z_g, "alpha": alpha}
        if batch.z_g.shape[0] % self.count:
            raise ValueError(f"global batch {batch.z_g.shape[0]} does not split evenly over {self.count} devices")
        return tuple(
            None if a is None else global_array(self.mesh, np.ascontiguousarray(a, dtype=dtype), INPUT_SPECS[k])
            for k, a in arrays.items()
        )

    def device_step(self, batch: TrainBatch):
        """The global ``batch`` laid out over the mesh once; ``step()`` runs one training step
        and returns the new state and the loss terms (unread)."""
        inputs = self._inputs(batch)

        def step() -> tuple[TrainState, dict]:
            self.backend.state, terms = self._step(self.backend.state, *inputs)
            return self.backend.state, terms

        return step

    def synchronize(self, outputs: Any) -> None:
        jax.block_until_ready(outputs)

    def set_buffers(self, buffers: ParamTree) -> None:
        self.backend.set_buffers(buffers)
        self._replicate_state()

    def set_optimizer_state(self, state: OptimizerState) -> None:
        self.backend.set_optimizer_state(state)
        self._replicate_state()

    def _replicate_state(self) -> None:
        """The backend loads state onto its one device; the mesh's steps take it replicated."""
        self.backend.state = jax.device_put(self.backend.state, self._replicated)

    def read_losses(self, outputs: Any) -> dict[str, float]:
        return {k: float(v) for k, v in outputs[1].items()}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """``n_critic`` D updates then one G update on the global ``batch``, split over the mesh."""
        return self.read_losses(self.device_step(batch)())

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "jax.jit + NamedSharding" + (" + shard_map" if self.batchnorm == "per_device" else ""),
            "devices": [str(d) for d in self.mesh.devices.flat],
            "batchnorm": self.batchnorm,
        }


def launch(devices: int, job: Any, *, platform: str | None = None, threads: int | None = None, child_job: Any = None):
    """``job(make)`` with ``make(spec, params)`` the mesh step over ``devices`` devices. One process
    per host: with ``JAX_COORDINATOR_ADDRESS`` set (and ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``,
    or a cluster jax detects), ``jax.distributed.initialize`` joins the hosts first and the mesh
    spans them. The host-device flag was set before jax started (the manifest's ``before_start``)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(  # None: detected from the cluster (SLURM, Open MPI, ...)
            num_processes=None if count is None else int(count),
            process_id=None if index is None else int(index),
        )
    return job(lambda spec, params: JaxDataParallel(spec, params, devices=devices))


__all__ = ["JaxDataParallel", "launch", "global_array", "host_device_flag", "local_share_ops", "make_mesh"]
