"""torch ``state_dict`` files: read, written, and run for the port's verification.

The ``torch`` kind (manifest ``checkpoint_kinds``: ``.pt``, ``.pth``, ``.bin``, ``.ckpt``,
``.tar``). A ``state_dict`` saved with ``torch.save``, read with ``torch.load(path,
map_location="cpu", weights_only=True)``. A dict wrapping state dicts under a usual key
(``state_dict``, ``model``, ``generator``, ``netG``, ``G``, ...; the discriminator under
``discriminator``, ``netD``, ``D``, ...) is unwrapped, and the key used is reported. Order: the
dict's order, which is module registration order; tensors of one module share its key prefix
(``main.3.weight``). ``num_batches_tracked`` is skipped. A 1-D ``weight`` is a BatchNorm scale.

Written as the ``state_dict`` of the ``nn.Sequential`` of the spec's layers: spec layer ``i``
is module ``i`` (activations, Reshape and Flatten take a position, as in ``nn.Sequential``), so
keys are ``0.weight``, ``0.bias``, ``2.weight``, ``3.running_mean``,
``3.num_batches_tracked``; both networks as ``{"generator": state_dict, "discriminator":
state_dict}``. Layouts: :mod:`gan_backends.layouts` (``torch``).

Spectral norm: a spectrally normalised layer's tensors are read under either torch API's keys
(:data:`SPECTRAL_KEYS`) as its kernel and the buffers ``sn_u``/``sn_v`` (``v`` permuted from
torch's ``(in, kh, kw)`` order), and written under ``torch.nn.utils.spectral_norm``'s
(``weight_orig``, ``weight_u``, ``weight_v``: a module wrapped by it loads them strictly). In
eval mode both APIs compute ``σ = uᵀ W v`` from the stored pair and iterate nothing, as the
spec does; ``n_power_iterations`` and ``eps`` are in no file: the spec gives them.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import layouts
from ..._io import atomic_write_bytes
from ...params import ParamTree
from ...port.native import NativeCheckpoint, NativeRun, NativeTensor, PortError, network_hint, networks_of, state_layers
from ...spec import BatchNorm, GANSpec
from .checkpoint_optim import optimizers_in
from .layers import CanonicalIO, build_network, is_image

#: torch wrapper keys, in the order they are tried.
TORCH_WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "params")
TORCH_G_KEYS: tuple[str, ...] = ("generator", "netG", "G", "gen", "g", "generator_state_dict", "netG_state_dict")
TORCH_D_KEYS: tuple[str, ...] = ("discriminator", "netD", "D", "disc", "critic", "discriminator_state_dict")


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):  # bfloat16 has no NumPy dtype
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(k, str) and hasattr(v, "shape") and hasattr(v, "detach") for k, v in obj.items())


#: Spectral norm's keys, by API: ``torch.nn.utils.spectral_norm`` (a forward pre-hook) keeps
#: ``weight_orig``, ``weight_u``, ``weight_v``; ``torch.nn.utils.parametrizations.spectral_norm``
#: keeps ``parametrizations.weight.original``, ``parametrizations.weight.0._u`` and ``._v``.
#: Both store ``v`` in the columns of ``weight.reshape(out, -1)``: ``(in, kh, kw)`` for a conv.
SPECTRAL_KEYS: dict[str, str] = {
    "weight_orig": "kernel",
    "weight_u": "sn_u",
    "weight_v": "sn_v",
    "parametrizations.weight.original": "kernel",
    "parametrizations.weight.0._u": "sn_u",
    "parametrizations.weight.0._v": "sn_v",
}
#: The canonical roles of a spectrally normalised layer -> the keys torch's ``spectral_norm`` gives it.
SPECTRAL_WRITE = {"kernel": "weight_orig", "sn_u": "weight_u", "sn_v": "weight_v"}


def _split_key(key: str, keys: Collection[str]) -> tuple[str, str]:
    """``(module, what)`` of a state_dict key: ``main.0.weight`` -> ``("main.0", "weight")``;
    spectral norm's keys (:data:`SPECTRAL_KEYS`) name their module's prefix and a role
    (``main.0.parametrizations.weight.0._u`` -> ``("main.0", "sn_u")``)."""
    for suffix, role in SPECTRAL_KEYS.items():
        if key == suffix or key.endswith("." + suffix):
            module = key[: -len(suffix)].rstrip(".")
            orig = f"{module}.weight_orig" if module else "weight_orig"
            if suffix == "weight_v" and orig not in keys:  # weight_norm's weight_g/weight_v: not spectral norm
                break
            return module, role
    if ".parametrizations." in f".{key}":
        raise PortError(
            f"torch tensor {key!r}: a parametrization other than spectral_norm's (weight_norm, orthogonal?): the "
            "spec has no field for it; remove it before saving (torch.nn.utils.parametrize.remove_parametrizations)"
        )
    return (key.rsplit(".", 1)[0] if "." in key else ""), key.rsplit(".", 1)[-1]


def _torch_role(key: str, last: str, value: np.ndarray) -> str:
    if last in ("kernel", "sn_u", "sn_v"):  # spectral norm's keys, as _split_key names them
        return last
    if last == "num_batches_tracked":
        return "skip"
    if last == "weight":
        return "scale" if value.ndim == 1 else "kernel"
    if last in ("bias", "running_mean", "running_var"):
        return last
    raise PortError(
        f"torch tensor {key!r} {tuple(value.shape)}: not a weight, bias, BatchNorm statistic or spectral norm's "
        "vector (weight_norm or another reparametrisation? remove it before saving, e.g. "
        "torch.nn.utils.remove_weight_norm)"
    )


def _torch_tensors(state: Mapping[str, Any], network: str | None, prefix: str = "") -> list[NativeTensor]:
    tensors: list[NativeTensor] = []
    modules: dict[str, int] = {}
    for key, value in state.items():
        array = _to_numpy(value)
        module, last = _split_key(key, state)
        rank = modules.setdefault(module, len(modules))
        tensors.append(
            NativeTensor(
                name=f"{prefix}{key}",
                array=array,
                role=_torch_role(key, last, array),
                layer=f"{prefix}{module}",
                network=network,
                chain=network or "",
                rank=rank,
                layout="torch",
            )
        )
    return tensors


def load_tensors_only(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, never code. A
    pickle that asks for a Python global is refused naming the global (torch's own message
    suggests ``weights_only=False``, which would run whatever the file says: not repeated)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise PortError(
                f"{path}: refused: its pickle asks for the Python global {found.group(1)}, which would run code "
                "from the file; only tensors are loaded. Save a state_dict of tensors (model.state_dict())"
            ) from None
        raise PortError(f"{path}: not a torch tensor file ({_reason(exc)})") from None
    except (RuntimeError, EOFError, ValueError) as exc:  # not a torch file, truncated
        raise PortError(
            f"{path}: not a readable torch file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def _reason(exc: BaseException) -> str:
    """torch's unpickling message without its advice (``weights_only=False``, filing an issue)."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith(advice)), type(exc).__name__)


