"""Our float64 losses against other GAN libraries' *published* test values.

Every expected number below is copied as printed from another library's own test file (cited at
each test: repository, path, commit of the stored copy, test class/method), never from our code or
its saved output; the tolerance is the one the published digits allow (``places=k``: half a unit
of the k-th decimal). Each loss also has a hand derivation from the paper's formula in a comment.

Sources:

- TF-GAN, ``tensorflow/gan`` ``tensorflow_gan/python/losses/losses_impl_test.py`` (commit
  6fc288d93533ae83a44a518f99a4363f2bbc4a58; the values are the same at 121fdbecbf1f): the
  ``_LossesTest`` constants (D on real ``[-5.0, 1.4, 12.5, 2.7]``, on generated
  ``[10.0, 4.4, -5.5, 3.6]``, weight 2.3) with ``LeastSquaresLossTest``, ``ModifiedLossTest``,
  ``MinimaxLossTest``, ``WassersteinLossTest``, ``HingeWassersteinLossTest``, and
  ``GradientPenaltyTest``. Their conventions, from ``losses_impl.py`` (commit 4c880b20e945):
  D's cross-entropy losses default to ``label_smoothing=0.25`` through
  ``tf.compat.v1.losses.sigmoid_cross_entropy`` (labels·(1 - s) + s/2: real target 0.875, our
  ``label_smoothing``); least squares is ``(l - label)²/2`` per term with ``real_label=1``,
  ``fake_label=0`` (our ½ and ``a=0, b=1, c=1``); a scalar ``weights`` / equal scalar
  ``real_weights`` and ``generated_weights`` multiply the mean (our ``g_scale`` / ``d_scale``);
  the gradient penalty is ``mean((sqrt(Σg² + ε)/target - 1)²)`` with ``ε = 1e-10`` and no λ (our
  ``penalty_weight=1``, ``norm_eps=1e-10``; ``(n/γ - 1)² = (n - γ)²/γ²``, our
  ``penalty_target``), ``one_sided`` clamps at 0 first (our ``penalty_one_sided``).
- TF-GAN's ESRGAN example, ``tensorflow/gan`` ``tensorflow_gan/examples/esrgan/losses_test.py``
  (commit f349edd5f587e6fd5a2e4195dc5f9bf7d09827fc), ``LossesTest.test_ragan_loss``: the
  relativistic average GAN with cross-entropy (our ``rasgan``).
- torchgan, ``torchgan/torchgan`` ``tests/torchgan/test_losses.py`` (commit
  10b0837d033b0b8cc0bd938a26091ad38279b870), ``TestLosses``: wasserstein, least squares,
  minimax, non-saturating, each with ``reduction`` mean, sum and none.
- Mimicry, ``kwotsin/mimicry`` ``tests/nets/modules/test_losses.py`` (commit
  3f60827a7dabd428df4471120f5f61b5b3489cb1; same values at f816ed26150e), ``TestLosses``: all
  logits 1. Mimicry's own asserts are one-sided (``value - expected < 1e-2``); here they are
  two-sided at the 4 printed decimals. Its ``minimax_loss_gen`` is BCE against real labels, i.e.
  the *non-saturating* G loss (``torch_mimicry/nets/modules/losses.py``), so it maps to our
  ``non_saturating``, not to our (saturating) ``minimax``.

A convention that differs from ours, reproduced up to it (see the test, not a bug in either):
TF-GAN's ``minimax_generator_loss`` is ``-minimax_discriminator_loss(ones_like(l), l)``, so it
carries D's real-term evaluated at the constant logit 1: ``-(softplus(-1) + mean softplus(l))``.
Ours is ``-mean softplus(l)``; the two differ by the constant ``log(1 + e^-1) = 0.3132617``
(the same gradient). torchgan's test writes its saturating G values as TF-GAN's number plus that
constant (``-3.3642528 + factor``), which is ours exactly.

Published cases our LossSpec cannot express, left out rather than imitated:

- Reductions other than the mean: TF-GAN ``Reduction.SUM``/``NONE`` shapes only (no values),
  torchgan ``reduction="sum"`` (``gen_loss_sum``, ``d_loss_sum``). Our losses are means over every
  logit; ``d_scale=N`` would hit a sum for one batch size only, so it is not used. torchgan's
  ``reduction="none"`` values *are* our per-sample forms (``g_per_sample``, the sum of
  ``d_per_sample``'s real and fake terms) and are reproduced.
- Per-element weight tensors (TF-GAN ``weights`` of the logits' rank, with
  ``SUM_BY_NONZERO_WEIGHTS`` dividing by the count of non-zero weights) and unequal
  ``real_weights`` / ``generated_weights``: ``d_scale`` multiplies both D terms alike. TF-GAN's
  published weighted cases use one scalar for both (or ``ones_like``) and are reproduced.
- TF-GAN's smoothing of G's target (``modified_generator_loss(label_smoothing=...)``), and the
  ``real_hinge`` / ``generated_hinge`` margins of ``wasserstein_hinge_discriminator_loss``: ours
  leave G unsmoothed and hinge at 1; the published cases use the defaults (0 and 1).
- Not logit losses of the zoo: TF-GAN ``ACGANLossTest`` (softmax classification),
  ``MutualInformationPenaltyTest``, ``CombineAdversarialLossTest``, ``CycleConsistencyLossTest``,
  the ESRGAN ``test_pixel_loss`` (L1), torchgan ``test_mutual_info_penalty``.
- torchgan's ``wasserstein_gradient_penalty`` takes one 2-norm over the whole batch's gradient
  tensor, not one per sample; its test file publishes no value for it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gan_backends.losses import get, linear_critic


def at_places(value: float, places: int):
    """``value`` to the published decimals: unittest's ``assertAlmostEqual(..., places)``."""
    return pytest.approx(value, rel=0.0, abs=0.5 * 10.0**-places)


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


