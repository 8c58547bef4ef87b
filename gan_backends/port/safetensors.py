"""The ``safetensors`` kind: this project's own files, the one form that needs no framework.

A parameter file (:func:`~gan_backends.params.save_params`) or a training checkpoint's
``params/`` and ``buffers/`` (its ``optimizer/`` is skipped): canonical names and layouts
already, so reading is taking the names as they are. Running it is the float64 NumPy
reference. The same three functions as every framework package's ``checkpoint`` module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends.numpy.network import Network
from ..params import ParamTree, load_params, read_safetensors, save_params
from ..spec import GANSpec, SpecError
from .match import to_canonical
from .native import ROLES, NativeCheckpoint, NativeRun, NativeTensor, PortError, network_hint


def read(path: str | Path) -> NativeCheckpoint:
    """This project's parameter file (or a training checkpoint's ``params/`` and ``buffers/``)."""
    metadata, tree = read_safetensors(path)
    prefixed = all(k.split("/", 1)[0] in ("params", "buffers", "optimizer") for k in tree)
    notes = []
    if prefixed:
        notes.append(f"training checkpoint ({metadata.get('format')}): params/ and buffers/ read, optimizer/ skipped")
        tree = {k.split("/", 1)[1]: v for k, v in tree.items() if not k.startswith("optimizer/")}
    else:
        try:
            tree, _ = load_params(path)
        except SpecError as exc:  # a partial tree or buffers beside a spec: take the file as it is
            notes.append(f"read without its spec check ({exc})")
    tensors = []
    for name, array in tree.items():
        role = name.rsplit(".", 1)[-1]
        if role not in ROLES or role == "skip":
            raise PortError(f"{path}: tensor {name!r} is not a canonical parameter or buffer name")
        tensors.append(NativeTensor(name, array, role, name.rsplit(".", 1)[0], None, network_hint(name.split(".")[0])))
    return NativeCheckpoint("safetensors", str(path), tensors, notes)


def write(params: ParamTree, buffers: ParamTree, spec: GANSpec, path: Path) -> list[str]:
    """The canonical tree as it is, BatchNorm statistics included, with the spec in the
    metadata (a one-network tree too: :func:`~gan_backends.params.load_params` checks the
    networks a file holds), so ``sample`` and ``discriminate`` need nothing else."""
    save_params(path, {**params, **buffers}, spec)
    held = sorted({name.split(".", 1)[0] for name in params})
    stats = f", {len(buffers)} BatchNorm statistics" if buffers else ""
    return [f"safetensors: canonical names, the spec in the metadata ({' and '.join(held)}{stats})"]


def run(job: NativeRun) -> dict[str, np.ndarray]:
    """Each network in the float64 NumPy reference, its tree read from the file or given."""
    params, buffers = job.params, job.buffers
    if job.path is not None:
        params, buffers = to_canonical(read(job.path), job.spec, networks=job.nets)
    tree = {**params, **buffers}
    return {net: Network(job.spec, net).forward(tree, np.asarray(job.inputs[net], np.float64))[0] for net in job.nets}
