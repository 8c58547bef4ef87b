"""LossSpec's reduction (a sum over the logits, as torch ``reduction="sum"`` and TF-GAN's
``Reduction.SUM``), hinge margin (TF-GAN's ``real_hinge``/``generated_hinge``) and fake-label
smoothing (Keras' ``BinaryCrossentropy(label_smoothing=s)`` on both of D's terms).

Expected values are derived by hand (:mod:`math`); the reference's gradients against finite
differences; every stack against the reference with the check machinery; losscheck judges and
names them, and prints the spec options that train what it found.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend
from test_loss_options import patch_spec
from test_reference_conv import check_gradients_by_fd, penalty_spec

from gan_backends.check import run_check
from gan_backends.losscheck import check_loss
from gan_backends.losscheck import conventions as conv
from gan_backends.losses import get, linear_critic
from gan_backends.parallel import refuse_unsupported
from gan_backends.presets import get_preset
from gan_backends.spec import Dense, LossSpec, SpecError

REAL, FAKE = [0.5, -1.0, 2.0], [-0.5, 1.5]


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def bce(logit: float, target: float) -> float:
    """Keras / torch binary cross-entropy from probabilities: -t log σ(l) - (1 - t) log(1 - σ(l))."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -target * math.log(p) - (1.0 - target) * math.log(1.0 - p)


def test_sums_by_hand():
    # hinge D: Σ relu(1 - r) = 0.5 + 2 + 0 = 2.5, Σ relu(1 + f) = 0.5 + 2.5 = 3; G: -Σ f = -1
    hinge = get("hinge", reduction="sum")
    assert hinge.d(REAL, FAKE) == pytest.approx(5.5, rel=1e-15)
    assert hinge.g(FAKE) == pytest.approx(-1.0, rel=1e-15)
    # torch BCEWithLogitsLoss(reduction="sum") on both terms
    ns = get("non_saturating", reduction="sum")
    assert ns.d(REAL, FAKE) == pytest.approx(sum(bce(r, 1) for r in REAL) + sum(bce(f, 0) for f in FAKE), rel=1e-14)
    # RaLSGAN's averages stay means inside: u = r - mean f = r - 0.5, v = f - mean r = f - 0.5
    ralsgan = get("ralsgan", reduction="sum")
    want = sum((r - 0.5 - 1) ** 2 for r in REAL) + sum((f - 0.5 + 1) ** 2 for f in FAKE)
    assert ralsgan.d(REAL, FAKE) == pytest.approx(want, rel=1e-14)


def test_a_summed_penalty_by_hand():
    """A linear critic's input gradient is w at every sample: Σ_i λ(‖w‖ - 1)² = N·λ(‖w‖ - 1)²."""
    real, fake, alpha = np.zeros((3, 2)), np.ones((3, 2)), np.array([0.2, 0.5, 0.9])
    critic = linear_critic([3.0, 4.0])
    assert get("wgan-gp", reduction="sum").penalty(critic, real, fake, alpha) == pytest.approx(3 * 10 * 16, rel=1e-10)
    # R1 summed: Σ_i γ/2 ‖w‖² = 3 · 5 · 25
    assert get("r1", reduction="sum").penalty(critic, real) == pytest.approx(375.0, rel=1e-14)


def test_hinge_margin_by_hand():
    # m = 2: mean relu(2 - r) = (1.5 + 3 + 0)/3, mean relu(2 + f) = (1.5 + 3.5)/2
    assert get("hinge", hinge_margin=2.0).d(REAL, FAKE) == pytest.approx(1.5 + 2.5, rel=1e-15)


def test_keras_label_smoothing_on_both_terms_by_hand():
    # Keras: y·(1 - s) + s/2, so real 1 -> 0.9, fake 0 -> 0.1 at s = 0.2
    loss = get("non_saturating", label_smoothing=0.2, fake_label_smoothing=0.2)
    want = sum(bce(r, 0.9) for r in REAL) / 3 + sum(bce(f, 0.1) for f in FAKE) / 2
    assert loss.d(REAL, FAKE) == pytest.approx(want, rel=1e-13)
    # G's loss is not smoothed
    assert loss.g(FAKE) == pytest.approx((softplus(0.5) + softplus(-1.5)) / 2, rel=1e-14)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"reduction": "total"}, "loss.reduction must be 'mean' or 'sum'"),
        ({"name": "hinge", "hinge_margin": 0.0}, "loss.hinge_margin must be a positive number"),
        ({"name": "least_squares", "hinge_margin": 2.0}, "hinge D loss's margin, not 'least_squares'"),
        ({"name": "hinge", "fake_label_smoothing": 0.1}, "loss.fake_label_smoothing smooths a cross-entropy"),
        ({"fake_label_smoothing": 1.0}, r"loss.fake_label_smoothing must be a number in \[0, 1\)"),
    ],
)
def test_bad_values_name_the_field(fields, message):
    with pytest.raises(SpecError, match=message):
        LossSpec(**fields)


