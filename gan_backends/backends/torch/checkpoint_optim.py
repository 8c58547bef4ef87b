"""A torch ``optimizer.state_dict()`` read as a :class:`~gan_backends.port.native.NativeOptimizer`.

torch keeps ``{"state": {index: {"step", "exp_avg", "exp_avg_sq", ...}}, "param_groups": [{"lr",
"betas", "eps", ..., "params": [index, ...]}]}``, the indices numbering the parameters in the
order the optimiser was given them (``model.parameters()``: the order of the parameter tensors
in the network's ``state_dict``). The state keys name the optimiser (:data:`STATE_SLOTS`); a
parameter without state (no update yet) gets zeros. Options the spec cannot express
(``amsgrad``, ``maximize``, AdamW's decoupled decay, an Adadelta's ``acc_delta``) are flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...port.native import NativeOptimizer, PortError, optimizer_hint

#: torch state key -> canonical slot (``gan_backends.backends.base.OptimizerState``).
STATE_SLOTS: dict[str, dict[str, str]] = {
    "adam": {"exp_avg": "m", "exp_avg_sq": "v"},
    "rmsprop": {"square_avg": "v", "grad_avg": "grad_avg", "momentum_buffer": "momentum"},
    "sgd": {"momentum_buffer": "momentum"},
}


def is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("param_groups"), list) and "state" in value


def _kind(groups: list[Mapping], state: Mapping) -> str:
    keys = {k for entry in state.values() for k in entry}
    group = groups[0]
    if "betas" in group and "amsgrad" in group and not keys - {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}:
        return "adam"
    if "alpha" in group and "centered" in group and not keys - {"step", *STATE_SLOTS["rmsprop"]}:
        return "rmsprop"
    if "nesterov" in group and "dampening" in group and not keys - {"momentum_buffer"}:
        return "sgd"
    names = sorted(set(group) - {"params"})
    raise PortError(
        f"an optimiser state with group options {names} and state {sorted(keys)}: not torch's Adam, RMSprop or SGD "
        "(the spec's optimisers)"
    )


def _hyper(kind: str, group: Mapping) -> tuple[dict[str, float | bool], list[str]]:
    flags = [f for f in ("amsgrad", "maximize", "differentiable") if group.get(f)]
    wd = float(group.get("weight_decay", 0.0))
    if group.get("decoupled_weight_decay") and wd:
        flags.append("decoupled_weight_decay (AdamW)")
    if kind == "adam":  # torch.optim.Adam's form (eps outside the bias-corrected root), not Keras'
        beta1, beta2 = group["betas"]
        return {"lr": float(group["lr"]), "beta1": float(beta1), "beta2": float(beta2), "eps": float(group["eps"]),
                "weight_decay": wd, "form": "torch"}, flags  # fmt: skip
    if kind == "rmsprop":
        hyper = {"lr": float(group["lr"]), "alpha": float(group["alpha"]), "eps": float(group["eps"]),
                 "weight_decay": wd, "momentum": float(group["momentum"]),
                 "centered": bool(group["centered"]), "form": "torch"}  # fmt: skip
        return hyper, flags
    if float(group.get("dampening", 0.0)):
        flags.append(f"dampening {group['dampening']}")
    return {"lr": float(group["lr"]), "momentum": float(group["momentum"]), "nesterov": bool(group["nesterov"]),
            "weight_decay": wd}, flags  # fmt: skip


def optimizers_in(obj: Mapping) -> tuple[dict[str, NativeOptimizer], list[str]]:
    """The optimiser states a training script's dict holds, per network by their keys
    (``optimizerG``, ``optim_D``, ...), and notes on what was read or left."""
    found: dict[str, NativeOptimizer] = {}
    notes = []
    for key, value in obj.items():
        if not is_optimizer_state(value):
            continue
        network = optimizer_hint(str(key))
        if network is None or network in found:
            notes.append(f"optimiser state under {key!r} not read: its key names no network (optimizerG, optim_D)")
            continue
        found[network] = read_optimizer(str(key), value)
        notes.append(f"{network} optimiser state read from key {key!r} ({found[network].name})")
    return found, notes


def read_optimizer(key: str, value: Mapping) -> NativeOptimizer:
    """One ``optimizer.state_dict()`` found under ``key``."""
    groups, state = list(value["param_groups"]), dict(value["state"])
    if not groups:
        raise PortError(f"optimiser state {key!r}: no parameter groups")
    kind = _kind(groups, state)
    hyper, flags = _hyper(kind, groups[0])
    for i, group in enumerate(groups[1:], 1):
        other, _ = _hyper(kind, group)
        if other != hyper:
            changed = ", ".join(f"{k} {hyper[k]} vs {other[k]}" for k in hyper if other[k] != hyper[k])
            raise PortError(f"optimiser state {key!r}: parameter group {i} differs from group 0 ({changed}); the spec "
                            "has one optimiser per network")  # fmt: skip
    order = [index for group in groups for index in group["params"]]
    slots: dict[str, list[np.ndarray | None]] = {slot: [] for slot in STATE_SLOTS[kind].values()}
    steps: set[int] = set()
    for index in order:
        entry = state.get(index, {})
        if "step" in entry:
            steps.add(int(float(entry["step"])))
        for torch_key, slot in STATE_SLOTS[kind].items():
            tensor = entry.get(torch_key)
            slots[slot].append(None if tensor is None else _numpy(tensor))
    if len(steps) > 1:
        raise PortError(f"optimiser state {key!r}: its parameters took different numbers of steps {sorted(steps)}")
    used = {slot: arrays for slot, arrays in slots.items() if any(a is not None for a in arrays)}
    # SGD keeps no step count: the file does not say how many updates it took (None)
    taken = steps.pop() if steps else (None if kind == "sgd" else 0)
    return NativeOptimizer(kind, hyper, taken, used, key, tuple(flags))  # type: ignore[arg-type]


def _numpy(tensor: Any) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().to("cpu", torch.float64).numpy().astype(np.float32)
    return np.asarray(tensor, np.float32)
