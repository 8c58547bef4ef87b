"""One benchmark run, in its own process: ``python -m gan_backends.bench.worker RUN.json OUT.json``.

The process sets its environment before any framework is imported (GPU memory on demand for
TensorFlow and JAX; thread pools and CPU affinity from the run), builds the backend on the spec's
parameters, places one batch on the device, times the training step
(:func:`~gan_backends.bench.timing.time_step`) and writes one result record to ``OUT.json``,
atomically. A Python error is recorded as ``status: error`` with its message; a crash, an
out-of-memory kill or a time-out leaves no file, and the sweep records that instead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any

from ..startup_logs import DEFAULT_LEVEL, LEVEL_VAR

SCHEMA = "gan-backends/bench-v1"
NO_TF32_ON_CPU = "no TF32 on a CPU: the run would repeat float32"


def process_environment(threads: int | None) -> dict[str, str]:
    """Environment variables for a fair run, in force before the interpreter starts (NumPy's
    BLAS and every framework size their thread pools when loaded): TensorFlow and JAX take GPU
    memory on demand (both reserve most of it at start-up by default); with ``threads``, every
    thread pool has that many threads. TensorFlow's C++ logging stays at warnings and above
    unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (theirs wins, as in the command itself)."""
    env = {
        LEVEL_VAR: os.environ.get(LEVEL_VAR, DEFAULT_LEVEL),
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env[var] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = str(threads)
    return env


def cpu_cores(threads: int | None) -> list[int] | None:
    """The cores a run is pinned to: the first ``threads`` of this process's (XLA's CPU pool
    has no thread-count setting and follows the affinity)."""
    if threads is None or not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[:threads]


def pin_to(cores: list[int] | None) -> None:
    if cores is not None:
        os.sched_setaffinity(0, cores)


# Pins itself, then execs the command: the affinity survives exec and every thread the command
# starts inherits it. (A ``preexec_fn`` would do the same but may deadlock when the parent has
# threads, as a process that imported a framework has.)
_PIN_AND_EXEC = (
    "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); os.execv(sys.argv[2], sys.argv[2:])"
)


def pinned(command: list[str], cores: list[int] | None) -> list[str]:
    """``command`` (an executable path first) run on ``cores`` only, from its first instruction."""
    if cores is None:
        return command
    return [sys.executable, "-c", _PIN_AND_EXEC, ",".join(map(str, cores)), *command]


def describe_process() -> dict[str, Any]:
    """What the run's process actually has: its cores and the thread variables."""
    keys = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH")
    return {
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "env": {k: os.environ[k] for k in keys if k in os.environ},
    }


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def measure_peak(run: Any) -> dict[str, Any]:
    """A sweep's peak run: the best rate of one large GEMM on the run's device and precision."""
    from ..environment import environment
    from .peaks import measure_gemm_peak

    try:
        gemm = measure_gemm_peak(run.device, run.precision, run.batch_size)
    except LookupError as exc:
        return {"status": "unavailable", "reason": str(exc)}
    n = run.batch_size
    return {
        "status": "ok",
        "reason": None,
        "device": gemm["device"],
        "peak_tflops": gemm["peak_flops"] / 1e12,
        "peak_source": f"measured in this sweep: best {run.precision} GEMM {n}x{n} ({gemm['library']})",
        "gemm": {"n": n, "flops": 2 * n**3, **gemm},
        "environment": environment([]),
    }


def _run_spec(run: Any) -> Any:
    """The run's spec in float32 at the run's matmul precision."""
    from ..presets import load_spec
    from ..spec import Numerics
    from .config import PRECISIONS

    spec = load_spec(run.spec, run.loss)
    return spec.replace(numerics=Numerics(dtype="float32", matmul_precision=PRECISIONS[run.precision]))


def _no_tf32_on_cpu(run: Any, device: str) -> dict[str, Any] | None:
    if run.precision == "tf32" and "cpu" in device.lower():
        return {"status": "unavailable", "reason": NO_TF32_ON_CPU, "device": device}
    return None


