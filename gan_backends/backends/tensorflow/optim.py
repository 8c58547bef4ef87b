"""The TensorFlow backend's optimisers, written in PyTorch's form with TF ops (Adam and RMSprop
also in Keras' form, ``form="keras"``, written here too so that the slots stay canonical).

:class:`TorchFormAdam`, :class:`TorchFormRMSprop` and :class:`TorchFormSGD` rather than Keras'
optimisers: Keras' ``Adam`` uses the epsilon-hat form
``lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps_hat)``, which equals torch's update for no fixed
eps_hat, and Keras' RMSprop/SGD differ in defaults and in where lr enters the velocity. Each
keeps its state as ``tf.Variable`` slots named as the canonical
:class:`~gan_backends.backends.base.OptimizerState` names them, so the backend exports and
imports them without translation, and the data-parallel engine wraps :meth:`apply`.
"""

from __future__ import annotations

import tensorflow as tf

from ...spec import AdamSpec, OptimizerSpec, RMSpropSpec, SGDSpec, optimizer_slots


class TorchFormOptimizer(tf.Module):
    """Shared state of the torch-form optimisers: a step counter and one slot variable per
    parameter for each canonical slot (:func:`~gan_backends.spec.optimizer_slots`)."""

    def __init__(self, spec: OptimizerSpec, variables: list[tf.Variable], name: str):
        super().__init__(name=name)
        self.spec = spec
        self.variables_ = variables
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.slots = {
            slot: [tf.Variable(tf.zeros_like(v), trainable=False, name=slot) for v in variables]
            for slot in optimizer_slots(spec)
        }

    def reset(self) -> None:
        self.step.assign(0)
        for slot_vars in self.slots.values():
            for slot in slot_vars:
                slot.assign(tf.zeros_like(slot))

    def apply(self, grads: list[tf.Tensor]) -> None:
        """One step: the counter, then each parameter's update with its gradient, torch's
        coupled weight decay ``g + wd·p`` added first."""
        self.step.assign_add(1)
        scalars = self.step_scalars()
        for k, (p, g) in enumerate(zip(self.variables_, grads)):
            if self.spec.weight_decay:
                g = g + self.spec.weight_decay * p
            self.update(k, p, g, scalars)

    def step_scalars(self) -> tuple[tf.Tensor, ...]:
        """What the step shares across parameters (Adam's bias corrections); none by default."""
        return ()

    def update(self, k: int, p: tf.Variable, g: tf.Tensor, scalars: tuple[tf.Tensor, ...]) -> None:
        raise NotImplementedError  # pragma: no cover - each optimiser's rule


class TorchFormAdam(TorchFormOptimizer):
    """``torch.optim.Adam``'s update with TF ops; formula in :class:`~gan_backends.spec.AdamSpec`.

    Bias corrections are computed in float64 and cast, as torch computes them as Python floats.
    """

    def step_scalars(self) -> tuple[tf.Tensor, ...]:
        s = self.spec
        t = tf.cast(self.step, tf.float64)
        bc1 = 1.0 - tf.pow(tf.constant(s.beta1, tf.float64), t)
        bc2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(s.beta2, tf.float64), t))
        dtype = self.variables_[0].dtype  # one spec dtype: cast the scalars once, not per variable
        if s.form == "keras":  # Keras' alpha = lr·sqrt(1 - β2^t)/(1 - β1^t)
            return tf.cast(s.lr * bc2_sqrt / bc1, dtype), tf.cast(bc2_sqrt, dtype)
        return tf.cast(s.lr / bc1, dtype), tf.cast(bc2_sqrt, dtype)

    def update(self, k: int, p: tf.Variable, g: tf.Tensor, scalars: tuple[tf.Tensor, ...]) -> None:
        s, (step_size, bc2_sqrt) = self.spec, scalars
        m, v = self.slots["m"][k], self.slots["v"][k]
        # m ← m + (1 − β₁)(g − m): torch's `exp_avg.lerp_(grad, 1 − β₁)`; in-place adds.
        m.assign_add((1.0 - s.beta1) * (g - m))
        v.assign_add((1.0 - s.beta2) * (tf.square(g) - v))
        if s.form == "keras":  # epsilon-hat: eps added to sqrt(v) itself
            p.assign_sub(step_size * m / (tf.sqrt(v) + s.eps))
        else:
            p.assign_sub(step_size * m / (tf.sqrt(v) / bc2_sqrt + s.eps))


class TorchFormRMSprop(TorchFormOptimizer):
    """``torch.optim.RMSprop``'s update with TF ops; formula in :class:`~gan_backends.spec.RMSpropSpec`
    (eps outside the root, ``v`` from 0; Keras' RMSprop defaults to rho 0.9, eps 1e-7)."""

    def update(self, k: int, p: tf.Variable, g: tf.Tensor, scalars: tuple[tf.Tensor, ...]) -> None:
        s = self.spec
        v = s.alpha * self.slots["v"][k] + (1.0 - s.alpha) * tf.square(g)
        self.slots["v"][k].assign(v)
        square = v
        if s.centered:
            grad_avg = s.alpha * self.slots["grad_avg"][k] + (1.0 - s.alpha) * g
            self.slots["grad_avg"][k].assign(grad_avg)
            square = v - tf.square(grad_avg)
        if s.form == "keras":  # eps inside the root, lr inside the momentum buffer
            increment = s.lr * g / tf.sqrt(square + s.eps)
            if s.momentum:
                buf = s.momentum * self.slots["momentum"][k] + increment
                self.slots["momentum"][k].assign(buf)
                p.assign_sub(buf)
            else:
                p.assign_sub(increment)
            return
        avg = tf.sqrt(square) + s.eps
        if s.momentum:
            buf = s.momentum * self.slots["momentum"][k] + g / avg
            self.slots["momentum"][k].assign(buf)
            p.assign_sub(s.lr * buf)
        else:
            p.assign_sub(s.lr * (g / avg))


class TorchFormSGD(TorchFormOptimizer):
    """``torch.optim.SGD`` (dampening 0); formula in :class:`~gan_backends.spec.SGDSpec`. torch
    creates the momentum buffer as a copy of the first gradient: ``momentum·0 + g`` is that
    exactly, so the buffer starts at 0 here and imports/exports like the other slots."""

    def update(self, k: int, p: tf.Variable, g: tf.Tensor, scalars: tuple[tf.Tensor, ...]) -> None:
        s = self.spec
        if s.momentum:
            buf = s.momentum * self.slots["momentum"][k] + g
            self.slots["momentum"][k].assign(buf)
            g = g + s.momentum * buf if s.nesterov else buf
        p.assign_sub(s.lr * g)


def make_optimizer(spec: OptimizerSpec, variables: list[tf.Variable], name: str) -> TorchFormOptimizer:
    """The torch-form optimiser for ``spec`` over ``variables`` (one module per network)."""
    if isinstance(spec, AdamSpec):
        return TorchFormAdam(spec, variables, name)
    if isinstance(spec, RMSpropSpec):
        return TorchFormRMSprop(spec, variables, name)
    if isinstance(spec, SGDSpec):
        return TorchFormSGD(spec, variables, name)
    raise NotImplementedError(f"tensorflow backend has no optimiser {spec!r}")
