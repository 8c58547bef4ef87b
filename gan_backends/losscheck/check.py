"""Run a user's loss on the battery, judge it against the float64 reference, diagnose a mismatch."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import canonical_name
from ..presets import LOSS_PRESETS
from ..spec import LOSS_NAMES, PENALTIES, LossSpec, SpecError
from . import conventions as conv
from .battery import PENALTY_TOLERANCES, REDUCED, TOLERANCES, Case, logit_cases, penalty_cases
from .critic import PenaltyForm
from .diagnose import Diagnosis, diagnose_logits, diagnose_penalty
from .judge import CaseResult, judge_logits, judge_penalty, skip_unsupported
from .models import ROLES
from .runners import get_runner

INPUTS = ("logits", "probabilities")


class LossCheckError(AssertionError):
    """Raised by :func:`assert_loss_matches`; its message is the whole report."""

    def __init__(self, report: LossCheckReport):
        super().__init__(report.text())
        self.report = report


@dataclass
class LossCheckReport:
    function: str
    framework: str
    role: str
    loss: LossSpec
    conventions: dict[str, str]
    inputs: str
    cases: list[CaseResult]
    diagnosis: Diagnosis | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def verdict(self) -> str:
        if self.passed:
            return "pass"
        if self.diagnosis is not None and self.diagnosis.explained:
            return "mismatch (a known convention, undeclared)"
        return "mismatch"

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "framework": self.framework,
            "role": self.role,
            "loss": {k: v for k, v in vars(self.loss).items()},
            "conventions": self.conventions,
            "inputs": self.inputs,
            "passed": self.passed,
            "verdict": self.verdict,
            "cases": [c.to_json() for c in self.cases],
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_json(),
            "notes": self.notes,
        }

    def text(self) -> str:
        """A plain-text report (the assertion message and the non-terminal output)."""
        where = f"{self.framework}, role {self.role}, loss {_loss_label(self.loss)}"
        lines = [f"losscheck {self.function} ({where}): {self.verdict}"]
        for c in self.cases:
            status = "skip" if c.skipped else ("ok  " if c.passed else "FAIL")
            detail = (
                c.notes[-1]
                if c.skipped
                else c.error
                or (
                    f"value err {_fmt(c.value_error)}, grad err {_fmt(c.grad_error)}"
                    + ("" if c.finite else ", non-finite")
                )
            )
            lines.append(f"  {status} {c.name:<16} {c.dtype:<9} {c.shape:<10} {detail}")
        if self.diagnosis is not None:
            lines.append(f"diagnosis: {self.diagnosis.summary}")
            if self.diagnosis.conventions:
                lines.append(f"  if intended, declare: --convention {','.join(self.diagnosis.conventions)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2e}" if math.isfinite(x) else str(x))


def _loss_label(loss: LossSpec) -> str:
    return loss.penalty if loss.penalty != "none" else loss.name


def resolve_loss(loss: str | LossSpec, role: str, params: Mapping[str, float] | None = None) -> LossSpec:
    """A zoo name (``hinge``), a preset (``wgan-gp``) or a penalty (``wgan_gp``, ``r1``) as a LossSpec."""
    if isinstance(loss, LossSpec):
        spec = loss
    elif loss in LOSS_NAMES:
        spec = LossSpec(name=loss)  # type: ignore[arg-type]
    elif loss in LOSS_PRESETS:
        spec = LOSS_PRESETS[loss].loss
    elif loss in PENALTIES and loss != "none":
        spec = LossSpec(name="wasserstein", penalty=loss)  # type: ignore[arg-type]
    else:
        known = sorted(set(LOSS_NAMES) | set(LOSS_PRESETS) | {"wgan_gp", "r1"})
        raise SpecError(f"unknown loss {loss!r}; known: {', '.join(known)}")
    if params:
        unknown = set(params) - set(vars(spec))
        if unknown:
            raise SpecError(f"unknown loss parameter(s) {sorted(unknown)}; known: {', '.join(vars(spec))}")
        spec = LossSpec(**{**vars(spec), **params})
    if role not in ROLES:
        raise SpecError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    # losscheck's judge calls a user's d(real, fake) / g(fake) and its own penalty model (R1 and
    # WGAN-GP): a relativistic G loss (it reads D(real) too) and R2 are not judged yet.
    if spec.relativistic and role != "penalty":
        raise SpecError(f"losscheck does not judge the relativistic loss {spec.name!r} yet (its G loss reads D(real))")
    if role == "penalty" and spec.penalty in ("r2", "r1_r2"):
        raise SpecError(f"losscheck does not judge the {spec.penalty} penalty yet; wgan_gp and r1 it does")
    if role == "penalty" and spec.penalty == "none":
        raise SpecError(f"role penalty needs a loss with a gradient penalty (wgan_gp, r1), got {spec.name!r}")
    return spec


def load_function(target: str) -> Callable:
    """``package.module:name`` or ``path/to/file.py:name``; a class is instantiated without arguments."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"expected MODULE:FUNCTION or FILE.py:FUNCTION, got {target!r}")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise SpecError(f"no such file: {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        finally:
            sys.path.pop(0)
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise SpecError(f"{module_name} has no attribute {attr!r}") from None
    if inspect.isclass(fn):
        fn = fn()
    if not callable(fn):
        raise SpecError(f"{target} is not callable")
    return fn


#: How each role calls the user's function.
CALLS = {"d": "fn(real_logits, fake_logits)", "g": "fn(fake_logits)", "penalty": "fn(critic, real, fake, alpha)"}


def _required_positional(signature: inspect.Signature) -> int:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds and p.default is p.empty)


