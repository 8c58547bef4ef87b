"""PyTorch data parallelism: the backend's training loop with both networks in ``DistributedDataParallel``.

One process per device, launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by :mod:`.run`; :func:`init_process_group`
joins them (NCCL on CUDA, gloo on the CPU). Each rank runs the unchanged
:class:`~gan_backends.backends.torch.backend.TorchBackend` loop on its rows of the global batch;
its networks are called through ``DistributedDataParallel``, whose backward hooks average the
gradients over ranks (``AVG`` all-reduce: each rank's loss is the mean over its rows, so the
average of the rank gradients is the gradient of the global-batch mean). The optimisers are the
backend's own and step on identical averaged gradients, so the replicas stay identical.

BatchNorm (the spec's ``data_parallel.batchnorm``): ``per_device`` is DDP's default (statistics
of the rank's rows; ``broadcast_buffers`` copies rank 0's running statistics to the others
before every forward, so rank 0's are the model's). ``sync`` converts the BatchNorm layers with
``nn.SyncBatchNorm.convert_sync_batchnorm`` on CUDA; torch's SyncBatchNorm refuses CPU tensors
("expected input tensor to be on GPU"), so on the CPU (gloo) the layers become
:class:`AllReduceBatchNorm`, the same statistics through a differentiable ``dist.all_reduce``.
"""

from __future__ import annotations

import os
import socket
import warnings
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ...parallel import WrapsBackend, batchnorm_mode, refuse_unsupported, shard_batch
from ...params import ParamTree
from ...spec import GANSpec
from ..base import TrainBatch
from .backend import TorchBackend
from .layers import update_running_stats


def init_process_group(device: str | None = None, timeout_s: float = 120.0) -> str:
    """Join the process group described by torchrun's environment; returns this rank's device
    (``cuda:LOCAL_RANK`` with NCCL when CUDA is there and not declined, ``cpu`` with gloo)."""
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        chosen = f"cuda:{local}"
    else:
        chosen = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return chosen


class _AllReduceSum(torch.autograd.Function):
    """A sum over ranks whose gradient is the sum over ranks of the incoming gradients: the
    collective behind synchronised BatchNorm statistics."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A torch BatchNorm layer (``nn.BatchNorm1d/2d`` or the backend's biased-variance and
    channels-last variants) whose training-mode statistics are those of the global batch:
    mean and two-pass variance from sums all-reduced over the process group, the running
    variance corrected with the global count. Takes over the replaced layer's parameters and
    buffers (the same tensors, as ``convert_sync_batchnorm`` does), so the optimisers and the
    backend's canonical names still see them."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm):
        super().__init__(layer.num_features, layer.eps, layer.momentum, device="meta")
        self.weight, self.bias = layer.weight, layer.bias
        self.running_mean, self.running_var = layer.running_mean, layer.running_var
        self.num_batches_tracked = layer.num_batches_tracked
        self.training = layer.training
        self.spec_layer = layer.spec_layer  # the running variance's factor (biased or n/(n-1))
        self.channels_last = "ChannelsLast" in type(layer).__name__

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2) if self.channels_last else x
        if self.training:
            y = self._global_batch_norm(h)
        else:
            y = F.batch_norm(h, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return y.transpose(1, 2).reshape(x.shape) if self.channels_last else y

    def _global_batch_norm(self, h: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(h.ndim) if d != 1]
        shape = [1, -1] + [1] * (h.ndim - 2)
        n = h.numel() // h.shape[1] * dist.get_world_size()
        mean = _AllReduceSum.apply(h.sum(dims)) / n
        centred = h - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims)) / n  # two-pass, biased (1/n)
        y = centred / torch.sqrt(var.view(shape) + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            update_running_stats(self, mean, var, n)
        return y


def synchronise_batchnorm(net: nn.Sequential, cuda: bool) -> None:
    """Every BatchNorm layer of ``net`` on global-batch statistics, in place (same parameters,
    same buffers, same names), those inside residual blocks included: a block's BatchNorm is a
    grandchild of the network, and replacing only the network's own children left it on the
    device's statistics while the spec said ``sync``."""
    plain = (nn.BatchNorm1d, nn.BatchNorm2d)
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cuda and all(type(m) in plain for m in layers):
        nn.SyncBatchNorm.convert_sync_batchnorm(net)  # replaces them at every depth of net
        return
    _replace_batchnorm(net)


