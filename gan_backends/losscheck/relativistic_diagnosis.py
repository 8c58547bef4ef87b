"""Which way of writing a relativistic loss the user's function follows.

Every variant of :func:`~gan_backends.losscheck.relativistic.variants` (the average or the
pairing form, in cross-entropy, least squares or hinge; the averages detached or not; G's
real-side term kept or dropped; a mean or a sum; the arguments in either order) gets its weight
fitted on the ordinary case, is judged on every case, and the one nearest to the declared loss
that reproduces the user's values and gradients everywhere is named, each difference as a
finding with the declaration that accepts it where the spec can train it.
"""

from __future__ import annotations

import dataclasses
import math

from .battery import Case
from .findings import Diagnosis, Finding
from .fit import nice
from .judge import judge_logits, skip_unsupported
from .logit_diagnosis import SWAPPED, reduction_finding
from .relativistic import RelativisticModel, variants
from .runners import Evaluation


def _fit_scale(model: RelativisticModel, case: Case, ev: Evaluation) -> RelativisticModel | None:
    unit = model.value(ev.inputs)
    if unit == 0 or ev.value is None or not math.isfinite(ev.value):
        return None
    return dataclasses.replace(model, scale=nice(ev.value / unit))


def _distance(model: RelativisticModel, ref: RelativisticModel) -> int:
    fields = ("form", "detached", "real_term", "reduction", "swapped", "scale")
    return sum(getattr(model, f) != getattr(ref, f) for f in fields) + 2 * (model.form != ref.form)


def diagnose_relativistic(
    ref: RelativisticModel, cases: list[Case], evals: list[Evaluation], tolerances: dict[str, tuple[float, float]]
) -> Diagnosis:
    ran = [(c, e) for c, e in zip(cases, evals) if e.error is None]
    errors = [Finding("error", f"fails on {c.name} ({c.shape()}): {e.error}") for c, e in zip(cases, evals) if e.error]
    ordinary = next(((c, e) for c, e in ran if "fit" in c.tags), None)
    if ordinary is None:
        return Diagnosis(f"differs from {ref.form}; it fails on the ordinary case", errors)
    matches = []
    for variant in variants(ref):
        fitted = _fit_scale(variant, *ordinary)
        if fitted is None:
            continue
        results = [judge_logits(c, e, fitted, tolerances[c.dtype], False) for c, e in zip(cases, evals)]
        skip_unsupported(results)
        if all(r.passed for r, (_, e) in zip(results, zip(cases, evals)) if e.error is None):
            matches.append(fitted)
    if not matches:
        findings = [Finding("unfit", "no known way of writing a relativistic loss reproduces its values and gradients")]
        return Diagnosis(f"differs from {ref.form}; no known convention explains it", findings + errors)
    best = min(matches, key=lambda m: _distance(m, ref))
    findings = relativistic_findings(best, ref) + errors
    explained = bool(findings) and all(f.convention for f in findings)
    texts = [f.text for f in findings if f.kind != "loss"]
    name = best.form
    head = f"your loss equals {name}" + (f" (not {ref.form})" if name != ref.form else "")
    summary = head + (": " + "; ".join(texts) if texts else "")
    return Diagnosis(summary, findings, explained, best.formula())


def relativistic_findings(best: RelativisticModel, ref: RelativisticModel) -> list[Finding]:
    """What turns ``ref`` into ``best``, in words, with the declaration that accepts it."""
    out = []
    if best.form != ref.form:
        if best.pairing:
            text = (
                f"it pairs each real logit with the fake logit at its index, softplus(-(C_r - C_f)) (RpGAN, the "
                f"relativistic standard GAN), where {ref.form} compares each logit with the average of the other kind"
            )
        elif ref.pairing:
            text = (
                f"it compares each logit with the average of the other kind (the relativistic average GAN, "
                f"{best.form}), where rpgan pairs each real logit with the fake logit at its index"
            )
        else:
            text = f"this is {best.form}'s form of the relativistic average loss, not {ref.form}'s"
        out.append(Finding("loss", f"{text}: run losscheck with --loss {best.form}"))
    if best.swapped:
        out.append(SWAPPED)
    if best.detached:
        out.append(
            Finding(
                "detached_average",
                "the averages are detached (mean(C_f).detach() / tf.stop_gradient, as BasicSR's ESRGAN writes "
                "them): the value is the paper's, but no gradient flows through mean C_f and mean C_r, so each "
                "logit's gradient lacks the other kind's terms; the spec trains the paper's gradient",
            )
        )
    if not best.real_term and ref.real_term:
        out.append(
            Finding(
                "g_real_term",
                "G's loss has only its fake-side term: the paper's G loss also has the real-side term "
                f"{'softplus(C_r - mean C_f)' if best.form == 'rasgan' else 'φ(C_r - mean C_f)'}, which moves the "
                "fakes through mean C_f",
            )
        )
    if best.reduction != ref.reduction:
        out.append(reduction_finding(best.reduction))
    ratio = nice(best.scale / ref.scale) if ref.scale else best.scale
    if ratio != 1.0:
        if ratio == 0.5:
            text = "the loss is halved, as the RaLSGAN author's code writes both losses (d_scale = g_scale = 0.5)"
        elif ratio == -1.0:
            text = f"the sign is flipped: this is -({best.form}), so minimising it maximises {best.form}"
        else:
            text = f"the loss is scaled by {ratio:.6g}"
        out.append(Finding("scale", text, f"scale={ratio:g}"))
    return out
