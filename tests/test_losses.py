"""Loss formulas against values derived by hand and against math.log on sigmoid in float64."""

import math

import numpy as np
import pytest

from gan_backends.losses import NUMPY_OPS, discriminator_loss, generator_loss
from gan_backends.spec import LossSpec, SpecError


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_zero_logits_give_log_two():
    zeros = np.zeros((4, 1))
    terms = discriminator_loss(NUMPY_OPS, zeros, zeros, LossSpec(name="minimax", d_scale=0.5))
    assert terms["d_real"] == pytest.approx(math.log(2), rel=1e-15)
    assert terms["d_fake"] == pytest.approx(math.log(2), rel=1e-15)
    assert terms["d_loss"] == pytest.approx(math.log(2), rel=1e-15)  # 0.5 * 2 log 2
    assert generator_loss(NUMPY_OPS, zeros, LossSpec(name="minimax")) == pytest.approx(-math.log(2), rel=1e-15)
    assert generator_loss(NUMPY_OPS, zeros, LossSpec(name="non_saturating")) == pytest.approx(math.log(2), rel=1e-15)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_against_log_sigmoid(scale):
    real = np.array([[-2.0], [0.3], [4.0]])
    fake = np.array([[1.5], [-0.7], [-3.0]])
    terms = discriminator_loss(NUMPY_OPS, real, fake, LossSpec(d_scale=scale))
    d_real = -np.mean([math.log(sig(x)) for x in real.ravel()])
    d_fake = -np.mean([math.log(1 - sig(x)) for x in fake.ravel()])
    assert terms["d_real"] == pytest.approx(d_real, rel=1e-14)
    assert terms["d_fake"] == pytest.approx(d_fake, rel=1e-14)
    assert terms["d_loss"] == pytest.approx(scale * (d_real + d_fake), rel=1e-14)
    minimax = np.mean([math.log(1 - sig(x)) for x in fake.ravel()])
    non_sat = -np.mean([math.log(sig(x)) for x in fake.ravel()])
    assert generator_loss(NUMPY_OPS, fake, LossSpec(name="minimax")) == pytest.approx(minimax, rel=1e-14)
    assert generator_loss(NUMPY_OPS, fake, LossSpec(name="non_saturating")) == pytest.approx(non_sat, rel=1e-14)


def test_saturated_discriminator_stays_finite_and_exact():
    # log(1 - sigmoid(100)) underflows through sigmoid; on logits it is exactly -100 - log1p(e^-100).
    fake = np.array([[100.0], [-100.0]])
    g = generator_loss(NUMPY_OPS, fake, LossSpec(name="minimax"))
    assert g == pytest.approx(-(100.0 + math.log1p(math.exp(-100.0)) + math.log1p(math.exp(-100.0))) / 2, rel=1e-15)
    terms = discriminator_loss(NUMPY_OPS, -fake, fake, LossSpec())
    assert terms["d_real"] == pytest.approx(50.0, rel=1e-15)
    assert np.isfinite(generator_loss(NUMPY_OPS, fake, LossSpec(name="non_saturating")))


@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_backend_losses_on_the_same_logits(framework, loss, rng):
    """Each backend's ops, on float64 logits spanning the saturated range, against NumPy."""
    from gan_backends.backends import get_backend

    backend = get_backend(framework)
    backend.enable_float64()
    spec = LossSpec(name=loss, d_scale=0.5)
    real = rng.normal(0, 30, (64, 1))
    fake = rng.normal(0, 30, (64, 1))
    native = backend.from_numpy
    want = discriminator_loss(NUMPY_OPS, real, fake, spec)
    got = discriminator_loss(backend.loss_ops, native(real), native(fake), spec)
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-14), key
    got_g = generator_loss(backend.loss_ops, native(fake), spec)
    assert float(got_g) == pytest.approx(generator_loss(NUMPY_OPS, fake, spec), rel=1e-14)


def test_least_squares_by_hand():
    real, fake = np.array([1.0, 3.0]), np.array([-1.0, 2.0])
    spec = LossSpec(name="least_squares", a=-1.0, b=1.0, c=0.0)  # Mao et al. eq. 8 targets
    terms = discriminator_loss(NUMPY_OPS, real, fake, spec)
    assert terms["d_real"] == pytest.approx((0.0 + 4.0) / 2 / 2)  # ½ mean((l - 1)^2)
    assert terms["d_fake"] == pytest.approx((0.0 + 9.0) / 2 / 2)  # ½ mean((l + 1)^2)
    assert generator_loss(NUMPY_OPS, fake, spec) == pytest.approx((1.0 + 4.0) / 2 / 2)  # ½ mean(l^2)


def test_hinge_by_hand():
    real, fake = np.array([0.5, 2.0, -1.0]), np.array([-2.0, 0.0, 0.5])
    terms = discriminator_loss(NUMPY_OPS, real, fake, LossSpec(name="hinge"))
    assert terms["d_real"] == pytest.approx((0.5 + 0.0 + 2.0) / 3)  # mean relu(1 - l)
    assert terms["d_fake"] == pytest.approx((0.0 + 1.0 + 1.5) / 3)  # mean relu(1 + l)
    assert generator_loss(NUMPY_OPS, fake, LossSpec(name="hinge")) == pytest.approx(0.5)  # -mean l


def test_loss_targets_must_be_finite_numbers():
    with pytest.raises(SpecError, match="loss.b must be a finite number"):
        LossSpec(name="least_squares", b=float("nan"))
