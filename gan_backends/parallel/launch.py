"""Start a framework's data-parallel engine over N devices and run a job on it.

    result = launch("jax", 2, job)       # job(make) -> result; make(spec, params) -> a step

Each engine is its framework package's ``parallel`` module (``backends/<framework>/parallel.py``,
whose ``launch(devices, job, ...)`` brings it up), and what must be set before the framework's
runtime starts is its manifest's ``before_start``, called here first:

- **jax**: on a CPU, ``--xla_force_host_platform_device_count=N`` must be in ``XLA_FLAGS``
  before jax is imported; on GPUs the visible devices are the mesh. One process per host: with
  ``JAX_COORDINATOR_ADDRESS`` set, ``jax.distributed.initialize`` joins the hosts first.
- **tensorflow**: the CPU is split into N logical devices before TensorFlow's runtime starts;
  GPUs are used as they are. One process per host: with ``TF_CONFIG`` set,
  ``MultiWorkerMirroredStrategy`` over the cluster it names.
- **torch**: one process per device. Under ``torchrun`` this process is one rank; otherwise this
  process is rank 0 and ``N - 1`` ranks are started beside it (``spawn``), each running
  ``child_job`` (default ``job``, which must then pickle: a ``functools.partial`` of a module
  function). The job sees the same ``make`` in every rank and writes only where
  ``step.is_main``.

So a caller that must bring an engine up inside its own process (the ``train`` command, a bench
worker) calls :func:`launch` before it imports any framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends import FRAMEWORKS, canonical_name, load_part, manifest
from ..params import ParamTree
from ..spec import GANSpec

#: ``make(spec, params)``: a data-parallel step over the launched devices (``.train_step``,
#: ``.device_step``/``.synchronize``/``.read_losses``, the state getters and setters).
Make = Callable[[GANSpec, ParamTree], Any]
Job = Callable[[Make], Any]


def launch(
    framework: str,
    devices: int,
    job: Job,
    *,
    platform: str | None = None,
    threads: int | None = None,
    child_job: Job | None = None,
) -> Any:
    """Run ``job(make)`` with ``make`` building ``framework``'s data-parallel step over
    ``devices`` devices (``platform="cpu"``: logical CPU devices even where a GPU is present);
    returns what this process's ``job`` returned. ``threads``: CPU threads in all (torch ranks
    get an equal share each)."""
    if devices < 1:
        raise ValueError(f"devices must be ≥ 1, got {devices}")
    name = _engine(framework)
    prepare_environment(name, devices, platform)
    engine = load_part(name, "parallel")
    return engine.launch(devices, job, platform=platform, threads=threads, child_job=child_job)


def prepare_environment(framework: str, devices: int, platform: str | None = None) -> None:
    """The environment ``framework``'s engine reads when it starts: call before it is imported
    (:func:`launch` calls it; a caller that imports the framework earlier calls it first)."""
    before_start = manifest(framework).before_start
    if before_start is not None:
        before_start(devices, platform)


def _engine(framework: str) -> str:
    try:
        name = canonical_name(framework)
    except ValueError:
        name = None
    if name is None or not manifest(name).data_parallel_modes:
        engines = [f for f in FRAMEWORKS if manifest(f).data_parallel_modes]
        raise ValueError(f"no data-parallel engine for {framework!r}; one of {', '.join(engines)}")
    return name


__all__ = ["Job", "Make", "launch", "prepare_environment"]