def _timed(run: Any, stepper: Any, batch: Any) -> tuple[Any, Any, dict[str, float], dict[str, Any]]:
    """Time ``stepper``'s step on ``batch`` (a backend, or a data-parallel step whose processes
    ``agree`` on the steps per block); the timing, the dispatch cost, the losses after and
    what competed with the timed blocks (:mod:`.contention`)."""
    from .contention import Watch
    from .timing import time_dispatch, time_step

    step = stepper.device_step(batch)
    if run.inputs == "host":  # the input transfer inside every step: a data-pipeline measurement
        step = lambda: stepper.device_step(batch)()  # noqa: E731
    watch = Watch()
    watch.begin()
    timing = time_step(step, stepper.synchronize, run.plan, agree=getattr(stepper, "agree", None), blocks=watch.blocks)
    contention = watch.figures(timing.steps_per_block * len(timing.block_step_s))
    dispatch = time_dispatch(step, stepper.synchronize, run.plan.dispatch_calls)  # the device is idle here
    return timing, dispatch, stepper.read_losses(step()), contention  # read_losses: a collective in torch DDP


def _describe(run: Any, spec: Any, backend: Any, timing: Any, dispatch: Any, losses: dict[str, float]) -> dict:
    """The record of a timed run: throughput, FLOPs against the peak, memory, losses, environment.
    An N-device run's peak is N devices' (on a CPU, the logical devices share one CPU's)."""
    import numpy as np

    from ..environment import environment
    from .flops import step_flops
    from .peaks import gpu_peak_flops, measure_cpu_peak_flops

    median = timing.steady.median
    flops = step_flops(spec, run.batch_size)
    if "cpu" in backend.device.lower():
        peak, peak_source = measure_cpu_peak_flops(), "measured: float32 GEMM 2048² in NumPy's BLAS"
    else:
        one = gpu_peak_flops(backend.device, run.precision)
        peak = None if one is None else one * run.devices
        peak_source = f"data sheet, dense {run.precision}" + (f", × {run.devices} devices" if run.devices > 1 else "")
    achieved = flops.matmul / median
    record: dict[str, Any] = {
        "status": "ok",
        "reason": None,
        "device": backend.device,
        "runtime": backend.runtime_info(),
        "timing": timing.to_dict(),
        "dispatch": None if dispatch is None else dispatch.to_dict(),
        "step_s": median,
        "steps_per_s": 1.0 / median,
        "samples_per_s": run.batch_size / median,
        "flops_per_step": {"matmul": flops.matmul, "elementwise": flops.elementwise, "total": flops.total},
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": None if peak is None else peak / 1e12,
        "peak_source": peak_source if peak is not None else None,
        "utilisation": None if peak is None else achieved / peak,
        "losses_after": losses,
        "environment": environment([run.backend]),
    }
    if not all(np.isfinite(v) for v in losses.values()):
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not np.isfinite(v))
        record.update(status="nan", reason=f"non-finite loss after the timed steps: {bad}")
    return record


