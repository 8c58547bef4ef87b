"""Peak arithmetic rates, to read an achieved FLOP/s as a utilisation.

GPUs: the vendor's dense peak per precision (no structured sparsity), by device name. CPUs have
no such table worth trusting (clocks, cores and SIMD width vary), so the peak is measured: the
best of a few float32 GEMMs of 2048² in NumPy's BLAS, with the process's threads and affinity.
"""

from __future__ import annotations

import time

import numpy as np

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