@pytest.mark.parametrize(
    "loss",
    [
        LossSpec(name="hinge", reduction="sum", hinge_margin=1.5, penalty="r1", penalty_weight=2.0),
        LossSpec(name="minimax", reduction="sum", label_smoothing=0.2, fake_label_smoothing=0.3),
        LossSpec(name="rahinge", reduction="sum", penalty="wgan_gp", penalty_weight=3.0),
        LossSpec(name="rpgan", reduction="sum", penalty="r1_r2", penalty_weight=1.0),
    ],
    ids=["hinge-sum-margin-r1", "minimax-sum-smoothed", "rahinge-sum-gp", "rpgan-sum-r1r2"],
)
def test_reference_gradients_match_finite_differences(loss, rng):
    spec = penalty_spec()
    if loss.relativistic:  # D's output bias cancels from a relativistic loss: the spec refuses it
        spec = spec.replace(discriminator=(*spec.discriminator[:-1], Dense(units=1, use_bias=False)))
    # abs 1e-8: a summed loss is ~20 here, and the central difference's rounding is ~eps·20/h = 2e-9
    check_gradients_by_fd(spec.replace(loss=loss), rng, per_tensor=4, abs_=1e-8)


#: Every new option in one of two patch specs (a sum over an (N, 4, 4, 1) logit map is where a
#: reduction that forgets the patch axes shows).
CHECKED = {
    "sum-margin": LossSpec(name="hinge", reduction="sum", hinge_margin=2.0),
    "sum-smoothed-r2": LossSpec(
        name="non_saturating", reduction="sum", label_smoothing=0.2, fake_label_smoothing=0.2, penalty="r2",
        penalty_weight=0.5,
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(CHECKED))
def test_check_agrees(framework, case):
    """Forward, losses, gradients, one free-running and one lock-step step on a PatchGAN."""
    require_backend(framework)
    report = run_check(patch_spec(CHECKED[case]), [framework, "numpy"], steps=1, batch_size=8, seed=2)
    (pair,) = report.pairs
    failing = [r.quantity for r in pair.rows if not r.passed] + [r.label for r in pair.layers if not r.passed]
    assert report.passed, failing or report.lock_rows


def test_data_parallel_refuses_a_sum():
    spec = get_preset("mlp-2d")
    spec = spec.replace(loss=LossSpec(**{**vars(spec.loss), "reduction": "sum"}))
    with pytest.raises(SpecError, match="engines average the devices' gradients, which is right for a mean only"):
        refuse_unsupported(spec)


def test_every_convention_is_a_spec_option_or_says_why_not():
    assert set(conv.LOGIT_KEYS) | set(conv.PENALTY_KEYS) == set(conv.AS_SPEC) | set(conv.NOT_SPEC_OPTIONS)


@pytest.mark.parametrize(
    "declared, role, base",
    [
        ("scale=0.5", "d", "hinge"), ("scale=3", "g", "non_saturating"), ("reduction=sum", "d", "least_squares"),
        ("real_target=0.9", "d", "non_saturating"), ("fake_target=0.1", "d", "minimax"),
        ("label_smoothing=0.25", "d", "non_saturating"), ("one_sided_label_smoothing=0.1", "d", "minimax"),
        ("fake_label_smoothing=0.3", "d", "non_saturating"), ("label_smoothing_both=0.2", "d", "non_saturating"),
        ("a=-1,b=1", "d", "least_squares"), ("c=0", "g", "least_squares"), ("margin=2", "d", "hinge"),
    ],
)  # fmt: skip
def test_a_declaration_and_its_spec_options_give_one_loss(declared, role, base, rng):
    """What losscheck prints under "to train it" is the loss it judged against."""
    options = conv.as_spec_options([declared], role)
    assert options
    trained = get(base, **options)
    real, fake = rng.normal(0, 2, (5, 1)), rng.normal(0, 2, (5, 1))
    model = conv.logit_model(get(base).spec, role, conv.parse([declared]))
    inputs = {"real": real, "fake": fake} if role == "d" else {"fake": fake}
    want = trained.d(real, fake) if role == "d" else trained.g(fake)
    assert model.value(inputs) == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("declared", ["one_sided=true", "target=2", "penalty_weight=5", "reduction=sum"])
def test_a_penalty_declaration_and_its_spec_options_give_one_penalty(declared):
    from gan_backends.losscheck.battery import penalty_cases
    from gan_backends.losscheck.critic import evaluate_penalty

    case = penalty_cases("nhwc")[0]
    arrays = [case.inputs[k] for k in ("real", "fake", "alpha")]
    options = conv.as_spec_options([declared], "penalty")
    assert options
    trained = get("wgan-gp", **options)
    form = conv.penalty_form(get("wgan-gp").spec, conv.parse([declared]))
    want = trained.penalty(lambda x: (case.critic(x), case.critic.input_grad(x)), *arrays)
    assert evaluate_penalty(form, case.critic, *arrays, "flat").value == pytest.approx(want, rel=1e-9)


def test_losscheck_judges_a_summed_spec_and_prints_what_trains_a_found_sum():
    import torch
    import torch.nn.functional as F

    def summed(real, fake):
        return F.relu(2 - real).sum() + F.relu(2 + fake).sum()

    spec = LossSpec(name="hinge", reduction="sum", hinge_margin=2.0)
    assert check_loss(summed, spec, role="d", framework="torch").passed
    report = check_loss(summed, "hinge", role="d", framework="torch")
    assert report.diagnosis is not None and report.diagnosis.explained, report.text()
    assert report.spec_options() == {"hinge_margin": 2.0, "reduction": "sum"}, report.text()
    assert 'to train it: "loss": {"hinge_margin": 2.0, "reduction": "sum"}' in report.text()
    assert torch.is_tensor(summed(torch.zeros(2, 1), torch.zeros(2, 1)))


#: Every LossSpec option at a non-default value, over three specs (options that exclude each
#: other are apart): the issue's "mlp and dcgan-small" check of them.
ALL_OPTIONS = {
    "smoothed": LossSpec(
        name="non_saturating", d_scale=0.5, g_scale=2.0, label_smoothing=0.2, fake_label_smoothing=0.1,
        reduction="sum", penalty="wgan_gp", penalty_weight=3.0, penalty_target=0.5, penalty_one_sided=True,
    ),
    "one-sided": LossSpec(name="minimax", one_sided_label_smoothing=0.1, penalty="r2", penalty_weight=2.0),
    "margin": LossSpec(name="hinge", hinge_margin=2.0, reduction="sum", penalty="r1", penalty_weight=1.0),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ALL_OPTIONS))
def test_check_agrees_on_the_mlp_with_every_option(framework, case):
    require_backend(framework)
    spec = get_preset("mlp-2d")
    report = run_check(spec.replace(loss=ALL_OPTIONS[case]), [framework, "numpy"], steps=1, batch_size=16, seed=2)
    (pair,) = report.pairs
    assert report.passed, [r.quantity for r in pair.rows if not r.passed] or report.lock_rows


@pytest.mark.long
def test_check_agrees_on_dcgan_small_with_every_option(framework):
    """The options on BatchNorm convolutions (the loss options; the penalties' are the PatchGAN's)."""
    require_backend(framework)
    spec = get_preset("dcgan-small")
    for loss in ALL_OPTIONS.values():
        # its critic has BatchNorm, which a per-sample penalty refuses (the PatchGAN above checks those)
        plain = {"penalty": "none", "penalty_weight": 10.0, "penalty_target": 1.0, "penalty_one_sided": False}
        loss = LossSpec(**{**vars(loss), **plain})
        report = run_check(spec.replace(loss=loss), [framework, "numpy"], steps=1, batch_size=8, seed=2)
        (pair,) = report.pairs
        assert report.passed, (loss, [r.quantity for r in pair.rows if not r.passed] or report.lock_rows)
