"""The reference's optimisers in float64: Adam, RMSprop, SGD, in torch's form (Adam and
RMSprop also in Keras', ``form="keras"``).

Each is written from the formula in its spec's docstring (:class:`~gan_backends.spec.AdamSpec`,
:class:`~gan_backends.spec.RMSpropSpec`, :class:`~gan_backends.spec.SGDSpec`), with torch's
conventions (L2 weight decay added to the gradient, eps outside the root, bias corrections by
step count), and keeps its slots under the canonical names of ``spec.optimizer_slots`` so that
optimiser state moves between backends unchanged.
"""

from __future__ import annotations

import numpy as np

from ...params import ParamTree
from ...spec import AdamSpec, OptimizerSpec, RMSpropSpec, SGDSpec, optimizer_slots
from .layers import F64


class Optimizer:
    """Per-network optimiser: ``t`` updates taken, ``slots[slot][name]`` its canonical
    per-parameter buffers (``spec.optimizer_slots``), zeros at the start."""

    def __init__(self, spec: OptimizerSpec, names: list[str], shapes: dict[str, tuple[int, ...]]):
        self.spec = spec
        self.names = list(names)
        self.t = 0
        self.slots = {slot: {n: np.zeros(shapes[n], F64) for n in self.names} for slot in optimizer_slots(spec)}

    def update(self, params: ParamTree, grads: ParamTree) -> None:
        self.t += 1
        wd = self.spec.weight_decay
        for name in self.names:
            g = grads[name] + wd * params[name] if wd else grads[name]  # torch's L2, not decoupled
            params[name] = self._step(name, params[name], g)

    def _step(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Adam(Optimizer):
    """torch.optim.Adam's update in float64 (see :class:`~gan_backends.spec.AdamSpec`)."""

    spec: AdamSpec

    def _step(self, name, p, g):
        s, m, v = self.spec, self.slots["m"], self.slots["v"]
        m[name] = s.beta1 * m[name] + (1.0 - s.beta1) * g
        v[name] = s.beta2 * v[name] + (1.0 - s.beta2) * g * g
        if s.form == "keras":  # epsilon-hat: lr·sqrt(1 - β2^t)/(1 - β1^t) · m/(sqrt(v) + eps)
            alpha = s.lr * np.sqrt(1.0 - s.beta2**self.t) / (1.0 - s.beta1**self.t)
            return p - alpha * m[name] / (np.sqrt(v[name]) + s.eps)
        denom = np.sqrt(v[name]) / np.sqrt(1.0 - s.beta2**self.t) + s.eps
        return p - (s.lr / (1.0 - s.beta1**self.t)) * m[name] / denom


class RMSprop(Optimizer):
    """torch.optim.RMSprop's update (eps outside the root; see :class:`~gan_backends.spec.RMSpropSpec`)."""

    spec: RMSpropSpec

    def _step(self, name, p, g):
        s, v = self.spec, self.slots["v"]
        v[name] = s.alpha * v[name] + (1.0 - s.alpha) * g * g
        square = v[name]
        if s.centered:
            avg = self.slots["grad_avg"]
            avg[name] = s.alpha * avg[name] + (1.0 - s.alpha) * g
            square = v[name] - avg[name] * avg[name]
        if s.form == "keras":  # eps inside the root, lr inside the momentum buffer
            increment = s.lr * g / np.sqrt(square + s.eps)
            if s.momentum:
                buf = self.slots["momentum"]
                buf[name] = s.momentum * buf[name] + increment
                return p - buf[name]
            return p - increment
        denom = np.sqrt(square) + s.eps
        if s.momentum:
            buf = self.slots["momentum"]
            buf[name] = s.momentum * buf[name] + g / denom
            return p - s.lr * buf[name]
        return p - s.lr * g / denom


class SGD(Optimizer):
    """torch.optim.SGD's update, dampening 0 (see :class:`~gan_backends.spec.SGDSpec`); the
    momentum buffer starts at 0, so its first value is the first gradient, as torch's."""

    spec: SGDSpec

    def _step(self, name, p, g):
        s = self.spec
        if s.momentum:
            buf = self.slots["momentum"]
            buf[name] = s.momentum * buf[name] + g
            g = g + s.momentum * buf[name] if s.nesterov else buf[name]
        return p - s.lr * g


OPTIMIZERS: dict[type, type[Optimizer]] = {AdamSpec: Adam, RMSpropSpec: RMSprop, SGDSpec: SGD}


def make_optimizer(spec: OptimizerSpec, names: list[str], shapes: dict[str, tuple[int, ...]]) -> Optimizer:
    return OPTIMIZERS[type(spec)](spec, names, shapes)
