"""GAN losses on discriminator logits, written once for every backend.

Each function takes ``ops``, a tiny namespace with the primitives the formulas need
(``softplus``, ``mean``, ``relu``, ``sqrt``, ``sum``), so the same math runs on NumPy arrays, torch tensors, TF tensors
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
    sum: Callable[[Any], Any]


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)`` without overflow, exact in both tails (``logaddexp``)."""
    return np.logaddexp(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-x)`` as ``exp(-softplus(-x))``: exact in the tails, where ``1 - sigmoid`` would cancel."""
    return np.exp(-np.logaddexp(0.0, -x))


#: The primitives on NumPy arrays: the float64 reference's, and losscheck's judge's.
NUMPY_OPS = LossOps(softplus=softplus, mean=np.mean, relu=lambda x: np.maximum(x, 0.0), sqrt=np.sqrt, sum=np.sum)

LOSS_TERMS: tuple[str, ...] = ("d_real", "d_fake", "d_penalty", "d_loss", "g_loss")


def reduce(ops: LossOps, terms: Any, spec: LossSpec) -> Any:
    """A term's mean over every logit (or sample), or its sum with ``reduction="sum"``."""
    return ops.mean(terms) if spec.reduction == "mean" else ops.sum(terms)


def _per_logit(spec: LossSpec) -> None:
    if spec.relativistic:
        raise ValueError(f"the relativistic loss {spec.name!r} has no per-logit terms; see relativistic_terms")


def real_term(ops: LossOps, logits: Any, spec: LossSpec) -> Any:
    """D's per-sample loss on real data, ``r(l)``:

    - ``minimax``, ``non_saturating`` (Goodfellow et al. 2014, eq. 1): ``softplus(-l) = -log D(x)``;
      with a smoothed real target ``t`` (``LossSpec.real_target``) the cross-entropy
      ``t·softplus(-l) + (1 - t)·softplus(l) = -t log D(x) - (1 - t) log(1 - D(x))``
    - ``least_squares`` (Mao et al. 2017, eq. 2, D's target for real data ``b``): ``(l - b)^2 / 2``
    - ``hinge`` (Lim & Ye 2017; Miyato et al. 2018, eq. 17): ``relu(1 - l)``; with a margin m
      (``hinge_margin``, TF-GAN's ``real_hinge``): ``relu(m - l)``
    - ``wasserstein`` (Arjovsky et al. 2017, eq. 3, the critic maximises the real score): ``-l``

    The relativistic losses have no per-logit terms: :func:`relativistic_terms`.
    """
    _per_logit(spec)
    if spec.name == "wasserstein":
        return -logits
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.b) * (logits - spec.b)
    if spec.name == "hinge":
        return ops.relu(spec.hinge_margin - logits)
    t = spec.real_target
    if t != 1.0:
        return t * ops.softplus(-logits) + (1.0 - t) * ops.softplus(logits)
    return ops.softplus(-logits)


def fake_term(ops: LossOps, logits: Any, spec: LossSpec) -> Any:
    """D's per-sample loss on generated data, ``f(l)``:

    - ``minimax``, ``non_saturating``: ``softplus(l) = -log(1 - D(G(z)))``; with a smoothed fake
      target ``u`` (``LossSpec.fake_target``, Keras' label smoothing on both labels)
      ``u·softplus(-l) + (1 - u)·softplus(l)``
    - ``least_squares`` (target for fake data ``a``): ``(l - a)^2 / 2``
    - ``hinge``: ``relu(1 + l)``; with a margin m: ``relu(m + l)``
    - ``wasserstein``: ``l``
    """
    _per_logit(spec)
    if spec.name == "wasserstein":
        return logits
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.a) * (logits - spec.a)
    if spec.name == "hinge":
        return ops.relu(spec.hinge_margin + logits)
    u = spec.fake_target
    if u != 0.0:
        return u * ops.softplus(-logits) + (1.0 - u) * ops.softplus(logits)
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
    _per_logit(spec)
    if spec.name == "minimax":
        return -ops.softplus(logits)
    if spec.name == "non_saturating":
        return ops.softplus(-logits)
    if spec.name == "least_squares":
        return 0.5 * (logits - spec.c) * (logits - spec.c)
    if spec.name in ("hinge", "wasserstein"):
        return -logits
    raise ValueError(f"unknown loss {spec.name!r}")  # unreachable: LossSpec validates names


#: Where each penalty takes D's input gradient, in the order :func:`gradient_penalty` reads
#: them: WGAN-GP's interpolates, R1's real batch, R2's generated batch (the D update's fakes).
PENALTY_SITES: dict[str, tuple[str, ...]] = {
    "none": (),
    "wgan_gp": ("interpolates",),
    "r1": ("real",),
    "r2": ("fake",),
    "r1_r2": ("real", "fake"),
}


