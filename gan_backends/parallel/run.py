"""Run data-parallel training steps in a process of their own and write the results as ``.npz``.

    python -m gan_backends.parallel.run CONFIG.json OUT.npz

A separate process because each engine must be configured before its framework starts
(:mod:`.launch`): XLA's host device count is read when jax is imported, TensorFlow's logical
CPU devices must be set before its runtime initialises, and a torch process group is one
process per device (rank 0 is this process, the others are spawned; or one rank under
``torchrun``). CONFIG::

    {"framework": "jax" | "torch" | "tensorflow", "devices": 2, "platform": "cpu",
     "inputs": "inputs.npz",
     "cases": [{"name": "mlp", "spec": {...GANSpec.to_dict()...}, "steps": 1}]}

The spec carries the cross-device BatchNorm choice (``data_parallel.batchnorm``).

``inputs.npz`` holds, per case, ``CASE/params/NAME`` (the canonical tree) and ``CASE/batch/real``,
``z_d``, ``z_g`` (and ``alpha``): the global batch, drawn in NumPy by the caller. OUT.npz holds
``CASE/params/NAME``, ``CASE/buffers/NAME``, ``CASE/loss/TERM`` after the steps, and ``meta``
(JSON text: the engine and devices used). No pickle anywhere: ``np.savez`` / ``np.load(...,
allow_pickle=False)``.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import TrainBatch
from ..params import ParamTree
from ..spec import GANSpec
from .launch import Make, launch
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


def run_cases(config: dict[str, Any], out: str, make: Make) -> None:
    """Every case of ``config`` through ``make(spec, params)``, a data-parallel step; the main
    process writes the results."""
    results, meta, step = {}, {}, None
    for case in config["cases"]:
        spec = GANSpec.from_dict(case["spec"])
        params, batch = read_inputs(config["inputs"], case["name"])
        step = make(spec, params)
        losses: dict[str, float] = {}
        for _ in range(int(case.get("steps", 1))):
            losses = step.train_step(batch)
        results[case["name"]] = StepResult(step.get_params(), step.get_buffers(), losses)
        meta[case["name"]] = step.describe()
    if step is None or step.is_main:
        write_results(out, results, meta)


def run(config: dict[str, Any], out: str) -> None:
    """The run of ``config`` (see the module docstring), its engine brought up by :func:`launch`."""
    job = partial(run_cases, config, out)
    launch(config["framework"], int(config["devices"]), job, platform=config.get("platform"), threads=1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run(json.loads(Path(args[0]).read_text()), args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
