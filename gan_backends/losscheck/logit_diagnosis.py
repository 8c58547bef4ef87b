"""The logit-loss diagnosis, step by step: fit the user's loss, name the convention, find where it saturates.

:func:`fit_model` fits each side's per-logit gradients on the scan to a term shape
(:func:`~gan_backends.losscheck.fit.fit_term`); the ordinary case (another batch size) tells a
mean from a sum; the values give a constant offset. :func:`name_model` names the fitted loss
against the zoo loss it is nearest to (fewest :func:`deviations`): label targets, least-squares
targets and ½ factor, hinge margin, a scale, a sum, a constant, swapped arguments — or another
loss altogether. Where the fitted loss fails only at large logits, :func:`scan_ranges` locates
the range where the user's loss still agrees (within :data:`RANGE_TOLERANCE`) and the plateau
beyond, which :func:`saturation_finding` puts in words. The steps are put together by
:func:`~gan_backends.losscheck.diagnose.diagnose_logits`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..spec import LOSS_NAMES, LossSpec
from .battery import Case
from .findings import Finding
from .fit import fit_term, name_constant, nice, weight_on
from .models import LogitModel, Term, reference_model
from .runners import Evaluation

#: Per-logit agreement used to find the range where a saturating loss still matches.
RANGE_TOLERANCE = 1e-2


def _fit_data(cases: list[Case], evals: list[Evaluation]) -> tuple[Case, Evaluation] | None:
    for tag in ("scan", "fit"):
        for case, ev in zip(cases, evals):
            if tag in case.tags and ev.error is None:
                return case, ev
    return next(((c, e) for c, e in zip(cases, evals) if e.error is None and c.dtype == "float32"), None)


def fit_model(role: str, cases: list[Case], evals: list[Evaluation]) -> tuple[LogitModel | None, list[str]]:
    """The loss the user's gradients say they wrote (coefficients whole, scale 1), or why not."""
    found = _fit_data(cases, evals)
    if found is None:
        return None, ["the function failed on every case a fit could use"]
    case, ev = found
    ordinary = next(((c, e) for c, e in zip(cases, evals) if "fit" in c.tags and e.error is None), None)
    terms: dict[str, Term] = {}
    reductions: set[str] = set()
    problems = []
    for side in ("real", "fake") if role == "d" else ("fake",):
        logits, grads = ev.inputs[side], ev.grads.get(side)
        if grads is None:
            problems.append(f"no gradient reaches the {side} logits")
            continue
        core = np.abs(logits) <= 4.0
        fitted = fit_term(logits[core], np.reshape(grads, logits.shape)[core])
        if fitted is None:
            problems.append(
                f"the {side} logits' gradient has none of the zoo's shapes (cross-entropy, square, hinge, linear)"
            )
            continue
        term, _ = fitted
        n_fit, coef, reduction = logits.size, term.coef * logits.size, "mean"
        if ordinary is not None and ordinary[0] is not case and ordinary[1].grads.get(side) is not None:
            o_logits, o_grads = ordinary[1].inputs[side], ordinary[1].grads[side]
            alpha_o = weight_on(term, o_logits, o_grads)
            if math.isclose(alpha_o * o_logits.size, term.coef * n_fit, rel_tol=1e-3):
                reduction = "mean"
            elif math.isclose(alpha_o, term.coef, rel_tol=1e-3):
                reduction, coef = "sum", term.coef
            else:
                problems.append(
                    f"the weight of one {side} logit is {term.coef:.4g} at batch {n_fit} and {alpha_o:.4g} at "
                    f"batch {o_logits.size}: neither a mean nor a sum"
                )
        reductions.add(reduction)
        terms[side] = dataclasses.replace(term, coef=nice(coef))
    if problems or len(reductions) != 1:
        if len(reductions) > 1:
            problems.append("one side is averaged and the other summed")
        return None, problems
    model = LogitModel(role, fake=terms["fake"], real=terms.get("real"), reduction=reductions.pop())  # type: ignore[arg-type]
    offsets = []
    for c, e in zip(cases, evals):
        if e.error is None and c.tags.isdisjoint({"scan", "saturated", "reduced"}) and math.isfinite(e.value):
            offsets.append((e.value - model.value(e.inputs), model.magnitude(e.inputs)))
    if offsets:
        values = np.array([o for o, _ in offsets])
        mag = max(max(m for _, m in offsets), 1.0)
        if np.ptp(values) <= 1e-5 * mag and abs(np.mean(values)) > 1e-5 * mag:
            model = dataclasses.replace(model, offset=nice(float(np.mean(values)), rel=1e-6))
    return model, []


