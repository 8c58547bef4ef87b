"""The spec's optimisers as ``optax`` chains in torch's form, and where their slots live.

:func:`make_optimizer` builds each optimiser from optax parts so that its update is torch's
(the cross-backend trajectories depend on it), ending in :func:`count_steps`, so every chain
carries a ``steps`` field. :func:`optax_slot_fields` names the optax state field that holds
each canonical slot (:class:`~gan_backends.backends.base.OptimizerState`), which is how the
backend exports and loads optimiser state by field name whatever the chain looks like.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ...spec import AdamSpec, OptimizerSpec, RMSpropSpec, SGDSpec, optimizer_slots


class StepCount(NamedTuple):
    """The state of :func:`count_steps`: updates taken so far."""

    steps: jax.Array


def count_steps() -> optax.GradientTransformation:
    """Counts updates (RMSprop and SGD keep no count of their own); leaves updates alone."""
    return optax.GradientTransformation(
        lambda params: StepCount(jnp.zeros([], jnp.int32)),
        lambda updates, state, params=None: (updates, StepCount(state.steps + 1)),
    )


def make_optimizer(spec: OptimizerSpec) -> optax.GradientTransformation:
    """The torch-form optimiser of ``spec`` from optax parts, then a step counter. torch's L2
    weight decay is ``add_decayed_weights`` first (adding ``wd * p`` to the gradient).

    - Adam: optax's adam has torch's form (eps outside the sqrt, eps_root=0).
    - RMSprop: ``scale_by_rms``/``scale_by_stddev`` with eps outside the root and v starting at
      0, then ``trace`` (the momentum buffer ``b <- m b + g / d``), then ``-lr``. ``optax.rmsprop``
      puts the trace after the lr, so its trace is ``lr * b``; in this order it is torch's
      ``momentum_buffer`` itself.
    - SGD: ``optax.sgd``'s trace is torch's ``momentum_buffer`` (both start at 0, dampening 0).
    """
    if isinstance(spec, AdamSpec) and spec.form == "keras":
        tx = optax.chain(scale_by_keras_adam(spec.beta1, spec.beta2, spec.eps), optax.scale_by_learning_rate(spec.lr))
    elif isinstance(spec, AdamSpec):
        tx = optax.adam(spec.lr, b1=spec.beta1, b2=spec.beta2, eps=spec.eps, eps_root=0.0)
    elif isinstance(spec, RMSpropSpec) and spec.form == "keras":
        # eps inside the root; Keras' momentum buffer holds lr·g/d, so the trace runs after the lr
        # (on +lr·g/d: the sign flipped last), and the canonical slot is Keras' buffer itself
        rms = optax.scale_by_stddev if spec.centered else optax.scale_by_rms
        parts = [rms(decay=spec.alpha, eps=spec.eps, initial_scale=0.0, eps_in_sqrt=True), optax.scale(spec.lr)]
        if spec.momentum:
            parts.append(optax.trace(decay=spec.momentum))
        tx = optax.chain(*parts, optax.scale(-1.0))
    elif isinstance(spec, RMSpropSpec):
        rms = optax.scale_by_stddev if spec.centered else optax.scale_by_rms
        parts = [rms(decay=spec.alpha, eps=spec.eps, initial_scale=0.0, eps_in_sqrt=False)]
        if spec.momentum:
            parts.append(optax.trace(decay=spec.momentum))
        tx = optax.chain(*parts, optax.scale_by_learning_rate(spec.lr))
    elif isinstance(spec, SGDSpec):
        tx = optax.sgd(spec.lr, momentum=spec.momentum or None, nesterov=spec.nesterov)
    else:  # pragma: no cover - the spec validates optimiser types
        raise NotImplementedError(f"jax backend has no optimiser {spec!r}")
    if spec.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(spec.weight_decay), tx)
    return optax.chain(tx, count_steps())


def scale_by_keras_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Keras' Adam before its learning rate: ``sqrt(1 - b2^t)/(1 - b1^t) · m/(sqrt(v) + eps)``
    (the epsilon-hat form; :class:`~gan_backends.spec.AdamSpec`), its state optax's
    ``ScaleByAdamState`` so that ``mu``/``nu`` hold the canonical ``m``/``v``."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update(updates, state, params=None):
        mu = jax.tree.map(lambda g, m: m + (1.0 - b1) * (g - m), updates, state.mu)
        nu = jax.tree.map(lambda g, v: v + (1.0 - b2) * (g * g - v), updates, state.nu)
        count = state.count + 1
        t = count.astype(jax.tree.leaves(mu)[0].dtype)  # the parameters' precision, as Keras casts
        step = jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        out = jax.tree.map(lambda m, v: (step * m) / (jnp.sqrt(v) + eps), mu, nu)
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def optax_slot_fields(spec: OptimizerSpec) -> dict[str, str]:
    """Canonical slot -> the optax state field holding it (see ``make_optimizer``)."""
    names = {"m": "mu", "v": "nu"} if isinstance(spec, AdamSpec) else {"v": "nu", "grad_avg": "mu", "momentum": "trace"}
    return {slot: names[slot] for slot in optimizer_slots(spec)}


__all__ = ["StepCount", "count_steps", "make_optimizer", "optax_slot_fields", "scale_by_keras_adam"]
