"""Verification: the ported networks run in the source's framework and in the target's.

A conversion is only as good as what it computes, so after writing, both sides run the spec's
networks on the same inputs: the source side from the canonical trees (in the source's layout,
through its package's runner), the target side loaded from the written file the target
framework's own way. Every layout conversion is a transpose or flip, and the writers' inverts
the readers', so any difference beyond rounding is a wrong conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..params import ParamTree
from ..spec import NETWORKS, GANSpec
from .native import NativeRun, canonical_kind, checked_trees, checkpoint_part, networks_of


@dataclass(frozen=True)
class Agreement:
    """One network run in the source's framework and in the target's on the same inputs."""

    network: str
    source: str
    target: str
    max_abs_diff: float
    max_abs_output: float

    def __str__(self) -> str:
        return (
            f"{self.network}: max |{self.source} - {self.target}| = {self.max_abs_diff:.3g} "
            f"(outputs up to {self.max_abs_output:.3g})"
        )


def native_outputs(
    kind: str,
    spec: GANSpec,
    inputs: Mapping[str, np.ndarray],
    *,
    params: ParamTree | None = None,
    buffers: ParamTree | None = None,
    path: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Each network of ``inputs`` run in ``kind``'s framework, built from the spec, in inference
    mode; its weights loaded the framework's own way from the native file ``path`` (as
    :func:`~gan_backends.port.write_native` writes it), or else from the canonical trees in that
    framework's layout. ``safetensors`` runs the float64 NumPy reference."""
    kind = canonical_kind(kind)
    nets = tuple(n for n in NETWORKS if n in inputs)
    if path is None:
        if params is None:
            raise ValueError("native_outputs needs params or path")
        _, params, buffers = checked_trees(params, buffers, spec)
    job = NativeRun(spec, nets, inputs, params or {}, buffers or {}, None if path is None else Path(path))
    return checkpoint_part(kind).run(job)


def verify(
    spec: GANSpec,
    params: ParamTree,
    buffers: ParamTree | None,
    source_kind: str,
    target_kind: str,
    target_path: str | Path,
    *,
    batch: int = 8,
    seed: int = 0,
) -> list[Agreement]:
    """Run G (and D, where ported) in the source's framework (the spec's network, holding the
    canonical tree in that framework's layout) and in the target's (loaded from the written
    file) on the same noise (G) and images (D, uniform in [-1, 1]); how far they differ.

    The source side holds exactly the source file's arrays: every layout conversion is a
    transpose or flip and :func:`~gan_backends.port.to_native_layout` inverts
    :func:`~gan_backends.port.from_native_layout`. A wrong conversion would therefore show as a
    difference here."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.numerics.dtype)
    nets = networks_of(params)
    inputs = {
        "generator": rng.standard_normal((batch, spec.latent_dim)).astype(dtype),
        "discriminator": rng.uniform(-1.0, 1.0, (batch, *spec.data_shape)).astype(dtype),
    }
    inputs = {net: inputs[net] for net in nets}
    source_kind, target_kind = canonical_kind(source_kind), canonical_kind(target_kind)
    src = native_outputs(source_kind, spec, inputs, params=params, buffers=buffers)
    dst = native_outputs(target_kind, spec, inputs, path=target_path)
    names = {"safetensors": "numpy reference"}
    out = []
    for net in nets:
        a, b = np.asarray(src[net], np.float64), np.asarray(dst[net], np.float64)
        out.append(
            Agreement(
                net,
                names.get(source_kind, source_kind),
                names.get(target_kind, target_kind),
                float(np.max(np.abs(a - b))),
                float(np.max(np.abs(a))),
            )
        )
    return out
