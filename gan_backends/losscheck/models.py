"""Float64 models of GAN losses on logits: the zoo's losses and every convention variant of them.

A discriminator or generator loss of the zoo is, per side, a mean of one per-sample *term*
``coef · φ(l)`` of the logit ``l`` (formulas in :mod:`gan_backends.losses`)::

    d_loss = scale · [coef_r · red_i φ_r(l_real_i) + coef_f · red_i φ_f(l_fake_i)] + offset
    g_loss = scale ·  coef_g · red_i φ_g(l_fake_i)                                 + offset

with ``red`` the mean over every logit (``reduction="mean"``) or their sum, and ``φ`` one of
four shapes, each with one parameter ``p``:

    bce(t)       t·softplus(-l) + (1-t)·softplus(l)     φ' = sigmoid(l) - t    (cross-entropy, target t)
    square(p)    (l - p)² / 2                            φ' = l - p             (least squares, target p)
    hinge(p, s)  relu(p - s·l)                           φ' = -s·[p - s·l > 0]  (margin p, side s = ±1)
    linear       l                                       φ' = 1                 (Wasserstein)

A user's loss that follows another convention (label smoothing, a ½ factor, a sum, a constant)
is the same formula with other ``t``, ``p``, ``coef``, ``reduction`` or ``offset``; this is what
:mod:`gan_backends.losscheck.diagnose` fits and names. Everything here is NumPy float64.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..losses import sigmoid, softplus
from ..spec import LossSpec

TermKind = Literal["bce", "square", "hinge", "linear"]
Role = Literal["d", "g", "penalty"]
ROLES: tuple[str, ...] = ("d", "g", "penalty")


@dataclass(frozen=True)
class Term:
    """One side's per-sample loss ``coef · φ(l)``; see the module docstring for the shapes."""

    kind: TermKind
    param: float = 0.0
    side: float = 1.0  # hinge only: s in relu(p - s·l)
    coef: float = 1.0

    def phi(self, logits: np.ndarray) -> np.ndarray:
        if self.kind == "bce":
            return self.param * softplus(-logits) + (1.0 - self.param) * softplus(logits)
        if self.kind == "square":
            return 0.5 * (logits - self.param) ** 2
        if self.kind == "hinge":
            return np.maximum(self.param - self.side * logits, 0.0)
        return np.asarray(logits, dtype=np.float64)

    def dphi(self, logits: np.ndarray) -> np.ndarray:
        if self.kind == "bce":
            return sigmoid(logits) - self.param
        if self.kind == "square":
            return logits - self.param
        if self.kind == "hinge":
            return np.where(self.param - self.side * logits > 0, -self.side, 0.0)
        return np.ones_like(logits, dtype=np.float64)

    def value(self, logits: np.ndarray) -> np.ndarray:
        return self.coef * self.phi(logits)

    def grad(self, logits: np.ndarray) -> np.ndarray:
        return self.coef * self.dphi(logits)

    def formula(self) -> str:
        """The per-sample term as a formula, e.g. ``-0.5·softplus(l)``."""
        if self.kind == "bce":
            if self.param == 1.0:
                body = "softplus(-l)"
            elif self.param == 0.0:
                body = "softplus(l)"
            else:
                body = f"{_num(self.param)}·softplus(-l) + {_num(1 - self.param)}·softplus(l)"
        elif self.kind == "square":
            body = f"(l - {_num(self.param)})²/2" if self.param else "l²/2"
        elif self.kind == "hinge":
            body = f"relu({_num(self.param)} {'-' if self.side > 0 else '+'} l)"
        else:
            body = "l"
        if self.coef == 1.0:
            return body
        if self.coef == -1.0:
            return f"-{body}" if self.kind in ("linear", "hinge") or "+" not in body else f"-({body})"
        return f"{_num(self.coef)}·({body})" if "+" in body else f"{_num(self.coef)}·{body}"