# -- TF-GAN: tensorflow_gan/python/losses/losses_impl_test.py, _LossesTest.init_constants ---------

TFGAN_REAL = [-5.0, 1.4, 12.5, 2.7]
TFGAN_GEN = [10.0, 4.4, -5.5, 3.6]
TFGAN_WEIGHT = 2.3
# TF-GAN's D cross-entropy losses smooth by default: label_smoothing=0.25 (real target 0.875)
TFGAN_SMOOTHING = 0.25

# (TF-GAN test class, our loss, our options for D, published _expected_g_loss, _expected_d_loss);
# MinimaxLossTest's G value carries a constant, see test_tfgan_minimax_generator_constant.
TFGAN_CASES = [
    # LeastSquaresLossTest. Mao et al. 2017, eq. 2 with a=0, b=1, c=1 and TF-GAN's ½ per term:
    #   G = ½ mean (f - 1)² = (81 + 11.56 + 42.25 + 6.76)/8 = 141.57/8 = 17.69625
    #   D = ½ mean (r - 1)² + ½ mean f² = (36 + 0.16 + 132.25 + 2.89)/8 + (100 + 19.36 + 30.25 + 12.96)/8
    #     = 21.4125 + 20.32125 = 41.73375
    ("LeastSquaresLossTest", "least_squares", {}, 17.69625, 41.73375),
    # ModifiedLossTest. Goodfellow et al. 2014, section 3 (G maximises log D(G(z))):
    #   G = mean softplus(-f) = (4.54e-5 + 0.0122026 + 5.5040784 + 0.0269571)/4 = 1.3858209
    #   D with the real target t = 1 - 0.25/2 = 0.875:
    #     mean [t softplus(-r) + (1 - t) softplus(r)] + mean softplus(f)
    #     = 0.875·1.3230450 + 0.125·4.2230450 + 4.5108209 = 1.1576644 + 0.5278806 + 4.5108209 = 6.1963659
    ("ModifiedLossTest", "non_saturating", {"label_smoothing": TFGAN_SMOOTHING}, 1.38582, 6.19637),
    # MinimaxLossTest: the same D as ModifiedLossTest (TF-GAN: "Same as minimax discriminator loss").
    ("MinimaxLossTest", "minimax", {"label_smoothing": TFGAN_SMOOTHING}, None, 6.19637),
    # WassersteinLossTest. Arjovsky et al. 2017: D = mean f - mean r = 12.5/4 - 11.6/4 = 3.125 - 2.9
    # = 0.225; G = -mean f = -3.125
    ("WassersteinLossTest", "wasserstein", {}, -3.12500, 0.22500),
    # HingeWassersteinLossTest. Lim & Ye 2017; Miyato et al. 2018:
    #   D = mean relu(1 - r) + mean relu(1 + f) = (6 + 0 + 0 + 0)/4 + (11 + 5.4 + 0 + 4.6)/4 = 1.5 + 5.25 = 6.75
    #   G = -mean f = -3.125
    ("HingeWassersteinLossTest", "hinge", {}, -3.12500, 6.7500),
]
# test_generator_all_correct / test_discriminator_all_correct: shape (4,); test_*_patch: reshaped
# to (2, 2); test_*_loss_with_placeholder_for_logits: fed as (1, 4) (weights ones_like). All at
# places=5; our means run over every logit, so one value serves all three.
TFGAN_SHAPES = [(4,), (2, 2), (1, 4)]