def _memory(backend: Any, rss_before: int | None) -> dict[str, Any]:
    return {
        "peak_device_bytes": backend.peak_device_memory(),  # device 0's in a data-parallel run
        "host_rss_before_build_bytes": rss_before,
        "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def measure(run: Any) -> dict[str, Any]:
    """Build, time and describe one :class:`~gan_backends.bench.config.RunConfig`."""
    if run.is_peak:
        return measure_peak(run)
    if run.devices > 1:
        return measure_data_parallel(run)
    from ..backends import BackendUnavailable, ModeUnavailable, get_backend
    from ..check.inputs import draw_inputs
    from ..errors import DeviceUnavailable
    from .anatomy import describe as step_anatomy

    spec = _run_spec(run)
    try:
        cls = get_backend(run.backend)
    except BackendUnavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    threads = cls.configure_threads(run.threads) if run.threads is not None else {}
    inputs = draw_inputs(spec, batch_size=run.batch_size, steps=1, seed=run.seed)
    rss_before = _rss_bytes()
    t0 = time.perf_counter()
    try:
        backend = cls(spec, inputs.params, mode=run.mode, device=run.device)
    except (ModeUnavailable, DeviceUnavailable) as exc:  # CUDA graphs on a CPU: skipped, never run as something else
        return {"status": "unavailable", "reason": str(exc), "device": run.device}
    skipped = _no_tf32_on_cpu(run, backend.device)
    if skipped:
        return skipped
    build_s = time.perf_counter() - t0
    timing, dispatch, losses, contention = _timed(run, backend, inputs.batches[0])
    record = _describe(run, spec, backend, timing, dispatch, losses)
    memory = _memory(backend, rss_before)
    anatomy = step_anatomy(spec, run.batch_size, backend, inputs.batches[0])  # after every clock: it runs steps
    return {**record, "build_s": build_s, "threads": threads, "memory": memory, "contention": contention,
            "anatomy": anatomy}  # fmt: skip


def measure_data_parallel(run: Any) -> dict[str, Any]:
    """One data-parallel run: the framework's engine over ``run.devices`` devices
    (:func:`gan_backends.parallel.launch.launch`; torch: this process is rank 0), the global
    batch split over them, timed as one step of the whole group."""
    from functools import partial

    from ..backends import BackendUnavailable, get_backend
    from ..parallel import DATA_PARALLEL_MODES
    from ..parallel.launch import launch, prepare_environment

    platform = "cpu" if (run.device or "").startswith("cpu") else None
    prepare_environment(run.backend, run.devices, platform)  # before the framework starts
    try:
        cls = get_backend(run.backend)
    except BackendUnavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    if run.mode not in DATA_PARALLEL_MODES[run.backend]:
        return {
            "status": "unavailable",
            "reason": f"data parallel runs {run.backend} in mode {DATA_PARALLEL_MODES[run.backend]} only "
            f"(the engine compiles the backend's step itself), not {run.mode!r}",
        }
    threads = cls.configure_threads(run.threads) if run.threads is not None else {}
    record = launch(run.backend, run.devices, partial(_time_group, run), platform=platform, threads=run.threads)
    return {**record, "threads": threads}


def _time_group(run: Any, make: Any) -> dict[str, Any]:
    """Time one data-parallel step in every process of the group; the main one describes it."""
    from ..check.inputs import draw_inputs

    spec = _run_spec(run)
    inputs = draw_inputs(spec, batch_size=run.batch_size, steps=1, seed=run.seed)
    rss_before = _rss_bytes()
    t0 = time.perf_counter()
    group = make(spec, inputs.params)
    skipped = _no_tf32_on_cpu(run, group.backend.device)
    if skipped:
        return skipped
    build_s = time.perf_counter() - t0
    timing, dispatch, losses, contention = _timed(run, group, inputs.batches[0])
    if not group.is_main:
        return {}
    record = _describe(run, spec, group.backend, timing, dispatch, losses)
    memory = _memory(group.backend, rss_before)
    return {**record, "build_s": build_s, "parallel": group.describe(), "memory": memory, "contention": contention}


def main(argv: list[str]) -> int:
    run_path, out_path = argv
    with open(run_path) as f:
        raw = json.load(f)
    # Started by the sweep, the process has its environment and affinity already; run by hand,
    # it sets them here, in time for the frameworks (imported below) if not for NumPy's BLAS.
    for key, value in process_environment(raw.get("threads")).items():
        os.environ.setdefault(key, value)
    pin_to(cpu_cores(raw.get("threads")))
    process = describe_process()
    from .._io import atomic_write_text
    from .config import RunConfig

    run = RunConfig.from_dict(raw)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        record = measure(run)
    except Exception as exc:  # recorded, not raised: the sweep goes on with the next run
        tb = traceback.format_exc(limit=-3)
        record = {"status": "error", "reason": f"{type(exc).__name__}: {exc}", "traceback": tb}
    record = {
        "schema": SCHEMA,
        "key": run.key,
        "config": run.to_dict(),
        "process": process,
        "started": started,
        **record,
    }
    atomic_write_text(out_path, json.dumps(record, indent=1, default=str))
    return 0 if record["status"] in ("ok", "unavailable") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
