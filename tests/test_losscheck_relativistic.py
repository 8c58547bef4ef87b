"""losscheck judges the relativistic losses, R2 and R1 + R2, and every spec option is one it can
declare: its float64 models against the training formulas (gan_backends.losses), central
differences and hand-derived values; the right forms as users write them in each framework pass.
The wrong forms, and their diagnoses, are in the gallery (tests/test_losscheck_gallery.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gan_backends.losscheck import check_loss
from gan_backends.losscheck import conventions as conv
from gan_backends.losscheck.battery import logit_cases, penalty_cases
from gan_backends.losscheck.critic import PenaltyForm, evaluate_penalty
from gan_backends.losscheck.models import reference_model
from gan_backends.losscheck.relativistic import RelativisticModel, reference_relativistic, variants
from gan_backends.losses import get
from gan_backends.spec import LossSpec
from tests.losscheck_gallery.relativistic_right import right_losses


def _fd(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("name", ["rasgan", "ralsgan", "rahinge", "rpgan"])
@pytest.mark.parametrize("role", ["d", "g"])
def test_relativistic_model_is_the_training_formula(name: str, role: str, rng) -> None:
    real, fake = rng.normal(0, 2, (6, 1)), rng.normal(0, 2, (6, 1))
    spec = LossSpec(name=name, d_scale=0.5, g_scale=3.0)  # type: ignore[arg-type]
    model = reference_relativistic(spec, role)
    loss = get(name, d_scale=0.5, g_scale=3.0)
    want = loss.d(real, fake) if role == "d" else loss.g(fake, real_logits=real)
    assert model.value({"real": real, "fake": fake}) == pytest.approx(want, rel=1e-14)


def test_ralsgan_by_hand() -> None:
    # C_r = (1, 3), C_f = (0, -2): mean C_f = -1, mean C_r = 2, u = (2, 4), v = (-2, -4).
    # D: mean (u - 1)² + mean (v + 1)² = (1 + 9)/2 + (1 + 9)/2 = 10; G: mean (u + 1)² + mean (v - 1)² = 17 + 17.
    # ∂D/∂C_f[0] = 2(v_0 + 1)/2 - (1/2)·Σ_i 2(u_i - 1)/2 = -1 - 2 = -3.
    inputs = {"real": np.array([1.0, 3.0]), "fake": np.array([0.0, -2.0])}
    d, g = RelativisticModel("ralsgan", "d"), RelativisticModel("ralsgan", "g")
    assert d.value(inputs) == pytest.approx(10.0) and g.value(inputs) == pytest.approx(34.0)
    assert d.grads(inputs)["fake"][0] == pytest.approx(-3.0)
    # detached averages: only the first part, -1
    assert dataclasses.replace(d, detached=True).grads(inputs)["fake"][0] == pytest.approx(-1.0)


def _value_of(model: RelativisticModel):
    return lambda r, f: model.value({"real": r, "fake": f})


def _numeric(value, real: np.ndarray, fake: np.ndarray) -> dict[str, np.ndarray]:
    return {"real": _fd(lambda r: value(r, fake), real), "fake": _fd(lambda f: value(real, f), fake)}


def _frozen_means(model: RelativisticModel, real: np.ndarray, fake: np.ndarray):
    """The model's value with the averages held at ``real``'s and ``fake``'s means (a detached mean)."""
    mr, mf = real.mean(), fake.mean()
    a, b, _, _ = model._forms()

    def value(r: np.ndarray, f: np.ndarray) -> float:
        left = a(r - mf) if model.role == "d" or model.real_term else np.zeros_like(r)
        return model.scale * (model._red(left) + model._red(b(f - mr)))

    return value


@pytest.mark.parametrize("role", ["d", "g"])
def test_every_variant_has_the_gradient_of_its_value(role: str, rng) -> None:
    real, fake = rng.normal(0, 2, (5, 1)), rng.normal(0, 2, (5, 1))
    for variant in variants(RelativisticModel("rasgan", role)):  # type: ignore[arg-type]
        variant = dataclasses.replace(variant, scale=0.7)
        grads = variant.grads({"real": real, "fake": fake})
        if variant.detached:
            if variant.swapped:
                continue  # the frozen-mean helper reads the arguments in order
            numeric = _numeric(_frozen_means(variant, real, fake), real, fake)
        else:
            numeric = _numeric(_value_of(variant), real, fake)
        for side, grad in grads.items():
            np.testing.assert_allclose(grad, numeric[side], rtol=1e-6, atol=1e-9, err_msg=str(variant))


@pytest.mark.parametrize("form", ["ralsgan", "rahinge", "rpgan"])
def test_other_forms_have_the_gradient_of_their_value(form: str, rng) -> None:
    real, fake = rng.normal(0, 2, (4, 3)), rng.normal(0, 2, (4, 3))
    for role in ("d", "g"):
        model = RelativisticModel(form, role, scale=2.0, reduction="sum")  # type: ignore[arg-type]
        grads = model.grads({"real": real, "fake": fake})
        np.testing.assert_allclose(grads["fake"], _numeric(_value_of(model), real, fake)["fake"], rtol=1e-6, atol=1e-8)