def _num(x: float) -> str:
    return f"{x:.6g}"


@dataclass(frozen=True)
class LogitModel:
    """A whole D or G loss on logits (``real`` is None for G); the module docstring has the formula."""

    role: Role
    fake: Term
    real: Term | None = None
    scale: float = 1.0
    reduction: Literal["mean", "sum"] = "mean"
    offset: float = 0.0

    def _red(self, x: np.ndarray) -> float:
        return float(np.sum(x) / (x.size if self.reduction == "mean" else 1.0))

    def _weight(self, logits: np.ndarray) -> float:
        return self.scale / (logits.size if self.reduction == "mean" else 1.0)

    def sides(self) -> dict[str, Term]:
        return {"real": self.real, "fake": self.fake} if self.real is not None else {"fake": self.fake}

    def value(self, inputs: dict[str, np.ndarray]) -> float:
        return self.scale * sum(self._red(t.value(inputs[s])) for s, t in self.sides().items()) + self.offset

    def grads(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {s: self._weight(inputs[s]) * t.grad(inputs[s]) for s, t in self.sides().items()}

    def magnitude(self, inputs: dict[str, np.ndarray]) -> float:
        """The size of the value before its terms cancel: the yardstick for its rounding error."""
        return abs(self.scale) * sum(self._red(np.abs(t.value(inputs[s]))) for s, t in self.sides().items()) + abs(
            self.offset
        )

    def grad_floor(self, inputs: dict[str, np.ndarray]) -> float:
        """A thousandth of one logit's weight: the gradient yardstick where every term is flat
        (a hinge with every logit past its margin has a zero gradient)."""
        return 1e-3 * max(abs(self._weight(inputs[s]) * t.coef) for s, t in self.sides().items())

    def formula(self) -> str:
        red = "mean" if self.reduction == "mean" else "sum"
        parts = [f"{red}({t.formula()}) over {s} logits" for s, t in self.sides().items()]
        body = " + ".join(parts)
        text = body if self.scale == 1.0 else f"{_num(self.scale)}·[{body}]"
        return text + (f" {'+' if self.offset > 0 else '-'} {_num(abs(self.offset))}" if self.offset else "")


def reference_model(loss: LossSpec, role: Role) -> LogitModel:
    """The zoo's loss ``loss`` for ``role`` ("d" or "g") as a :class:`LogitModel`, every option of
    the spec applied (``d_scale``/``g_scale``, least squares' targets, the label smoothings, the
    hinge margin, the reduction): the
    formulas of :mod:`gan_backends.losses`, term by term."""
    name = loss.name
    if role == "g":
        if name == "minimax":
            term = Term("bce", 0.0, coef=-1.0)
        elif name == "non_saturating":
            term = Term("bce", 1.0)
        elif name == "least_squares":
            term = Term("square", loss.c)
        else:  # hinge and wasserstein: G maximises the critic's score
            term = Term("linear", coef=-1.0)
        return LogitModel("g", fake=term, scale=loss.g_scale, reduction=loss.reduction)
    if role != "d":
        raise ValueError(f"reference_model covers roles d and g, not {role!r}")
    if name in ("minimax", "non_saturating"):
        real, fake = Term("bce", loss.real_target), Term("bce", loss.fake_target)
    elif name == "least_squares":
        real, fake = Term("square", loss.b), Term("square", loss.a)
    elif name == "hinge":
        m = loss.hinge_margin
        real, fake = Term("hinge", m, side=1.0), Term("hinge", m, side=-1.0)
    else:
        real, fake = Term("linear", coef=-1.0), Term("linear", coef=1.0)
    return LogitModel("d", fake=fake, real=real, scale=loss.d_scale, reduction=loss.reduction)


def with_term(model: LogitModel, side: str, **changes: float) -> LogitModel:
    """``model`` with one side's term changed."""
    return dataclasses.replace(model, **{side: dataclasses.replace(model.sides()[side], **changes)})
