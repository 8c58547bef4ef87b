"""When a user's loss differs: which convention it follows, in words and as a declaration.

Logit losses. Each side's per-logit gradients on the scan are fitted to a term shape
(:func:`fit.fit_term`); the ordinary case (another batch size) tells a mean from a sum; the
values give a constant offset. The fitted loss is named against the zoo loss it is nearest
to (fewest differences): label targets (smoothing, one-sided or toward ½), least-squares
targets and ½ factor, hinge margin, a scale (D loss ½), a sum, a constant — or another loss
altogether. The fitted loss is then judged on every case; where it only fails at large
logits, the scan locates the range where the user's loss still agrees (within 1%) and what
it does beyond (a plateau: a clamped log or a clipped probability; a vanishing gradient).

Penalties. Every way of writing the penalty (:class:`critic.PenaltyForm`: norm axes, one- or
two-sided, α on real or fake, mean or sum, squared or not) is evaluated in float64, its weight
fitted on the ordinary case, and the forms that reproduce the user's values and gradients on
every case are named; a NaN gradient only where the critic's input gradient is zero names the
missing epsilon under the square root.

Layout: :mod:`~gan_backends.losscheck.findings` (:class:`Diagnosis`, :class:`Finding`),
:mod:`~gan_backends.losscheck.logit_diagnosis` (fitting, naming the convention, the saturation
ranges) and :mod:`~gan_backends.losscheck.penalty_diagnosis` (:func:`diagnose_penalty`); this
module puts the logit-loss steps together (:func:`diagnose_logits`) and is where both entry
points are imported from.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..spec import LossSpec
from .battery import Case
from .findings import Diagnosis, Finding
from .fit import weight_on
from .judge import CaseResult, judge_logits, skip_unsupported
from .logit_diagnosis import fit_model, name_model, saturation_finding, scan_ranges
from .models import LogitModel
from .penalty_diagnosis import diagnose_penalty
from .runners import Evaluation

__all__ = ["Diagnosis", "Finding", "diagnose_logits", "diagnose_penalty"]


def diagnose_logits(
    loss: LossSpec,
    role: str,
    cases: list[Case],
    evals: list[Evaluation],
    tolerances: dict[str, tuple[float, float]],
    run: Callable[[dict[str, np.ndarray]], Evaluation],
) -> Diagnosis:
    errors = [(c, e) for c, e in zip(cases, evals) if e.error is not None]
    fitted, problems = fit_model(role, cases, evals)
    if fitted is None:
        findings = [Finding("unfit", p) for p in problems]
        findings += [Finding("error", f"fails on {c.name}: {e.error}") for c, e in errors]
        return Diagnosis(f"differs from {loss.name}; no known convention explains it", findings)
    name, findings = name_model(fitted, loss)
    results = [judge_logits(c, e, fitted, tolerances[c.dtype], False) for c, e in zip(cases, evals)]
    skip_unsupported(results)
    failing = [(c, r) for c, r in zip(cases, results) if not r.passed]
    ranges = None
    saturating = [c for c, _ in failing if c.tags & {"saturated", "scan"}]
    if saturating and len(saturating) == len([f for f in failing if f[1].error is None]):
        scan = next((c, e) for c, e in zip(cases, evals) if "scan" in c.tags)
        if scan[1].error is None:
            side_ranges = scan_ranges(fitted, scan[0].inputs["fake"], run, scan[1])
            ranges = {s: r.to_json() for s, r in side_ranges.items()}
            findings.append(saturation_finding(side_ranges, name or loss.name))
            failing = [(c, r) for c, r in failing if not (c.tags & {"saturated", "scan"})]
    for case, result in failing:
        findings.append(_case_finding(case, result, fitted, evals[cases.index(case)]))
    explained = bool(name) and all(f.convention for f in findings)
    summary = _summary(name, findings, loss.name)
    return Diagnosis(summary, findings, explained, fitted.formula(), ranges)


def _case_finding(case: Case, result: CaseResult, fitted: LogitModel, ev: Evaluation) -> Finding:
    if result.error:
        return Finding("error", f"fails on {case.name} ({case.shape()}): {result.error}")
    if "patch" in case.name and ev.grads.get("fake") is not None:
        term = fitted.fake
        alpha = weight_on(term, ev.inputs["fake"], ev.grads["fake"])
        n = ev.inputs["fake"].shape[0]
        per = fitted.scale * term.coef
        if math.isclose(alpha * n, per, rel_tol=1e-3):
            return Finding(
                "patch_reduction",
                f"on patch logits (N,H,W) it averages over the batch but sums over the H·W positions: each logit "
                f"weighs 1/{n}, not 1/{ev.inputs['fake'].size}",
            )
    if not result.finite:
        return Finding("nonfinite", f"non-finite value or gradient on {case.name}")
    return Finding(
        "case",
        f"fails on {case.name} ({case.shape()}): value error {result.value_error:.3g}, "
        f"gradient error {result.grad_error:.3g}",
    )


def _summary(name: str, findings: list[Finding], ref_name: str) -> str:
    if not findings:
        return f"equals {ref_name}"
    if not name:
        return f"differs from {ref_name}; no known convention explains it"
    texts = [f.text for f in findings if f.kind not in ("loss", "probabilities")]
    saturation = [f.text for f in findings if f.kind == "probabilities"]
    verb = "matches" if saturation else "equals"
    head = f"your loss {verb} {name}" + (f" (not {ref_name})" if name != ref_name else "")
    return head + (" " + saturation[0] if saturation else "") + (": " + "; ".join(texts) if texts else "")