@pytest.mark.parametrize("shape", TFGAN_SHAPES, ids=str)
@pytest.mark.parametrize("case", TFGAN_CASES, ids=lambda c: c[0])
def test_tfgan_all_correct_patch_and_placeholder(case, shape):
    _, name, d_options, g_published, d_published = case
    real, gen = np.reshape(TFGAN_REAL, shape), np.reshape(TFGAN_GEN, shape)
    assert get(name, **d_options).d(real, gen) == at_places(d_published, 5)
    if g_published is not None:
        # G losses are not smoothed (TF-GAN's generator label_smoothing defaults to 0)
        assert get(name).g(gen) == at_places(g_published, 5)


@pytest.mark.parametrize("case", TFGAN_CASES, ids=lambda c: c[0])
def test_tfgan_python_scalar_weight(case):
    """test_{generator,discriminator}_with_python_scalar_weight and ..._with_scalar_tensor_weight:
    ``weights=2.3`` for G, ``real_weights=generated_weights=2.3`` for D, published as
    ``_expected_*_loss * self._weights`` at places=4; ours: ``g_scale`` / ``d_scale`` 2.3."""
    _, name, d_options, g_published, d_published = case
    d = get(name, d_scale=TFGAN_WEIGHT, **d_options).d(TFGAN_REAL, TFGAN_GEN)
    assert d == at_places(d_published * TFGAN_WEIGHT, 4)
    if g_published is not None:
        assert get(name, g_scale=TFGAN_WEIGHT).g(TFGAN_GEN) == at_places(g_published * TFGAN_WEIGHT, 4)


def test_tfgan_minimax_generator_constant():
    """MinimaxLossTest: ``_expected_g_loss = -4.82408`` (places=5), also ×2.3 at places=4.

    TF-GAN: ``minimax_generator_loss(l) = -minimax_discriminator_loss(ones_like(l), l,
    label_smoothing=0)`` = ``-(softplus(-1) + mean softplus(l))`` (Goodfellow et al. eq. 1's G
    term ``log(1 - D(G(z)))``, plus D's real term at the constant logit 1):
    ``-(0.3132617 + (10.0000454 + 4.4122026 + 0.0040784 + 3.6269571)/4) = -(0.3132617 + 4.5108209)
    = -4.8240826``. Ours is ``-mean softplus(l) = -4.5108209``: the published value less
    ``log(1 + e^-1)``, a constant (no gradient)."""
    offset = softplus(-1.0)  # log(1 + e^-1) = -log σ(1) = 0.3132617, from math, not our code
    ours = get("minimax").g(TFGAN_GEN)
    assert ours - offset == at_places(-4.82408, 5)
    assert ours != at_places(-4.82408, 1)  # the constant is real: ours is not TF-GAN's number
    assert TFGAN_WEIGHT * (ours - offset) == at_places(-4.82408 * TFGAN_WEIGHT, 4)
    assert get("minimax", g_scale=TFGAN_WEIGHT).g(TFGAN_GEN) - TFGAN_WEIGHT * offset == at_places(
        -4.82408 * TFGAN_WEIGHT, 4
    )


# -- TF-GAN: GradientPenaltyTest (same file) ----------------------------------------------------
# Data generated [[3.1, 2.3, -12.3, 32.1]], real [[-12.3, 23.2, 16.3, -43.2]]; the discriminator
# is ``dummy_d * inputs`` with dummy_d = 2.0, elementwise (output shape (1, 4)). tf.gradients sums
# the outputs, so its input gradient is that of Σ_j 2·x_j = <(2, 2, 2, 2), x>: exactly our
# linear_critic([2, 2, 2, 2]), whose gradient is the same at every interpolate, so TF-GAN's random
# α drops out (shown over several α). Hand derivation (Gulrajani et al. 2017, eq. 3, λ = 1):
#   ‖∇‖ = sqrt(4·2² + 1e-10) = 4;  (4/1 - 1)² = 9;  target 2: (4/2 - 1)² = 1;  one-sided: max(0, 3)² = 9
TFGAN_GP_GEN = [[3.1, 2.3, -12.3, 32.1]]
TFGAN_GP_REAL = [[-12.3, 23.2, 16.3, -43.2]]
TFGAN_GP_CRITIC = linear_critic([2.0, 2.0, 2.0, 2.0])
TFGAN_EPSILON = 1e-10  # wasserstein_gradient_penalty(epsilon=1e-10)


