"""The spec's ``ema`` section: an exponential moving average of the generator's weights.

BigGAN (Brock et al. 2019, section 4) and StyleGAN (Karras et al. 2019, 2020) sample from a
moving average of G's weights rather than from G itself. The rule is written here once, in a
form every backend runs the same way (``docs/framework-differences.md`` lists how each
framework's own EMA differs from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .base import SpecError, _require_bool


@dataclass(frozen=True, kw_only=True)
class EmaSpec:
    """A moving average ``ē`` of the generator's parameters θ, updated after each G update.

    ``t`` counts generator updates: 1, 2, ... (one per training step; the ``n_critic`` D updates
    of a step do not count, so with ``n_critic`` 5 the average moves once per 5 D updates).
    Before any update ``ē₀ = θ₀``, a copy of G's initial parameters. After G update ``t``, with
    ``θ_t`` G's new parameters::

        ē_t = ē_{t-1} + w_t · (θ_t - ē_{t-1})                       (a lerp, in the spec dtype)

        w_t = 1                                     t <= start_step   (ē_t is a copy of θ_t)
        w_t = 1 - decay                             t > start_step, debias false
        w_t = (1 - decay) / (1 - decay**(t - start_step))          t > start_step, debias true

    ``debias`` true is optax's ``ema(decay, debias=True)`` started at update ``start_step``:
    optax keeps ``m_k = decay·m_{k-1} + (1 - decay)·θ`` from ``m_0 = 0`` and returns
    ``m_k / (1 - decay**k)`` with ``k`` the updates counted from 1; that quotient obeys exactly
    the recursion above (so ``w`` is 1 at its first update: it copies), and the average is the
    one state, with no hidden accumulator. ``debias`` false with ``start_step`` 0 is StyleGAN2-ADA's
    ``G_ema`` (a copy of G at the start, then ``lerp(θ, ē, decay)`` after every G step, with no
    ramp-up) and ``tf.train.ExponentialMovingAverage(decay)`` without ``num_updates``;
    ``start_step`` 1 is ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``
    (its first ``update_parameters`` copies).

    The lerp form (torch's ``lerp_``, TF's ``assign_moving_average``) is used rather than
    optax's ``decay·ē + (1 - decay)·θ``: equal in exact arithmetic, it rounds once at the
    average's scale where the other rounds twice. The average is kept in the parameters' dtype
    (float32, or float64 in a float64 run; bf16 mixed precision keeps float32 master weights
    and so a float32 average), as optax's ``accumulator_dtype=None``, ``AveragedModel``'s copy
    and TF's shadow variables are.

    BatchNorm running statistics are not averaged: the averaged generator runs with G's own
    current statistics (StyleGAN2-ADA copies G's buffers into ``G_ema``), which is
    ``AveragedModel(use_buffers=False)`` with G's buffers copied in.
    """

    decay: float = 0.999
    start_step: int = 0
    debias: bool = False

    def __post_init__(self) -> None:
        value = self.decay
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"ema.decay must be a number in [0, 1), got {value!r}")
        if not 0 <= value < 1:
            raise SpecError(f"ema.decay must lie in [0, 1) (1 would never move), got {value!r}")
        object.__setattr__(self, "decay", float(value))
        step = self.start_step
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise SpecError(f"ema.start_step must be an integer >= 0, got {step!r}")
        _require_bool("ema.debias", self.debias)

    def weight(self, t: int) -> float:
        """``w_t`` of G update ``t`` (1, 2, ...): the formula above, in float64."""
        if t <= self.start_step:
            return 1.0
        if not self.debias:
            return 1.0 - self.decay
        return (1.0 - self.decay) / (1.0 - self.decay ** (t - self.start_step))

    def describe(self) -> str:
        """One line, e.g. ``EMA of G: decay 0.999, from G step 0, debiased``."""
        bias = "debiased (optax's form)" if self.debias else "not debiased"
        return f"EMA of G: decay {self.decay:g}, copies G through G step {self.start_step}, {bias}"

    def to_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "start_step": self.start_step, "debias": self.debias}
