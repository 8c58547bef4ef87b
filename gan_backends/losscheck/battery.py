"""The inputs a user's loss is run on: where GAN losses are usually wrong.

Logit roles (D from real and fake logits, G from fake logits):

- ``ordinary``: 16 logits ~ N(0, 2²), shape (N, 1) as a discriminator returns them;
- ``saturated ±20``, ``±50``, ``±100``: half the logits at ±that value, where a loss computed from
  probabilities overflows, clamps or loses its gradient;
- ``batch of one`` (1, 1): a squeeze or a per-batch statistic breaks here;
- ``shape (N,)`` and ``patch (N,H,W)`` (PatchGAN): the mean is over *every* logit;
- ``scan``: 261 logits from -100 to 100 (finest near 0) on both sides: the per-sample gradients
  a diagnosis is fitted to, and the range where a loss agrees;
- ``bfloat16``, ``float16``: the ordinary case in reduced precision, where the framework runs it.

Penalty role (a critic from :mod:`gan_backends.losscheck.critic`, real and fake batches and
α of shape (N, 1, …)):

- ``ordinary``: 8 flat samples of 12 values, input-gradient norms on both sides of 1;
- ``norm at 0``: sample 0 sits where the critic's input gradient is exactly zero;
- ``image``: (N, C, H, W) in PyTorch, (N, H, W, C) in TensorFlow and JAX: the norm must be per
  sample over all three axes;
- ``batch of one``, ``bfloat16``, ``float16``.

Inputs are drawn once in NumPy from a fixed seed; each runner casts them to its dtype, and the
float64 reference is evaluated on the *cast* values, so the comparison measures the loss only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .critic import Critic, make_critic

#: Relative tolerances per dtype, (value, gradient). The zoo as the three backends run it (every
#: loss, both roles, this battery) measured at worst: float32 1.7e-7 / 4.9e-7, float16 3.5e-4 /
#: 9.8e-4, bfloat16 3.2e-3 / 1.2e-2 (``docs/losscheck.md``); the bounds sit 4-60x above.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-9),
    "float32": (1e-5, 1e-5),
    "float16": (4e-3, 6e-3),
    "bfloat16": (3e-2, 5e-2),
}
#: Penalties go through a double backward pass of the critic; measured at worst: float32 4.0e-7 /
#: 1.4e-6, float16 7.1e-4 / 2.6e-3, bfloat16 2.3e-2 / 2.7e-2.
PENALTY_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-8),
    "float32": (1e-5, 2e-5),
    "float16": (6e-3, 1.5e-2),
    "bfloat16": (6e-2, 0.1),
}
REDUCED: tuple[str, ...] = ("bfloat16", "float16")


@dataclass(frozen=True)
class Case:
    """One battery input: named arrays in float64 (before the cast to ``dtype``)."""

    name: str
    dtype: str
    inputs: dict[str, np.ndarray]
    note: str = ""
    #: Penalty cases: the critic and the arrays' layout ("flat", "nchw" or "nhwc").
    critic: Critic | None = None
    layout: str = "flat"
    tags: frozenset[str] = field(default_factory=frozenset)

    def shape(self) -> str:
        key = "real" if "real" in self.inputs else "fake"
        return "×".join(map(str, self.inputs[key].shape))


def scan_grid() -> np.ndarray:
    """261 logits: every 0.25 on [-25, 25], every 2.5 beyond to ±100 (both ends included)."""
    inner = np.arange(-25.0, 25.0 + 1e-9, 0.25)
    outer = np.arange(27.5, 100.0 + 1e-9, 2.5)
    return np.concatenate([-outer[::-1], inner, outer])


def _saturated(rng: np.random.Generator, level: float, n: int = 8) -> np.ndarray:
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    values = signs * level
    values[-2:] = rng.normal(0.0, 2.0, size=2)  # an ordinary pair beside the saturated ones
    return values.reshape(n, 1)


def logit_cases(role: str, seed: int = 0, dtypes: tuple[str, ...] = REDUCED) -> list[Case]:
    """The battery for a D (``role="d"``) or G (``"g"``) loss."""
    rng = np.random.default_rng([seed, 9])

    def both(real: np.ndarray, fake: np.ndarray) -> dict[str, np.ndarray]:
        return {"real": real, "fake": fake} if role == "d" else {"fake": fake}

    grid = scan_grid()
    cases = [
        Case(
            "ordinary", "float32", both(rng.normal(0, 2, (16, 1)), rng.normal(0, 2, (16, 1))), tags=frozenset({"fit"})
        ),
    ]
    for level in (20.0, 50.0, 100.0):
        cases.append(
            Case(
                f"saturated ±{level:g}",
                "float32",
                both(_saturated(rng, level), _saturated(rng, level)[::-1].copy()),
                tags=frozenset({"saturated"}),
            )
        )
    cases += [
        Case("batch of one", "float32", both(rng.normal(0, 2, (1, 1)), rng.normal(0, 2, (1, 1)))),
        Case("shape (N,)", "float32", both(rng.normal(0, 2, (16,)), rng.normal(0, 2, (16,)))),
        Case("patch (N,H,W)", "float32", both(rng.normal(0, 2, (4, 5, 5)), rng.normal(0, 2, (4, 5, 5)))),
        Case("scan", "float32", both(grid.copy(), grid[::-1].copy()), "logits -100 … 100", tags=frozenset({"scan"})),
    ]
    ordinary = cases[0].inputs
    cases += [Case(dt, dt, ordinary, "the ordinary case", tags=frozenset({"reduced"})) for dt in dtypes]
    return cases


def penalty_cases(layout_4d: str, seed: int = 0, dtypes: tuple[str, ...] = REDUCED) -> list[Case]:
    """The battery for a gradient penalty; ``layout_4d`` is the image layout of the framework."""
    rng = np.random.default_rng([seed, 10])
    flat_shape, hidden = (12,), 16
    dead = rng.normal(size=flat_shape)
    flat_critic = make_critic(flat_shape, hidden, seed, dead)

    def batch(n: int, shape: tuple[int, ...], centre: np.ndarray) -> dict[str, np.ndarray]:
        real = centre + rng.normal(size=(n, *shape))
        fake = centre + rng.normal(size=(n, *shape))
        alpha = rng.uniform(0.05, 0.95, size=(n,) + (1,) * len(shape))
        return {"real": real, "fake": fake, "alpha": alpha}

    ordinary = batch(8, flat_shape, dead)
    at_zero = batch(8, flat_shape, dead)
    at_zero["real"][0] = dead
    at_zero["fake"][0] = dead  # x̂_0 = dead for every α (and R1's real_0): ∇_x D = 0 exactly
    hwc = (4, 4, 3)
    image_dead = rng.normal(size=hwc)
    image_critic = make_critic(hwc, hidden, seed + 1, image_dead)
    image = batch(4, hwc, image_dead)
    if layout_4d == "nchw":
        image = {k: np.ascontiguousarray(np.transpose(v, (0, 3, 1, 2))) for k, v in image.items()}
    cases = [
        Case("ordinary", "float32", ordinary, critic=flat_critic, tags=frozenset({"fit"})),
        Case("norm at 0", "float32", at_zero, "sample 0 where ∇ₓD = 0", flat_critic, tags=frozenset({"zero"})),
        Case(
            f"image {layout_4d.upper()}",
            "float32",
            image,
            f"(N,{','.join('CHW' if layout_4d == 'nchw' else 'HWC')})",
            image_critic,
            layout_4d,
            frozenset({"image"}),
        ),
        Case("batch of one", "float32", batch(1, flat_shape, dead), critic=flat_critic),
    ]
    cases += [Case(dt, dt, ordinary, "the ordinary case", flat_critic, tags=frozenset({"reduced"})) for dt in dtypes]
    return cases
