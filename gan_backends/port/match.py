"""Native tensors matched to a spec's parameters and buffers by order and shape.

No native file names its tensors the way the spec does, and several do not even know their
full layer order (Keras groups by class, Flax sorts and numbers per module type). So the
native layers are walked in what order the file does know, each matched to the next spec
layer with parameters by roles and shapes after its layout's conversion; where the file knows
order only per chain, the one interleaving of the chains that fits the spec is used, and when
none fits, the error lists every mismatch of the nearest alignment with both names and shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import layouts
from ..params import ParamTree, buffer_shapes, param_shapes
from ..spec import NETWORKS, GANSpec, Layer, Shape, describe_path
from .native import ROLE_ORDER, NativeCheckpoint, NativeTensor, PortError, network_hint, state_layers
from .spectral_vectors import flax_vectors

# -- layouts -----------------------------------------------------------------------------------


def from_native_layout(layout: str, layer: Layer, role: str, array: np.ndarray) -> np.ndarray:
    """A native array in canonical layout, for spec ``layer`` (:mod:`gan_backends.layouts`)."""
    return layouts.from_native(layout, role, array, layer)


def to_native_layout(layout: str, layer: Layer, role: str, array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`from_native_layout`: a canonical array in ``layout``."""
    return layouts.to_native(layout, role, array, layer)


# -- matching ----------------------------------------------------------------------------------


@dataclass
class _Target:
    """One spec layer with parameters or buffers: its canonical slots ``(name, role, shape)``."""

    net: str
    index: str  # "3", or "2.main.0" inside a residual block
    layer: Layer
    slots: list[tuple[str, str, Shape]]

    @property
    def label(self) -> str:
        return f"{describe_path(f'{self.net}.{self.index}')} {self.layer.describe()}"


@dataclass
class _NativeLayer:
    key: str
    chain: str
    rank: float
    layer_type: str | None
    network: str | None
    tensors: list[NativeTensor]

    @property
    def label(self) -> str:
        return f"native layer {self.key!r} [" + ", ".join(f"{t.name} {t.shape}" for t in self.tensors) + "]"


def _targets(spec: GANSpec, networks: Sequence[str]) -> list[_Target]:
    return [_Target(net, i, layer, slots) for net in networks for i, layer, slots in state_layers(spec, net)]


def _tensor_problem(t: NativeTensor, target: _Target, slot: tuple[str, str, Shape]) -> str | None:
    name, _, shape = slot
    converted = from_native_layout(t.layout, target.layer, slot[1], t.array)
    if tuple(converted.shape) == tuple(shape):
        return None
    as_canonical = "" if converted.shape == t.array.shape else f" (canonical {tuple(converted.shape)})"
    return f"{t.name} {t.shape}{as_canonical} vs {name} expected {tuple(shape)} [{target.label}]"


def _problems(nl: _NativeLayer, target: _Target) -> list[str]:
    """Why native layer ``nl`` cannot be spec layer ``target`` (empty: it can)."""
    if nl.network is not None and nl.network != target.net:
        return [f"{nl.label} belongs to the {nl.network}, not to {target.label}"]
    if nl.layer_type is not None and nl.layer_type != target.layer.type_name:
        return [f"{nl.label} is a {nl.layer_type}, not {target.label}"]
    by_role = {t.role: t for t in nl.tensors}
    wanted = [slot[1] for slot in target.slots]
    if len(by_role) != len(nl.tensors) or sorted(by_role, key=ROLE_ORDER.get) != sorted(wanted, key=ROLE_ORDER.get):
        expected = ", ".join(f"{n} {s}" for n, _, s in target.slots)
        return [f"{nl.label} has roles {[t.role for t in nl.tensors]}; {target.label} needs {wanted}: {expected}"]
    return [p for slot in target.slots if (p := _tensor_problem(by_role[slot[1]], target, slot))]


def _native_layers(tensors: Sequence[NativeTensor]) -> list[list[_NativeLayer]]:
    """Native tensors grouped into layers, and the layers into chains ordered by rank."""
    layers: dict[tuple[str, str], _NativeLayer] = {}
    for t in tensors:
        key = (t.chain, t.layer)
        if key not in layers:
            layers[key] = _NativeLayer(t.layer, t.chain, t.rank, t.layer_type, t.network, [])
        layers[key].tensors.append(t)
    chains: dict[str, list[_NativeLayer]] = {}
    for nl in layers.values():
        chains.setdefault(nl.chain, []).append(nl)
    return [sorted(chain, key=lambda nl: nl.rank) for chain in chains.values()]