def test_r2_and_r1_r2_forms_equal_the_training_penalties() -> None:
    case = penalty_cases("nhwc")[0]
    real, fake, alpha = case.inputs["real"], case.inputs["fake"], case.inputs["alpha"]

    def critic(x):
        return case.critic(x), case.critic.input_grad(x)

    for loss, kind in ((get("r1"), "r1"), (get("non_saturating", penalty="r2"), "r2"), (get("r3gan"), "r1_r2")):
        form = conv.penalty_form(loss.spec, {})
        assert form.kind == kind
        ours = evaluate_penalty(form, case.critic, real, fake, alpha, "flat").value
        assert ours == pytest.approx(loss.penalty(critic, real, fake, alpha), rel=1e-12)
    r1 = evaluate_penalty(PenaltyForm(kind="r1", weight=10.0), case.critic, real, fake, alpha, "flat").value
    r2 = evaluate_penalty(PenaltyForm(kind="r2", weight=10.0), case.critic, real, fake, alpha, "flat").value
    both = evaluate_penalty(PenaltyForm(kind="r1_r2", weight=10.0), case.critic, real, fake, alpha, "flat").value
    assert both == pytest.approx(r1 + r2, rel=1e-14)


# -- one loss model: every LossSpec option is one the judge follows and a user can declare --

#: A non-default value for every LossSpec field the judge follows, and the loss it applies to.
OPTION_CASES: dict[str, tuple[str, object]] = {
    "d_scale": ("hinge", 0.5), "g_scale": ("non_saturating", 3.0), "a": ("least_squares", -1.0),
    "b": ("least_squares", 2.0), "c": ("least_squares", 0.5), "label_smoothing": ("non_saturating", 0.25),
    "one_sided_label_smoothing": ("minimax", 0.1), "penalty_weight": ("wgan-gp", 3.0),
    "penalty_target": ("wgan-gp", 2.0), "penalty_one_sided": ("wgan-gp", True),
    "fake_label_smoothing": ("non_saturating", 0.2), "hinge_margin": ("hinge", 2.0), "reduction": ("hinge", "sum"),
}  # fmt: skip


def test_every_spec_field_is_declarable_or_says_why_not() -> None:
    fields = {f.name for f in dataclasses.fields(LossSpec)}
    assert fields == set(conv.SPEC_FIELDS) | set(conv.NOT_DECLARED)
    assert set(OPTION_CASES) == set(conv.SPEC_FIELDS)


@pytest.mark.parametrize("field", list(OPTION_CASES))
def test_a_spec_option_and_its_declaration_judge_by_the_training_formula(field: str, rng) -> None:
    name, value = OPTION_CASES[field]
    base = get(name).spec
    with_option = get(name, **{field: value})
    declared = {field: str(value)}
    if base.penalty != "none":
        case = penalty_cases("nhwc")[0]
        arrays = [case.inputs[k] for k in ("real", "fake", "alpha")]

        def critic(x):
            return case.critic(x), case.critic.input_grad(x)

        want = with_option.penalty(critic, *arrays)
        for form in (conv.penalty_form(with_option.spec, {}), conv.penalty_form(base, declared)):
            assert evaluate_penalty(form, case.critic, *arrays, "flat").value == pytest.approx(want, rel=1e-9)
        return
    real, fake = rng.normal(0, 2, (7, 1)), rng.normal(0, 2, (7, 1))
    role = "g" if field in ("g_scale", "c") else "d"
    want = with_option.d(real, fake) if role == "d" else with_option.g(fake)
    inputs = {"real": real, "fake": fake} if role == "d" else {"fake": fake}
    for model in (reference_model(with_option.spec, role), conv.logit_model(base, role, declared)):
        assert model.value(inputs) == pytest.approx(want, rel=1e-13)


def test_a_smoothed_spec_is_judged_smoothed(framework: str) -> None:
    """``--loss-param label_smoothing=0.25``: TF-GAN's D loss as it is written passes."""
    fn = right_losses(framework)["d_tfgan_smoothed"][2]
    report = check_loss(fn, "non_saturating", role="d", framework=framework, loss_params={"label_smoothing": 0.25})
    assert report.passed, report.text()


def test_relativistic_conventions_are_named_when_unknown() -> None:
    with pytest.raises(conv.ConventionError, match="known: scale, reduction"):
        conv.relativistic_model(LossSpec(name="rasgan"), "d", {"margin": "2"})
    with pytest.raises(conv.ConventionError, match="g_scale weighs the G loss"):
        conv.relativistic_model(LossSpec(name="rasgan"), "d", {"g_scale": "2"})
    model = conv.relativistic_model(LossSpec(name="ralsgan"), "g", {"g_scale": "0.5"})
    assert model.scale == 0.5


@pytest.mark.parametrize(
    "entry",
    ["d_rasgan", "g_rasgan", "d_ralsgan", "g_ralsgan", "d_rahinge", "g_rahinge", "d_rpgan", "g_rpgan",
     "r2", "r2_short", "r3gan", "r3gan_short", "gp_targeted"],
)  # fmt: skip
def test_the_right_forms_pass(framework: str, entry: str) -> None:
    role, loss, fn, params = right_losses(framework)[entry]
    report = check_loss(fn, loss, role=role, framework=framework, loss_params=params)
    assert report.passed, report.text()
    if role != "penalty":  # a relativistic G loss is run on both logits, as D's
        assert [c.shape for c in report.cases] == [c.shape() for c in logit_cases("d")]
