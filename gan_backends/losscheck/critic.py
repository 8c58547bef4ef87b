"""The critic the penalty battery hands to a user's gradient penalty, and the penalty in float64.

The critic is small, smooth where it matters and exact in float64 by hand::

    D(x) = v · φ(W·vec(x) + b) + c,    φ(h) = relu(h)² / 2,    vec = flatten in NHWC order

so its input gradient ``g = ∇_x D = Wᵀ (v ⊙ relu(h))`` is *exactly* zero, in every precision,
at an input where every ``h_k ≤ 0`` (the "norm at 0" case), and it depends on ``W``, ``v`` and
``x``, so a penalty's gradient with respect to the parameters and the inputs is not trivial.

A penalty of per-sample input gradients ``g_i`` (at ``x̂_i = α_i·real_i + (1-α_i)·fake_i``)::

    wgan_gp (Gulrajani et al. 2017, eq. 3)   λ · mean_i (‖g_i‖ - γ)²/γ²   (one-sided: relu(‖g_i‖ - γ)²/γ²;
                                             norm target γ = 1 but in Karras et al. 2017)
    r1 (Mescheder et al. 2018, eq. 9)         γ/2 · mean_i ‖g_i‖²          (at x̂ = real)
    r2 (the same paper, eq. 10)               γ/2 · mean_i ‖g_i‖²          (at x̂ = fake)
    r1_r2 (Huang et al. 2025, R3GAN)          γ/2 · (mean_i ‖g_i‖² at real + mean_i ‖g_i‖² at fake)

``‖g_i‖`` is the norm over *every* axis but the batch. Its derivative at ``g = 0`` is taken as
its limit with ``sqrt(‖g‖² + ε)``, ε → 0: zero (torch.norm's choice; ``tf.norm`` and
``jnp.linalg.norm`` give NaN there). The *variants* (:class:`PenaltyForm`) take the norm over
other axes, drop the square root's epsilon, swap α, or are one-sided: what users write.

Backpropagating ``u_i = ∂P/∂g_i`` through ``g = Q·W`` with ``Q = v ⊙ relu(H)``, ``H = X·Wᵀ + b``
(rows are samples)::

    ∂P/∂W = Qᵀ·U + Eᵀ·X,  R = U·Wᵀ,  ∂P/∂v = Σ_i R ⊙ relu(H),  E = R ⊙ v ⊙ [H > 0],
    ∂P/∂b = Σ_i E,  ∂P/∂X = E·W,  ∂P/∂c = 0,  ∂P/∂real = α·∂P/∂X,  ∂P/∂fake = (1-α)·∂P/∂X
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

#: The critic's parameter names, in the canonical layout every runner converts from.
CRITIC_PARAMS: tuple[str, ...] = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")


@dataclass(frozen=True)
class Critic:
    """``W`` (k, d), ``b`` (k,), ``v`` (k,), ``c`` (); inputs are NHWC (or flat) samples of ``d`` values."""

    weight: np.ndarray
    bias: np.ndarray
    out_weight: np.ndarray
    out_bias: float

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {
            "hidden.weight": self.weight,
            "hidden.bias": self.bias,
            "out.weight": self.out_weight,
            "out.bias": np.asarray(self.out_bias, dtype=np.float64),
        }

    def hidden(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1) @ self.weight.T + self.bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.maximum(self.hidden(x), 0.0)
        return (0.5 * h * h) @ self.out_weight + self.out_bias

    def input_grad(self, x: np.ndarray) -> np.ndarray:
        """``∇_x D`` per sample, shaped like ``x``."""
        q = self.out_weight * np.maximum(self.hidden(x), 0.0)
        return (q @ self.weight).reshape(x.shape)

    def backprop(self, x: np.ndarray, u: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Given ``u = ∂P/∂g`` (shaped like ``x``), ``∂P/∂params`` and ``∂P/∂x`` (module docstring)."""
        flat_x, flat_u = x.reshape(x.shape[0], -1), u.reshape(u.shape[0], -1)
        h = self.hidden(x)
        relu_h = np.maximum(h, 0.0)
        q = self.out_weight * relu_h
        r = flat_u @ self.weight.T
        e = r * self.out_weight * (h > 0)
        grads = {
            "hidden.weight": q.T @ flat_u + e.T @ flat_x,
            "hidden.bias": e.sum(axis=0),
            "out.weight": (r * relu_h).sum(axis=0),
            "out.bias": np.zeros((), dtype=np.float64),
        }
        return grads, (e @ self.weight).reshape(x.shape)