def _assign(
    chains: list[list[_NativeLayer]], targets: list[_Target], header: str
) -> list[tuple[_NativeLayer, _Target]]:
    """The one interleaving of the chains that fits the targets in order; PortError if none or several."""
    n_native = sum(len(c) for c in chains)
    fits: dict[tuple[int, int], bool] = {}

    def fit(c: int, p: int, j: int) -> bool:
        key = (id(chains[c][p]), j)
        if key not in fits:
            fits[key] = not _problems(chains[c][p], targets[j])
        return fits[key]

    @functools.cache
    def count(ptrs: tuple[int, ...]) -> int:
        j = sum(ptrs)
        if j == len(targets):
            return 1
        total = 0
        for c, p in enumerate(ptrs):
            if p < len(chains[c]) and fit(c, p, j):
                total += count(ptrs[:c] + (p + 1,) + ptrs[c + 1 :])
                if total >= 2:
                    return 2
        return total

    start = tuple(0 for _ in chains)
    solutions = count(start) if n_native == len(targets) else 0
    if solutions == 0:
        raise PortError(header + _diagnose(chains, targets))
    pairs: list[tuple[_NativeLayer, _Target]] = []
    ptrs = start
    for j, target in enumerate(targets):
        options = [
            c
            for c, p in enumerate(ptrs)
            if p < len(chains[c]) and fit(c, p, j) and count(ptrs[:c] + (p + 1,) + ptrs[c + 1 :])
        ]
        if solutions > 1 and len(options) > 1:
            alternatives = "; ".join(chains[c][ptrs[c]].label for c in options)
            raise PortError(
                f"{header}: the order is ambiguous: {target.label} could be any of: {alternatives}. "
                "Pass a mapping {native_name: canonical_name} for these tensors"
            )
        c = options[0]
        pairs.append((chains[c][ptrs[c]], target))
        ptrs = ptrs[:c] + (ptrs[c] + 1,) + ptrs[c + 1 :]
    return pairs


def _diagnose(chains: list[list[_NativeLayer]], targets: list[_Target]) -> str:
    """Every mismatch of the nearest alignment: native layers taken in order, a spec layer taking
    the next layer of its type where the file names types."""
    ptrs = [0] * len(chains)
    lines: list[str] = []
    for target in targets:
        heads = [c for c in range(len(chains)) if ptrs[c] < len(chains[c])]
        if not heads:
            names = ", ".join(f"{n} {s}" for n, _, s in target.slots)
            lines.append(f"nothing in the file for {target.label}: {names}")
            continue
        ranked = sorted(
            heads,
            key=lambda c: (
                bool(_problems(chains[c][ptrs[c]], target)),
                chains[c][ptrs[c]].layer_type not in (None, target.layer.type_name),
            ),
        )
        c = ranked[0]
        lines += _problems(chains[c][ptrs[c]], target)
        ptrs[c] += 1
    for c, chain in enumerate(chains):
        lines += [f"{nl.label}: no spec layer left for it" for nl in chain[ptrs[c] :]]
    n_native = sum(len(c) for c in chains)
    head = f": {n_native} native layers with tensors, {len(targets)} spec layers with parameters"
    if not lines:
        lines.append("no order of the native layers fits the spec's layer sequence")
    shown = lines[:40] + ([f"... and {len(lines) - 40} more"] if len(lines) > 40 else [])
    return head + "\n  - " + "\n  - ".join(shown)


