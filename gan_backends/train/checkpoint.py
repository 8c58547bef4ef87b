"""Training checkpoints: one safetensors file with the parameters, the BatchNorm statistics,
both optimisers' state, G's moving average where the spec keeps one and, in its metadata, the
spec, the step and the run's settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..backends.base import EmaState, OptimizerState, check_ema
from ..params import ParamTree, buffer_shapes, check_tree, param_shapes, read_safetensors
from ..spec import GANSpec, SpecError

CHECKPOINT_FORMAT = "gan-backends/checkpoint-v1"


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(
    path: str | Path,
    spec: GANSpec,
    params: ParamTree,
    buffers: ParamTree,
    optimizer: OptimizerState,
    meta: dict[str, Any],
    ema: EmaState | None = None,
) -> None:
    """One safetensors file: ``params/<name>``, ``buffers/<name>``, ``optimizer/<slot>/<name>``,
    ``ema/<name>`` (G's moving average, under G's parameter names), and in the metadata the
    spec, the optimiser step counts, the EMA's step count and ``meta`` (JSON)."""
    from safetensors.numpy import save

    tensors = {f"params/{k}": v for k, v in params.items()}
    tensors.update({f"buffers/{k}": v for k, v in buffers.items()})
    for slot, tree in optimizer.slots.items():
        tensors.update({f"optimizer/{slot}/{k}": v for k, v in tree.items()})
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in ema.params.items()})
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_json(indent=None),
        "optimizer_steps": json.dumps(optimizer.steps),
        "meta": json.dumps(meta),
        **({"ema_steps": json.dumps(int(ema.steps))} if ema is not None else {}),
    }
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


@dataclass
class Checkpoint:
    spec: GANSpec
    params: ParamTree
    buffers: ParamTree
    optimizer: OptimizerState
    meta: dict[str, Any]
    #: G's moving average; None when the spec keeps none.
    ema: EmaState | None = None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a :func:`save_checkpoint` file, checking every tensor against its spec."""
    path = Path(path)
    metadata, tensors = read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise SpecError(f"{path}: not a gan-backends training checkpoint (format {metadata.get('format')!r})")
    try:
        return _checkpoint_of(metadata, tensors)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except (KeyError, ValueError, TypeError) as exc:  # a damaged or hand-edited file
        raise SpecError(f"{path}: a damaged training checkpoint ({type(exc).__name__}: {exc})") from None


def _checkpoint_of(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> Checkpoint:
    spec = GANSpec.from_json(metadata["spec"])
    params = {n: tensors[f"params/{n}"] for n in param_shapes(spec) if f"params/{n}" in tensors}
    check_tree(spec, params)
    buffers = {n: tensors[f"buffers/{n}"] for n in buffer_shapes(spec)}
    slots: dict[str, ParamTree] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, slot, name = key.split("/", 2)
            slots.setdefault(slot, {})[name] = value
    order = list(param_shapes(spec))
    slots = {s: {n: tree[n] for n in order if n in tree} for s, tree in slots.items()}
    optimizer = OptimizerState(json.loads(metadata["optimizer_steps"]), slots)
    ema = None
    if spec.ema is not None:  # a spec with an average: the file must hold it, whole
        g_names = param_shapes(spec, ("generator",))
        ema = EmaState(json.loads(metadata["ema_steps"]), {n: tensors[f"ema/{n}"] for n in g_names})
        check_ema(spec, ema)
    return Checkpoint(spec, params, buffers, optimizer, json.loads(metadata["meta"]), ema)