def _zoo(loss: LossSpec, role: str) -> dict[str, LogitModel]:
    """The reference first, then the other zoo losses (paper defaults), by name."""
    out = {loss.name: reference_model(loss, role)}  # type: ignore[arg-type]
    for name in LOSS_NAMES:
        if name not in out:
            out[name] = reference_model(LossSpec(name=name), role)  # type: ignore[arg-type]
    if role == "g" and "hinge" in out:
        del out["hinge"]  # the same G loss as wasserstein
    return out


def _ratio_text(rho: float, role: str, kind: str, name: str) -> str:
    if rho == 0.5 and role == "d":
        return "the D loss is halved, ½·(real term + fake term), as in the pix2pix/CycleGAN tutorials"
    if rho == 2.0 and kind == "square":
        return "least squares without the ½ factor: (l - target)² where Mao et al. have (l - target)²/2"
    if rho == -1.0:
        return f"the sign is flipped: this is -({name}), so minimising it maximises {name}"
    return f"the loss is scaled by {rho:.6g}"


def _label_findings(role: str, real_t: float | None, fake_t: float, ref: LogitModel) -> list[Finding]:
    if role == "g":
        return [Finding("target", f"G's target label is {fake_t:g}, not {ref.fake.param:g}", f"fake_target={fake_t:g}")]
    assert real_t is not None
    if real_t != ref.real.param and fake_t == ref.fake.param == 0.0 and ref.real.param == 1.0:
        s = nice(1.0 - real_t)
        text = f"real labels are {real_t:g}: one-sided label smoothing {s:g} (Salimans et al. 2016)"
        if nice(2 * s) in (0.1, 0.2, 0.25, 0.3, 0.5):
            text += (
                f", which is also label smoothing {nice(2 * s):g} toward ½ on real labels (TF-GAN's default is 0.25)"
            )
        return [Finding("label_smoothing", text, f"real_target={real_t:g}")]
    if ref.real.param == 1.0 and ref.fake.param == 0.0 and math.isclose(1.0 - real_t, fake_t, rel_tol=1e-4):
        s = nice(2 * fake_t)
        return [
            Finding(
                "label_smoothing",
                f"label smoothing {s:g} toward ½ on both labels (real {real_t:g}, fake {fake_t:g}): "
                f"Keras' BinaryCrossentropy(label_smoothing={s:g}) used for both terms",
                f"label_smoothing_both={s:g}",
            )
        ]
    return [
        Finding(
            "target",
            f"label targets real {real_t:g} and fake {fake_t:g} (not {ref.real.param:g} and {ref.fake.param:g})",
            f"real_target={real_t:g},fake_target={fake_t:g}",
        )
    ]


def deviations(fitted: LogitModel, ref: LogitModel, name: str) -> list[Finding] | None:
    """What turns ``ref`` into ``fitted``, or None when a side has another shape."""
    sides_f, sides_r = fitted.sides(), ref.sides()
    if any(sides_f[s].kind != sides_r[s].kind or sides_f[s].side != sides_r[s].side for s in sides_r):
        return None
    findings: list[Finding] = []
    kind = sides_r["fake"].kind
    params_f = {s: sides_f[s].param for s in sides_r}
    params_r = {s: sides_r[s].param for s in sides_r}
    if params_f != params_r:
        if kind == "bce":
            findings += _label_findings(fitted.role, params_f.get("real"), params_f["fake"], ref)
        elif kind == "square":
            names = {"fake": "a", "real": "b"} if fitted.role == "d" else {"fake": "c"}
            got = ", ".join(f"{names[s]}={params_f[s]:g}" for s in names)
            want = ", ".join(f"{names[s]}={params_r[s]:g}" for s in names)
            extra = (
                " (Mao et al.'s eq. 8)"
                if fitted.role == "d" and (params_f["fake"], params_f["real"]) == (-1, 1)
                else ""
            )
            findings.append(
                Finding(
                    "targets",
                    f"least squares targets {got}{extra}, where the reference has {want}",
                    got.replace(" ", ""),
                )
            )
        elif kind == "hinge":
            m = params_f["fake"]
            findings.append(Finding("margin", f"hinge margin {m:g}, not {params_r['fake']:g}", f"margin={m:g}"))
    rhos = {s: nice(sides_f[s].coef / (ref.scale * sides_r[s].coef)) for s in sides_r}
    if len(set(rhos.values())) > 1:
        text = ", ".join(f"{s} term ×{r:g}" for s, r in rhos.items())
        findings.append(Finding("weights", f"the terms are weighted unevenly against {name}: {text}"))
    elif (rho := next(iter(rhos.values()))) != 1.0:
        findings.append(Finding("scale", _ratio_text(rho, fitted.role, kind, name), f"scale={rho:g}"))
    if fitted.reduction != ref.reduction:
        findings.append(reduction_finding(fitted.reduction))
    if fitted.offset != ref.offset:
        c = fitted.offset - ref.offset
        findings.append(
            Finding("offset", f"adds the constant {name_constant(c)} (it changes no gradient)", f"offset={c:.6g}")
        )
    return findings