def _replace_batchnorm(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            parent.add_module(name, AllReduceBatchNorm(child))
        else:
            _replace_batchnorm(child)


class _FixedAware:
    """Calls a DDP-wrapped network, under ``no_sync`` while its parameters are frozen (D during
    the G update): DDP would otherwise expect a gradient reduction for it that never comes."""

    def __init__(self, ddp: DDP):
        self.ddp = ddp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not any(p.requires_grad for p in self.ddp.module.parameters()):
            with self.ddp.no_sync():
                return self.ddp(x)
        return self.ddp(x)


class TorchDataParallel(WrapsBackend):
    """One :class:`TorchBackend` training step per rank, gradients averaged by DDP.

    Call in every rank of an initialised process group (:func:`init_process_group`) with the
    same ``params`` and the same global batch; each rank trains on its rows.
    """

    def __init__(self, spec: GANSpec, params: ParamTree, *, device: str = "cpu"):
        if not dist.is_initialized():
            raise RuntimeError(
                "TorchDataParallel needs a process group: run under torchrun and call init_process_group"
            )
        refuse_unsupported(spec)
        self.batchnorm = batchnorm_mode(spec)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.spec = spec
        # eager mode: DDP's hooks need no graph breaks
        self.backend = b = TorchBackend(spec, params, mode="eager", device=device)
        cuda = b.torch_device.type == "cuda"
        if self.batchnorm == "sync":
            for net in (b.G, b.D):
                synchronise_batchnorm(net, cuda)
        ids = [b.torch_device.index] if cuda else None
        # The backend's canonical-I/O wrappers hold G and D: DDP wraps them, parameters shared,
        # so the backend's optimisers step the DDP-reduced gradients.
        g, d = b.canonical_networks
        self.G, self.D = DDP(g, device_ids=ids), DDP(d, device_ids=ids)
        b.call_networks_through(self.G, _FixedAware(self.D))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes what the run writes (its state is every rank's)."""
        return self.rank == 0

    def device_step(self, batch: TrainBatch):
        """This rank's rows of the global ``batch`` on its device once; ``step()`` runs one
        training step on them and returns this rank's loss terms (tensors, unread)."""
        batch.validate(self.spec)
        inputs = self.backend.device_inputs(shard_batch(batch, self.rank, self.world))
        return lambda: self.backend.eager_train_step(*inputs)

    def synchronize(self, outputs: Any) -> None:
        self.backend.synchronize(outputs)

    def read_losses(self, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """The global-batch loss terms: the mean over ranks of each rank's terms (a collective:
        every rank calls it)."""
        values = torch.stack([outputs[k].detach().reshape(()) for k in sorted(outputs)])
        dist.all_reduce(values, op=dist.ReduceOp.SUM)  # reporting only: gradients went through DDP
        return {k: float(v) / self.world for k, v in zip(sorted(outputs), values.cpu().numpy())}

    def agree(self, count: int) -> int:
        """The largest of the ranks' counts (a timing loop's steps per block): every rank must
        make the same number of steps, each of which runs collectives."""
        value = torch.tensor([count], dtype=torch.int64, device=self.backend.torch_device)  # NCCL: on the GPU
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value.item())

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """This rank's part of one step on the global ``batch``; returns the global-batch loss
        terms (the mean over ranks of each rank's terms)."""
        return self.read_losses(self.device_step(batch)())

    @torch.no_grad()
    def generate(self, z: np.ndarray) -> np.ndarray:
        """``G(z)`` in inference mode on this rank, outside DDP (whose forward may broadcast
        buffers, a collective the other ranks would not join)."""
        self.backend.G.train(False)
        z = torch.from_numpy(np.ascontiguousarray(z, dtype=self.backend.dtype)).to(self.backend.torch_device)
        return self.G.module(z).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        sync = "SyncBatchNorm" if any(isinstance(m, nn.SyncBatchNorm) for m in self.backend.G.modules()) else None
        return {
            "engine": f"DistributedDataParallel ({dist.get_backend()})",
            "devices": self.world,
            "batchnorm": self.batchnorm + (f" ({sync})" if sync else ""),
        }


# -- launching: one process per rank ------------------------------------------------------------


def launch(devices: int, job: Any, *, platform: str | None = None, threads: int | None = None, child_job: Any = None):
    """``job(make)`` in this rank, ``make(spec, params)`` building the DDP step. Under ``torchrun``
    this process is one rank of its group; otherwise it is rank 0 and ``devices - 1`` ranks are
    spawned beside it, each running ``child_job`` (default ``job``, which must then pickle: a
    ``functools.partial`` of a module function). ``threads``: CPU threads in all, shared equally."""
    share = max(1, (threads or os.cpu_count() or 1) // devices)
    if "RANK" in os.environ:  # under torchrun: this process is one rank of its group
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world != devices:
            raise ValueError(f"torchrun started {world} ranks, the job asks for {devices} devices")
        return _rank_job(job, platform, share)
    return _launch_group(devices, job, platform, share, child_job or job)


def _rank_job(job: Any, platform: str | None, threads_per_rank: int, done: Any = None) -> Any:
    """``job`` in this rank: join the group (torchrun's environment), run, leave. ``done``: an
    event set once the job has finished in every rank (after a barrier), before the group is
    torn down."""
    torch.set_num_threads(threads_per_rank)  # N ranks with all threads each would oversubscribe
    device = init_process_group("cpu" if platform == "cpu" else None)
    try:
        result = job(lambda spec, params: TorchDataParallel(spec, params, device=device))
        # No rank tears the group down while another still runs: gloo aborts a process whose
        # peer closed its pair first (pytorch/gloo#155).
        dist.barrier()
        if done is not None:
            done.set()
        return result
    finally:
        dist.destroy_process_group()


def _rank_environment(rank: int, world: int, port: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _child(index: int, world: int, port: int, job: Any, platform: str | None, threads: int, done: list) -> None:
    """Rank ``index + 1`` of a group whose rank 0 is the launching process; sets ``done[index]``
    once its job has finished."""
    os.environ.update(_rank_environment(index + 1, world, port))
    _rank_job(job, platform, threads, done[index])


def _launch_group(world: int, job: Any, platform: str | None, share: int, child_job: Any) -> Any:
    import torch.multiprocessing as mp

    port = _free_port()
    children = None
    done = [mp.get_context("spawn").Event() for _ in range(world - 1)]
    if world > 1:
        children = mp.start_processes(
            _child,
            args=(world, port, child_job, platform, share, done),
            nprocs=world - 1,
            join=False,
            start_method="spawn",
        )
    saved = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    os.environ.update(_rank_environment(0, world, port))
    try:
        result = _rank_job(job, platform, share)
    except BaseException:
        if children is not None:
            for process in children.processes:  # they would wait for rank 0 in a collective
                process.terminate()
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if children is not None:
        _join(children, done)
    return result


def _join(children: Any, done: list) -> None:
    """Wait for the spawned ranks. A rank that died after its job had finished in every rank (its
    ``done`` set) died tearing gloo down, not in the job: what the job computed stands, and it is
    said as a warning. Any other failure raises as ``torch.multiprocessing`` reports it."""
    for process in children.processes:
        process.join()
    failed = [i for i, process in enumerate(children.processes) if process.exitcode != 0]
    if any(not done[i].is_set() for i in failed):
        while not children.join():  # raises with the failed rank's own error
            pass
    for i in failed:
        code = children.processes[i].exitcode
        warnings.warn(f"torch rank {i + 1} exited with code {code} after its job had finished", stacklevel=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["AllReduceBatchNorm", "TorchDataParallel", "init_process_group", "launch", "synchronise_batchnorm"]
