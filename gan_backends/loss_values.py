"""Loss values in float64 NumPy, without a framework or a spec: ``gan_backends.losses.get``.

    from gan_backends.losses import get, linear_critic
    hinge = get("hinge")
    hinge.d(real_logits, fake_logits)          # mean relu(1 - r) + mean relu(1 + f)
    hinge.g(fake_logits)                       # -mean f
    get("rpgan").g(fake_logits, real_logits)   # relativistic: G's loss reads D(real) too
    get("wgan-gp").penalty(linear_critic(w), real, fake, alpha)
    get("r3gan").penalty(linear_critic(w), real, fake)   # γ/2 (R1 at real + R2 at fake)

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

from .spec import ALL_LOSS_NAMES, LossSpec, SpecError

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
        """``(r(l_real_i), f(l_fake_i))``, each sample's terms before the mean and ``d_scale``;
        for a relativistic loss the terms of :func:`gan_backends.losses.relativistic_terms`
        (RpGAN: the pair terms, and zeros)."""
        from .losses import NUMPY_OPS, fake_term, real_term, relativistic_terms

        real, fake = self._pair(real_logits, fake_logits)
        if self.spec.relativistic:
            return relativistic_terms(NUMPY_OPS, real, fake, self.spec, "d")
        return real_term(NUMPY_OPS, real, self.spec), fake_term(NUMPY_OPS, fake, self.spec)

    def d(self, real_logits: Any, fake_logits: Any, penalty: float = 0.0) -> float:
        """``d_scale · (mean r + mean f) + penalty`` (the penalty: :meth:`penalty`'s value)."""
        from .losses import NUMPY_OPS, discriminator_loss

        real, fake = self._pair(real_logits, fake_logits)
        return float(discriminator_loss(NUMPY_OPS, real, fake, self.spec, penalty)["d_loss"])

    def g_per_sample(self, fake_logits: Any, real_logits: Any = None) -> np.ndarray:
        """``g(l_i)``, each sample's term of G's loss (without ``g_scale``). A relativistic loss
        needs ``real_logits`` and gives per pair ``i`` the sum of G's real-side and fake-side
        terms (:func:`gan_backends.losses.relativistic_terms`), whose mean is G's loss."""
        from .losses import NUMPY_OPS, generator_term, relativistic_terms

        if not self.spec.relativistic:
            return generator_term(NUMPY_OPS, _f64(fake_logits), self.spec)
        real, fake = self._pair(self._real_for_g(real_logits), fake_logits)
        on_real, on_fake = relativistic_terms(NUMPY_OPS, real, fake, self.spec, "g")
        if real.shape != fake.shape:
            raise SpecError(f"per-sample G terms pair real and fake logits: shapes {real.shape} and {fake.shape}")
        return on_real + on_fake

    def g(self, fake_logits: Any, real_logits: Any = None) -> float:
        """``g_scale · mean_i g(l_i)``; a relativistic loss reads ``real_logits`` too."""
        from .losses import NUMPY_OPS, generator_loss

        if not self.spec.relativistic:
            return float(generator_loss(NUMPY_OPS, _f64(fake_logits), self.spec))
        real, fake = self._pair(self._real_for_g(real_logits), fake_logits)
        return float(generator_loss(NUMPY_OPS, fake, self.spec, real))

    def _real_for_g(self, real_logits: Any) -> Any:
        if real_logits is None:
            raise SpecError(f"the relativistic loss {self.spec.name!r}: G's loss needs real_logits: g(fake, real)")
        return real_logits

    def _pair(self, real_logits: Any, fake_logits: Any) -> tuple[np.ndarray, np.ndarray]:
        real, fake = _f64(real_logits), _f64(fake_logits)
        if self.spec.name == "rpgan" and real.shape != fake.shape:
            raise SpecError(f"rpgan pairs real and fake logits: shapes {real.shape} and {fake.shape} differ")
        return real, fake

    def penalty(self, critic: Critic, real: Any, fake: Any = None, alpha: Any = None) -> float:
        """The gradient penalty of this loss: WGAN-GP at ``x̂ = α·real + (1 - α)·fake``
        (``alpha`` shaped ``(N, 1, ...)`` or ``(N,)``), R1 at ``real``, R2 at ``fake``, R1 + R2
        at both; formulas in :func:`gan_backends.losses.gradient_penalty`."""
        from .losses import NUMPY_OPS, PENALTY_SITES, gradient_penalty

        if self.spec.penalty == "none":
            raise SpecError(f"loss {self.spec.name!r} has no gradient penalty; get('wgan-gp') or get('r1') has")
        real = _f64(real)
        sites = PENALTY_SITES[self.spec.penalty]
        if "interpolates" in sites and (fake is None or alpha is None):
            raise SpecError("the WGAN-GP penalty needs fake and alpha: penalty(critic, real, fake, alpha)")
        if "fake" in sites and fake is None:
            raise SpecError(f"the {self.spec.penalty} penalty needs fake: penalty(critic, real, fake)")
        norms = []
        for site in sites:
            if site == "interpolates":
                a = _f64(alpha).reshape(-1, *([1] * (real.ndim - 1)))
                x = a * real + (1.0 - a) * _f64(fake)
            else:
                x = real if site == "real" else _f64(fake)
            grad = _f64(critic(x)[1])
            norms.append((grad * grad).reshape(len(grad), -1).sum(axis=1))
        return float(gradient_penalty(NUMPY_OPS, norms[0], self.spec, *norms[1:]))


def get(name: str, **options: Any) -> Loss:
    """The loss ``name``: a loss preset (``wgan-gp``, ``r1``, ``hinge``, ...: the ``--loss``
    names: ``rpgan``, ``r3gan``, ...) or a formula name of
    :data:`~gan_backends.spec.ALL_LOSS_NAMES`; ``options`` are
    :class:`~gan_backends.spec.LossSpec` fields (``d_scale``, ``g_scale``, ``a``, ``b``,
    ``c``, ``penalty``, ``penalty_weight``, ``norm_eps``)."""
    from .presets import LOSS_PRESETS

    if name in LOSS_PRESETS:
        spec = LOSS_PRESETS[name].loss
    elif name in ALL_LOSS_NAMES:
        spec = LossSpec(name=name)
    else:
        raise SpecError(f"unknown loss {name!r}; known: {', '.join(dict.fromkeys([*LOSS_PRESETS, *ALL_LOSS_NAMES]))}")
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
