"""One network's weights and BatchNorm statistics from any file ``port`` reads or writes.

``sample`` and ``discriminate`` run a network from a training checkpoint, from this project's
parameter file (whole or one network, statistics included), or from a native file of any
framework (a torch ``state_dict``, a dict of several of them as training scripts save them,
Keras ``.weights.h5``, Flax msgpack or orbax), which holds weights only and so needs the spec.
The native forms go through the same reader and matcher as ``port`` (:func:`read_native`,
:func:`to_canonical`), so whatever ``port`` accepts or writes, these commands run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..params import ParamTree, buffer_shapes, init_buffers, init_params, read_safetensors
from ..spec import GANSpec, SpecError
from ..train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from .match import to_canonical
from .native import SAFETENSORS, PortError, canonical_kind, detect_kind, networks_of, read_native


@dataclass
class NetworkState:
    """A spec and whole trees for building any backend, and what of them the file held.

    ``params`` and ``buffers`` cover both networks, as every backend is built with both: a
    network the file does not hold gets initial weights and is never run. ``networks`` is what
    the file held."""

    spec: GANSpec
    params: ParamTree
    buffers: ParamTree
    networks: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def load_network(path: str | Path, net: str, *, spec: GANSpec | None = None, kind: str | None = None) -> NetworkState:
    """The state to run ``net`` (``generator`` or ``discriminator``) from ``path``.

    A training checkpoint carries its spec (a different ``spec`` given is refused); a parameter
    file carries one when ``port`` or ``save_params`` wrote it (``spec`` overrides it); a
    native file needs ``spec``. Raises :class:`~gan_backends.spec.SpecError` (a
    :class:`PortError` for a file that does not fit) naming the file and what is missing."""
    path = Path(path)
    kind = canonical_kind(kind) if kind else detect_kind(path)
    notes: list[str] = []
    if kind == SAFETENSORS.name:
        metadata, _ = read_safetensors(path)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            ckpt = load_checkpoint(path)
            if spec is not None and spec != ckpt.spec:
                raise SpecError(f"--spec: {path} is a training checkpoint with its own spec {ckpt.spec.name!r}")
            return _whole(ckpt.spec, ckpt.params, ckpt.buffers, net, path, notes)
        if spec is None:
            if "spec" not in metadata:
                raise SpecError(f"{path}: a parameter file without its spec; give --spec (a preset name or spec JSON)")
            spec = GANSpec.from_json(metadata["spec"])
    elif spec is None:
        raise SpecError(
            f"{path}: a {kind} file holds weights, not the architecture; give --spec (a preset name or spec JSON)"
        )
    native = read_native(path, kind)
    notes += native.notes
    params, buffers = to_canonical(native, spec)
    return _whole(spec, params, buffers, net, path, notes)


def _whole(
    spec: GANSpec, params: ParamTree, buffers: ParamTree, net: str, path: Path, notes: list[str]
) -> NetworkState:
    held = networks_of(params)
    if net not in held:
        raise PortError(f"{path}: holds the {' and '.join(held) or 'no network'}, not the {net}")
    whole_params = {**init_params(spec), **params}
    whole_buffers = {**init_buffers(spec), **{k: v for k, v in buffers.items() if k in buffer_shapes(spec)}}
    dtype = np.dtype(spec.numerics.dtype)
    whole_params = {k: np.asarray(v, dtype) for k, v in whole_params.items()}
    whole_buffers = {k: np.asarray(v, dtype) for k, v in whole_buffers.items()}
    return NetworkState(spec, whole_params, whole_buffers, held, notes)
