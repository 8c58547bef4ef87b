"""A training script's optimiser states, moved with its weights into a training checkpoint that
``gan-backends train --resume`` continues in any backend.

A framework reader finds each network's optimiser state (:class:`~.native.NativeOptimizer`,
e.g. torch's ``optimizer.state_dict()`` under ``optimizerG``): one array per parameter, in the
order of the network's parameter tensors in the file, in the file's layout. A moment has its
parameter's shape and layout, so each slot is converted exactly as the weights are: the file's
parameters with their arrays replaced by the slot's (a *shadow* checkpoint) go through
:func:`~.match.to_canonical` with the same mapping, and come out under canonical names and
layouts. The optimiser's kind and hyper-parameters are held against the spec's (training goes
on with the spec's optimiser, so a different one is refused, every difference named), and the
update counts against the spec's loop (``n_critic`` D updates per G update).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..backends.base import OptimizerState
from ..params import param_shapes
from ..spec import GANSpec, OptimizerSpec, optimizer_slots
from ..train.checkpoint import save_checkpoint
from .match import to_canonical
from .native import PARAMETER_ROLES, NativeCheckpoint, NativeOptimizer, PortError

NETWORK_OPTIMIZERS = (("generator", "g_optimizer"), ("discriminator", "d_optimizer"))


def _spec_problems(net: str, native: NativeOptimizer, opt: OptimizerSpec) -> list[str]:
    where = f"{net} optimiser ({native.key!r})"
    if native.name != opt.name:
        return [f"{where} is {native.name}, the spec's {opt.name}"]
    problems = [f"{where} sets {flag}, which the spec's {opt.name} has no field for" for flag in native.flags]
    for field, value in native.hyper.items():
        want = getattr(opt, field)
        exact = isinstance(want, (bool, str))
        # rel 1e-6: Keras keeps its learning rate as a float32 variable
        same = value == want if exact else math.isclose(float(value), float(want), rel_tol=1e-6)  # type: ignore[arg-type]
        if not same:
            shown = (value, want) if exact else (f"{value:g}", f"{want:g}")
            problems.append(f"{where} has {field} {shown[0]}, the spec's {opt.name}.{field} {shown[1]}")
    return problems


def _slot_tree(ckpt: NativeCheckpoint, spec: GANSpec, slot: str, nets: tuple[str, ...], mapping) -> dict:
    """``slot`` of the networks in ``nets`` under canonical names: a shadow of the file whose
    parameters hold the slot's arrays (zeros for the other networks and for no state yet)."""
    in_spec_order = {net: o for net, o in ckpt.optimizers.items() if o.order == "spec" and net in nets}
    if in_spec_order:
        return _spec_ordered(spec, slot, in_spec_order)
    shadow = []
    for net in ("generator", "discriminator"):
        native = ckpt.optimizers.get(net)
        arrays = native.slots.get(slot, []) if native is not None and net in nets else []
        params = [t for t in ckpt.tensors if t.network == net and t.role in PARAMETER_ROLES]
        if arrays and len(arrays) != len(params):
            raise PortError(
                f"{net} optimiser ({native.key!r}) holds state for {len(arrays)} parameters, the {net} has "  # type: ignore[union-attr]
                f"{len(params)} parameter tensors in the file: it was built over other parameters"
            )
        for i, tensor in enumerate(params):
            array = arrays[i] if arrays and arrays[i] is not None else np.zeros_like(tensor.array)
            if array.shape != tensor.array.shape:
                raise PortError(
                    f"{net} optimiser ({native.key!r}): parameter {i}'s state is {array.shape}, "  # type: ignore[union-attr]
                    f"its tensor {tensor.name!r} {tensor.shape}"
                )
            shadow.append(dataclasses.replace(tensor, array=np.asarray(array, tensor.array.dtype)))
    rest = [t for t in ckpt.tensors if t.role not in PARAMETER_ROLES]
    tree, _ = to_canonical(NativeCheckpoint(ckpt.kind, ckpt.path, shadow + rest), spec, mapping=mapping)
    return {name: value for name, value in tree.items() if name.split(".", 1)[0] in nets}


