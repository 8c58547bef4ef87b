"""The derivatives of :mod:`gan_backends.losses`' formulas w.r.t. the logits and the input
gradients, derived by hand: where the reference's reverse pass starts.

``softplus' = sigmoid`` and ``relu' = step`` (0 at 0, as torch, TensorFlow and JAX define it).
Every mean runs over all of a batch's logits, so ``size`` below is ``logits.size`` (``N`` for
``(N, 1)`` logits, ``N·H·W`` for a PatchGAN's); with ``reduction="sum"`` it is 1 (:func:`count`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...losses import sigmoid
from ...spec import LossSpec
from .layers import F64


def _step(x: np.ndarray) -> np.ndarray:
    """relu'(x): 0 at 0, as torch, TensorFlow and JAX define it."""
    return (x > 0).astype(F64)


def count(x: np.ndarray, spec: LossSpec) -> int:
    """What a term's reduction divides by: ``x.size`` for the mean, 1 for the sum."""
    return x.size if spec.reduction == "mean" else 1


def loss_term_grads(spec: LossSpec) -> tuple[Callable, Callable, Callable]:
    """The derivatives ``r'``, ``f'``, ``g'`` of the per-logit terms (the non-relativistic losses)."""
    if spec.name == "wasserstein":  # r = -l, f = l, g = -l
        return (lambda x: -np.ones_like(x)), np.ones_like, (lambda x: -np.ones_like(x))
    if spec.name == "least_squares":
        return (lambda x: x - spec.b), (lambda x: x - spec.a), (lambda x: x - spec.c)
    if spec.name == "hinge":  # r = relu(m - l), f = relu(m + l)
        m = spec.hinge_margin
        return (lambda x: -_step(m - x)), (lambda x: _step(m + x)), (lambda x: -np.ones_like(x))
    # r = t·softplus(-l) + (1 - t)·softplus(l): r' = σ(l) - t; at t = 1 written -σ(-l), exact in the tail
    t, u = spec.real_target, spec.fake_target
    real = (lambda x: -sigmoid(-x)) if t == 1.0 else (lambda x: sigmoid(x) - t)
    fake = sigmoid if u == 0.0 else (lambda x: sigmoid(x) - u)
    if spec.name == "minimax":
        return real, fake, (lambda x: -sigmoid(x))
    return real, fake, (lambda x: -sigmoid(-x))  # non_saturating


def relativistic_form_grads(spec: LossSpec) -> tuple[Callable, Callable]:
    """``(ρ', φ')`` of :func:`gan_backends.losses.relativistic_forms`."""
    if spec.name == "rasgan":  # ρ = softplus(-t), φ = softplus(t)
        return (lambda t: -sigmoid(-t)), sigmoid
    if spec.name == "ralsgan":  # ρ = (t - 1)², φ = (t + 1)²
        return (lambda t: 2.0 * (t - 1.0)), (lambda t: 2.0 * (t + 1.0))
    # rahinge: ρ = relu(1 - t), φ = relu(1 + t)
    return (lambda t: -_step(1.0 - t)), (lambda t: _step(1.0 + t))


def d_logit_grads(spec: LossSpec, real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(∂ d_loss/∂ C_r, ∂ d_loss/∂ C_f)`` without the penalty. With ``n_r``, ``n_f`` the
    logit counts: per-logit losses ``s·r'(C_r)/n_r``, ``s·f'(C_f)/n_f`` (``s = d_scale``);
    RaGAN (``u = C_r - mean C_f``, ``v = C_f - mean C_r``, each mean reaching the other batch)
    ``s·(ρ'(u) - mean φ'(v))/n_r``, ``s·(φ'(v) - mean ρ'(u))/n_f``; RpGAN
    (``softplus(C_f - C_r)`` per pair) ``∓ s·σ(C_f - C_r)/n``."""
    scale = spec.d_scale
    n_r, n_f = count(real, spec), count(fake, spec)
    if spec.name == "rpgan":
        w = scale * sigmoid(fake - real) / n_r
        return -w, w
    if spec.relativistic:  # ∂/∂C_r[k] = s·(ρ'(u_k)/n_r - Σ_j φ'(v_j)/(n_f·N_r)), and so on
        rho_p, phi_p = relativistic_form_grads(spec)
        dr, df = rho_p(real - fake.mean()) / n_r, phi_p(fake - real.mean()) / n_f
        return scale * (dr - df.sum() / real.size), scale * (df - dr.sum() / fake.size)
    real_grad, fake_grad, _ = loss_term_grads(spec)
    return scale * real_grad(real) / n_r, scale * fake_grad(fake) / n_f


def g_logit_grad(spec: LossSpec, fake: np.ndarray, real: np.ndarray | None) -> np.ndarray:
    """``∂ g_loss/∂ C_f`` (G reaches the loss through the fake logits only): per-logit losses
    ``t·g'(C_f)/n_f`` (``t = g_scale``); RaGAN (G's terms ``φ(u)``, ``ρ(v)``)
    ``t·(ρ'(v) - mean φ'(u))/n_f``; RpGAN (``softplus(C_r - C_f)``) ``-t·σ(C_r - C_f)/n``."""
    scale = spec.g_scale
    if spec.name == "rpgan":
        return -scale * sigmoid(real - fake) / count(fake, spec)
    if spec.relativistic:
        rho_p, phi_p = relativistic_form_grads(spec)
        du, dv = phi_p(real - fake.mean()) / count(real, spec), rho_p(fake - real.mean()) / count(fake, spec)
        return scale * (dv - du.sum() / fake.size)
    return scale * loss_term_grads(spec)[2](fake) / count(fake, spec)


def penalty_grad_wrt_g(g: np.ndarray, spec: LossSpec) -> np.ndarray:
    """``∂ penalty / ∂ g`` per sample at one site, from :func:`gan_backends.losses.gradient_penalty`:
    wgan_gp ``λ·2(n−γ)/(γ² n) · g / N`` with ``n = sqrt(s + norm_eps)``, ``γ`` the norm target
    (``max(0, n − γ)`` in place of ``n − γ`` when one-sided); r1, r2 and each site of r1_r2
    (``γ/2 · mean s``) ``γ·g / N``."""
    n_samples = g.shape[0] if spec.reduction == "mean" else 1
    if spec.penalty in ("r1", "r2", "r1_r2"):
        return spec.penalty_weight * g / n_samples
    s = (g * g).reshape(g.shape[0], -1).sum(axis=1)
    norm = np.sqrt(s + spec.norm_eps)
    target = spec.penalty_target
    dev = np.maximum(norm - target, 0.0) if spec.penalty_one_sided else norm - target
    coef = spec.penalty_weight * 2.0 * dev / norm / n_samples / (target * target)
    return coef.reshape(-1, *([1] * (g.ndim - 1))) * g
