"""Run data-parallel training steps in a process of their own and write the results as ``.npz``.

    python -m gan_backends.parallel.run CONFIG.json OUT.npz

A separate process because each engine must be configured before its framework starts: XLA's
host device count is read when jax is imported, TensorFlow's logical CPU devices must be set
before its runtime initialises, and a torch process group is one process per device (this
module spawns them, or runs as one rank under ``torchrun``). CONFIG::

    {"framework": "jax" | "torch" | "tensorflow", "devices": 2, "platform": "cpu",
     "inputs": "inputs.npz",
     "cases": [{"name": "mlp", "spec": {...GANSpec.to_dict()...}, "batchnorm": "sync", "steps": 1}]}

``inputs.npz`` holds, per case, ``CASE/params/NAME`` (the canonical tree) and ``CASE/batch/real``,
``z_d``, ``z_g`` (and ``alpha``): the global batch, drawn in NumPy by the caller. OUT.npz holds
``CASE/params/NAME``, ``CASE/buffers/NAME``, ``CASE/loss/TERM`` after the steps, and ``meta``
(JSON text: the engine and devices used). No pickle anywhere: ``np.savez`` / ``np.load(...,
allow_pickle=False)``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import TrainBatch
from ..params import ParamTree
from ..spec import GANSpec
from . import check_batchnorm
from .reference import StepResult


def write_inputs(path: str | Path, cases: dict[str, tuple[ParamTree, TrainBatch]]) -> None:
    """The inputs file of a run: each case's parameters and global batch."""
    arrays: dict[str, np.ndarray] = {}
    for case, (params, batch) in cases.items():
        arrays.update({f"{case}/params/{n}": np.asarray(v) for n, v in params.items()})
        for field in ("real", "z_d", "z_g", "alpha"):
            if getattr(batch, field) is not None:
                arrays[f"{case}/batch/{field}"] = np.asarray(getattr(batch, field))
    np.savez(path, **arrays)


def _read_tree(data: Any, prefix: str) -> ParamTree:
    return {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}


def read_inputs(path: str | Path, case: str) -> tuple[ParamTree, TrainBatch]:
    with np.load(path, allow_pickle=False) as data:
        params = _read_tree(data, f"{case}/params/")
        batch = _read_tree(data, f"{case}/batch/")
    return params, TrainBatch(real=batch["real"], z_d=batch["z_d"], z_g=batch["z_g"], alpha=batch.get("alpha"))


def write_results(path: str | Path, results: dict[str, StepResult], meta: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for case, result in results.items():
        arrays.update({f"{case}/params/{n}": v for n, v in result.params.items()})
        arrays.update({f"{case}/buffers/{n}": v for n, v in result.buffers.items()})
        arrays.update({f"{case}/loss/{k}": np.array(v, np.float64) for k, v in result.losses.items()})
    tmp = Path(str(path) + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_results(path: str | Path) -> tuple[dict[str, StepResult], dict[str, Any]]:
    """The results of a run by case, and its ``meta``."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        cases = sorted({key.split("/")[0] for key in data.files if "/" in key})
        results = {
            case: StepResult(
                params=_read_tree(data, f"{case}/params/"),
                buffers=_read_tree(data, f"{case}/buffers/"),
                losses={k: float(v) for k, v in _read_tree(data, f"{case}/loss/").items()},
            )
            for case in cases
        }
    return results, meta


def _run_cases(config: dict[str, Any], make: Any) -> tuple[dict[str, StepResult], dict[str, Any]]:
    """Every case of ``config`` through ``make(spec, params, batchnorm)``, a data-parallel step."""
    results, meta = {}, {}
    for case in config["cases"]:
        spec = GANSpec.from_dict(case["spec"])
        params, batch = read_inputs(config["inputs"], case["name"])
        step = make(spec, params, check_batchnorm(case["batchnorm"]))
        losses: dict[str, float] = {}
        for _ in range(int(case.get("steps", 1))):
            losses = step.train_step(batch)
        results[case["name"]] = StepResult(step.get_params(), step.get_buffers(), losses)
        meta[case["name"]] = step.describe()
    return results, meta


# -- one entry per framework ------------------------------------------------------------------


def run_jax(config: dict[str, Any], out: str) -> None:
    flag = f"--xla_force_host_platform_device_count={int(config['devices'])}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    if config.get("platform"):
        os.environ["JAX_PLATFORMS"] = config["platform"]
    from .jax_mesh import JaxDataParallel

    def make(spec, params, batchnorm):
        return JaxDataParallel(spec, params, batchnorm=batchnorm, devices=int(config["devices"]))

    write_results(out, *_run_cases(config, make))


def run_tensorflow(config: dict[str, Any], out: str) -> None:
    if config.get("platform") == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # before TF starts: the logical CPUs are the devices
    from .tf_mirrored import TensorFlowDataParallel, make_strategy

    strategy = make_strategy(int(config["devices"]), config.get("platform"))

    def make(spec, params, batchnorm):
        return TensorFlowDataParallel(spec, params, batchnorm=batchnorm, strategy=strategy)

    write_results(out, *_run_cases(config, make))


def _torch_rank(rank: int, config: dict[str, Any], out: str, port: int) -> None:
    """One rank of a spawned group: the environment torchrun would give it, then the cases."""
    world = int(config["devices"])
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    _torch_worker(config, out)


def _torch_worker(config: dict[str, Any], out: str) -> None:
    import torch
    import torch.distributed as dist

    from .torch_ddp import TorchDataParallel, init_process_group

    torch.set_num_threads(1)  # one rank per core: N ranks with N threads each would oversubscribe
    device = init_process_group("cpu" if config.get("platform") == "cpu" else None)
    try:

        def make(spec, params, batchnorm):
            return TorchDataParallel(spec, params, batchnorm=batchnorm, device=device)

        results, meta = _run_cases(config, make)
        if dist.get_rank() == 0:
            write_results(out, results, meta)
    finally:
        dist.destroy_process_group()


def run_torch(config: dict[str, Any], out: str) -> None:
    if "RANK" in os.environ:  # launched by torchrun: this process is one rank
        _torch_worker(config, out)
        return
    import torch.multiprocessing as mp

    world = int(config["devices"])
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) != world:
        raise ValueError("WORLD_SIZE and the config's devices disagree")
    mp.spawn(_torch_rank, args=(config, out, _free_port()), nprocs=world, join=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RUNNERS = {"jax": run_jax, "tensorflow": run_tensorflow, "torch": run_torch}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(Path(args[0]).read_text())
    framework = config["framework"]
    if framework not in RUNNERS:
        raise SystemExit(f"unknown framework {framework!r}; one of {sorted(RUNNERS)}")
    RUNNERS[framework](config, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
