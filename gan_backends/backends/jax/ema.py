"""G's moving average in JAX: the spec's ``ē ← ē + w_t·(θ - ē)`` as a pure function of the
training state, so it runs inside the jitted step (and the data-parallel engine's program).

``optax.ema`` is not used: it debiases by default, starts its accumulator at zeros (so without
debiasing the first updates pull the average toward 0) and has no copy before ``start_step``;
with ``debias=True`` it equals the spec's ``debias`` true from ``start_step`` 0, computed as
``m / (1 - decay**k)`` over a hidden accumulator ``m`` rather than as the average itself
(``docs/framework-differences.md``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ...spec import EmaSpec


class EmaArrays(NamedTuple):
    """The EMA part of the training state: the count of G updates (int32, as optax counts) and
    the average, a Flax tree shaped like G's parameters, in their dtype."""

    count: jax.Array
    average: Any


def weight(spec: EmaSpec, t: jax.Array, dtype: Any) -> jax.Array:
    """``w_t`` of :class:`~gan_backends.spec.ema.EmaSpec` from the count ``t``, traceable."""
    s = spec.start_step
    if spec.debias:
        k = jnp.maximum(t - s, 1).astype(dtype)
        w = (1.0 - spec.decay) / (1.0 - jnp.power(jnp.asarray(spec.decay, dtype), k))
    else:
        w = jnp.asarray(1.0 - spec.decay, dtype)
    return jnp.where(t <= s, jnp.ones((), dtype), w)


def ema_update(spec: EmaSpec, ema: EmaArrays, g_params: Any) -> EmaArrays:
    """After one G update: count it, then move every average toward ``g_params`` (a copy where
    ``w_t`` is 1)."""
    t = ema.count + 1
    dtype = jax.tree.leaves(ema.average)[0].dtype
    w = weight(spec, t, dtype)
    average = jax.tree.map(lambda e, p: jnp.where(w == 1.0, p, e + w * (p - e)), ema.average, g_params)
    return EmaArrays(t, average)
