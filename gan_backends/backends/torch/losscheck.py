"""PyTorch: ``torch.autograd.grad`` of the user's scalar; the critic is an ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...losscheck.battery import Case
from ...losscheck.critic import Critic
from ...losscheck.runners import Evaluation, scalar_error

IMAGE_LAYOUT = "nchw"


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().to(torch.float64).cpu().numpy()


def _scalar(out: object) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the loss returned {type(out).__name__}, not a torch.Tensor: it is cut from autograd (.item()?)"
        )
    if out.numel() != 1:
        raise ValueError(scalar_error(tuple(out.shape)))
    return out.reshape(())


def _run(make_out: Callable[[], torch.Tensor], wrt: Sequence[torch.Tensor], names: Sequence[str]) -> Evaluation:
    try:
        with torch.enable_grad():
            out = _scalar(make_out())
            if not out.requires_grad:
                raise TypeError("the loss does not depend on its inputs through autograd (detached?)")
            grads = torch.autograd.grad(out, list(wrt), allow_unused=True)
    except Exception as exc:  # the user's code: report whatever it raised
        return Evaluation(error=f"{type(exc).__name__}: {exc}")
    return Evaluation(value=float(out.detach().to(torch.float64)), grads=dict(zip(names, map(_numpy, grads))))


def run_logits(
    fn: Callable, inputs: dict[str, np.ndarray], order: Sequence[str], dtype: str, probabilities: bool
) -> Evaluation:
    leaves = {k: torch.tensor(inputs[k], dtype=torch.float64).to(_dtype(dtype)).requires_grad_(True) for k in order}
    args = [torch.sigmoid(leaves[k]) if probabilities else leaves[k] for k in order]
    ev = _run(lambda: fn(*args), [leaves[k] for k in order], order)
    ev.inputs = {k: _numpy(v) for k, v in leaves.items()}
    return ev


class SquaredReLUCritic(nn.Module):
    """``D(x) = v · relu(W·vec(x) + b)² / 2 + c`` (see :mod:`..critic`), on NCHW or flat inputs."""

    def __init__(self, critic: Critic, layout: str, dtype: torch.dtype):
        super().__init__()
        k, d = critic.weight.shape
        self.layout = layout
        self.hidden = nn.Linear(d, k, dtype=dtype)
        self.out = nn.Linear(k, 1, dtype=dtype)
        with torch.no_grad():
            for param, value in (
                (self.hidden.weight, critic.weight),
                (self.hidden.bias, critic.bias),
                (self.out.weight, critic.out_weight.reshape(1, k)),
                (self.out.bias, np.reshape(critic.out_bias, (1,))),
            ):
                param.copy_(torch.tensor(value, dtype=torch.float64).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nchw":
            x = x.permute(0, 2, 3, 1)  # the critic's weights read samples in NHWC order
        h = torch.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return self.out(0.5 * h * h)


def run_penalty(fn: Callable, case: Case, dtype: str, call: tuple[str, ...]) -> Evaluation:
    """``fn(critic, *batches)``, the batches named by ``call`` (e.g. ``("real", "fake", "alpha")``)."""
    dt = _dtype(dtype)
    critic = SquaredReLUCritic(case.critic, case.layout, dt)
    arrays = {k: torch.tensor(v, dtype=torch.float64).to(dt) for k, v in case.inputs.items()}
    real, fake = arrays["real"].requires_grad_(True), arrays["fake"].requires_grad_(True)
    batches = {**arrays, "real": real, "fake": fake}
    args = (critic, *(batches[k] for k in call))
    params = dict(critic.named_parameters())
    ev = _run(lambda: fn(*args), [*params.values(), real, fake], [*params, "real", "fake"])
    for name in ("out.weight", "out.bias"):
        if ev.grads.get(name) is not None:
            ev.grads[name] = ev.grads[name].reshape(-1) if name == "out.weight" else ev.grads[name].reshape(())
    ev.inputs = {k: _numpy(v) for k, v in arrays.items()}
    return ev
