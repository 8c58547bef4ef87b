"""LossSpec's options: label smoothing in both published meanings, the D and G loss weights,
WGAN-GP's norm target and one-sided form, and PatchGAN logit maps (a mean over every logit).

Expected values are derived here by hand from the papers' and libraries' formulas (written out
with :mod:`math`, never read from :mod:`gan_backends.losses`); the reference's gradients are held
against finite differences, and every stack against the reference with the check machinery on a
tiny PatchGAN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend
from test_reference_conv import check_gradients_by_fd, penalty_spec

from gan_backends.check import run_check
from gan_backends.losses import get, linear_critic
from gan_backends.presets import tutorial_adam
from gan_backends.spec import Conv2D, Dense, Flatten, GANSpec, LeakyReLU, LossSpec, Reshape, SpecError, Tanh


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def bce(logit: float, target: float) -> float:
    """-t log σ(l) - (1 - t) log(1 - σ(l)), from the probabilities."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -target * math.log(p) - (1.0 - target) * math.log(1.0 - p)


REAL, FAKE = [0.5, -1.0, 2.0], [-0.5, 1.5]


def test_label_smoothing_both_meanings_by_hand():
    # One-sided (Salimans et al. 2016): real target 1 - s = 0.9. TF-GAN / tf.losses
    # sigmoid_cross_entropy: labels·(1 - s) + s/2, real target 1 - s/2 = 0.95 at s = 0.1.
    fake_part = sum(bce(f, 0.0) for f in FAKE) / 2
    for loss, target in [(get("non_saturating", one_sided_label_smoothing=0.1), 0.9),
                         (get("non_saturating", label_smoothing=0.1), 0.95),
                         (get("minimax", label_smoothing=0.5), 0.75)]:  # fmt: skip
        want = sum(bce(r, target) for r in REAL) / 3 + fake_part
        assert loss.d(REAL, FAKE) == pytest.approx(want, rel=1e-13)
    # G's loss is not smoothed: -mean log D(G(z))
    assert get("non_saturating", label_smoothing=0.3).g(FAKE) == pytest.approx((softplus(0.5) + softplus(-1.5)) / 2)


def test_loss_weights_by_hand():
    hinge = get("hinge", d_scale=0.25, g_scale=3.0)
    # D: mean relu(1 - r) = (0.5 + 2 + 0)/3, mean relu(1 + f) = (0.5 + 2.5)/2; G: -mean f = -0.5
    assert hinge.d(REAL, FAKE) == pytest.approx(0.25 * (2.5 / 3 + 1.5), rel=1e-14)
    assert hinge.g(FAKE) == pytest.approx(3.0 * -0.5, rel=1e-14)


def test_penalty_target_and_one_sided_by_hand():
    """A linear critic's input gradient is w everywhere, so ‖g‖ = |w| at every interpolate."""
    real, fake, alpha = np.zeros((2, 2)), np.ones((2, 2)), np.array([0.3, 0.6])
    for w, norm in [([3.0, 4.0], 5.0), ([0.3, 0.4], 0.5)]:
        critic = linear_critic(w)
        plain = get("wgan-gp").penalty(critic, real, fake, alpha)
        # rel 1e-10: the norm is sqrt(|w|² + norm_eps), norm_eps = 1e-12
        assert plain == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-10)  # Gulrajani et al.: λ (‖g‖ - 1)²
        # Karras et al. 2017: λ (‖g‖ - γ)² / γ²
        targeted = get("wgan-gp", penalty_target=2.0).penalty(critic, real, fake, alpha)
        assert targeted == pytest.approx(10.0 * (norm - 2.0) ** 2 / 4.0, rel=1e-10)
        # one-sided (Petzka et al. 2018): λ max(0, ‖g‖ - 1)²: only the norm above 1 counts
        one_sided = get("wgan-gp", penalty_one_sided=True).penalty(critic, real, fake, alpha)
        assert one_sided == pytest.approx(10.0 * max(0.0, norm - 1) ** 2, rel=1e-10, abs=1e-300)


def test_patch_logits_by_hand():
    # (N=1, 2, 2, 1) logits: D's mean over the four patches of each batch.
    real = np.array([0.0, 1.0, -1.0, 2.0]).reshape(1, 2, 2, 1)
    fake = np.array([1.0, 1.0, 0.0, -2.0]).reshape(1, 2, 2, 1)
    want = sum(max(0.0, 1 - r) for r in real.ravel()) / 4 + sum(max(0.0, 1 + f) for f in fake.ravel()) / 4
    assert get("hinge").d(real, fake) == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("label_smoothing", 1.0, r"loss.label_smoothing must be a number in \[0, 1\)"),
        ("one_sided_label_smoothing", -0.1, r"loss.one_sided_label_smoothing must be a number"),
        ("penalty_target", 0.0, "loss.penalty_target must be a positive number"),
        ("penalty_one_sided", 1, "loss.penalty_one_sided must be true or false"),
        ("g_scale", -1.0, "loss.g_scale must be a positive number"),
    ],
)
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(SpecError, match=message):
        LossSpec(name="non_saturating", penalty="wgan_gp", **{field: value})