def _takes(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def check_arity(fn: Callable, role: str, spec: LossSpec) -> int:
    """How many positional arguments ``fn`` gets in ``role`` (:data:`CALLS`; R1 also
    ``fn(critic, real)`` when that is all it requires), checked against its signature before it
    runs: a :class:`SpecError` naming the calling convention when it cannot take them."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: call it and see
        return {"d": 2, "g": 1}.get(role, 4)
    if role == "penalty" and spec.penalty == "r1" and _takes(signature, 2) and _required_positional(signature) <= 2:
        return 2
    count = {"d": 2, "g": 1}.get(role, 4)
    if _takes(signature, count):
        return count
    also = " or fn(critic, real)" if role == "penalty" and spec.penalty == "r1" else ""
    raise SpecError(f"the function{signature} cannot take the call role {role} makes: {CALLS.get(role, '?')}{also}")


def check_loss(
    fn: Callable,
    loss: str | LossSpec,
    *,
    role: str,
    framework: str,
    conventions: Mapping[str, object] | None = None,
    inputs: str = "logits",
    loss_params: Mapping[str, float] | None = None,
    dtypes: tuple[str, ...] = REDUCED,
    seed: int = 0,
    name: str | None = None,
    on_call: Callable[[str], None] | None = None,
) -> LossCheckReport:
    """Run ``fn`` (a user's loss in ``framework``) on the battery and judge it; see ``docs/losscheck.md``.

    Calling conventions: ``role="d"``: ``fn(real_logits, fake_logits)``; ``"g"``: ``fn(fake_logits)``;
    ``"penalty"``: ``fn(critic, real, fake, alpha)`` (``alpha`` shaped (N, 1, …)), or ``fn(critic, real)``
    for R1. Each returns the scalar loss. With ``inputs="probabilities"`` a D or G loss receives
    ``sigmoid(logits)`` (a discriminator ending in a Sigmoid), differentiated through that sigmoid.
    ``on_call(case)`` is called before each call of ``fn`` (the CLI's watchdog: which case hangs).
    """
    spec = resolve_loss(loss, role, loss_params)
    announce = on_call or (lambda case: None)
    declared = {k: str(v) for k, v in (conventions or {}).items()}
    if inputs not in INPUTS:
        raise SpecError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    runner = get_runner(framework)
    framework = canonical_name(framework)
    label = name or getattr(fn, "__qualname__", repr(fn))
    if role == "penalty":
        return _check_penalty(fn, spec, runner, framework, declared, dtypes, seed, label, announce)
    check_arity(fn, role, spec)
    model = conv.logit_model(spec, role, declared)  # type: ignore[arg-type]
    probabilities = conv.declared_probabilities(declared)
    order = ("real", "fake") if role == "d" else ("fake",)
    cases = logit_cases(role, seed, dtypes)

    def run(case_inputs: dict, dtype: str = "float32", case: str = "a diagnosis probe"):
        announce(case)
        return runner.run_logits(fn, case_inputs, order, dtype, inputs == "probabilities")

    evals = [run(c.inputs, c.dtype, c.name) for c in cases]
    results = [judge_logits(c, e, model, TOLERANCES[c.dtype], probabilities) for c, e in zip(cases, evals)]
    skip_unsupported(results)
    report = LossCheckReport(label, framework, role, spec, declared, inputs, results)
    if not report.passed:
        report.diagnosis = diagnose_logits(spec, role, cases, evals, TOLERANCES, run)
    return report


def _check_penalty(
    fn, spec: LossSpec, runner, framework: str, declared, dtypes, seed: int, label: str, announce: Callable
) -> LossCheckReport:
    form: PenaltyForm = conv.penalty_form(spec, declared)
    cases: list[Case] = penalty_cases(runner.IMAGE_LAYOUT, seed, dtypes)
    arity = check_arity(fn, "penalty", spec)

    def run(case: Case):
        announce(case.name)
        return runner.run_penalty(fn, case, case.dtype, arity)

    evals = [run(c) for c in cases]
    results = [judge_penalty(c, e, form, PENALTY_TOLERANCES[c.dtype]) for c, e in zip(cases, evals)]
    skip_unsupported(results)
    report = LossCheckReport(label, framework, "penalty", spec, declared, "critic", results)
    if not report.passed:  # judged against what was declared: a declared convention is no finding
        report.diagnosis = diagnose_penalty(form, cases, evals, PENALTY_TOLERANCES)
    return report


def assert_loss_matches(
    fn: Callable, loss: str | LossSpec, *, role: str, framework: str, **kwargs: Any
) -> LossCheckReport:
    """:func:`check_loss` for a test suite: returns the report, or raises :class:`LossCheckError`
    (an AssertionError whose message is the report with its diagnosis)."""
    report = check_loss(fn, loss, role=role, framework=framework, **kwargs)
    if not report.passed:
        raise LossCheckError(report)
    return report
