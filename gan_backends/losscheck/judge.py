"""Judging one battery case: the user's value and gradients against a float64 model.

Errors are relative, with yardsticks that do not blow up where the truth is near zero:

- value: ``|U - M| / mag`` where ``mag`` is the loss's size before its terms cancel
  (:meth:`LogitModel.magnitude`; for a penalty the penalty itself, floored at ``1e-3·λ``);
- gradient (logit roles): ``max_i |∂U/∂l_i - ∂M/∂l_i| / max_i |∂M/∂l_i|`` over both sides,
  the denominator floored at a thousandth of one logit's weight (a hinge with every logit
  past its margin has a zero gradient);
- gradient (penalty): the same per parameter, the worst over the critic's parameters and
  (when the user's graph reaches them) the real and fake batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .battery import Case
from .critic import PenaltyForm, evaluate_penalty
from .models import LogitModel
from .relativistic import RelativisticModel
from .runners import Evaluation


@dataclass
class CaseResult:
    name: str
    dtype: str
    shape: str
    tolerance: tuple[float, float]
    value: float | None = None
    expected: float | None = None
    value_error: float | None = None
    grad_error: float | None = None
    finite: bool = True
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    #: Not run: the framework cannot run the loss in this reduced precision here.
    skipped: bool = False

    def to_json(self) -> dict:
        return {
            "case": self.name,
            "dtype": self.dtype,
            "shape": self.shape,
            "value": _finite_or_text(self.value),
            "expected": self.expected,
            "value_error": _finite_or_text(self.value_error),
            "grad_error": _finite_or_text(self.grad_error),
            "tolerance": {"value": self.tolerance[0], "grad": self.tolerance[1]},
            "finite": self.finite,
            "passed": self.passed,
            "notes": self.notes,
            "error": self.error,
            "skipped": self.skipped,
        }


def skip_unsupported(results: list[CaseResult]) -> None:
    """A reduced-precision case that raises while every float32 case ran is the framework's limit
    (e.g. an op without a float16 kernel on this device), not the loss's fault: mark it skipped."""
    if any(r.error for r in results if r.dtype == "float32"):
        return
    for r in results:
        if r.error and r.dtype in ("bfloat16", "float16"):
            r.skipped, r.passed, r.finite = True, True, True
            r.notes.append(f"not run: {r.dtype} is not supported here ({r.error.splitlines()[0][:160]})")
            r.error = None


def _finite_or_text(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else str(x)


def saturation_bound(dtype: str) -> float:
    """``|l|`` up to which a loss computed from ``sigmoid(l)`` in ``dtype`` keeps about two digits:
    ``log(1 / (100·eps))``, 11.3 in float32 (judged there when ``probabilities`` is declared)."""
    eps = {"float64": 2.2e-16, "float32": 1.19e-7, "float16": 9.8e-4, "bfloat16": 7.8e-3}[dtype]
    return max(2.0, math.log(1.0 / (100.0 * eps)))


def _rel(diff: float, scale: float) -> float:
    if math.isnan(diff):
        return math.nan
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def judge_logits(
    case: Case, ev: Evaluation, model: LogitModel | RelativisticModel, tol: tuple[float, float], probabilities: bool
) -> CaseResult:
    result = CaseResult(case.name, case.dtype, case.shape(), tol)
    if ev.error is not None:
        result.error, result.finite = ev.error, False
        return result
    inputs = ev.inputs
    masks = {k: np.ones(v.shape, bool) for k, v in inputs.items()}
    if probabilities:
        bound = saturation_bound(case.dtype)
        masks = {k: np.abs(v) <= bound for k, v in inputs.items()}
    result.value, result.expected = ev.value, model.value(inputs)
    if all(m.all() for m in masks.values()):
        result.value_error = _rel(abs(ev.value - result.expected), model.magnitude(inputs))
    else:
        result.notes.append(
            f"value not judged: logits beyond ±{saturation_bound(case.dtype):.1f} (probabilities declared)"
        )
    expected = model.grads(inputs)
    scale = max([_max_abs(expected[s][masks[s]]) for s in expected] + [model.grad_floor(inputs)])
    diffs = []
    for side, want in expected.items():
        got = ev.grads.get(side)
        if got is None:
            result.notes.append(f"no gradient reaches the {side} logits")
            got = np.zeros_like(want)
        got = np.reshape(got, want.shape)
        result.finite &= bool(np.all(np.isfinite(got)))
        diffs.append(float(np.max(np.abs(got - want)[masks[side]])) if masks[side].any() else 0.0)
    result.finite &= ev.value is not None and math.isfinite(ev.value)
    result.grad_error = _rel(float(np.max(diffs)), scale)
    result.passed = _within(result, tol)
    return result


def _within(result: CaseResult, tol: tuple[float, float]) -> bool:
    ok_value = result.value_error is None or result.value_error <= tol[0]
    ok_grad = result.grad_error is not None and result.grad_error <= tol[1]
    return bool(result.finite and ok_value and ok_grad)


def judge_penalty(case: Case, ev: Evaluation, form: PenaltyForm, tol: tuple[float, float]) -> CaseResult:
    result = CaseResult(case.name, case.dtype, case.shape(), tol)
    if ev.error is not None:
        result.error, result.finite = ev.error, False
        return result
    inputs = ev.inputs
    ref = evaluate_penalty(form, case.critic, inputs["real"], inputs["fake"], inputs["alpha"], case.layout)
    result.value, result.expected = ev.value, ref.value
    result.value_error = _rel(abs(ev.value - ref.value), max(abs(ref.value), 1e-3 * form.weight))
    result.finite = math.isfinite(ev.value)
    errors = []
    floor = 1e-3 * max(_max_abs(g) for g in ref.grads.values())
    for name, want in ref.grads.items():
        got = ev.grads.get(name)
        if name in ("real", "fake") and (got is None or not np.any(got)) and np.any(want):
            result.notes.append(f"input gradient not judged: the penalty is detached from {name}")
            continue
        if got is None:
            if np.any(want):
                result.notes.append(f"no gradient reaches the critic's {name}")
            got = np.zeros_like(want)
        got = np.reshape(got, want.shape)
        result.finite &= bool(np.all(np.isfinite(got)))
        errors.append(_rel(float(np.max(np.abs(got - want))), max(_max_abs(want), floor)))
    result.grad_error = float(np.max(errors)) if errors else 0.0
    result.passed = _within(result, tol)
    return result
