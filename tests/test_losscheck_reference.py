"""The float64 models losscheck judges against, checked against independent things: the zoo's
own formulas (gan_backends.losses on NumPy), central finite differences, and hand-made data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gan_backends.losscheck import conventions as conv
from gan_backends.losscheck.battery import logit_cases, penalty_cases, scan_grid
from gan_backends.losscheck.critic import PenaltyForm, axis_choices, evaluate_penalty
from gan_backends.losscheck.fit import fit_term, nice, simplest_in, snap
from gan_backends.losscheck.models import Term, reference_model
from gan_backends.losses import NUMPY_OPS, discriminator_loss, generator_loss
from gan_backends.spec import LOSS_NAMES, LossSpec


def _fd(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("role", ["d", "g"])
def test_reference_model_equals_the_zoo_formulas(name: str, role: str, rng) -> None:
    spec = LossSpec(name=name, d_scale=0.5, a=-1.0, b=1.0, c=0.0)
    real, fake = rng.normal(0, 3, (7, 1)), rng.normal(0, 3, (7, 1))
    model = reference_model(spec, role)
    if role == "d":
        want = discriminator_loss(NUMPY_OPS, real, fake, spec)["d_loss"]
        inputs = {"real": real, "fake": fake}
    else:
        want = generator_loss(NUMPY_OPS, fake, spec)
        inputs = {"fake": fake}
    assert model.value(inputs) == pytest.approx(float(want), rel=1e-13, abs=1e-13)
    for side, grad in model.grads(inputs).items():
        numeric = _fd(lambda x, side=side: model.value({**inputs, side: x}), inputs[side])
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def _penalty_of(form, case, **arrays):
    inputs = {**case.inputs, **arrays}
    return evaluate_penalty(form, case.critic, inputs["real"], inputs["fake"], inputs["alpha"], case.layout).value


@pytest.mark.parametrize(
    "form",
    [
        PenaltyForm(),
        PenaltyForm(one_sided=True, weight=3.0),
        PenaltyForm(swapped=True, reduction="sum"),
        PenaltyForm(kind="r1", weight=2.0),
        PenaltyForm(kind="r1", squared=False),
        PenaltyForm(element_mean=True),
        PenaltyForm(kind="r1", element_mean=True),
    ],
    ids=["wgan_gp", "one_sided", "swapped_sum", "r1", "r1_norm", "rms", "r1_mean"],
)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_penalty_gradients_equal_finite_differences(form: PenaltyForm, layout: str) -> None:
    """The hand-written double backward of the critic (critic.py's docstring) against central
    differences of the float64 penalty, w.r.t. every parameter and both batches."""
    cases = {c.name: c for c in penalty_cases(layout, dtypes=())}
    for case in (cases["ordinary"], cases[f"image {layout.upper()}"]):
        axes = None if case.layout == "flat" else (1,)
        for f in (form, dataclasses.replace(form, axes=axes)):
            ev = evaluate_penalty(
                f, case.critic, case.inputs["real"], case.inputs["fake"], case.inputs["alpha"], case.layout
            )
            for name in ("real", "fake"):
                numeric = _fd(lambda x, name=name, f=f, case=case: _penalty_of(f, case, **{name: x}), case.inputs[name])
                np.testing.assert_allclose(ev.grads[name], numeric, rtol=1e-5, atol=1e-7)
            for name, value in case.critic.params.items():

                def with_param(p, name=name, f=f, case=case):
                    params = {**case.critic.params, name: p}
                    critic = type(case.critic)(
                        params["hidden.weight"], params["hidden.bias"], params["out.weight"], float(params["out.bias"])
                    )
                    i = case.inputs
                    return evaluate_penalty(f, critic, i["real"], i["fake"], i["alpha"], case.layout).value

                np.testing.assert_allclose(
                    ev.grads[name], _fd(with_param, np.asarray(value, float)), rtol=1e-5, atol=1e-7
                )


def test_penalty_battery_has_a_zero_gradient_sample_and_norms_on_both_sides_of_one() -> None:
    case = {c.name: c for c in penalty_cases("nchw", dtypes=())}
    zero = case["norm at 0"]
    g = zero.critic.input_grad(zero.inputs["real"][:1])
    assert np.all(g == 0.0)  # exactly: every hidden unit is off
    ordinary = case["ordinary"]
    x_hat = (
        ordinary.inputs["alpha"] * ordinary.inputs["real"] + (1 - ordinary.inputs["alpha"]) * ordinary.inputs["fake"]
    )
    norms = np.linalg.norm(ordinary.critic.input_grad(x_hat), axis=1)
    assert norms.min() < 1.0 < norms.max()
    # The hand-derived value of the norm-at-0 sample: (0 - 1)² = 1 of the mean over 8, times λ.
    form = PenaltyForm(weight=10.0)
    only_zero = {k: v[:1] for k, v in zero.inputs.items()}
    assert (
        evaluate_penalty(form, zero.critic, only_zero["real"], only_zero["fake"], only_zero["alpha"], "flat").value
        == 10.0
    )


def test_image_axes_cover_the_bugs_users_write() -> None:
    choices = axis_choices(4)
    assert choices[0] is None and (1,) in choices and (1, 2) in choices and (2, 3) in choices
    assert choices[-1] == (0, 1, 2, 3)


@pytest.mark.parametrize(
    "term",
    [Term("bce", 1.0, coef=0.25), Term("bce", 0.9, coef=-0.5), Term("square", -1.0, coef=2.0),
     Term("linear", coef=-0.1), Term("hinge", 1.0, side=1.0, coef=0.125), Term("hinge", 1.0, side=-1.0, coef=0.125)],
    ids=["bce", "bce_smoothed", "square", "linear", "hinge_real", "hinge_fake"],
)  # fmt: skip
def test_fit_recovers_hand_made_terms(term: Term) -> None:
    grid = scan_grid()
    core = grid[np.abs(grid) <= 4]
    fitted, residual = fit_term(core, term.grad(core))
    assert (fitted.kind, fitted.param, fitted.side) == (term.kind, term.param, term.side)
    assert fitted.coef == pytest.approx(term.coef, rel=1e-12)
    assert residual < 1e-9


def test_numbers_are_named_simply() -> None:
    assert nice(0.8999997) == 0.9 and nice(0.4999999) == 0.5 and snap(1.3e-8) == 0.0
    assert simplest_in(0.75, 1.0) == 1.0 and simplest_in(0.3, 0.45) == 0.4


def test_conventions_change_the_reference_as_documented() -> None:
    ns = LossSpec(name="non_saturating")
    m = conv.logit_model(ns, "d", conv.parse(["label_smoothing=0.25", "scale=0.5,reduction=sum"]))
    assert (m.real.param, m.fake.param, m.scale, m.reduction) == (0.875, 0.0, 0.5, "sum")
    m = conv.logit_model(ns, "d", {"label_smoothing_both": "0.2"})
    assert (m.real.param, m.fake.param) == (0.9, 0.1)
    ls = conv.logit_model(LossSpec(name="least_squares"), "d", {"a": "-1", "b": "1"})
    assert (ls.fake.param, ls.real.param) == (-1.0, 1.0)
    with pytest.raises(conv.ConventionError, match="known"):
        conv.logit_model(ns, "d", {"scael": "2"})
    with pytest.raises(conv.ConventionError, match="least_squares"):
        conv.logit_model(ns, "d", {"a": "1"})
    with pytest.raises(conv.ConventionError, match="key=value"):
        conv.parse(["scale"])
    form = conv.penalty_form(
        LossSpec(name="wasserstein", penalty="wgan_gp"), {"penalty_weight": "1", "one_sided": "true"}
    )
    assert (form.weight, form.one_sided) == (1.0, True)


def test_logit_battery_has_the_cases_the_issue_lists() -> None:
    names = [c.name for c in logit_cases("d")]
    assert names[:4] == ["ordinary", "saturated ±20", "saturated ±50", "saturated ±100"]
    assert {"batch of one", "shape (N,)", "patch (N,H,W)", "scan", "bfloat16", "float16"} <= set(names)
    sat = next(c for c in logit_cases("d") if c.name == "saturated ±100")
    assert np.max(sat.inputs["real"]) == 100.0 and np.min(sat.inputs["fake"]) == -100.0
