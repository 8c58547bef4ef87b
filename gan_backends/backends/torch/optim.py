"""PyTorch optimisers: ``torch.optim``'s own, built from the spec, and their state in canonical slots.

:data:`TORCH_SLOTS` names the state entry torch keeps for each canonical slot
(:func:`~gan_backends.spec.optimizer_slots`); :func:`slot_tensors` and :func:`load_slots` read
and write an optimiser's state through it, so that an :class:`~gan_backends.backends.base.OptimizerState`
moves between torch and the other backends. Kept out of the backend class, which only pairs each
network with its optimiser and step count.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...params import ParamTree
from ...spec import AdamSpec, OptimizerSpec, RMSpropSpec, optimizer_slots
from .layers import to_torch_layout

#: Canonical slot -> torch optimiser state key, per optimiser.
TORCH_SLOTS: dict[str, dict[str, str]] = {
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "rmsprop": {"v": "square_avg", "grad_avg": "grad_avg", "momentum": "momentum_buffer"},
    "sgd": {"momentum": "momentum_buffer"},
}


def make_optimizer(params: list[nn.Parameter], opt: OptimizerSpec, capturable: bool = False) -> torch.optim.Optimizer:
    """torch's own optimiser with every hyper-parameter from the spec. ``capturable``: safe to
    capture in a CUDA graph (the step count lives on the device and is never read on the host)."""
    # fused=True (Adam, SGD): one kernel for all parameters; same update as the for-loop form
    # within rounding, and the fastest on both CPU and CUDA (see shared performance notes).
    # Fused Adam keeps its step on the device anyway and runs the same kernel with or without
    # capturable=True (the flag then only passes optimizer.step's capture check), so a captured
    # step updates exactly as the eager one. RMSprop has no fused kernel; torch picks foreach on
    # CUDA. SGD keeps no step count and needs no flag.
    if getattr(opt, "form", "torch") == "keras":
        form = KerasFormAdam if isinstance(opt, AdamSpec) else KerasFormRMSprop
        return form(params, opt, capturable)  # type: ignore[arg-type]
    if isinstance(opt, AdamSpec):
        return torch.optim.Adam(
            params,
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            fused=True,
            capturable=capturable,
        )
    if isinstance(opt, RMSpropSpec):
        return torch.optim.RMSprop(
            params,
            lr=opt.lr,
            alpha=opt.alpha,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            momentum=opt.momentum,
            centered=opt.centered,
            capturable=capturable,
        )
    return torch.optim.SGD(
        params,
        lr=opt.lr,
        momentum=opt.momentum,
        dampening=0.0,
        weight_decay=opt.weight_decay,
        nesterov=opt.nesterov,
        fused=True,
    )


class KerasFormAdam(torch.optim.Optimizer):
    """``keras.optimizers.Adam``'s update (the epsilon-hat form, :class:`~gan_backends.spec.AdamSpec`)
    as a torch optimiser, its state under torch's Adam keys (``step``, ``exp_avg``, ``exp_avg_sq``)
    so that it exports and loads like ``torch.optim.Adam``'s. Bias corrections are tensors in
    the parameter's dtype (as Keras casts them), so the step also runs inside a CUDA graph."""

    def __init__(self, params: list[nn.Parameter], spec: AdamSpec, capturable: bool = False):
        # capturable: torch's load_state_dict then puts `step` on the parameter's device
        defaults = {"lr": spec.lr, "betas": (spec.beta1, spec.beta2), "eps": spec.eps, "capturable": capturable}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's interface
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    where = p.device if group["capturable"] else "cpu"
                    state["step"] = torch.zeros((), dtype=torch.float32, device=where)
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].to(p.device, p.dtype)
                alpha = group["lr"] * torch.sqrt(1.0 - b2**t) / (1.0 - b1**t)
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                m.add_((g - m) * (1.0 - b1))
                v.add_((g * g - v) * (1.0 - b2))
                p.sub_(m * alpha / (v.sqrt() + group["eps"]))


class KerasFormRMSprop(torch.optim.Optimizer):
    """``keras.optimizers.RMSprop``'s update (eps inside the root, lr inside the momentum buffer;
    :class:`~gan_backends.spec.RMSpropSpec`), its state under torch's RMSprop keys."""

    def __init__(self, params: list[nn.Parameter], spec: RMSpropSpec, capturable: bool = False):
        super().__init__(params, {"lr": spec.lr, "alpha": spec.alpha, "eps": spec.eps, "momentum": spec.momentum,
                                  "centered": spec.centered, "capturable": capturable})  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's interface
        for group in self.param_groups:
            rho, mom = group["alpha"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state, g = self.state[p], p.grad
                if not state:
                    where = p.device if group["capturable"] else "cpu"
                    state["step"] = torch.zeros((), dtype=torch.float32, device=where)
                    state["square_avg"] = torch.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p)
                    if mom:
                        state["momentum_buffer"] = torch.zeros_like(p)
                state["step"] += 1
                v = state["square_avg"]
                v.copy_(rho * v + (1.0 - rho) * g * g)
                square = v
                if group["centered"]:
                    avg = state["grad_avg"]
                    avg.copy_(rho * avg + (1.0 - rho) * g)
                    square = v - avg * avg
                increment = group["lr"] * g / torch.sqrt(square + group["eps"])
                if mom:
                    buf = state["momentum_buffer"]
                    buf.copy_(mom * buf + increment)
                    p.sub_(buf)
                else:
                    p.sub_(increment)


def slot_tensors(
    opt: torch.optim.Optimizer, opt_spec: OptimizerSpec, params: dict[str, nn.Parameter]
) -> dict[str, dict[str, torch.Tensor]]:
    """Canonical slot -> (canonical name -> ``opt``'s state tensor, torch layout) for the
    parameters ``params`` (canonical name -> parameter) that ``opt`` updates."""
    keys = TORCH_SLOTS[opt_spec.name]
    slots: dict[str, dict[str, torch.Tensor]] = {}
    for slot in optimizer_slots(opt_spec):
        tree = slots[slot] = {}
        for name, param in params.items():
            # torch creates its buffers lazily, at the first step: zeros before.
            state = opt.state.get(param, {})
            tree[name] = state[keys[slot]] if keys[slot] in state else torch.zeros_like(param)
    return slots


def load_slots(
    opt: torch.optim.Optimizer, opt_spec: OptimizerSpec, names: list[str], step: int, slots: dict[str, ParamTree]
) -> None:
    """Put canonical ``slots`` (slot -> canonical tree) and ``step`` into ``opt``, whose parameters
    are ``names`` in its own order (no state at step 0: torch's initial state)."""
    # Through load_state_dict, torch's public path: it moves buffers to each parameter's
    # device and dtype and gives `step` the type the fused kernel wants.
    saved = opt.state_dict()
    keys = TORCH_SLOTS[opt_spec.name]
    per_param = {}
    if step > 0:
        for i, name in enumerate(names):
            entry = {} if isinstance(opt, torch.optim.SGD) else {"step": torch.tensor(float(step))}
            for slot in optimizer_slots(opt_spec):
                value = np.ascontiguousarray(to_torch_layout(name, slots[slot][name]))
                # A copy: load_state_dict keeps the tensor, which from_numpy shares
                # with the caller's array, and the optimiser updates it in place.
                entry[keys[slot]] = torch.from_numpy(value).clone()
            per_param[i] = entry
    opt.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})