def gradient_penalty(ops: LossOps, sq_norms: Any, spec: LossSpec, fake_sq_norms: Any = None) -> Any:
    """The penalty from per-sample squared input-gradient norms ``s_i = ||∇_x D(x_i)||²``
    (summed over every axis but the batch) at the sites of :data:`PENALTY_SITES`, each
    backend's autodiff providing ``∇_x D``:

    - ``wgan_gp`` (Gulrajani et al. 2017, eq. 3), at ``x̂_i = α_i x_i + (1 - α_i) G(z_i)`` with
      ``α_i ~ U[0, 1]`` drawn in NumPy: ``λ · mean_i (sqrt(s_i + norm_eps) - 1)²``. The
      ``norm_eps`` keeps the gradient finite where ``s_i = 0`` (``tf.norm``/``jnp.linalg.norm``
      give NaN there, ``torch.norm`` 0). With a norm target γ (``penalty_target``; Karras et
      al. 2017): ``λ · mean_i (n_i - γ)² / γ²``, ``n_i = sqrt(s_i + norm_eps)``; one-sided
      (``penalty_one_sided``; Gulrajani et al.'s appendix, Petzka et al. 2018):
      ``λ · mean_i max(0, n_i - γ)² / γ²``.
    - ``r1`` (Mescheder et al. 2018, eq. 9), at real data: ``γ/2 · mean_i s_i``.
    - ``r2`` (the same paper, eq. 10), at the generated batch ``G(z_i)`` (a constant of D's
      update): ``γ/2 · mean_i s_i``.
    - ``r1_r2`` (Huang et al. 2025, R3GAN: ``γ/2 · (R1 + R2)``), ``sq_norms`` at the real and
      ``fake_sq_norms`` at the generated batch: ``γ/2 · (mean_i s_i + mean_i s̃_i)``.

    With ``reduction="sum"`` each ``mean_i`` is a sum over the samples.
    """
    if spec.penalty == "wgan_gp":
        target = spec.penalty_target
        dev = ops.sqrt(sq_norms + spec.norm_eps) - target
        if spec.penalty_one_sided:
            dev = ops.relu(dev)
        value = spec.penalty_weight * reduce(ops, dev * dev, spec)
        return value if target == 1.0 else value / (target * target)
    if spec.penalty in ("r1", "r2"):
        return 0.5 * spec.penalty_weight * reduce(ops, sq_norms, spec)
    if spec.penalty == "r1_r2":
        if fake_sq_norms is None:
            raise ValueError("the r1_r2 penalty needs the input-gradient norms at the fake batch too")
        return 0.5 * spec.penalty_weight * (reduce(ops, sq_norms, spec) + reduce(ops, fake_sq_norms, spec))
    raise ValueError(f"loss {spec.name!r} has no gradient penalty")


# -- the relativistic losses (Jolicoeur-Martineau 2018) ------------------------------------------


