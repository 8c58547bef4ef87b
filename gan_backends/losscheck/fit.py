"""Fitting a per-sample term to a user's per-logit gradients, and naming numbers.

A mean-reduced loss's gradient w.r.t. logit ``l_i`` is ``α·φ'(l_i)`` (``α = coef/N``), so each
side's gradients over a range of logits identify the term's shape and parameter by linear
least squares (:mod:`gan_backends.losscheck.models` lists the shapes):

    bce(t):     ∂/∂l = α·sigmoid(l) - α·t      regress on [sigmoid(l), 1]
    square(p):  ∂/∂l = α·l - α·p               regress on [l, 1]
    linear:     ∂/∂l = α                       a constant
    hinge(p,s): ∂/∂l = -α·s on one side of p, 0 on the other: p lies between the two sets
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..losses import sigmoid
from .models import Term

#: A shape fits when its largest residual is below this fraction of the largest gradient.
FIT_TOLERANCE = 1e-3


def nice(x: float, rel: float = 1e-4) -> float:
    """``x`` as the simplest decimal or fraction within ``rel`` (0.8999997 -> 0.9, 0.4999 -> 0.5)."""
    if not math.isfinite(x) or x == 0:
        return x
    for digits in range(0, 7):
        r = round(x, digits)
        if abs(r - x) <= rel * max(abs(x), 1e-12):
            return r
    frac = Fraction(x).limit_denominator(64)
    return float(frac) if abs(float(frac) - x) <= rel * abs(x) else x


def snap(x: float, step: float = 1e-5) -> float:
    """A fitted target: float32 gradients pin it to about 1e-7, so round it to ``step``, then :func:`nice`."""
    return nice(round(x / step) * step) + 0.0


def simplest_in(lo: float, hi: float) -> float:
    """The simplest number in ``(lo, hi]``: an integer, else a half, a tenth, … (a hinge's margin)."""
    for step in (1.0, 0.5, 0.25, 0.1, 0.05, 0.01):
        k = math.floor(hi / step)
        if k * step > lo:
            return k * step
    return hi


def _residual(g: np.ndarray, pred: np.ndarray) -> float:
    top = float(np.max(np.abs(g)))
    return float(np.max(np.abs(g - pred))) / top if top > 0 else float(np.max(np.abs(pred)) > 0)


def fit_term(logits: np.ndarray, grads: np.ndarray) -> tuple[Term, float] | None:
    """The first shape of linear, hinge, square, bce that fits, as a Term whose ``coef`` is the
    per-logit weight ``α``, and its residual; None when none fits (or the gradients are zero)."""
    x, g = np.ravel(logits).astype(np.float64), np.ravel(grads).astype(np.float64)
    top = float(np.max(np.abs(g))) if g.size else 0.0
    if top == 0 or not np.all(np.isfinite(g)):
        return None
    candidates: list[tuple[Term, float]] = []
    mean = float(np.mean(g))
    candidates.append((Term("linear", coef=mean), _residual(g, np.full_like(g, mean))))
    active = np.abs(g) > 1e-3 * top
    if active.any() and (~active).any():
        level = float(np.median(g[active]))
        if np.max(x[active]) < np.min(x[~active]):  # active below the margin: relu(p - x)
            side, margin = 1.0, simplest_in(float(np.max(x[active])), float(np.min(x[~active])))
        elif np.min(x[active]) > np.max(x[~active]):  # active above -p: relu(p + x)
            side, margin = -1.0, simplest_in(-float(np.min(x[active])), -float(np.max(x[~active])))
        else:
            side = 0.0
        if side:
            term = Term("hinge", margin, side=side, coef=-level * side)
            candidates.append((term, _residual(g, term.grad(x))))
    for kind, feature in (("square", x), ("bce", sigmoid(x))):
        design = np.stack([feature, np.ones_like(x)], axis=1)
        (slope, intercept), *_ = np.linalg.lstsq(design, g, rcond=None)
        if abs(slope) <= 1e-6 * top:
            continue
        term = Term(kind, snap(-intercept / slope), coef=float(slope))
        candidates.append((term, _residual(g, term.grad(x))))
    for term, residual in candidates:
        if residual <= FIT_TOLERANCE:
            return term, residual
    return None


def weight_on(term: Term, logits: np.ndarray, grads: np.ndarray) -> float:
    """The least-squares per-logit weight ``α`` of ``term``'s shape in other gradients."""
    d = np.ravel(term.dphi(np.ravel(logits)))
    denom = float(d @ d)
    return float(d @ np.ravel(grads)) / denom if denom > 0 else math.nan


KNOWN_CONSTANTS: dict[str, float] = {
    "log 2": math.log(2.0),
    "log 4": math.log(4.0),
    "-log 2": -math.log(2.0),
    "-log 4": -math.log(4.0),
}


def name_constant(c: float) -> str:
    for name, value in KNOWN_CONSTANTS.items():
        if abs(c - value) <= 1e-4 * abs(value):
            return f"{c:.6g} (= {name})"
    return f"{nice(c):.6g}"
