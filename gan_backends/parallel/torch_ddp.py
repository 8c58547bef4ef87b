"""PyTorch data parallelism: the backend's training loop with both networks in ``DistributedDataParallel``.

One process per device, launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by :mod:`.run`; :func:`init_process_group`
joins them (NCCL on CUDA, gloo on the CPU). Each rank runs the unchanged
:class:`~gan_backends.backends.torch_backend.TorchBackend` loop on its rows of the global batch;
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
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..backends.base import TrainBatch
from ..backends.torch_backend import TorchBackend
from ..params import ParamTree
from ..spec import GANSpec
from . import WrapsBackend, batchnorm_mode, shard_batch


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
        self.biased = "Biased" in type(layer).__name__
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
            m = self.momentum
            self.running_mean.mul_(1.0 - m).add_(mean, alpha=m)
            self.running_var.mul_(1.0 - m).add_(var * (1.0 if self.biased else n / (n - 1)), alpha=m)
            self.num_batches_tracked.add_(1)
        return y


def synchronise_batchnorm(net: nn.Sequential, cuda: bool) -> None:
    """Every BatchNorm layer of ``net`` on global-batch statistics, in place (same parameters,
    same buffers, same ``nn.Sequential`` indices)."""
    plain = (nn.BatchNorm1d, nn.BatchNorm2d)
    layers = [m for m in net if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cuda and all(type(m) in plain for m in layers):
        nn.SyncBatchNorm.convert_sync_batchnorm(net)  # replaces the children of net itself
        return
    for i, module in enumerate(net):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            net[i] = AllReduceBatchNorm(module)


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


__all__ = ["AllReduceBatchNorm", "TorchDataParallel", "init_process_group", "synchronise_batchnorm"]