def network_states(obj: Mapping) -> dict[str, tuple[str, Mapping]]:
    """``{network: (key, state_dict)}`` of a dict holding each network's state_dict under its
    name: the usual keys first, then a training script's (``net_G``, ``G_state_dict``, ...)."""
    found: dict[str, tuple[str, Mapping]] = {}
    for network, keys in (("generator", TORCH_G_KEYS), ("discriminator", TORCH_D_KEYS)):
        for key in keys:
            if _is_state_dict(obj.get(key)):
                found[network] = (key, obj[key])
                break
    for key, value in obj.items():
        network = network_hint(str(key))
        if network and network not in found and _is_state_dict(value):
            found[network] = (str(key), value)
    return found


def read(path: str | Path) -> NativeCheckpoint:
    """A torch ``state_dict`` file (or a dict wrapping state dicts under the usual keys)."""
    obj = load_tensors_only(path)
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        raise PortError(f"{path}: holds a whole module; save its state_dict() instead")
    notes: list[str] = []
    if _is_state_dict(obj):
        parts = {key.split(".", 1)[0] for key in obj}
        hints = {part: network_hint(part) for part in parts}
        if all(hints.values()) and "." in next(iter(obj)):
            notes.append(f"networks told by key prefixes {sorted(parts)}")
            tensors = []
            order = list(dict.fromkeys(key.split(".", 1)[0] for key in obj))
            for part in order:
                sub = {k[len(part) + 1 :]: v for k, v in obj.items() if k.split(".", 1)[0] == part}
                tensors += _torch_tensors(sub, hints[part], prefix=f"{part}.")
            return NativeCheckpoint("torch", str(path), tensors, notes)
        return NativeCheckpoint("torch", str(path), _torch_tensors(obj, None), notes)
    if not isinstance(obj, Mapping):
        raise PortError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    found = network_states(obj)
    if found:
        optimizers, optimizer_notes = optimizers_in(obj)
        used = {key for key, _ in found.values()} | {o.key for o in optimizers.values()}
        rest = [str(key) for key in obj if key not in used]
        notes += optimizer_notes
        if rest:
            notes.append(f"not read: {', '.join(rest[:8])} (counters, settings: not network weights)")
        tensors = []
        for network, (key, state) in found.items():
            notes.append(f"{network} state_dict read from key {key!r}")
            tensors += _torch_tensors(state, network, prefix=f"{key}/" if len(found) > 1 else "")
        return NativeCheckpoint("torch", str(path), tensors, notes, optimizers)
    for key in TORCH_WRAPPER_KEYS:
        if _is_state_dict(obj.get(key)):
            notes.append(f"state_dict read from key {key!r}")
            return NativeCheckpoint("torch", str(path), _torch_tensors(obj[key], None), notes)
    raise PortError(
        f"{path}: a dict with keys {list(obj)[:12]}, and none of them holds a state_dict; tried "
        f"{', '.join(TORCH_WRAPPER_KEYS + TORCH_G_KEYS + TORCH_D_KEYS)}"
    )


