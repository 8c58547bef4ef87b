"""Start a framework's data-parallel engine over N devices and run a job on it.

    result = launch("jax", 2, job)       # job(make) -> result; make(spec, params) -> a step

The one place that knows how each engine is brought up, in the order it must be:

- **jax**: on a CPU, ``--xla_force_host_platform_device_count=N`` must be in ``XLA_FLAGS``
  before jax is imported; on GPUs the visible devices are the mesh. One process per host: with
  ``JAX_COORDINATOR_ADDRESS`` set (and ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or a cluster
  jax detects), ``jax.distributed.initialize`` joins the hosts first and the mesh spans them.
- **tensorflow**: the CPU is split into N logical devices before TensorFlow's runtime starts
  (:func:`~.tf_mirrored.make_strategy`); GPUs are used as they are. One process per host: with
  ``TF_CONFIG`` set, ``MultiWorkerMirroredStrategy`` over the cluster it names.
- **torch**: one process per device. Under ``torchrun`` this process is one rank; otherwise this
  process is rank 0 and ``N - 1`` ranks are started beside it (``spawn``), each running
  ``child_job`` (default ``job``, which must then pickle: a ``functools.partial`` of a module
  function). The job sees the same ``make`` in every rank and writes only where
  ``step.is_main``.

So a caller that must bring an engine up inside its own process (the ``train`` command, a bench
worker) calls :func:`launch` before it imports any framework.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from ..params import ParamTree
from ..spec import GANSpec

#: ``make(spec, params)``: a data-parallel step over the launched devices (``.train_step``,
#: ``.device_step``/``.synchronize``/``.read_losses``, the state getters and setters).
Make = Callable[[GANSpec, ParamTree], Any]
Job = Callable[[Make], Any]

FRAMEWORKS = ("torch", "tensorflow", "jax")


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
    if framework == "jax":
        return _launch_jax(devices, job, platform)
    if framework == "tensorflow":
        return _launch_tensorflow(devices, job, platform)
    if framework == "torch":
        return _launch_torch(devices, job, platform, threads, child_job or job)
    raise ValueError(f"no data-parallel engine for {framework!r}; one of {', '.join(FRAMEWORKS)}")


def prepare_environment(framework: str, devices: int, platform: str | None = None) -> None:
    """The environment ``framework``'s engine reads when it starts: call before it is imported
    (:func:`launch` calls it; a caller that imports the framework earlier calls it first)."""
    import sys

    if framework == "jax":
        if platform == "cpu":
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if "jax" not in sys.modules:  # the flag is read once, when jax starts
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_force_host_platform_device_count" not in flags:
                flag = f"--xla_force_host_platform_device_count={devices}"  # jax_mesh.host_device_flag
                os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    elif framework == "tensorflow" and platform == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # before TF starts: the logical CPUs are the devices


def _launch_jax(devices: int, job: Job, platform: str | None) -> Any:
    prepare_environment("jax", devices, platform)
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):  # one process per host: join the others first
        import jax

        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(  # None: detected from the cluster (SLURM, Open MPI, ...)
            num_processes=None if count is None else int(count),
            process_id=None if index is None else int(index),
        )
    from .jax_mesh import JaxDataParallel

    return job(lambda spec, params: JaxDataParallel(spec, params, devices=devices))


def _launch_tensorflow(devices: int, job: Job, platform: str | None) -> Any:
    prepare_environment("tensorflow", devices, platform)
    from .tf_mirrored import TensorFlowDataParallel, make_strategy

    try:
        strategy = make_strategy(devices, platform)
    except RuntimeError as exc:  # "Virtual devices cannot be modified after being initialized"
        raise RuntimeError(
            f"TensorFlow started before its {devices} logical CPU devices could be set up ({exc}); "
            "run the data-parallel job in a fresh process"
        ) from None
    return job(lambda spec, params: TensorFlowDataParallel(spec, params, strategy=strategy))


# -- torch: one process per rank ---------------------------------------------------------------


def _torch_job(job: Job, platform: str | None, threads_per_rank: int) -> Any:
    """``job`` in this rank: join the group (torchrun's environment), run, leave."""
    import torch
    import torch.distributed as dist

    from .torch_ddp import TorchDataParallel, init_process_group

    torch.set_num_threads(threads_per_rank)  # N ranks with all threads each would oversubscribe
    device = init_process_group("cpu" if platform == "cpu" else None)
    try:
        return job(lambda spec, params: TorchDataParallel(spec, params, device=device))
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


def _torch_child(index: int, world: int, port: int, job: Job, platform: str | None, threads: int) -> None:
    """Rank ``index + 1`` of a group whose rank 0 is the launching process."""
    os.environ.update(_rank_environment(index + 1, world, port))
    _torch_job(job, platform, threads)


def _launch_torch(devices: int, job: Job, platform: str | None, threads: int | None, child_job: Job) -> Any:
    share = max(1, (threads or os.cpu_count() or 1) // devices)
    if "RANK" in os.environ:  # under torchrun: this process is one rank of its group
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world != devices:
            raise ValueError(f"torchrun started {world} ranks, the job asks for {devices} devices")
        return _torch_job(job, platform, share)
    return _launch_torch_group(devices, job, platform, share, child_job)


def _launch_torch_group(world: int, job: Job, platform: str | None, share: int, child_job: Job) -> Any:
    import torch.multiprocessing as mp

    port = _free_port()
    children = None
    if world > 1:
        children = mp.start_processes(
            _torch_child,
            args=(world, port, child_job, platform, share),
            nprocs=world - 1,
            join=False,
            start_method="spawn",
        )
    saved = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    os.environ.update(_rank_environment(0, world, port))
    try:
        result = _torch_job(job, platform, share)
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
        while not children.join():
            pass
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["FRAMEWORKS", "Job", "Make", "launch", "prepare_environment"]
