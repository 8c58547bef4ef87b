"""Run a user's loss on the battery, judge it against the float64 reference, diagnose a mismatch."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import canonical_name
from ..presets import LOSS_PRESETS
from ..spec import ALL_LOSS_NAMES, PENALTIES, LossSpec, SpecError
from . import conventions as conv
from .battery import PENALTY_TOLERANCES, REDUCED, TOLERANCES, Case, logit_cases, penalty_cases
from .critic import PenaltyForm
from .diagnose import Diagnosis, diagnose_logits, diagnose_penalty
from .judge import CaseResult, judge_logits, judge_penalty, skip_unsupported
from .models import ROLES
from .relativistic_diagnosis import diagnose_relativistic
from .runners import Evaluation, get_runner

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

    def spec_options(self) -> dict[str, object] | None:
        """The LossSpec options that train what the diagnosis found (its declarations, on top of
        the spec checked against), or None where one of them is no spec option."""
        if self.diagnosis is None or not self.diagnosis.explained or not self.diagnosis.conventions:
            return None
        found = conv.as_spec_options(self.diagnosis.conventions, self.role)
        return None if found is None else {**_changed(self.loss), **found}

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
            "spec_options": self.spec_options(),
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
                if (options := self.spec_options()) is not None:
                    lines.append(f"  to train it: {_spec_text(options)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _changed(loss: LossSpec) -> dict[str, object]:
    """The loss's fields that differ from a LossSpec of its name (a preset's penalty, a --loss-param)."""
    plain = vars(LossSpec(name=loss.name))
    return {k: v for k, v in vars(loss).items() if v != plain[k]}


def _spec_text(options: dict[str, object]) -> str:
    return '"loss": {' + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in options.items()) + "}"


def _fmt(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2e}" if math.isfinite(x) else str(x))


def _loss_label(loss: LossSpec) -> str:
    return loss.penalty if loss.penalty != "none" else loss.name


def resolve_loss(loss: str | LossSpec, role: str, params: Mapping[str, float] | None = None) -> LossSpec:
    """A zoo name (``hinge``), a preset (``wgan-gp``) or a penalty (``wgan_gp``, ``r1``) as a LossSpec."""
    if isinstance(loss, LossSpec):
        spec = loss
    elif loss in ALL_LOSS_NAMES:
        spec = LossSpec(name=loss)  # type: ignore[arg-type]
    elif loss in LOSS_PRESETS:
        spec = LOSS_PRESETS[loss].loss
    elif loss in PENALTIES and loss != "none":
        spec = LossSpec(name="wasserstein", penalty=loss)  # type: ignore[arg-type]
    else:
        known = sorted(set(ALL_LOSS_NAMES) | set(LOSS_PRESETS) | (set(PENALTIES) - {"none"}))
        raise SpecError(f"unknown loss {loss!r}; known: {', '.join(known)}")
    if params:
        unknown = set(params) - set(vars(spec))
        if unknown:
            raise SpecError(f"unknown loss parameter(s) {sorted(unknown)}; known: {', '.join(vars(spec))}")
        spec = LossSpec(**{**vars(spec), **params})
    if role not in ROLES:
        raise SpecError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "penalty" and spec.penalty == "none":
        raise SpecError(
            f"role penalty needs a loss with a gradient penalty (wgan_gp, r1, r2, r1_r2), got {spec.name!r}"
        )
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


#: How each role calls the user's function (a relativistic G loss: as D's, it reads D(real) too).
CALLS = {"d": "fn(real_logits, fake_logits)", "g": "fn(fake_logits)", "penalty": "fn(critic, real, fake, alpha)"}
#: The shorter calls a penalty may take instead of ``fn(critic, real, fake, alpha)``: the batches
#: it needs, after the critic (R1 at real, R2 at fake, R1 + R2 at both).
SHORT_PENALTY_CALLS: dict[str, tuple[str, ...]] = {"r1": ("real",), "r2": ("fake",), "r1_r2": ("real", "fake")}
FULL_PENALTY_CALL = ("real", "fake", "alpha")


def _required_positional(signature: inspect.Signature) -> int:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds and p.default is p.empty)


def _takes(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def call_text(role: str, spec: LossSpec) -> str:
    if role == "g" and spec.relativistic:
        return CALLS["d"]
    short = SHORT_PENALTY_CALLS.get(spec.penalty) if role == "penalty" else None
    also = f" or fn(critic, {', '.join(short)})" if short else ""
    return CALLS.get(role, "?") + also


def check_arity(fn: Callable, role: str, spec: LossSpec) -> tuple[str, ...]:
    """The arguments ``fn`` gets in ``role`` (:data:`CALLS`; a penalty also its short call of
    :data:`SHORT_PENALTY_CALLS` when that is all it requires), checked against its signature
    before it runs: a :class:`SpecError` naming the calling convention when it cannot take them."""
    logits = ("real", "fake") if role == "d" or spec.relativistic else ("fake",)
    full = logits if role != "penalty" else FULL_PENALTY_CALL
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: call it and see
        return full
    short = SHORT_PENALTY_CALLS.get(spec.penalty) if role == "penalty" else None
    if short and _takes(signature, len(short) + 1) and _required_positional(signature) <= len(short) + 1:
        return short
    count = len(full) + (1 if role == "penalty" else 0)
    if _takes(signature, count):
        return full
    raise SpecError(f"the function{signature} cannot take the call role {role} makes: {call_text(role, spec)}")


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
    order = check_arity(fn, role, spec)
    if spec.relativistic:
        return _check_relativistic(fn, spec, role, runner, framework, declared, inputs, dtypes, seed, label, announce)
    model = conv.logit_model(spec, role, declared)  # type: ignore[arg-type]
    probabilities = conv.declared_probabilities(declared)
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


def _check_relativistic(
    fn,
    spec: LossSpec,
    role: str,
    runner,
    framework: str,
    declared,
    inputs: str,
    dtypes,
    seed: int,
    label: str,
    announce: Callable,
) -> LossCheckReport:
    """A relativistic loss: both roles read both logits (G's judged on its fake-logit gradient)."""
    if inputs != "logits":
        raise SpecError(f"the relativistic loss {spec.name!r} compares logits: run it with --inputs logits")
    model = conv.relativistic_model(spec, role, declared)  # type: ignore[arg-type]
    cases = logit_cases("d", seed, dtypes)  # real and fake logits, for G's loss as well

    def run(case: Case) -> Evaluation:
        announce(case.name)
        return runner.run_logits(fn, case.inputs, ("real", "fake"), case.dtype, False)

    evals = [run(c) for c in cases]
    results = [judge_logits(c, e, model, TOLERANCES[c.dtype], False) for c, e in zip(cases, evals)]
    skip_unsupported(results)
    report = LossCheckReport(label, framework, role, spec, declared, inputs, results)
    if role == "g":
        report.notes.append(
            "G's loss is judged on its gradient w.r.t. the fake logits: D(real) is a constant of G's step"
        )
    if not report.passed:
        report.diagnosis = diagnose_relativistic(model, cases, evals, TOLERANCES)
    return report


def _check_penalty(
    fn, spec: LossSpec, runner, framework: str, declared, dtypes, seed: int, label: str, announce: Callable
) -> LossCheckReport:
    form: PenaltyForm = conv.penalty_form(spec, declared)
    cases: list[Case] = penalty_cases(runner.IMAGE_LAYOUT, seed, dtypes)
    call = check_arity(fn, "penalty", spec)

    def run(case: Case):
        announce(case.name)
        return runner.run_penalty(fn, case, case.dtype, call)

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