def tfgan_penalty(alpha: float, **options) -> float:
    options = {"penalty": "wgan_gp", "penalty_weight": 1.0, "norm_eps": TFGAN_EPSILON, **options}
    loss = get("wasserstein", **options)
    return loss.penalty(TFGAN_GP_CRITIC, TFGAN_GP_REAL, TFGAN_GP_GEN, np.array([alpha]))


@pytest.mark.parametrize("alpha", [0.0, 0.37, 1.0])
def test_tfgan_gradient_penalty(alpha):
    assert tfgan_penalty(alpha) == at_places(9.00000, 6)  # test_all_correct
    assert tfgan_penalty(alpha) == at_places(9.00000, 5)  # test_loss_with_placeholder
    # test_python_scalar_weight / test_scalar_tensor_weight: weights=2.3, _expected_loss * 2.3, places=3
    assert tfgan_penalty(alpha, penalty_weight=2.3) == at_places(9.00000 * 2.3, 3)
    # test_loss_using_one_sided_mode: one_sided=True, the norm 4 is above the target 1
    assert tfgan_penalty(alpha, penalty_one_sided=True) == at_places(9.00000, 5)
    # test_loss_with_gradient_norm_target: target=2.0, assertAlmostEqual(1.0, loss, 5)
    assert tfgan_penalty(alpha, penalty_target=2.0) == at_places(1.0, 5)


# -- TF-GAN ESRGAN example: tensorflow_gan/examples/esrgan/losses_test.py, LossesTest -----------


def test_tfgan_esrgan_ragan_loss():
    """``test_ragan_loss``: ``assertNear(expected, loss, 1e-5)``.

    Jolicoeur-Martineau 2018 (RaSGAN); TF-GAN's ESRGAN ``losses.py`` (relativistic_avg_loss_d/g):
    ``C_r - mean C_f`` and ``C_f - mean C_r`` into sigmoid cross-entropy, D with targets (1, 0),
    G with (0, 1). With r = [-2.0, 0.4, 12.5, 2.7] (mean 3.4) and f = [10.0, 4.4, -5.5, 3.6]
    (mean 3.125): u = r - 3.125 = [-5.125, -2.725, 9.375, -0.425], v = f - 3.4 = [6.6, 1.0, -8.9, 0.2],
    D = mean softplus(-u) + mean softplus(v) = 2.2118896 + 2.1782241 = 4.3901137,
    G = mean softplus(u) + mean softplus(-v) = 2.4868896 + 2.4532241 = 4.9401137
    (check: G - D = mean u - mean v = 0.275 + 0.275 = 0.55).
    """
    real, gen = [-2.0, 0.4, 12.5, 2.7], [10.0, 4.4, -5.5, 3.6]
    loss = get("rasgan")
    assert loss.g(gen, real) == pytest.approx(4.9401135, rel=0.0, abs=1e-5)  # _expected_g_loss
    assert loss.d(real, gen) == pytest.approx(4.390114, rel=0.0, abs=1e-5)  # _expected_d_loss


# -- torchgan: tests/torchgan/test_losses.py, TestLosses ------------------------------------------
# match_losses: assertAlmostEqual(..., places=5) for the mean and for each per-sample ("none") value.

TORCHGAN_DX = [1.3, 2.9, 8.4, 6.3]
TORCHGAN_DGZ = [4.8, 1.2, -3.5, 5.9]
# -log(sigmoid(1)), torchgan's `factor` in test_minimax_loss (here from math)
TORCHGAN_FACTOR = -math.log(1.0 / (1.0 + math.exp(-1.0)))

