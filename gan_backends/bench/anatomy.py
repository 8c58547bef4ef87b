r"""The anatomy of a training step: what it launches, and the floors its time stands on.

Measured once per one-device run after the timed blocks and the dispatch clock (so it cannot
disturb them), into the record's ``anatomy`` (data-parallel runs have none: their step is the
group's, launched by several processes):

- ``ops``: what one step launches, counted by the framework's own tools
  (:meth:`~gan_backends.backends.base.Backend.step_anatomy`): torch's profiler (operators
  dispatched; on a GPU kernels and launch calls), the compiled XLA program of JAX ``jit`` and
  TensorFlow ``xla`` (instructions, fusions, what the entry computation launches), TensorFlow's
  traced graph in ``function`` and ``eager`` mode (operations);
- the **memory floor**: the bytes one step must move at least, at the device's memory bandwidth.

The host's time to enqueue a step against the time to finish it is the record's ``dispatch``
(:func:`~gan_backends.bench.timing.time_dispatch`), and the **FLOP floor** the step's matmul FLOPs
at the sweep's peak (:mod:`.batch`): the reports put all of them beside the measured step.

**The memory model** (:func:`step_bytes`), in elements of the spec's dtype: what a step cannot
avoid moving. Each optimiser update of a network's ``P`` parameters reads and writes the
parameters and each state slot, and its gradient is written (by the backward) and read
(:func:`optimizer_words_per_param`: Adam 8 per parameter, SGD 4, +2 per further slot); each
network call writes every layer's output once (``A`` per sample: the sum of its layers' output
elements), and a call that is differentiated reads it back once (``2·A``). So, at batch ``B``::

    D update (× n_critic) = words(D)·P_D + B·(A_G + 2·2·A_D)     [+ 3·2·B·A_D with a penalty]
    G update              = words(G)·P_G + B·(2·A_G + 2·A_D)

The forward's and backward's reads of the weights are not counted (they are read by the update
anyway, and are in cache where they fit), nor the inputs (a few elements per sample): the floor
is a lower bound, the traffic of a perfectly fused step. Bandwidth: on a CPU the best of a few
``numpy.copyto`` of the step's parameter-and-optimiser state (one core's stream; read + write
counted; a state that fits the caches is read at the caches' rate, as the step reads it; the
reports take the best of a sweep's runs, each measured under the load of its moment), on a GPU
the data sheet's.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..spec import AdamSpec, GANSpec, OptimizerSpec, RMSpropSpec

# Memory bandwidth from NVIDIA's data sheets, bytes/s (HBM; the more specific names first).
GPU_BANDWIDTH: dict[str, float] = {
    "H200": 4.8e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,  # SXM
    "A100": 2.0e12,  # 80 GB SXM (the 40 GB card: 1.56e12)
    "L4": 0.3e12,
}


def optimizer_words_per_param(opt: OptimizerSpec) -> int:
    """Elements moved per parameter per update: parameter read and written, gradient written
    (by the backward) and read, each state slot read and written."""
    if isinstance(opt, AdamSpec):
        slots = 2  # m, v
    elif isinstance(opt, RMSpropSpec):
        slots = 1 + (1 if opt.centered else 0) + (1 if opt.momentum else 0)
    else:
        slots = 1 if opt.momentum else 0
    return 4 + 2 * slots


def _network(spec: GANSpec, net: str) -> tuple[int, int]:
    """(parameters, output elements of all layers per sample) of ``net``."""
    shapes = spec.layer_shapes(net)
    params = sum(
        math.prod(s) for layer, (i, _) in zip(spec.layers(net), shapes) for s in layer.param_shapes(i).values()
    )
    return params, sum(math.prod(o) for _, o in shapes)


def state_bytes(spec: GANSpec) -> int:
    """Bytes of both networks' parameters, gradients and optimiser slots: the step's working set."""
    (pg, _), (pd, _) = _network(spec, "generator"), _network(spec, "discriminator")
    words = optimizer_words_per_param(spec.g_optimizer) * pg + optimizer_words_per_param(spec.d_optimizer) * pd
    return words // 2 * np.dtype(spec.numerics.dtype).itemsize  # each word counted twice (read and write)


def step_bytes(spec: GANSpec, batch_size: int) -> int:
    """Bytes one training step moves at least (the module docstring's model)."""
    (pg, ag), (pd, ad) = _network(spec, "generator"), _network(spec, "discriminator")
    b = batch_size
    d_update = optimizer_words_per_param(spec.d_optimizer) * pd + b * (ag + 4 * ad)
    if spec.loss.penalty != "none":
        d_update += 6 * b * ad
    g_update = optimizer_words_per_param(spec.g_optimizer) * pg + b * (2 * ag + 2 * ad)
    return (spec.n_critic * d_update + g_update) * np.dtype(spec.numerics.dtype).itemsize


def measure_cpu_bandwidth(nbytes: int, repeats: int = 5) -> float:
    """The best rate of copying ``nbytes`` (at least 1 MiB) with NumPy here, bytes/s (read +
    write counted)."""
    src = np.ones(max(nbytes, 2**20) // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # pages touched before the clock
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def bandwidth(device_name: str, working_set: int) -> tuple[float | None, str | None]:
    """(bytes/s, where it comes from) for a run's device."""
    if "cpu" in device_name.lower():
        mib = max(working_set, 2**20) / 2**20
        return measure_cpu_bandwidth(working_set), f"measured: best numpy.copyto of {mib:.0f} MiB, read + write"
    for model, bw in GPU_BANDWIDTH.items():
        if model in device_name:
            return bw, f"data sheet, {model}"
    return None, None


def describe(spec: GANSpec, batch_size: int, backend: Any, batch: Any) -> dict[str, Any]:
    """The record's ``anatomy`` for one run (module docstring). A count that fails is recorded
    with its error: the timing it follows stays valid."""
    t0 = time.perf_counter()
    try:
        ops = backend.step_anatomy(batch)
    except Exception as exc:  # noqa: BLE001 - the framework's introspection, not the measurement
        ops = {"source": "failed", "error": f"{type(exc).__name__}: {exc}"}
    moved = step_bytes(spec, batch_size)
    bw, source = bandwidth(backend.device, state_bytes(spec))
    return {
        "ops": ops,
        "memory_bytes": moved,
        "bandwidth_bytes_per_s": bw,
        "bandwidth_source": source,
        "memory_floor_ms": None if bw is None else moved / bw * 1e3,
        "seconds": time.perf_counter() - t0,  # what counting cost the run, after its clocks
    }


def ops_per_step(anatomy: dict[str, Any] | None) -> int | None:
    """The one count a table shows: kernels on a GPU, else what a step launches (the XLA entry
    computation's work, TensorFlow's computing graph ops, torch's dispatched operators)."""
    ops = (anatomy or {}).get("ops") or {}
    for key in ("kernels", "launched", "compute_ops", "aten_ops"):
        if ops.get(key) is not None:
            return ops[key]
    return None