def state_dicts(params: ParamTree, buffers: ParamTree, spec: GANSpec) -> dict[str, dict[str, torch.Tensor]]:
    """Per network, the ``state_dict`` of the ``nn.Sequential`` of the spec's layers."""
    tree = {**params, **buffers}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for net in networks_of(params):
        state: dict[str, torch.Tensor] = {}
        for i, layer, slots in state_layers(spec, net):
            keys = SPECTRAL_WRITE if getattr(layer, "spectral_norm", None) is not None else {"kernel": "weight"}
            for name, role, _ in slots:
                key = {"scale": "weight", **keys}.get(role, role)
                array = np.ascontiguousarray(layouts.to_native("torch", role, tree[name], layer))
                state[f"{i}.{key}"] = torch.from_numpy(array.copy())
            if isinstance(layer, BatchNorm):
                state[f"{i}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        out[net] = state
    return out


def write(params: ParamTree, buffers: ParamTree, spec: GANSpec, path: Path) -> list[str]:
    """One network's ``state_dict``, or both under ``generator`` and ``discriminator``."""
    nets = networks_of(params)
    states = state_dicts(params, buffers, spec)
    obj = states[nets[0]] if len(nets) == 1 else states
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    layout = "a state_dict" if len(nets) == 1 else "{'generator': state_dict, 'discriminator': state_dict}"
    return [f"torch: {layout} of nn.Sequential (keys like {next(iter(states[nets[0]]))})"]


def run(job: NativeRun) -> dict[str, np.ndarray]:
    """Each network as the spec's ``nn.Sequential`` in eval mode, its ``state_dict`` loaded
    strictly from the file (as :func:`write` writes it) or made from the trees."""
    spec, nets = job.spec, job.nets
    if job.path is not None:
        obj = load_tensors_only(job.path)
        states = {nets[0]: obj} if _is_state_dict(obj) else {net: obj[net] for net in nets}
    else:
        states = state_dicts(job.params, job.buffers, spec)
    out = {}
    for net in nets:
        seq = build_network(spec, net).to(getattr(torch, job.dtype.name))
        seq.load_state_dict(states[net], strict=True)
        model = CanonicalIO(seq, is_image(spec.input_shape(net)), is_image(spec.layer_shapes(net)[-1][1])).eval()
        with torch.no_grad():
            out[net] = model(torch.from_numpy(np.ascontiguousarray(job.input(net)))).numpy()
    return out
