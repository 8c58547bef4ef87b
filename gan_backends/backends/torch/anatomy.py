"""One torch training step under ``torch.profiler``: how many operators it dispatches and, on a
GPU, how many kernels the device runs and how many launches the host makes for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# Host-side calls that hand work to a CUDA stream: one per kernel, or one per replayed graph.
_LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch", "cudaLaunchKernelExC", "cudaMemcpyAsync")


def profile_step(step: Callable[[], Any], sync: Callable[[Any], None], cuda: bool) -> dict[str, Any]:
    """Profile one call of ``step`` (already warm) until its work is done. ``aten_ops``: the
    operators dispatched from Python, autograd or a compiled graph's wrapper (those called by
    another operator are ``aten_ops_nested`` only); ``kernels``: device kernels run (GPU only;
    on a CPU the operators' kernels run inside them, so this is None); ``launches``: the host's
    launch calls (a CUDA graph replays all its kernels in one)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        sync(step())
    if cuda:
        torch.cuda.synchronize()
    events = prof.events()
    aten = [e for e in events if e.name.startswith("aten::")]
    top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    return {
        "source": "torch.profiler, one step",
        "aten_ops": len(top),
        "aten_ops_nested": len(aten),
        "kernels": len(kernels) if cuda else None,
        "launches": sum(1 for e in events if e.name in _LAUNCHES) if cuda else None,
    }
