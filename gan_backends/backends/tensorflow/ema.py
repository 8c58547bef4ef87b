"""G's moving average in TensorFlow: the spec's ``ē ← ē + w_t·(θ - ē)`` on ``tf.Variable``\\ s,
updated inside the training step's ``tf.function`` (and its XLA program).

``tf.train.ExponentialMovingAverage`` is not used: with ``num_updates`` it ramps the decay as
``min(decay, (1 + n)/(10 + n))``, which no spec states, and it has neither the copy before
``start_step`` nor optax's debiasing. Its update, ``shadow -= (shadow - value)·(1 - decay)``
(``assign_moving_average``), is this lerp.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ...spec import EmaSpec
from ..base import EmaState


class TensorFlowEma:
    """The average (one variable per G variable, same dtype and layout, canonical names) and its
    count of G updates (an int64 variable)."""

    def __init__(self, spec: EmaSpec, variables: dict[str, tf.Variable]):
        self.spec = spec
        self.variables = variables  # canonical name -> G's live variable
        self.average = {
            name: tf.Variable(v, trainable=False, name=f"ema_{name.replace('.', '_')}") for name, v in variables.items()
        }
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_count")

    def reset(self) -> None:
        """A fresh average: a copy of G's variables, step 0."""
        for name, avg in self.average.items():
            avg.assign(self.variables[name])
        self.count.assign(0)

    def _weight(self, t: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        """``w_t`` of :class:`~gan_backends.spec.ema.EmaSpec` from the count ``t``."""
        s = self.spec.start_step
        if self.spec.debias:
            k = tf.cast(tf.maximum(t - s, 1), dtype)
            w = (1.0 - self.spec.decay) / (1.0 - tf.pow(tf.constant(self.spec.decay, dtype), k))
        else:
            w = tf.constant(1.0 - self.spec.decay, dtype)
        return tf.where(t <= s, tf.ones((), dtype), w)

    def update(self) -> None:
        """After one G update: count it, then move every average (a copy where ``w_t`` is 1)."""
        t = self.count.assign_add(1)
        dtype = next(iter(self.average.values())).dtype
        w = self._weight(t, dtype)
        for name, avg in self.average.items():
            value = self.variables[name]
            avg.assign(tf.where(w == 1.0, value, avg + w * (value - avg)))

    def get(self) -> EmaState:
        return EmaState(int(self.count.numpy()), {name: v.numpy() for name, v in self.average.items()})

    def set(self, state: EmaState, dtype: np.dtype) -> None:
        for name, avg in self.average.items():
            avg.assign(np.asarray(state.params[name], dtype=dtype))
        self.count.assign(int(state.steps))