# (torchgan test, our loss, gen_loss_mean, gen_loss_none, d_loss_mean, d_loss_none)
TORCHGAN_CASES = [
    # test_wasserstein_loss: D per sample dgz - dx = [3.5, -1.7, -11.9, -0.4], mean 2.1 - 4.725 = -2.625;
    # G -dgz, mean -2.1
    ("test_wasserstein_loss", "wasserstein", -2.1, [-4.8, -1.2, 3.5, -5.9], -2.625,
     [3.5000002, -1.7, -11.9, -0.4000001]),
    # test_lsgan_loss (a=0, b=1, c=1, ½ in front): G ½(4.8 - 1)² = 7.22, ½(1.2 - 1)² = 0.02, ...;
    # D ½(1.3 - 1)² + ½·4.8² = 0.045 + 11.52 = 11.565, ...
    ("test_lsgan_loss", "least_squares", 7.3425007, [7.2200007, 0.02000001, 10.125, 12.005], 19.76125,
     [11.565001, 2.525, 33.504997, 31.45]),
    # test_minimax_loss (MinimaxGeneratorLoss(nonsaturating=False)): G -softplus(dgz), i.e.
    # log(1 - D(G(z))): -softplus(4.8) = -4.8081961 = -5.1214576 + 0.3132617;
    # D softplus(-dx) + softplus(dgz): 0.2410085 + 4.8081961 = 5.0492045
    ("test_minimax_loss", "minimax", -3.3642528 + TORCHGAN_FACTOR,
     [-5.1214576 + TORCHGAN_FACTOR, -1.7765441 + TORCHGAN_FACTOR, -0.3430121 + TORCHGAN_FACTOR,
      -6.215997 + TORCHGAN_FACTOR], 3.1251488, [5.0492043, 1.5168452, 0.02997526, 5.90457]),
    # test_minimax_nonsaturating_loss: G softplus(-dgz): softplus(-4.8) = 0.0081961, ...; D as above
    ("test_minimax_nonsaturating_loss", "non_saturating", 0.9509911,
     [8.1960661e-03, 2.6328245e-01, 3.5297503e00, 2.7356991e-03], 3.1251488,
     [5.0492043, 1.5168452, 0.02997526, 5.90457]),
]  # fmt: skip


@pytest.mark.parametrize("case", TORCHGAN_CASES, ids=lambda c: c[0])
def test_torchgan_mean_and_per_sample(case):
    _, name, g_mean, g_none, d_mean, d_none = case
    # torchgan views the outputs as (-1, 1)
    dx, dgz = np.reshape(TORCHGAN_DX, (-1, 1)), np.reshape(TORCHGAN_DGZ, (-1, 1))
    loss = get(name)
    assert loss.d(dx, dgz) == at_places(d_mean, 5)
    assert loss.g(dgz) == at_places(g_mean, 5)
    # reduction="none": torchgan's D loss per sample is its real term plus its fake term
    real_terms, fake_terms = loss.d_per_sample(dx, dgz)
    per_sample_d = (real_terms + fake_terms).ravel()
    per_sample_g = loss.g_per_sample(dgz).ravel()
    for i in range(4):
        assert per_sample_d[i] == at_places(d_none[i], 5)
        assert per_sample_g[i] == at_places(g_none[i], 5)


# -- Mimicry: tests/nets/modules/test_losses.py, TestLosses: every logit 1, shape (4, 1) ----------
# At l = 1: softplus(-1) = 0.3132617, softplus(1) = 1.3132617.

MIMICRY_ONES = np.ones((4, 1))


def test_mimicry_minimax_loss():
    # minimax_loss_gen: BCE(l, 1) = softplus(-1) = 0.3133 (non-saturating, Goodfellow et al. section 3)
    assert get("non_saturating").g(MIMICRY_ONES) == at_places(0.3133, 4)
    # minimax_loss_dis: BCE(l_r, 1) + BCE(l_f, 0) = softplus(-1) + softplus(1) = 1.6265234
    assert get("minimax").d(MIMICRY_ONES, MIMICRY_ONES) == at_places(1.6265, 4)


def test_mimicry_ns_loss():
    # ns_loss_gen: -mean log(σ(l) + 1e-8); the 1e-8 moves it by 1.4e-8, below the 4 decimals
    assert get("non_saturating").g(MIMICRY_ONES) == at_places(0.3133, 4)


def test_mimicry_wasserstein_loss():
    # wasserstein_loss_gen: -mean f = -1; wasserstein_loss_dis: -mean r + mean f = 0
    loss = get("wasserstein")
    assert loss.g(MIMICRY_ONES) == at_places(-1.0, 4)
    assert loss.d(MIMICRY_ONES, MIMICRY_ONES) == at_places(0.0, 4)


def test_mimicry_hinge_loss():
    # hinge_loss_gen: -mean f = -1; hinge_loss_dis: mean relu(1 - r) + mean relu(1 + f) = 0 + 2 = 2
    loss = get("hinge")
    assert loss.g(MIMICRY_ONES) == at_places(-1.0, 4)
    assert loss.d(MIMICRY_ONES, MIMICRY_ONES) == at_places(2.0, 4)