def test_options_refuse_the_losses_they_do_not_apply_to():
    with pytest.raises(SpecError, match="loss.label_smoothing smooths a cross-entropy target.*'hinge'"):
        LossSpec(name="hinge", label_smoothing=0.1)
    with pytest.raises(SpecError, match="two meanings of one option"):
        LossSpec(label_smoothing=0.1, one_sided_label_smoothing=0.1)
    with pytest.raises(SpecError, match="loss.penalty_target shapes the wgan_gp penalty, not penalty 'r1'"):
        LossSpec(penalty="r1", penalty_target=2.0)
    with pytest.raises(SpecError, match="loss.penalty_one_sided shapes the wgan_gp penalty"):
        LossSpec(penalty_one_sided=True)


def test_a_discriminator_output_must_be_one_logit_or_a_patch_map():
    with pytest.raises(SpecError, match=r"PatchGAN map of one logit per patch, \(H, W, 1\); got \(4, 4, 2\)"):
        patch_spec(LossSpec(), channels=2)
    with pytest.raises(SpecError, match=r"got \(3,\)"):
        patch_spec(LossSpec()).replace(discriminator=(Flatten(), Dense(units=3)))


@pytest.mark.parametrize("one_sided", [False, True])
def test_targeted_penalty_second_order_gradients_match_finite_differences(one_sided, rng):
    # This critic's input-gradient norms start at ~0.004-0.011: a target of 0.008 splits them,
    # so the one-sided form has samples on both sides of its kink.
    spec = penalty_spec("non_saturating", "wgan_gp")
    spec = spec.replace(loss=LossSpec(**{**vars(spec.loss), "penalty_target": 0.008, "penalty_one_sided": one_sided,
                                         "label_smoothing": 0.2, "g_scale": 0.5}))  # fmt: skip
    terms = check_gradients_by_fd(spec, rng, per_tensor=6)
    assert terms["d_penalty"] > 0


def patch_spec(loss: LossSpec, channels: int = 1, dtype: str = "float32") -> GANSpec:
    """A tiny PatchGAN: 8x8 images, D a 4x4 map of logits (one per 4x4-pixel patch, overlapping)."""
    from gan_backends.spec import Numerics

    return GANSpec(
        name="patch",
        data_shape=(8, 8, 1),
        latent_dim=8,
        generator=(Dense(units=64), Reshape(shape=(8, 8, 1)), Tanh()),
        discriminator=(
            Conv2D(filters=4, kernel=4, stride=2, padding=1),
            LeakyReLU(slope=0.2),
            Conv2D(filters=channels, kernel=3, stride=1, padding=1, use_bias=not loss.relativistic),
        ),
        loss=loss,
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
        numerics=Numerics(dtype=dtype),
    )


#: Two specs hold every option and the relativistic pairing on patch logits: a smoothed,
#: weighted non-saturating loss with a one-sided, targeted WGAN-GP (its target inside the
#: range of the critic's input-gradient norms at the start, ~0.4-0.6), and r3gan's
#: RpGAN + R1 + R2 pairing patch with patch.
PATCH_LOSSES = {
    "options": LossSpec(
        name="non_saturating",
        label_smoothing=0.2,
        d_scale=0.5,
        g_scale=2.0,
        penalty="wgan_gp",
        penalty_weight=10.0,
        penalty_target=0.5,
        penalty_one_sided=True,
    ),  # fmt: skip
    "r3gan": LossSpec(name="rpgan", penalty="r1_r2", penalty_weight=1.0),
}


def test_patch_gradients_match_finite_differences(rng):
    for loss in PATCH_LOSSES.values():
        check_gradients_by_fd(patch_spec(loss, dtype="float64"), rng, per_tensor=3, batch=3)


@pytest.mark.parametrize("case", list(PATCH_LOSSES))
def test_check_agrees_on_a_patchgan(framework, case):
    """(N, 4, 4, 1) logits through every stack, against the reference: forward, losses,
    gradients (second order for the penalties), one free-running and one lock-step step."""
    require_backend(framework)
    spec = patch_spec(PATCH_LOSSES[case])
    report = run_check(spec, [framework, "numpy"], steps=1, batch_size=8, seed=2)
    (pair,) = report.pairs
    failing = [r.quantity for r in pair.rows if not r.passed] + [r.label for r in pair.layers if not r.passed]
    assert report.passed, failing or report.lock_rows
    assert {r.kind for r in pair.rows} == {"value", "loss", "grad", "param"}
