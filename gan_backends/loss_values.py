"""Loss values in float64 NumPy, without a framework or a spec: ``gan_backends.losses.get``.

    from gan_backends.losses import get, linear_critic
    hinge = get("hinge")
    hinge.d(real_logits, fake_logits)          # mean relu(1 - r) + mean relu(1 + f)
    hinge.g(fake_logits)                       # -mean f
    get("wgan-gp").penalty(linear_critic(w), real, fake, alpha)

The formulas are :mod:`gan_backends.losses`' (the ones every backend trains with and losscheck
judges against), evaluated on :data:`~gan_backends.losses.NUMPY_OPS`; so a value here is the
value the float64 reference trains on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import LOSS_NAMES, LossSpec, SpecError

#: A critic for :meth:`Loss.penalty`: ``critic(x) -> (scores (N,), input_gradient like x)``,
#: where ``input_gradient[i] = ∇_x D(x)`` at ``x[i]``.
Critic = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class Loss:
    """One loss of the zoo (its :class:`~gan_backends.spec.LossSpec`), on NumPy arrays."""

    spec: LossSpec

    def d_per_sample(self, real_logits: Any, fake_logits: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(r(l_real_i), f(l_fake_i))``, each sample's terms before the mean and ``d_scale``."""
        from .losses import NUMPY_OPS, fake_term, real_term

        return real_term(NUMPY_OPS, _f64(real_logits), self.spec), fake_term(NUMPY_OPS, _f64(fake_logits), self.spec)

    def d(self, real_logits: Any, fake_logits: Any, penalty: float = 0.0) -> float:
        """``d_scale · (mean r + mean f) + penalty`` (the penalty: :meth:`penalty`'s value)."""
        from .losses import NUMPY_OPS, discriminator_loss

        terms = discriminator_loss(NUMPY_OPS, _f64(real_logits), _f64(fake_logits), self.spec, penalty)
        return float(terms["d_loss"])

    def g_per_sample(self, fake_logits: Any) -> np.ndarray:
        """``g(l_i)``, each sample's term of G's loss."""
        from .losses import NUMPY_OPS, generator_term

        return generator_term(NUMPY_OPS, _f64(fake_logits), self.spec)

    def g(self, fake_logits: Any) -> float:
        """``mean_i g(l_i)``."""
        return float(np.mean(self.g_per_sample(fake_logits)))

    def penalty(self, critic: Critic, real: Any, fake: Any = None, alpha: Any = None) -> float:
        """The gradient penalty of this loss: WGAN-GP at ``x̂ = α·real + (1 - α)·fake``
        (``alpha`` shaped ``(N, 1, ...)`` or ``(N,)``), R1 at ``real``; formulas in
        :func:`gan_backends.losses.gradient_penalty`."""
        from .losses import NUMPY_OPS, gradient_penalty

        if self.spec.penalty == "none":
            raise SpecError(f"loss {self.spec.name!r} has no gradient penalty; get('wgan-gp') or get('r1') has")
        real = _f64(real)
        if self.spec.penalty == "wgan_gp":
            if fake is None or alpha is None:
                raise SpecError("the WGAN-GP penalty needs fake and alpha: penalty(critic, real, fake, alpha)")
            a = _f64(alpha).reshape(-1, *([1] * (real.ndim - 1)))
            real = a * real + (1.0 - a) * _f64(fake)
        _, grad = critic(real)
        grad = _f64(grad)
        return float(gradient_penalty(NUMPY_OPS, (grad * grad).reshape(len(grad), -1).sum(axis=1), self.spec))


def get(name: str, **options: Any) -> Loss:
    """The loss ``name``: a loss preset (``wgan-gp``, ``r1``, ``hinge``, ...: the ``--loss``
    names) or a formula name of :data:`~gan_backends.spec.LOSS_NAMES`; ``options`` are
    :class:`~gan_backends.spec.LossSpec` fields (``d_scale``, ``a``, ``b``, ``c``,
    ``penalty_weight``, ``norm_eps``)."""
    from .presets import LOSS_PRESETS

    if name in LOSS_PRESETS:
        spec = LOSS_PRESETS[name].loss
    elif name in LOSS_NAMES:
        spec = LossSpec(name=name)
    else:
        raise SpecError(f"unknown loss {name!r}; known: {', '.join(dict.fromkeys([*LOSS_PRESETS, *LOSS_NAMES]))}")
    fields = {f.name for f in dataclasses.fields(LossSpec)} - {"name"}
    unknown = set(options) - fields
    if unknown:
        raise SpecError(f"unknown loss options {sorted(unknown)}; options: {', '.join(sorted(fields))}")
    return Loss(dataclasses.replace(spec, **options))


def linear_critic(weights: Any, bias: float = 0.0) -> Critic:
    """``D(x) = <w, x> + b`` (``w`` shaped like one sample): its input gradient is ``w`` everywhere."""
    w = _f64(weights)

    def critic(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = _f64(x)
        scores = (x.reshape(len(x), -1) @ w.reshape(-1)) + bias
        return scores, np.broadcast_to(w, x.shape).copy()

    return critic