def reduction_finding(found: str) -> Finding:
    """A loss reduced by ``found`` where the reference reduces the other way."""
    if found == "sum":
        return Finding(
            "reduction",
            "sums over the logits instead of averaging them: the loss grows with the batch",
            "reduction=sum",
        )
    return Finding("reduction", "averages over the logits where the spec sums them", "reduction=mean")


SWAPPED = Finding(
    "swapped",
    "the real and fake logits are swapped: the function reads its arguments as (fake, real), "
    "losscheck calls fn(real_logits, fake_logits)",
)


def name_model(fitted: LogitModel, loss: LossSpec) -> tuple[str, list[Finding]]:
    """The zoo loss ``fitted`` is nearest to, and what differs from it. A D loss is also tried with
    its two sides exchanged: arguments taken in the other order are a common slip."""
    candidates = [(fitted, [])]
    if fitted.role == "d":
        candidates.append((dataclasses.replace(fitted, real=fitted.fake, fake=fitted.real), [SWAPPED]))
    best: tuple[str, list[Finding]] | None = None
    for model_fitted, extra in candidates:
        for name, model in _zoo(loss, fitted.role).items():
            found = deviations(model_fitted, model, name)
            if found is not None and (best is None or len(found) + len(extra) < len(best[1])):
                best = (name, extra + found)
    if best is None:
        return "", [Finding("shape", f"a loss of another shape: {fitted.formula()}")]
    name, found = best
    if name != loss.name:
        found.insert(0, Finding("loss", f"this is the {name} loss, not {loss.name} (run losscheck with --loss {name})"))
    return name, found


@dataclass
class SideRange:
    value: tuple[float, float]
    grad: tuple[float, float]
    plateau: dict[str, float | str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"value": list(self.value), "grad": list(self.grad), "plateau": self.plateau}


def _agree_interval(grid: np.ndarray, agrees: Callable[[float], bool] | np.ndarray) -> tuple[int, int]:
    """Indices of the run of agreeing points around the logit closest to 0, walking outward
    from it and stopping at the first disagreement (each check may be a call of the user's loss)."""
    ok = agrees if isinstance(agrees, np.ndarray) else None

    def good(i: int) -> bool:
        return bool(ok[i]) if ok is not None else agrees(float(grid[i]))  # type: ignore[operator]

    centre = int(np.argmin(np.abs(grid)))
    lo = hi = centre
    while lo > 0 and good(lo - 1):
        lo -= 1
    while hi < len(grid) - 1 and good(hi + 1):
        hi += 1
    return lo, hi


def _bisect(good: float, bad: float, agrees: Callable[[float], bool], steps: int = 14) -> float:
    for _ in range(steps):
        mid = 0.5 * (good + bad)
        good, bad = (mid, bad) if agrees(mid) else (good, mid)
    return good


def _plateau_text(value: float) -> str:
    if not math.isfinite(value):
        return f"{value}: the log of a probability that rounded to 0 or 1, unclamped"
    if abs(value - 100.0) < 0.05:
        return "100: the log clamped at -100 (torch.nn.BCELoss / F.binary_cross_entropy)"
    for eps, who in ((1e-7, "Keras' epsilon 1e-7"), (1e-8, "1e-8"), (1e-12, "1e-12"), (1e-6, "1e-6")):
        if abs(value + math.log(eps)) < 0.2:
            return f"{value:.4g} = -log({eps:g}): the probability clipped at {eps:g} ({who})"
    return f"{value:.4g}: the probability clipped near exp(-{value:.4g}) = {math.exp(-value):.3g}"


