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
    if isinstance(spec, AdamSpec):
        tx = optax.adam(spec.lr, b1=spec.beta1, b2=spec.beta2, eps=spec.eps, eps_root=0.0)
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


def optax_slot_fields(spec: OptimizerSpec) -> dict[str, str]:
    """Canonical slot -> the optax state field holding it (see ``make_optimizer``)."""
    names = {"m": "mu", "v": "nu"} if isinstance(spec, AdamSpec) else {"v": "nu", "grad_avg": "mu", "momentum": "trace"}
    return {slot: names[slot] for slot in optimizer_slots(spec)}


__all__ = ["StepCount", "count_steps", "make_optimizer", "optax_slot_fields"]
