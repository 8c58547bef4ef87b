"""Port checkpoints between stacks: read a framework's native file, match it to a spec, write another.

The converter behind ``gan-backends port SRC --spec SPEC --to BACKEND --out DST``. Four native
forms, read and written: ``torch`` (a ``state_dict``), ``keras`` (Keras 3 ``.weights.h5``,
Keras 2 ``.h5``), ``flax`` (msgpack, orbax directories) and this project's ``safetensors``.
Each framework's forms are declared in its package's manifest (``checkpoint_kinds``) and read,
written and run by its ``checkpoint`` module (``gan_backends/backends/<framework>/checkpoint.py``,
where each format, and how its layer order is recovered, is described); this package never
imports a framework and reaches those modules through
:func:`~gan_backends.backends.load_part`.

- :mod:`.native`: :class:`NativeTensor`, :class:`NativeCheckpoint`, :class:`PortError`, the
  kinds (:func:`canonical_kind`, :func:`detect_kind`), :func:`read_native`, :func:`write_native`;
- :mod:`.safetensors`: this project's own files;
- :mod:`.match`: :func:`to_canonical` matches the native tensors to the spec's parameters and
  buffers by order and shape, converting layouts;
- :mod:`.verify`: :func:`verify` runs the networks in the source's framework and in the
  target's (built from the spec, the target loaded from the written file) on the same inputs;
- :func:`port` does all three, and its :class:`PortResult` says whether the two sides agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import check_output
from ..errors import NonFiniteValues
from ..params import ParamTree, nonfinite_tensors
from ..spec import GANSpec
from .match import from_native_layout, to_canonical, to_native_layout
from .native import (
    KIND_ALIASES,
    KINDS,
    LAYOUT_OF_KIND,
    ROLES,
    NativeCheckpoint,
    NativeTensor,
    PortError,
    canonical_kind,
    detect_kind,
    networks_of,
    read_native,
    suggested_name,
    write_native,
)
from .optimizer_state import canonical_optimizer, write_training_checkpoint
from .safetensors import read as read_safetensors
from .verify import Agreement, native_outputs, verify
from .verify_model import mapping_from_models, verify_against_models

#: The largest ``max |source - target| / max |source|`` a port passes with. Both sides compute
#: the same float32 network in different frameworks, so they differ by rounding only (summation
#: order, kernel choice: 5e-8 to 1e-6 of the outputs' scale, measured on the mlp and dcgan-small
#: presets with torch, Keras and Flax on CPU), while a wrong conversion (a transposed kernel, a
#: missing spatial flip, swapped BatchNorm statistics) moves the outputs by the order of their
#: own scale; 1e-4 lies between, two orders of magnitude clear of rounding.
AGREEMENT_TOLERANCE = 1e-4
#: The same bound for the user's own model against the converted one, tighter: the two differ
#: by float32 rounding only (2e-7 to 1e-6 of the outputs' scale measured, torch against Flax
#: and Keras), while a spec wrong by one BatchNorm eps (1e-3 for 1e-5) moves a DCGAN generator's
#: images by 2e-5 of their scale: 1e-5 lies between.
MODEL_TOLERANCE = 1e-5


@dataclass
class PortResult:
    """What :func:`port` did, and whether the two frameworks agree on the ported networks."""

    params: ParamTree
    buffers: ParamTree
    networks: tuple[str, ...]
    notes: list[str]
    agreement: list[Agreement]
    #: Where the converted model first parts from the user's own model (one line per network).
    divergences: list[str] = field(default_factory=list)
    #: Whether the user's own model ran (then the spec is verified too, not only the conversion).
    against_model: bool = False

    @property
    def worst(self) -> float:
        """The largest difference relative to the outputs' scale over the agreement rows
        (``max_abs_diff / max(max_abs_output, 1e-12)``; 0.0 when nothing was verified)."""
        return max((a.max_abs_diff / max(a.max_abs_output, 1e-12) for a in self.agreement), default=0.0)

    @property
    def passed(self) -> bool:
        """Every verified network agrees within :data:`AGREEMENT_TOLERANCE` of its outputs' scale, and the
        user's own model, where it ran, within :data:`MODEL_TOLERANCE`."""
        return self.worst <= AGREEMENT_TOLERANCE and not self.divergences

    def summary(self) -> str:
        lines = [f"networks: {', '.join(self.networks)}; {len(self.params)} parameters, {len(self.buffers)} buffers"]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"agreement: {a}" for a in self.agreement]
        lines += [f"first difference: {d}" for d in self.divergences]
        if self.agreement and not self.against_model:
            lines.append(
                "verified: the conversion (the spec's network holding the source's weights, in both frameworks); "
                "not the spec itself: give --model to run your own model against it"
            )
        elif self.against_model and self.divergences:
            lines.append("verified against your own model: the converted model is not your model (above)")
        elif self.against_model:
            lines.append("verified: the conversion and the spec, against your own model")
        return "\n".join(lines)


