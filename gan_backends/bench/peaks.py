"""Peak arithmetic rates, to read an achieved FLOP/s as a utilisation.

GPUs: the vendor's dense peak per precision (no structured sparsity), by device name. CPUs have
no such table worth trusting (clocks, cores and SIMD width vary), so the peak is measured: the
best of a few float32 GEMMs of 2048² in NumPy's BLAS, with the process's threads and affinity.

A sweep with ``measure_peak`` measures every device, GPUs included, in a run of its own
(:func:`measure_gemm_peak`): the best of a few n² GEMMs in the precision of the sweep (a GPU
reaches 60-90% of its data sheet; the FLOP floor of a batch sweep is read against what the
device does, not what it is sold for).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..backends import REGISTRY

# Dense TFLOP/s from NVIDIA's data sheets: float32 (no tensor cores), TF32 and bf16 tensor cores.
GPU_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"float32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"float32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100": {"float32": 66.9, "tf32": 494.7, "bf16": 989.4},  # SXM
    "A100": {"float32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L4": {"float32": 30.3, "tf32": 60.0, "bf16": 121.0},
}


def gpu_peak_flops(device_name: str, precision: str) -> float | None:
    """The data-sheet peak in FLOP/s for a GPU whose name contains a known model."""
    for model, peaks in GPU_PEAK_TFLOPS.items():  # the more specific names come first
        if model in device_name:
            return peaks[precision] * 1e12
    return None


def measure_cpu_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """The best float32 GEMM rate of NumPy's BLAS here, in FLOP/s (2·n³ per product)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b  # the BLAS thread pool starts here
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _best_of(product: Any, sync: Any, repeats: int) -> tuple[float, float]:
    """(best, median) seconds of ``product()`` after one untimed call, synchronised each time."""
    sync(product())  # thread pools, cuBLAS handles and kernels are set up here
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(product())
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def measure_gemm_peak(device: str | None, precision: str, n: int, repeats: int = 5) -> dict[str, Any]:
    """One large GEMM, ``n × n`` by ``n × n`` (2·n³ FLOPs), timed ``repeats`` times on
    ``device`` in ``precision``: a CPU float32 in NumPy's BLAS (the same measurement as every
    run's own); anything else in torch (``torch.mm``: float32 with TF32 off, TF32 on, or
    bfloat16 operands). Returns the best rate in FLOP/s with what was measured; raises
    ``LookupError`` where this cannot be measured (no TF32 on a CPU, no torch)."""
    on_cpu = device is None or device.startswith("cpu")
    if on_cpu and precision == "tf32":
        raise LookupError("no TF32 on a CPU")
    flops = 2.0 * n**3
    if on_cpu and precision == "float32":
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        best, median = _best_of(lambda: a @ b, lambda _: None, repeats)
        return {"peak_flops": flops / best, "median_flops": flops / median, "library": "numpy", "device": "cpu"}
    for entry in REGISTRY.values():  # the framework that measures GEMMs (torch), if installed
        if entry.gemm_peak is not None and not entry.missing():
            measure = entry.load(entry.gemm_peak)
            return measure(device, precision, n, repeats, _best_of)
    raise LookupError(f"measuring a {precision} GEMM on {device or 'the default device'} needs torch")
