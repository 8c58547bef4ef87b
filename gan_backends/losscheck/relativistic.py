"""Float64 model of the relativistic losses (Jolicoeur-Martineau 2018) and the ways users write them.

With ``C_r``, ``C_f`` the real and fake logits, ``R`` the reduction (the mean over every logit,
or a sum) and ``s`` the loss weight (``d_scale`` / ``g_scale``)::

    average (rasgan, ralsgan, rahinge)    u = C_r - mean C_f,   v = C_f - mean C_r
        D: s·[R ρ(u) + R φ(v)]            G: s·[R φ(u) + R ρ(v)]
    pairing (rpgan)                       D: s·R softplus(-(C_r - C_f))   G: s·R softplus(-(C_f - C_r))

``ρ``, ``φ`` are :func:`gan_backends.losses.relativistic_forms`, the formulas training uses, so
the value judged is the value trained. Writing ``A``, ``B`` for the role's real- and fake-side
forms and ``w_n`` for a logit's weight (``1/n`` for a mean, 1 for a sum), the gradients are::

    ∂L/∂C_r[k] = s·[w_r A'(u_k) - (1/N_r)·w_f Σ_j B'(v_j)]
    ∂L/∂C_f[k] = s·[w_f B'(v_k) - (1/N_f)·w_r Σ_i A'(u_i)]

where the second terms, the paths through the averages, are absent when the average is
detached (``detached``: BasicSR's ESRGAN writes ``mean(C_f.detach())``). The variants a user
writes (:class:`RelativisticModel`'s fields) are what :mod:`.relativistic_diagnosis` fits.
G's gradient is judged on the fake logits only: ``D(real)`` is a constant of G's step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..losses import NUMPY_OPS, relativistic_forms, sigmoid, softplus
from ..spec import LossSpec

AVERAGE_FORMS = ("rasgan", "ralsgan", "rahinge")
FORMS = (*AVERAGE_FORMS, "rpgan")

#: ``(ρ', φ')``: the derivatives of :func:`~gan_backends.losses.relativistic_forms`.
_DERIVATIVES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "rasgan": (lambda t: -sigmoid(-t), sigmoid),
    "ralsgan": (lambda t: 2.0 * (t - 1.0), lambda t: 2.0 * (t + 1.0)),
    "rahinge": (lambda t: -(1.0 - t > 0).astype(np.float64), lambda t: (1.0 + t > 0).astype(np.float64)),
}
_WRITTEN = {
    "rasgan": ("softplus(-({t}))", "softplus({t})"),
    "ralsgan": ("({t} - 1)²", "({t} + 1)²"),
    "rahinge": ("relu(1 - ({t}))", "relu(1 + {t})"),
}


@dataclass(frozen=True)
class RelativisticModel:
    """One relativistic D or G loss as a user may write it; the module docstring has the math."""

    form: str
    role: Literal["d", "g"]
    scale: float = 1.0
    reduction: Literal["mean", "sum"] = "mean"
    #: The average of the other kind is detached: no gradient through ``mean C_f`` / ``mean C_r``.
    detached: bool = False
    #: G only: False when G's loss drops its real-side term ``φ(C_r - mean C_f)``.
    real_term: bool = True
    #: The function reads its arguments as (fake, real).
    swapped: bool = False
    offset: float = 0.0

    @property
    def pairing(self) -> bool:
        return self.form == "rpgan"

    def _w(self, x: np.ndarray) -> float:
        return 1.0 / x.size if self.reduction == "mean" else 1.0

    def _red(self, x: np.ndarray) -> float:
        return float(np.sum(x)) * self._w(x)

    def _forms(self) -> tuple[Callable, Callable, Callable, Callable]:
        """``(A, B, A', B')``: the real- and fake-side forms of this role and their derivatives."""
        rho, phi = relativistic_forms(NUMPY_OPS, LossSpec(name=self.form))  # type: ignore[arg-type]
        drho, dphi = _DERIVATIVES[self.form]
        return (rho, phi, drho, dphi) if self.role == "d" else (phi, rho, dphi, drho)

    def _ordered(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        real, fake = np.asarray(inputs["real"], np.float64), np.asarray(inputs["fake"], np.float64)
        return (fake, real) if self.swapped else (real, fake)

    def _terms(self, real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The per-logit terms on the real and the fake side (the real side holds the pair term)."""
        if self.pairing:
            pair = real - fake if self.role == "d" else fake - real
            return softplus(-pair), np.zeros_like(fake)
        a, b, _, _ = self._forms()
        u, v = real - np.mean(fake), fake - np.mean(real)
        on_real = a(u) if self.role == "d" or self.real_term else np.zeros_like(real)
        return on_real, b(v)

    def value(self, inputs: dict[str, np.ndarray]) -> float:
        on_real, on_fake = self._terms(*self._ordered(inputs))
        return self.scale * (self._red(on_real) + self._red(on_fake)) + self.offset

    def magnitude(self, inputs: dict[str, np.ndarray]) -> float:
        """The size of the value before its terms cancel: the yardstick for its rounding error."""
        on_real, on_fake = self._terms(*self._ordered(inputs))
        return abs(self.scale) * (self._red(np.abs(on_real)) + self._red(np.abs(on_fake))) + abs(self.offset)

    def _all_grads(self, real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.pairing:
            if real.shape != fake.shape:
                raise ValueError(f"rpgan pairs logits: real {real.shape} and fake {fake.shape} differ")
            sign = 1.0 if self.role == "d" else -1.0
            d_pair = -sigmoid(-sign * (real - fake)) * self.scale * self._w(real)
            return sign * d_pair, -sign * d_pair
        _, _, da, db = self._forms()
        u, v = real - np.mean(fake), fake - np.mean(real)
        ga = da(u) * (self._w(real) if self.role == "d" or self.real_term else 0.0)
        gb = db(v) * self._w(fake)
        through = 0.0 if self.detached else 1.0
        d_real = ga - through * np.sum(gb) / real.size
        d_fake = gb - through * np.sum(ga) / fake.size
        return self.scale * d_real, self.scale * d_fake

    def grads(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        first, second = self._all_grads(*self._ordered(inputs))
        d_real, d_fake = (second, first) if self.swapped else (first, second)
        return {"real": d_real, "fake": d_fake} if self.role == "d" else {"fake": d_fake}

    def grad_floor(self, inputs: dict[str, np.ndarray]) -> float:
        """A thousandth of one logit's weight: the gradient yardstick where every term is flat."""
        return 1e-3 * abs(self.scale) * max(self._w(np.asarray(inputs[s])) for s in ("real", "fake"))

    def formula(self) -> str:
        red = "mean" if self.reduction == "mean" else "sum"
        if self.pairing:
            pair = "C_r - C_f" if self.role == "d" else "C_f - C_r"
            body = f"{red}(softplus(-({pair})))"
        else:
            a, b = _WRITTEN[self.form] if self.role == "d" else _WRITTEN[self.form][::-1]
            mf, mr = (
                ("stop_gradient(mean(C_f))", "stop_gradient(mean(C_r))")
                if self.detached
                else ("mean(C_f)", "mean(C_r)")
            )
            parts = [f"{red}({b.format(t=f'C_f - {mr}')})"]
            if self.role == "d" or self.real_term:
                parts.insert(0, f"{red}({a.format(t=f'C_r - {mf}')})")
            body = " + ".join(parts)
        text = body if self.scale == 1.0 else f"{self.scale:.6g}·[{body}]"
        text += f" {'+' if self.offset > 0 else '-'} {abs(self.offset):.6g}" if self.offset else ""
        return text + (" (arguments read as (fake, real))" if self.swapped else "")


def reference_relativistic(loss: LossSpec, role: str) -> RelativisticModel:
    """The zoo's relativistic loss ``loss`` for ``role`` ("d" or "g"), with its weight."""
    if role not in ("d", "g"):
        raise ValueError(f"a relativistic loss has roles d and g, not {role!r}")
    scale = loss.d_scale if role == "d" else loss.g_scale
    return RelativisticModel(loss.name, role, scale=scale, reduction=loss.reduction)  # type: ignore[arg-type]


def variants(ref: RelativisticModel) -> list[RelativisticModel]:
    """Every way of writing a relativistic loss the diagnosis tries, with scale 1 (it is fitted)."""
    out = []
    for form in FORMS:
        pairing = form == "rpgan"
        for detached in (False,) if pairing else (False, True):
            for real_term in (True,) if pairing or ref.role == "d" else (True, False):
                for reduction in ("mean", "sum"):
                    for swapped in (False, True):
                        out.append(
                            dataclasses.replace(
                                ref, form=form, scale=1.0, detached=detached, real_term=real_term,
                                reduction=reduction, swapped=swapped, offset=0.0,
                            )
                        )  # fmt: skip
    return out
