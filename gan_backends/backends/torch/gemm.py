"""One large GEMM timed in torch: the measured peak a benchmark's FLOP floor is read against on
devices NumPy cannot reach (GPUs), and in precisions NumPy has not (TF32, bf16)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def measure_gemm(
    device: str | None, precision: str, n: int, repeats: int, best_of: Callable[..., tuple[float, float]]
) -> dict[str, Any]:
    """``torch.mm`` of two ``n × n`` matrices on ``device`` (default: CUDA when present) in
    ``precision``: float32 with TF32 off, TF32 on, or bfloat16 operands; timed by
    ``best_of(product, sync, repeats) -> (best_s, median_s)``, synchronised on CUDA."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    sync = (lambda _: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda _: None)
    best, median = best_of(lambda: torch.mm(a, b), sync, repeats)
    flops = 2.0 * n**3
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"peak_flops": flops / best, "median_flops": flops / median, "library": "torch", "device": f"{dev} ({name})"}