def scan_ranges(
    fitted: LogitModel, grid: np.ndarray, run: Callable[[dict[str, np.ndarray]], Evaluation], scan_eval: Evaluation
) -> dict[str, SideRange]:
    """Per side, the logits where the user's value and gradient agree with ``fitted`` within 1%,
    its edges refined by bisection with batch-of-one calls, and the plateau beyond them."""
    out = {}
    sides = fitted.sides()
    for side, term in sides.items():
        others = {s: np.zeros((1, 1)) for s in sides if s != side}

        def one(logit: float, side: str = side, others: dict = others) -> Evaluation:
            return run({side: np.full((1, 1), logit), **others})

        zero = one(0.0)

        def value_ok(logit: float, term: Term = term, one=one, zero=zero) -> bool:
            ev = one(logit)
            if ev.error or zero.error:
                return False
            got = (ev.value - zero.value) / fitted.scale
            want = float(term.value(np.array(logit)) - term.value(np.array(0.0)))
            return bool(abs(got - want) <= RANGE_TOLERANCE * max(abs(term.coef), abs(want)))

        def grad_ok(logit: float, term: Term = term, one=one, side: str = side) -> bool:
            ev = one(logit)
            g = None if ev.error else ev.grads.get(side)
            if g is None:
                return False
            want = float(term.grad(np.array(logit))) * fitted.scale
            return bool(abs(float(np.ravel(g)[0]) - want) <= RANGE_TOLERANCE * abs(term.coef * fitted.scale))

        logits = scan_eval.inputs[side].ravel()
        order = np.argsort(logits)
        grid_s = logits[order]
        grads = np.ravel(scan_eval.grads[side])[order] if scan_eval.grads.get(side) is not None else None
        weight = fitted.scale * term.coef / (logits.size if fitted.reduction == "mean" else 1)
        g_ok = (
            np.abs(grads - weight * term.dphi(grid_s)) <= RANGE_TOLERANCE * abs(weight)
            if grads is not None
            else np.zeros_like(grid_s, bool)
        )
        # Values need one call per logit: a coarser grid (every 1 on [-25, 25]), refined by bisection.
        v_grid = grid_s[(np.abs(grid_s) > 25) | (grid_s == np.round(grid_s))]
        ranges = []
        for points, ok, check in ((v_grid, value_ok, value_ok), (grid_s, g_ok, grad_ok)):
            lo, hi = _agree_interval(points, ok)
            left = -math.inf if lo == 0 else _bisect(float(points[lo]), float(points[lo - 1]), check)
            right = math.inf if hi == len(points) - 1 else _bisect(float(points[hi]), float(points[hi + 1]), check)
            ranges.append((round(left, 2), round(right, 2)))
        sr = SideRange(ranges[0], ranges[1])
        for end, far in (("low", float(grid_s[0])), ("high", float(grid_s[-1]))):
            if (end == "low" and ranges[0][0] > -math.inf) or (end == "high" and ranges[0][1] < math.inf):
                ev, ev2 = one(far), one(far * 0.9)
                if ev.error is None and ev2.error is None and zero.error is None:
                    per = (ev.value - zero.value) / (fitted.scale * term.coef) + float(term.phi(np.array(0.0)))
                    per2 = (ev2.value - zero.value) / (fitted.scale * term.coef) + float(term.phi(np.array(0.0)))
                    if not math.isfinite(per) or abs(per - per2) <= 1e-4 * max(abs(per), 1.0):
                        sr.plateau[end] = per if math.isfinite(per) else str(per)
        out[side] = sr
    return out


def _fmt_range(r: tuple[float, float]) -> str:
    lo, hi = r
    if lo == -math.inf and hi == math.inf:
        return "every scanned logit"
    if lo == -math.inf:
        return f"l ≤ {hi:g}"
    if hi == math.inf:
        return f"l ≥ {lo:g}"
    return f"{lo:g} ≤ l ≤ {hi:g}"


def saturation_finding(ranges: dict[str, SideRange], name: str) -> Finding:
    parts, beyond = [], []
    for side, sr in ranges.items():
        parts.append(f"{side} logits: value for {_fmt_range(sr.value)}, gradient for {_fmt_range(sr.grad)}")
        for end, plateau in sr.plateau.items():
            p = float(plateau) if not isinstance(plateau, str) else float(plateau)
            beyond.append(
                f"the {side} term plateaus at {_plateau_text(p)} ({'below' if end == 'low' else 'above'} the range)"
            )
    text = (
        f"only inside the logit range where its probabilities do not saturate (within {RANGE_TOLERANCE:.0%}): "
        + "; ".join(parts)
    )
    if beyond:
        text += ". Beyond, " + "; ".join(beyond)
    text += ". It is computed from sigmoid probabilities; the zoo's form on logits (softplus) is exact everywhere"
    return Finding("probabilities", text, "probabilities=true")