def _normalise_networks(networks: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if networks is None:
        return None
    items = [networks] if isinstance(networks, str) else list(networks)
    out = []
    for item in items:
        net = network_hint(item) if item not in NETWORKS else item
        if net is None:
            raise PortError(f"unknown network {item!r}; known: {', '.join(NETWORKS)}")
        out.append(net)
    return tuple(n for n in NETWORKS if n in out)


def _match(
    tensors: list[NativeTensor], spec: GANSpec, networks: tuple[str, ...], mapping: Mapping[str, str], source: str
) -> dict[str, np.ndarray]:
    targets = _targets(spec, networks)
    slots = {slot[0]: (target, slot) for target in targets for slot in target.slots}
    by_name = {t.name: t for t in tensors}
    header = f"{source} does not fit spec {spec.name!r} ({' + '.join(networks)})"
    out: dict[str, np.ndarray] = {}
    problems = []
    for native, canonical in mapping.items():
        if native not in by_name:
            raise PortError(f"mapping names {native!r}, which is not in {source}; its tensors: {list(by_name)[:20]}")
        if canonical not in slots:
            raise PortError(
                f"mapping sends {native!r} to {canonical!r}, which is not a parameter or buffer of spec "
                f"{spec.name!r} ({' + '.join(networks)}); expected names like {list(slots)[:6]}"
            )
        if canonical in out:
            raise PortError(f"mapping sends two native tensors to {canonical!r}")
        target, slot = slots[canonical]
        problem = _tensor_problem(by_name[native], target, slot)
        if problem:
            problems.append(f"mapped {problem}")
        out[canonical] = from_native_layout(by_name[native].layout, target.layer, slot[1], by_name[native].array)
    if problems:
        raise PortError(header + ":\n  - " + "\n  - ".join(problems))
    rest = [t for t in tensors if t.name not in mapping]
    remaining = []
    for target in targets:
        left = [slot for slot in target.slots if slot[0] not in out]
        if left:
            remaining.append(_Target(target.net, target.index, target.layer, left))
    sources = {canonical: by_name[native] for native, canonical in mapping.items()}
    for nl, target in _assign(_native_layers(rest), remaining, header):
        by_role = {t.role: t for t in nl.tensors}
        for name, role, _ in target.slots:
            out[name] = from_native_layout(by_role[role].layout, target.layer, role, by_role[role].array)
            sources[name] = by_role[role]
    for target in targets:
        _derive_vectors(target, out, sources)
    return out


def _derive_vectors(target: _Target, out: dict[str, np.ndarray], sources: Mapping[str, NativeTensor]) -> None:
    """The spec's ``sn_u``, ``sn_v`` of a Flax ``nn.SpectralNorm`` layer, from its kernel and
    stored ``u`` with the spec layer's ``n_power_iterations`` and ``eps`` (in no file)."""
    names = {role: name for name, role, _ in target.slots}
    if "sn_u" not in names or sources[names["sn_u"]].derive != "flax":
        return
    sn = target.layer.spectral_norm
    u, v = flax_vectors(out[names["kernel"]], out[names["sn_u"]], sn.n_power_iterations, sn.eps, target.label)
    out[names["sn_u"]], out[names["sn_v"]] = u, v


def to_canonical(
    tensors: NativeCheckpoint | Sequence[NativeTensor],
    spec: GANSpec,
    *,
    networks: str | Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
) -> tuple[ParamTree, ParamTree]:
    """``(params, buffers)``: canonical trees from native tensors, matched to the spec's layers.

    Native layers (tensors sharing a module) are matched in order to the spec's layers that have
    parameters or buffers, each by its roles and shapes after the layout conversion of its
    source; where a file knows order only per layer type (Keras, Flax), the interleaving that
    fits the spec is used, and an error says when more than one fits. Names that are canonical
    already (this project's files) are taken by name. ``networks``: ``None`` detects what the
    file holds (both, the generator only, the discriminator only; only those entries are
    returned), or ``"generator"``, ``("generator", "discriminator")``. ``mapping``:
    ``{native_name: canonical_name}`` for tensors whose order does not match; the rest are
    matched in order. Raises :class:`PortError` naming every mismatch.
    """
    source = tensors.path if isinstance(tensors, NativeCheckpoint) else "the native tensors"
    active = [t for t in tensors if t.role != "skip"]
    if not active:
        raise PortError(f"{source} holds no parameters")
    names = {t.name for t in active}
    if len(names) != len(active):
        raise PortError(f"{source}: native tensor names repeat")
    all_slots = {name for target in _targets(spec, NETWORKS) for name, _, _ in target.slots}
    full_mapping = {t.name: t.name for t in active if t.layout == "canonical" and t.name in all_slots}
    for native, canonical in (mapping or {}).items():
        if canonical not in all_slots:
            raise PortError(
                f"mapping sends {native!r} to {canonical!r}, which is not a parameter or buffer of spec "
                f"{spec.name!r}; names look like {sorted(all_slots)[:4]}"
            )
        full_mapping[native] = canonical
    chosen = _normalise_networks(networks)
    if chosen is not None:
        candidates = [chosen]
        active = [t for t in active if t.network is None or t.network in chosen]  # e.g. G out of a G+D file
        kept = {t.name for t in active} | set(mapping or {})
        full_mapping = {k: v for k, v in full_mapping.items() if k in kept}
    else:
        hinted = {t.network for t in active if t.network} | {c.split(".", 1)[0] for c in full_mapping.values()}
        if hinted and all(t.network or t.name in full_mapping for t in active):
            candidates = [tuple(n for n in NETWORKS if n in hinted)]
        else:
            candidates = [NETWORKS, ("generator",), ("discriminator",)]
            candidates = [c for c in candidates if hinted <= set(c)]
    fitted: list[tuple[tuple[str, ...], dict[str, np.ndarray]]] = []
    errors: list[tuple[tuple[str, ...], PortError]] = []
    for candidate in candidates:
        try:
            fitted.append((candidate, _match(active, spec, candidate, full_mapping, source)))
        except PortError as exc:
            errors.append((candidate, exc))
    if len(fitted) > 1:
        raise PortError(
            f"{source} fits spec {spec.name!r} as "
            + " and as ".join("+".join(c) for c, _ in fitted)
            + ": pass networks= to say which"
        )
    if not fitted:
        if len(errors) == 1:
            raise errors[0][1]
        n_layers = sum(len(c) for c in _native_layers(active))
        counts = {c: len(_targets(spec, c)) for c, _ in errors}
        best = min(errors, key=lambda e: (abs(counts[e[0]] - n_layers), len(e[0]) == 1 and e[0][0] != "generator"))
        sizes = ", ".join(f"{'+'.join(c)}: {n}" for c, n in counts.items())
        raise PortError(
            f"{source} ({n_layers} native layers) fits none of the spec's networks (layers with parameters: {sizes}); "
            f"nearest, {'+'.join(best[0])}: {best[1]}"
        )
    nets, tree = fitted[0]
    dtype = np.dtype(spec.numerics.dtype)
    params = {n: np.array(tree[n], dtype=dtype) for n in param_shapes(spec, nets)}
    buffers = {n: np.array(tree[n], dtype=dtype) for n in buffer_shapes(spec, nets)}
    return params, buffers