def relativistic_forms(ops: LossOps, spec: LossSpec) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``(ρ, φ)``: a relativistic average loss's term for "looks more real than the average of
    the other kind" and for "looks less real", on a relativistic logit ``t``:

    - ``rasgan`` (RaSGAN, the relativistic average loss with BCE): ``ρ(t) = softplus(-t) = -log σ(t)``,
      ``φ(t) = softplus(t) = -log(1 - σ(t))``
    - ``ralsgan`` (RaLSGAN): ``ρ(t) = (t - 1)²``, ``φ(t) = (t + 1)²``
      (the paper's form; the author's code halves both losses: ``d_scale = g_scale = 0.5``)
    - ``rahinge`` (RaHingeGAN): ``ρ(t) = relu(1 - t)``, ``φ(t) = relu(1 + t)``
    """
    if spec.name == "rasgan":
        return (lambda t: ops.softplus(-t)), ops.softplus
    if spec.name == "ralsgan":
        return (lambda t: (t - 1.0) * (t - 1.0)), (lambda t: (t + 1.0) * (t + 1.0))
    if spec.name == "rahinge":
        return (lambda t: ops.relu(1.0 - t)), (lambda t: ops.relu(1.0 + t))
    raise ValueError(f"loss {spec.name!r} is not a relativistic average loss")


def relativistic_terms(ops: LossOps, real_logits: Any, fake_logits: Any, spec: LossSpec, role: str) -> tuple[Any, Any]:
    """The per-logit terms of a relativistic loss, ``(on the real logits, on the fake logits)``,
    for D's loss (``role="d"``) or G's (``role="g"``). With ``C_r``, ``C_f`` the logits and
    ``mean`` over every logit of a batch (so patch-shaped logits work unchanged):

    - relativistic average (RaGAN), ``u = C_r - mean C_f`` and ``v = C_f - mean C_r``:
      D's terms ``(ρ(u), φ(v))``, G's ``(φ(u), ρ(v))`` (G wants fakes to look more real than
      the average real, and reals less real than the average fake)
    - ``rpgan`` (relativistic pairing, RpGAN; Jolicoeur-Martineau 2018's RSGAN, and R3GAN's
      adversarial loss, Huang et al. 2025), pairing ``C_r[i]`` with ``C_f[i]`` (real and fake batches of one size):
      D's ``softplus(-(C_r - C_f))``, G's ``softplus(-(C_f - C_r))``, the whole per pair on
      the real side; the fake side is 0 (there is no per-kind split of a pair's term).
    """
    if spec.name == "rpgan":
        pair = real_logits - fake_logits if role == "d" else fake_logits - real_logits
        term = ops.softplus(-pair)
        return term, 0.0 * term
    rho, phi = relativistic_forms(ops, spec)
    u = real_logits - ops.mean(fake_logits)
    v = fake_logits - ops.mean(real_logits)
    return (rho(u), phi(v)) if role == "d" else (phi(u), rho(v))


def discriminator_loss(
    ops: LossOps, real_logits: Any, fake_logits: Any, spec: LossSpec, penalty: Any = 0.0
) -> dict[str, Any]:
    """D's loss, every loss of the zoo in one form::

        d_real    = mean_i r(l_real_i)
        d_fake    = mean_i f(l_fake_i)
        d_penalty = the gradient penalty (see gradient_penalty), 0 without one
        d_loss    = d_scale * (d_real + d_fake) + d_penalty    (+ d_penalty only if spec.penalty != "none")

    with ``r`` and ``f`` from :func:`real_term` and :func:`fake_term`; for the relativistic
    losses ``d_real`` and ``d_fake`` are the means of :func:`relativistic_terms` (``rpgan``:
    ``d_real`` is the pair term, ``d_fake`` 0). The means run over every logit (a PatchGAN's
    ``(N, H, W, 1)`` as well as ``(N, 1)``); with ``reduction="sum"`` they are sums. For the
    cross-entropy losses ``d_scale`` is 1 in Goodfellow et al. and 0.5 in several tutorials;
    LSGAN's ½ is inside ``r`` and ``f``; the penalty carries its own weight.
    """
    if spec.relativistic:
        on_real, on_fake = relativistic_terms(ops, real_logits, fake_logits, spec, "d")
        d_real, d_fake = reduce(ops, on_real, spec), reduce(ops, on_fake, spec)
    else:
        d_real = reduce(ops, real_term(ops, real_logits, spec), spec)
        d_fake = reduce(ops, fake_term(ops, fake_logits, spec), spec)
    # The same value written with the fewest ops (×1 and +0 are exact): each op is a kernel
    # launch and an autograd node in an eager step.
    d_loss = d_real + d_fake if spec.d_scale == 1.0 else spec.d_scale * (d_real + d_fake)
    if spec.penalty != "none":
        d_loss = d_loss + penalty
    return {"d_real": d_real, "d_fake": d_fake, "d_penalty": penalty, "d_loss": d_loss}


def generator_loss(ops: LossOps, fake_logits: Any, spec: LossSpec, real_logits: Any = None) -> Any:
    """``g_loss = g_scale · mean_i g(l_i)``, ``g`` from :func:`generator_term`; for the
    relativistic losses ``g_scale · (mean of G's real-side terms + mean of its fake-side
    terms)`` of :func:`relativistic_terms`, which need ``real_logits`` (D on the real batch)."""
    if spec.relativistic:
        if real_logits is None:
            raise ValueError(f"the relativistic loss {spec.name!r}: G's loss needs D's logits on real data")
        on_real, on_fake = relativistic_terms(ops, real_logits, fake_logits, spec, "g")
        on_real = reduce(ops, on_real, spec)
        g_loss = on_real if spec.name == "rpgan" else on_real + reduce(ops, on_fake, spec)
    else:
        g_loss = reduce(ops, generator_term(ops, fake_logits, spec), spec)
    return g_loss if spec.g_scale == 1.0 else spec.g_scale * g_loss


# The plain float64 API on these formulas, for a value without a framework or a spec.
from .loss_values import Critic, Loss, get, linear_critic  # noqa: E402

__all__ = [
    "LOSS_TERMS",
    "NUMPY_OPS",
    "PENALTY_SITES",
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
    "reduce",
    "relativistic_forms",
    "relativistic_terms",
    "sigmoid",
    "softplus",
]