def _spec_ordered(spec: GANSpec, slot: str, optimizers: Mapping[str, NativeOptimizer]) -> dict:
    """``slot`` of optimisers whose arrays follow the spec's parameters (canonical layout)."""
    out = {}
    for net, native in optimizers.items():
        shapes = param_shapes(spec, (net,))
        arrays = native.slots.get(slot) or [None] * len(shapes)
        if len(arrays) != len(shapes):
            raise PortError(
                f"{net} optimiser ({native.key!r}) holds state for {len(arrays)} variables, spec {spec.name!r}'s "
                f"{net} has {len(shapes)} parameters"
            )
        for (name, shape), array in zip(shapes.items(), arrays):
            if array is not None and tuple(array.shape) != tuple(shape):
                raise PortError(f"{net} optimiser ({native.key!r}): {name}'s state is {array.shape}, spec {shape}")
            out[name] = np.zeros(shape, np.float32) if array is None else array
    return out


def canonical_optimizer(
    ckpt: NativeCheckpoint, spec: GANSpec, mapping: Mapping[str, str] | None = None, step: int | None = None
) -> tuple[OptimizerState, int]:
    """Both networks' optimiser states in canonical slots, and the G step they stand at.

    ``step``: the G updates taken, where the file does not count them (torch's SGD); otherwise
    it must agree with the file. Raises :class:`PortError` naming every problem."""
    problems, steps = [], {}
    for net, field in NETWORK_OPTIMIZERS:
        native = ckpt.optimizers.get(net)
        if native is None:
            problems.append(f"{ckpt.path} holds no {net} optimiser state (looked for optimizerG / optim_D-like keys)")
            continue
        problems += _spec_problems(net, native, getattr(spec, field))
        steps[net] = native.steps
    if problems:
        raise PortError("the optimiser states do not fit spec " + repr(spec.name) + ":\n  - " + "\n  - ".join(problems))
    g_steps = steps["generator"] if steps["generator"] is not None else step
    d_steps = steps["discriminator"] if steps["discriminator"] is not None else (
        None if g_steps is None else g_steps * spec.n_critic
    )  # fmt: skip
    if g_steps is None or d_steps is None:
        raise PortError(f"{ckpt.path}: its optimisers keep no step count (SGD): give the G step it stands at (--step)")
    if step is not None and step != g_steps:
        raise PortError(f"--step {step}, but the generator's optimiser has taken {g_steps} updates")
    if d_steps != spec.n_critic * g_steps:
        raise PortError(
            f"{ckpt.path}: D took {d_steps} updates and G {g_steps}; spec {spec.name!r} takes n_critic = "
            f"{spec.n_critic} D updates per G update, so training from here would not be this spec's run"
        )
    slots: dict[str, dict] = {}
    for slot in dict.fromkeys(s for _, f in NETWORK_OPTIMIZERS for s in optimizer_slots(getattr(spec, f))):
        nets = tuple(net for net, f in NETWORK_OPTIMIZERS if slot in optimizer_slots(getattr(spec, f)))
        slots[slot] = _slot_tree(ckpt, spec, slot, nets, mapping)
    return OptimizerState({"generator": g_steps, "discriminator": d_steps}, slots), g_steps


def write_training_checkpoint(
    out: str | Path, src: str | Path, spec: GANSpec, params: dict, buffers: dict, state: OptimizerState, step: int
) -> list[str]:
    """The ported run as a training checkpoint (:func:`~gan_backends.train.checkpoint.save_checkpoint`)."""
    if spec.ema is not None:
        raise PortError(f'spec {spec.name!r} keeps a moving average of G, which {src} does not hold; set "ema": null')
    missing = [net for net in ("generator", "discriminator") if not any(k.startswith(net + ".") for k in params)]
    if missing:
        raise PortError(f"{src}: a training checkpoint needs both networks' weights; the file lacks the {missing[0]}")
    save_checkpoint(out, spec, params, buffers, state, {"step": step, "ported_from": str(src)})
    counts = ", ".join(f"{net} {n} updates" for net, n in state.steps.items())
    return [f"training checkpoint at step {step} ({counts}; slots {', '.join(state.slots) or 'none'}): "
            "continue it with gan-backends train --resume, in any backend"]  # fmt: skip