def make_critic(sample_shape: tuple[int, ...], hidden: int, seed: int, dead_at: np.ndarray) -> Critic:
    """A critic over ``sample_shape`` whose every hidden unit is off (``h = -1/2``) at ``dead_at``,
    so ``∇_x D(dead_at) = 0`` exactly; ``v`` is scaled so that at unit-normal inputs around
    ``dead_at`` the median input-gradient norm is 1: both sides of the two-sided penalty occur."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(sample_shape))
    weight = rng.normal(0.0, 1.0 / np.sqrt(d), size=(hidden, d))
    bias = -(weight @ dead_at.reshape(-1)) - 0.5
    out_weight = rng.normal(0.0, 1.0, size=hidden)
    probe = dead_at + rng.normal(size=(256, *sample_shape))
    critic = Critic(weight, bias, out_weight, 0.3)
    norms = np.sqrt((critic.input_grad(probe) ** 2).reshape(256, -1).sum(axis=1))
    return Critic(weight, bias, out_weight / np.median(norms), 0.3)


@dataclass(frozen=True)
class PenaltyForm:
    """One way of writing the penalty: its norm axes (None: every non-batch axis), the square
    root's epsilon, one- or two-sided, α on real or on fake, the reduction and the weight."""

    kind: str = "wgan_gp"  # "wgan_gp" | "r1" | "r2" | "r1_r2"
    axes: tuple[int, ...] | None = None
    eps: float = 0.0
    one_sided: bool = False
    swapped: bool = False
    reduction: str = "mean"
    weight: float = 10.0
    squared: bool = True  # r1 only: ‖g‖² (True) or ‖g‖
    element_mean: bool = False  # g² averaged over each sample's values instead of summed
    target: float = 1.0  # wgan_gp only: the norm target γ

    @property
    def squared_norm(self) -> bool:
        """R1, R2 and their sum: penalties of ``‖g‖²`` (WGAN-GP's is of ``‖g‖``'s distance to γ)."""
        return self.kind in ("r1", "r2", "r1_r2")

    def sites(self, real: np.ndarray, fake: np.ndarray, alpha: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Where the input gradient is taken, each with ``(x, ∂x/∂real as a factor)``: ``∂x/∂fake``
        is one minus it (WGAN-GP's ``x̂ = α·real + (1 - α)·fake``; R1 at real: 1; R2 at fake: 0)."""
        if self.kind == "wgan_gp":
            a = 1.0 - alpha if self.swapped else alpha
            return [(a * real + (1.0 - a) * fake, a)]
        one, zero = np.ones_like(alpha), np.zeros_like(alpha)
        return {"r1": [(real, one)], "r2": [(fake, zero)]}.get(self.kind, [(real, one), (fake, zero)])

    def _norm_axes(self, ndim: int) -> tuple[int, ...]:
        return tuple(range(1, ndim)) if self.axes is None else self.axes

    def from_grad(self, g: np.ndarray) -> tuple[float, np.ndarray]:
        """The penalty and ``∂P/∂g`` from input gradients ``g`` (the user's layout)."""
        axes = self._norm_axes(g.ndim)
        values = float(np.prod([g.shape[a] for a in axes])) if self.element_mean else 1.0
        sq = np.sum(g * g, axis=axes, keepdims=True) / values
        norm = np.sqrt(sq + self.eps)
        safe = np.where(norm > 0, norm, 1.0)
        if self.squared_norm:
            per = sq + self.eps if self.squared else norm
            dper_dg = 2.0 * g if self.squared else np.where(norm > 0, g / safe, 0.0)
        else:
            gap = norm - self.target
            if self.one_sided:
                gap = np.maximum(gap, 0.0)
            per = gap * gap / (self.target * self.target)
            dper_dg = np.where(norm > 0, 2.0 * gap * g / safe, 0.0) / (self.target * self.target)
        dper_dg = dper_dg / values
        count = per.size if self.reduction == "mean" else 1.0
        scale = self.weight * (0.5 if self.squared_norm else 1.0) / count
        return float(scale * np.sum(per)), scale * np.broadcast_to(dper_dg, g.shape)

    def describe_axes(self, layout: str, ndim: int) -> str:
        if self.axes is None:
            return "per sample over every non-batch axis"
        names = _axis_names(layout, ndim)
        if self.axes == tuple(range(ndim)):
            return "over the whole batch at once (one norm)"
        return (
            "over "
            + ", ".join(names[a] for a in self.axes)
            + f" (axis {', '.join(map(str, self.axes))} of {layout.upper()})"
        )


def _axis_names(layout: str, ndim: int) -> dict[int, str]:
    if ndim == 4:
        letters = {"nchw": "NCHW", "nhwc": "NHWC"}.get(layout, "NCHW")
        words = {"N": "batch", "C": "channels", "H": "height", "W": "width"}
        return {i: words[ch] for i, ch in enumerate(letters)}
    return {i: ("batch" if i == 0 else f"axis {i}") for i in range(ndim)}


def axis_choices(ndim: int) -> list[tuple[int, ...] | None]:
    """Every set of axes a norm could wrongly be taken over, after the right one (None)."""
    non_batch = range(1, ndim)
    subsets = [c for r in range(1, ndim - 1) for c in itertools.combinations(non_batch, r)]
    return [None, *subsets, tuple(range(ndim))]


@dataclass
class PenaltyEval:
    """The float64 penalty with its gradients, in the user's layout."""

    value: float
    grads: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate_penalty(
    form: PenaltyForm, critic: Critic, real: np.ndarray, fake: np.ndarray, alpha: np.ndarray, layout: str
) -> PenaltyEval:
    """``form``'s penalty and its gradient w.r.t. the critic's parameters, ``real`` and ``fake``.

    Arrays are in the user's ``layout`` ("nchw", "nhwc" or "flat"); the critic works in NHWC.
    """
    to_c, from_c = _layout_maps(layout, real.ndim)
    value, grads = 0.0, {name: np.zeros_like(p) for name, p in critic.params.items()}
    d_real, d_fake = np.zeros_like(to_c(real)), np.zeros_like(to_c(fake))
    for x_hat, on_real in form.sites(to_c(real), to_c(fake), to_c(alpha)):
        site_value, u_user = form.from_grad(from_c(critic.input_grad(x_hat)))
        param_grads, dx = critic.backprop(x_hat, to_c(u_user))
        value += site_value
        grads = {name: grads[name] + g for name, g in param_grads.items()}
        d_real, d_fake = d_real + on_real * dx, d_fake + (1.0 - on_real) * dx
    return PenaltyEval(value, {**grads, "real": from_c(d_real), "fake": from_c(d_fake)})


def _layout_maps(layout: str, ndim: int):
    if layout == "nchw" and ndim == 4:
        return (lambda a: np.transpose(a, (0, 2, 3, 1))), (lambda a: np.transpose(a, (0, 3, 1, 2)))
    return (lambda a: a), (lambda a: a)