#: ``--to checkpoint``: a training checkpoint (weights, statistics, both optimisers, the step)
#: that ``train --resume`` continues; it is a safetensors file, verified as one.
TRAINING_CHECKPOINT = "checkpoint"


def check_out_name(src: str | Path, to: str, out: str | Path, *, overwrite: bool = False) -> None:
    """Refuse an ``out`` that is ``src``, that exists (unless ``overwrite``), that cannot be
    written, or whose name says another form than ``to``."""
    check_output(out, what="--out", inputs=(src,), overwrite=overwrite)
    target = "safetensors" if to == TRAINING_CHECKPOINT else canonical_kind(to)
    try:
        named = detect_kind(out)
    except PortError:
        named = None
    if named != target:
        said = f"a {named} file's name" if named else "no form's name"
        raise PortError(f"--out {out}: {said}, but --to {to} writes {target}; name it {suggested_name(target)}")


def port(
    src: str | Path,
    spec: GANSpec,
    to: str,
    out: str | Path,
    *,
    kind: str | None = None,
    networks: str | Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    check: bool = True,
    batch: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    models: Mapping[str, Any] | None = None,
    step: int | None = None,
) -> PortResult:
    """Read ``src`` (its ``kind`` detected from the name when ``None``), convert it to the
    canonical trees, write it as ``to`` at ``out`` and, with ``check``, run it in the source's
    and the target's framework on the same inputs (:func:`verify`).

    ``out`` is checked before anything is read: never the source, named as a ``to`` file (a
    ``.pth`` holding msgpack would mislead every later reader), writable, and not an existing
    file unless ``overwrite``.

    ``models`` (``{"generator": model, ...}``, the user's own model objects): each also runs with
    the source's weights against the converted model, and where they part the first layer
    that differs is named (:func:`~gan_backends.port.verify_model.verify_against_models`); without a
    ``mapping``, the file's tensors are matched to the spec by the modules of these models that
    hold them (:func:`~gan_backends.port.verify_model.mapping_from_models`), then by order.

    ``to="checkpoint"``: a training checkpoint, the file's optimiser states moved with the weights
    (:mod:`.optimizer_state`; ``step`` where the file does not count its updates); verified as
    this project's safetensors file."""
    check_out_name(src, to, out, overwrite=overwrite)
    ckpt = read_native(src, kind)
    if mapping is None and models:  # the user's model names each tensor's layer (registration order aside)
        mapping = mapping_from_models(ckpt, spec, models) or None
    params, buffers = to_canonical(ckpt, spec, networks=networks, mapping=mapping)
    bad = nonfinite_tensors({**params, **buffers})
    if bad:
        raise NonFiniteValues(f"{src}: {', '.join(bad)}; not converted (a port of NaN weights proves nothing)")
    notes = list(ckpt.notes)
    if to == TRAINING_CHECKPOINT:
        state, g_step = canonical_optimizer(ckpt, spec, mapping, step)
        notes += write_training_checkpoint(out, src, spec, params, buffers, state, g_step)
        to = "safetensors"
    else:
        notes += write_native(params, buffers, spec, to, out)
    agreement = verify(spec, params, buffers, ckpt.kind, to, out, batch=batch, seed=seed) if check else []
    divergences: list[str] = []
    mine = {net: model for net, model in (models or {}).items() if net in networks_of(params)}
    if check and mine:
        theirs, divergences, model_notes = verify_against_models(
            spec, params, buffers, mine, src, to, out, tolerance=MODEL_TOLERANCE, batch=batch, seed=seed
        )
        agreement += theirs
        notes += model_notes
    ran = any(a.source.startswith("your ") for a in agreement)
    return PortResult(params, buffers, networks_of(params), notes, agreement, divergences, ran)


__all__ = [
    "AGREEMENT_TOLERANCE",
    "MODEL_TOLERANCE",
    "TRAINING_CHECKPOINT",
    "KINDS",
    "KIND_ALIASES",
    "LAYOUT_OF_KIND",
    "ROLES",
    "Agreement",
    "NativeCheckpoint",
    "NativeTensor",
    "PortError",
    "PortResult",
    "canonical_kind",
    "detect_kind",
    "from_native_layout",
    "native_outputs",
    "networks_of",
    "port",
    "read_native",
    "read_safetensors",
    "to_canonical",
    "to_native_layout",
    "verify",
    "write_native",
]
