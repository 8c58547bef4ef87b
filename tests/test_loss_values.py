"""``gan_backends.losses.get``: loss values in float64 NumPy without a framework or a spec.

Every expected value is derived by hand from the papers' formulas (the docstrings of
:mod:`gan_backends.losses`), written out with :mod:`math`, never read from the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gan_backends.losses import get, linear_critic
from gan_backends.spec import SpecError


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def test_hinge_by_hand():
    # D: mean relu(1 - [2, 0.5]) + mean relu(1 + [-2, 0.5]) = (0 + 0.5)/2 + (0 + 1.5)/2; G: -mean f
    hinge = get("hinge")
    assert hinge.d([2.0, 0.5], [-2.0, 0.5]) == pytest.approx(0.25 + 0.75, abs=1e-15)
    assert hinge.g([-2.0, 0.5]) == pytest.approx(0.75, abs=1e-15)


def test_cross_entropy_losses_by_hand():
    real, fake = [0.0, 3.0], [-1.0]
    d = (math.log(2.0) + math.log1p(math.exp(-3.0))) / 2 + math.log1p(math.exp(-1.0))  # -log D, -log(1 - D)
    assert get("non_saturating").d(real, fake) == pytest.approx(d, rel=1e-15)
    assert get("non_saturating").g(fake) == pytest.approx(softplus(1.0), rel=1e-15)  # -log D(G(z))
    assert get("minimax").g(fake) == pytest.approx(-softplus(-1.0), rel=1e-15)  # log(1 - D(G(z)))
    assert get("non_saturating", d_scale=0.5).d(real, fake) == pytest.approx(d / 2, rel=1e-15)


def test_saturated_logits_stay_exact():
    r, f = get("non_saturating").d_per_sample([100.0], [100.0])
    assert r[0] == pytest.approx(math.exp(-100.0), rel=1e-12) and f[0] == pytest.approx(100.0, rel=1e-15)
    assert get("non_saturating").g_per_sample([-100.0])[0] == pytest.approx(100.0, rel=1e-15)


def test_least_squares_and_wasserstein_by_hand():
    lsgan = get("least_squares", a=-1.0, b=1.0, c=0.0)  # Mao et al.'s eq. 8 targets
    assert lsgan.d([0.0], [0.0]) == pytest.approx(0.5 * 1 + 0.5 * 1)
    assert lsgan.d([1.0, 1.0], [-1.0]) == 0.0 and lsgan.g([0.0]) == 0.0
    assert get("wasserstein").d([1.0, 2.0], [0.5]) == pytest.approx(-1.5 + 0.5)
    assert get("wgan").g([0.5, 1.5]) == pytest.approx(-1.0)


def test_penalties_of_a_linear_critic_by_hand():
    """D(x) = <w, x>: ∇_x D = w at every point, so WGAN-GP is λ (|w| - 1)² and R1 γ/2 |w|²."""
    w = np.array([[3.0, 0.0], [0.0, 4.0]])  # |w| = 5, one sample shaped (2, 2)
    rng = np.random.default_rng(0)
    real, fake, alpha = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 2)), rng.uniform(size=(4, 1, 1))
    assert get("wgan-gp").penalty(linear_critic(w), real, fake, alpha) == pytest.approx(10 * (5 - 1) ** 2, rel=1e-12)
    assert get("r1").penalty(linear_critic(w), real) == pytest.approx(10 / 2 * 25, rel=1e-15)
    assert get("r1", penalty_weight=1.0).penalty(linear_critic(w), real) == pytest.approx(12.5, rel=1e-15)
    penalised = get("wgan-gp")
    value = penalised.penalty(linear_critic(w), real, fake, alpha)
    assert penalised.d([1.0], [0.5], penalty=value) == pytest.approx(-1.0 + 0.5 + 160.0)


def test_mistakes_are_named():
    with pytest.raises(SpecError, match="unknown loss 'hinj'"):
        get("hinj")
    with pytest.raises(SpecError, match=r"unknown loss options \['lambda'\]"):
        get("wgan-gp", **{"lambda": 10})
    with pytest.raises(SpecError, match="has no gradient penalty"):
        get("hinge").penalty(linear_critic([1.0]), [[0.0]])
    with pytest.raises(SpecError, match="needs fake and alpha"):
        get("wgan-gp").penalty(linear_critic([1.0]), [[0.0]])


def test_wgan_gp_is_taken_at_the_interpolates():
    """D(x) = |x|²/2 has ∇_x D = x, so the penalty depends on where it is taken:
    λ mean_i (|α_i r_i + (1 - α_i) f_i| - 1)², written out per sample."""
    rng = np.random.default_rng(1)
    real, fake, alpha = rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2, 2)), rng.uniform(size=3)

    def quadratic(x):
        return 0.5 * (x * x).sum(axis=(1, 2)), x

    want = 10 * np.mean(
        [(math.sqrt(((a * r + (1 - a) * f) ** 2).sum()) - 1) ** 2 for r, f, a in zip(real, fake, alpha)]
    )
    assert get("wgan-gp").penalty(quadratic, real, fake, alpha) == pytest.approx(want, rel=1e-10)
    assert get("r1").penalty(quadratic, real) == pytest.approx(5 * np.mean([(r**2).sum() for r in real]), rel=1e-12)


def test_the_readme_example_runs_as_written():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in readme.split("```python\n")[1:] if "from gan_backends.losses import get" in b)
    rng = np.random.default_rng(2)
    names = {
        "real_logits": rng.normal(size=8), "fake_logits": rng.normal(size=8), "w": rng.normal(size=(4, 4, 1)),
        "real": rng.normal(size=(8, 4, 4, 1)), "fake": rng.normal(size=(8, 4, 4, 1)), "alpha": rng.uniform(size=8),
        "critic": lambda x: (0.5 * (x * x).reshape(len(x), -1).sum(axis=1), x),
    }  # fmt: skip
    exec(block.split("```")[0], names)  # every line of it runs
