"""GAN losses on discriminator logits, written once for every backend.

Each function takes ``ops``, a tiny namespace with the primitives the formulas need
(``softplus``, ``mean``, ``relu``, ``sqrt``), so the same math runs on NumPy arrays, torch tensors, TF tensors
and JAX arrays. Every formula is on logits ``l`` with ``D(x) = sigmoid(l)``, using the stable
identities

    -log sigmoid(l)      = softplus(-l)
    -log(1 - sigmoid(l)) = softplus(l)
    softplus(l)          = log(1 + exp(l)) = max(l, 0) + log1p(exp(-|l|))

so no loss overflows or loses precision when D saturates. ``softplus`` must be exact: torch's
``F.softplus`` returns ``l`` past its threshold of 20, which is 2e-9 off and shows in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .spec import LossSpec


class LossOps(NamedTuple):
    """The array primitives the loss formulas use, provided by each backend."""

    softplus: Callable[[Any], Any]
    mean: Callable[[Any], Any]
    relu: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)`` without overflow, exact in both tails (``logaddexp``)."""
    return np.logaddexp(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-x)`` as ``exp(-softplus(-x))``: exact in the tails, where ``1 - sigmoid`` would cancel."""
    return np.exp(-np.logaddexp(0.0, -x))


#: The primitives on NumPy arrays: the float64 reference's, and losscheck's judge's.
NUMPY_OPS = LossOps(softplus=softplus, mean=np.mean, relu=lambda x: np.maximum(x, 0.0), sqrt=np.sqrt)

LOSS_TERMS: tuple[str, ...] = ("d_real", "d_fake", "d_penalty", "d_loss", "g_loss")


def real_term(ops: LossOps, logits: Any, spec: LossSpec) -> Any:
    """D's per-sample loss on real data, ``r(l)``:

    - ``minimax``, ``non_saturating`` (Goodfellow et al. 2014, eq. 1): ``softplus(-l) = -log D(x)``
    - ``least_squares`` (Mao et al. 2017, eq. 2, D's target for real data ``b``): ``(l - b)^2 / 2``
    - ``hinge`` (Lim & Ye 2017; Miyato et al. 2018, eq. 17): ``relu(1 - l)``
    - ``wasserstein`` (Arjovsky et al. 2017, eq. 3, the critic maximises the real score): ``-l``
    """
    if spec.name == "wasserstein":
        return -logits
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.b) * (logits - spec.b)
    if spec.name == "hinge":
        return ops.relu(1.0 - logits)
    return ops.softplus(-logits)


def fake_term(ops: LossOps, logits: Any, spec: LossSpec) -> Any:
    """D's per-sample loss on generated data, ``f(l)``:

    - ``minimax``, ``non_saturating``: ``softplus(l) = -log(1 - D(G(z)))``
    - ``least_squares`` (target for fake data ``a``): ``(l - a)^2 / 2``
    - ``hinge``: ``relu(1 + l)``
    - ``wasserstein``: ``l``
    """
    if spec.name == "wasserstein":
        return logits
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.a) * (logits - spec.a)
    if spec.name == "hinge":
        return ops.relu(1.0 + logits)
    return ops.softplus(logits)


def generator_term(ops: LossOps, logits: Any, spec: LossSpec) -> Any:
    """G's per-sample loss on ``l = D(G(z))``'s logit, ``g(l)``:

    - ``minimax`` (Goodfellow et al. 2014, eq. 1, saturating: G minimises log(1 - D(G(z)))):
      ``-softplus(l)``
    - ``non_saturating`` (same paper, section 3: G maximises log D(G(z))): ``softplus(-l)``
    - ``least_squares`` (G's target ``c``, Mao et al. eq. 2): ``(l - c)^2 / 2``
    - ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): ``-l``
    - ``wasserstein`` (Arjovsky et al. 2017): ``-l``
    """
    if spec.name == "minimax":
        return -ops.softplus(logits)
    if spec.name == "non_saturating":
        return ops.softplus(-logits)
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.c) * (logits - spec.c)
    if spec.name in ("hinge", "wasserstein"):
        return -logits
    raise ValueError(f"unknown loss {spec.name!r}")  # unreachable: LossSpec validates names


def gradient_penalty(ops: LossOps, sq_norms: Any, spec: LossSpec) -> Any:
    """The penalty from per-sample squared input-gradient norms ``s_i = ||∇_x D(x_i)||²``
    (summed over every axis but the batch), each backend's autodiff providing ``∇_x D``:

    - ``wgan_gp`` (Gulrajani et al. 2017, eq. 3), at ``x̂_i = α_i x_i + (1 - α_i) G(z_i)`` with
      ``α_i ~ U[0, 1]`` drawn in NumPy: ``λ · mean_i (sqrt(s_i + norm_eps) - 1)²``. The
      ``norm_eps`` keeps the gradient finite where ``s_i = 0`` (``tf.norm``/``jnp.linalg.norm``
      give NaN there, ``torch.norm`` 0).
    - ``r1`` (Mescheder et al. 2018, eq. 9), at real data: ``γ/2 · mean_i s_i``.
    """
    if spec.penalty == "wgan_gp":
        norm = ops.sqrt(sq_norms + spec.norm_eps)
        return spec.penalty_weight * ops.mean((norm - 1.0) * (norm - 1.0))
    if spec.penalty == "r1":
        return 0.5 * spec.penalty_weight * ops.mean(sq_norms)
    raise ValueError(f"loss {spec.name!r} has no gradient penalty")


def discriminator_loss(
    ops: LossOps, real_logits: Any, fake_logits: Any, spec: LossSpec, penalty: Any = 0.0
) -> dict[str, Any]:
    """D's loss, every loss of the zoo in one form::

        d_real    = mean_i r(l_real_i)
        d_fake    = mean_i f(l_fake_i)
        d_penalty = the gradient penalty (see gradient_penalty), 0 without one
        d_loss    = d_scale * (d_real + d_fake) + d_penalty    (+ d_penalty only if spec.penalty != "none")

    with ``r`` and ``f`` from :func:`real_term` and :func:`fake_term`. For the cross-entropy
    losses ``d_scale`` is 1 in Goodfellow et al. and 0.5 in several tutorials; LSGAN's ½ is
    inside ``r`` and ``f``; the penalty carries its own weight.
    """
    d_real = ops.mean(real_term(ops, real_logits, spec))
    d_fake = ops.mean(fake_term(ops, fake_logits, spec))
    # The same value written with the fewest ops (×1 and +0 are exact): each op is a kernel
    # launch and an autograd node in an eager step.
    d_loss = d_real + d_fake if spec.d_scale == 1.0 else spec.d_scale * (d_real + d_fake)
    if spec.penalty != "none":
        d_loss = d_loss + penalty
    return {"d_real": d_real, "d_fake": d_fake, "d_penalty": penalty, "d_loss": d_loss}


def generator_loss(ops: LossOps, fake_logits: Any, spec: LossSpec) -> Any:
    """``g_loss = mean_i g(l_i)``, ``g`` from :func:`generator_term`."""
    return ops.mean(generator_term(ops, fake_logits, spec))


# The plain float64 API on these formulas, for a value without a framework or a spec.
from .loss_values import Critic, Loss, get, linear_critic  # noqa: E402

__all__ = [
    "LOSS_TERMS",
    "NUMPY_OPS",
    "Critic",
    "Loss",
    "LossOps",
    "discriminator_loss",
    "fake_term",
    "generator_loss",
    "generator_term",
    "get",
    "gradient_penalty",
    "linear_critic",
    "real_term",
    "sigmoid",
    "softplus",
]
