"""The penalty diagnosis: which way of writing the gradient penalty the user's function follows.

Every way of writing it (:class:`~gan_backends.losscheck.critic.PenaltyForm`: norm axes, one- or
two-sided, α on real or fake, mean or sum, squared or not) is evaluated in float64, its weight
fitted on the ordinary case, and the forms that reproduce the user's values and gradients on
every case are named (:func:`diagnose_penalty`); a NaN gradient only where the critic's input
gradient is zero names the missing epsilon under the square root.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .battery import Case
from .critic import PenaltyForm, axis_choices, evaluate_penalty
from .findings import Diagnosis, Finding
from .fit import nice
from .judge import judge_penalty
from .runners import Evaluation

#: Where R1, R2 and their sum take the gradient: a user's penalty at another site is named.
R_KINDS = ("r1", "r2", "r1_r2")


def _penalty_forms(ref: PenaltyForm, ndim: int) -> list[PenaltyForm]:
    forms = []
    sides = (False, True) if ref.kind == "wgan_gp" else (False,)
    squares = (True, False) if ref.squared_norm else (True,)
    kinds = (ref.kind, *(k for k in R_KINDS if k != ref.kind)) if ref.squared_norm else (ref.kind,)
    for kind in kinds:
        for axes in axis_choices(ndim):
            for one_sided in sides:
                for swapped in sides:
                    for reduction in ("mean", "sum"):
                        for squared in squares:
                            for element_mean in (False, True):
                                forms.append(
                                    dataclasses.replace(
                                        ref, kind=kind, axes=axes, one_sided=one_sided, swapped=swapped,
                                        reduction=reduction, squared=squared, element_mean=element_mean, weight=1.0,
                                    )
                                )  # fmt: skip
    return forms


def _fit_weight(form: PenaltyForm, case: Case, ev: Evaluation) -> PenaltyForm | None:
    unit = evaluate_penalty(form, case.critic, ev.inputs["real"], ev.inputs["fake"], ev.inputs["alpha"], case.layout)
    if unit.value == 0 or ev.value is None or not math.isfinite(ev.value):
        return None
    return dataclasses.replace(form, weight=nice(ev.value / unit.value))


def _matches(form: PenaltyForm, pairs: list[tuple[Case, Evaluation]], tolerances) -> bool:
    for case, ev in pairs:
        r = judge_penalty(case, ev, form, tolerances[case.dtype])
        if "zero" in case.tags and r.value_error is not None and r.value_error <= r.tolerance[0]:
            continue  # its gradient is judged apart (the NaN of a norm at 0)
        if not r.passed:
            return False
    return True


def diagnose_penalty(
    ref: PenaltyForm, cases: list[Case], evals: list[Evaluation], tolerances: dict[str, tuple[float, float]]
) -> Diagnosis:
    findings: list[Finding] = []
    pairs = [(c, e) for c, e in zip(cases, evals) if e.error is None and c.dtype == "float32"]
    float32_ran = all(e.error is None for c, e in zip(cases, evals) if c.dtype == "float32")
    for c, e in zip(cases, evals):
        if e.error is not None and not (float32_ran and c.dtype != "float32"):
            findings.append(Finding("error", f"fails on {c.name}: {_penalty_error_text(e.error)}"))
    ordinary = next(((c, e) for c, e in pairs if "fit" in c.tags), None)
    if ordinary is None:
        first = findings[0].text if findings else "no value"
        return Diagnosis(f"the penalty cannot be judged: it {first}", findings)
    flat = [(c, e) for c, e in pairs if c.layout == "flat"]
    images = [(c, e) for c, e in pairs if c.layout != "flat"]
    best: PenaltyForm | None = None
    for form in _penalty_forms(ref, 2):
        fitted = _fit_weight(form, *ordinary)
        if fitted is not None and _matches(fitted, flat, tolerances):
            best = fitted
            break
    if best is None:
        findings.insert(0, Finding("unfit", "no known way of writing the penalty reproduces its values and gradients"))
        return Diagnosis(f"differs from {ref.kind}; no known convention explains it", findings)
    if images:
        img_case = images[0][0]
        for axes in axis_choices(img_case.inputs["real"].ndim):
            candidate = dataclasses.replace(best, axes=axes)
            if _matches(candidate, images, tolerances):
                best = candidate
                break
        else:
            findings.append(Finding("image", "on image-shaped inputs it matches no known way of taking the norm"))
    findings = _penalty_findings(best, ref, cases, evals, images) + findings
    zero = [(c, e) for c, e in zip(cases, evals) if "zero" in c.tags and e.error is None]
    for _, e in zero:
        if any(g is not None and not np.all(np.isfinite(g)) for g in e.grads.values()):
            findings.append(
                Finding(
                    "norm_at_zero",
                    "NaN gradient where the critic's input gradient is 0 (the 'norm at 0' case): the norm has no "
                    "epsilon under its square root (torch.sqrt of a sum, tf.norm and jnp.linalg.norm are not "
                    "differentiable at 0); write sqrt(sum(g²) + 1e-12), torch.linalg.vector_norm, or optax.safe_norm",
                )
            )
    explained = all(f.convention for f in findings)
    texts = [f.text for f in findings]
    summary = (f"your penalty differs from {ref.kind}: " + "; ".join(texts)) if texts else f"equals {ref.kind}"
    where = best.describe_axes(images[0][0].layout if images else "flat", 4)
    formula = f"{best.weight:g}·{best.reduction}(...) with the norm {where}"
    return Diagnosis(summary, findings, explained, formula)


_SITES = {
    "r1": "the gradient taken at the real batch",
    "r2": "the gradient taken at the generated batch",
    "r1_r2": "the gradient taken at both the real and the generated batch",
    "wgan_gp": "the gradient taken at the interpolates",
}


def _penalty_error_text(error: str) -> str:
    if "does not depend on its inputs" in error or "does not require grad" in error:
        return (
            error + "; the penalty is cut from the critic's parameters: pass create_graph=True to torch.autograd.grad"
        )
    return error


def _penalty_findings(best: PenaltyForm, ref: PenaltyForm, cases, evals, images) -> list[Finding]:
    out = []
    if best.axes is not None:
        layout = images[0][0].layout if images else "flat"
        ndim = images[0][0].inputs["real"].ndim if images else 2
        where = best.describe_axes(layout, ndim)
        what = (
            "a per-pixel norm"
            if layout == "nchw" and best.axes == (1,) or layout == "nhwc" and best.axes == (3,)
            else "the wrong norm"
        )
        out.append(
            Finding("norm_axes", f"{what}: the gradient norm is taken {where}, not per sample over all of C, H, W")
        )
    if best.one_sided != ref.one_sided:
        out.append(
            Finding(
                "one_sided", "one-sided penalty relu(‖g‖ - 1)² (only norms above 1 are penalised)", "one_sided=true"
            )
        )
    if best.swapped:
        out.append(
            Finding(
                "alpha",
                "α weights the fake batch: x̂ = α·fake + (1-α)·real (the same in distribution for α ~ U(0,1), "
                "not for the α it is given)",
            )
        )
    if best.element_mean:
        out.append(
            Finding(
                "element_mean",
                "averages g² over each sample's values instead of summing them (a mean where the norm needs a "
                "sum): the norm shrinks by √D, the squared norm by D, D = values per sample",
            )
        )
    if best.kind != ref.kind:
        out.append(Finding("site", f"{_SITES[best.kind]}: this is {best.kind}, where {ref.kind} is {_SITES[ref.kind]}"))
    if best.squared_norm and not best.squared:
        out.append(
            Finding("r1_norm", f"{best.kind} with the norm ‖g‖ where Mescheder et al. have the squared norm ‖g‖²")
        )
    if best.reduction != ref.reduction:
        if best.reduction == "sum":
            out.append(Finding("reduction", "sums the penalty over the batch instead of averaging it", "reduction=sum"))
        else:
            out.append(
                Finding("reduction", "averages the penalty over the batch where the spec sums it", "reduction=mean")
            )
    if best.weight != ref.weight:
        if best.weight == 1.0:
            text = f"returns the penalty without its weight λ = {ref.weight:g} (the caller must multiply it in)"
        elif best.squared_norm and math.isclose(best.weight, 2 * ref.weight):
            text = f"{best.kind} without the ½: γ·mean‖g‖² where Mescheder et al. have γ/2·mean‖g‖²"
        elif best.kind == "r1_r2" and math.isclose(best.weight, 0.5 * ref.weight):
            text = (
                "R1 and R2 averaged (one mean over the real and fake batches together, γ/2·(R1 + R2)/2), where "
                "R3GAN adds them: γ/2·(R1 + R2)"
            )
        else:
            text = f"weight λ = {best.weight:g} inside the penalty, not {ref.weight:g}"
        out.append(Finding("penalty_weight", text, f"penalty_weight={best.weight:g}"))
    return out
