"""The relativistic losses (Jolicoeur-Martineau 2018) and R2 / R1 + R2 (Mescheder et al. 2018;
Huang et al. 2025's R3GAN): values derived by hand from the papers' formulas, the reference's
hand-written gradients against finite differences, and every backend in lock-step with it.

The expected values are written here with :mod:`math` from the formulas as the papers state them,
independently of :mod:`gan_backends.losses`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend
from test_reference_conv import check_gradients_by_fd, every_layer_spec, penalty_spec

from gan_backends import get_preset
from gan_backends.check import run_check
from gan_backends.losses import NUMPY_OPS, discriminator_loss, generator_loss, get
from gan_backends.spec import RELATIVISTIC_LOSSES, Dense, LossSpec, SpecError


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


REAL, FAKE = [1.0, -0.5, 2.0], [0.5, -1.0, 0.0]
M_REAL, M_FAKE = sum(REAL) / 3, sum(FAKE) / 3  # 5/6 and -1/6


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# (ρ, φ) of each relativistic average form, as the paper writes them: D's loss is
# E_r ρ(C_r - E C_f) + E_f φ(C_f - E C_r), G's E_f ρ(C_f - E C_r) + E_r φ(C_r - E C_f).
FORMS = {
    "rasgan": (lambda t: softplus(-t), lambda t: softplus(t)),  # -log σ(t), -log(1 - σ(t))
    "ralsgan": (lambda t: (t - 1) ** 2, lambda t: (t + 1) ** 2),
    "rahinge": (lambda t: max(0.0, 1 - t), lambda t: max(0.0, 1 + t)),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_relativistic_average_by_hand(name):
    rho, phi = FORMS[name]
    d_real = mean(rho(r - M_FAKE) for r in REAL)
    d_fake = mean(phi(f - M_REAL) for f in FAKE)
    g = mean(rho(f - M_REAL) for f in FAKE) + mean(phi(r - M_FAKE) for r in REAL)
    loss = get(name)
    assert loss.d(REAL, FAKE) == pytest.approx(d_real + d_fake, rel=1e-14)
    assert loss.g(FAKE, REAL) == pytest.approx(g, rel=1e-14)
    terms = discriminator_loss(NUMPY_OPS, np.array(REAL), np.array(FAKE), LossSpec(name=name))
    assert (terms["d_real"], terms["d_fake"]) == pytest.approx((d_real, d_fake), rel=1e-14)
    assert get(name, d_scale=0.5, g_scale=0.5).g(FAKE, REAL) == pytest.approx(g / 2, rel=1e-14)


def test_rahinge_numbers():
    # u = C_r + 1/6 = (7/6, -1/3, 13/6): relu(1 - u) = (0, 4/3, 0); v = C_f - 5/6 = (-1/3, -11/6,
    # -5/6): relu(1 + v) = (2/3, 0, 1/6). D = 4/9 + 5/18 = 13/18.
    assert get("rahinge").d(REAL, FAKE) == pytest.approx(13 / 18, rel=1e-14)


def test_rpgan_by_hand():
    # D: mean_i softplus(-(C_r[i] - C_f[i])); G: mean_i softplus(-(C_f[i] - C_r[i])) (pairs).
    d = mean(softplus(-(r - f)) for r, f in zip(REAL, FAKE))
    g = mean(softplus(-(f - r)) for r, f in zip(REAL, FAKE))
    rp = get("rpgan")
    assert rp.d(REAL, FAKE) == pytest.approx(d, rel=1e-14)
    assert rp.g(FAKE, REAL) == pytest.approx(g, rel=1e-14)
    terms = discriminator_loss(NUMPY_OPS, np.array(REAL), np.array(FAKE), LossSpec(name="rpgan"))
    assert terms["d_fake"] == 0.0 and terms["d_real"] == pytest.approx(d, rel=1e-14)
    assert rp.g_per_sample(FAKE, REAL) == pytest.approx([softplus(r - f) for r, f in zip(REAL, FAKE)], rel=1e-14)


def test_relativistic_generator_loss_needs_the_real_logits():
    with pytest.raises(ValueError, match="real data"):
        generator_loss(NUMPY_OPS, np.array(FAKE), LossSpec(name="rpgan"))
    with pytest.raises(SpecError, match="real_logits"):
        get("rasgan").g(FAKE)


def test_patch_logits_mean_over_every_logit():
    """A PatchGAN's (N, H, W, 1) logits: every mean runs over all N·H·W logits."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(2, 3, 3, 1)), rng.normal(size=(2, 3, 3, 1))
    flat = get("rasgan").d(real.ravel(), fake.ravel())
    assert get("rasgan").d(real, fake) == pytest.approx(flat, rel=1e-14)


def _relativistic(spec, **loss):
    """``spec`` with the loss ``loss`` and D's output Dense without its bias (which a relativistic
    loss refuses: see test_a_relativistic_loss_refuses_an_output_bias)."""
    head = spec.discriminator[-1]
    assert isinstance(head, Dense)
    return spec.replace(
        loss=LossSpec(**{**vars(spec.loss), **loss}),
        discriminator=(*spec.discriminator[:-1], Dense(units=head.units, use_bias=False)),
    )


@pytest.mark.parametrize("loss", RELATIVISTIC_LOSSES)
def test_relativistic_gradients_match_finite_differences(loss, rng):
    """The reference's hand-derived logit gradients (each mean reaching the other batch), through
    every layer type and BatchNorm in both networks."""
    spec = _relativistic(every_layer_spec(), name=loss, d_scale=0.5, g_scale=2.0)
    # abs 1e-8: ralsgan's larger curvature puts central differences ~3e-9 off on small entries
    check_gradients_by_fd(spec, rng, abs_=1e-8)


@pytest.mark.parametrize("loss, penalty", [("rpgan", "r1_r2"), ("non_saturating", "r2")])
def test_r2_second_order_gradients_match_finite_differences(loss, penalty, rng):
    spec = penalty_spec("non_saturating", penalty)
    if loss != "non_saturating":
        spec = _relativistic(spec, name=loss)
    terms = check_gradients_by_fd(spec, rng, per_tensor=6)
    assert terms["d_penalty"] > 0


def test_r2_and_r3gan_penalties_by_hand():
    """A linear critic D(x) = <w, x> has ∇ₓD = w at every x: R1 = R2 = γ/2·|w|², R1 + R2 twice it."""
    w = np.array([3.0, -4.0])  # |w|² = 25
    from gan_backends.losses import linear_critic

    real, fake = np.zeros((2, 2)), np.ones((2, 2))
    assert get("non_saturating", penalty="r2", penalty_weight=2.0).penalty(linear_critic(w), real, fake) == 25.0
    assert get("r3gan").penalty(linear_critic(w), real, fake) == pytest.approx(10.0 / 2 * (25 + 25), rel=1e-15)
    with pytest.raises(SpecError, match="needs fake"):
        get("r3gan").penalty(linear_critic(w), real)
    spec = get("r3gan").spec
    assert (spec.name, spec.penalty, spec.penalty_weight) == ("rpgan", "r1_r2", 10.0)


def test_r2_penalty_at_a_quadratic_critic_by_hand():
    """D(x) = ½|x|²: ∇ₓD = x, so R2 = γ/2·mean_i |x̃_i|² at the fakes (and R1 the same at reals)."""

    def critic(x):
        return 0.5 * (x * x).sum(axis=1), x.copy()

    real, fake = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 1.0], [3.0, 0.0]])
    gamma = 4.0
    r1 = gamma / 2 * (1 + 4) / 2
    r2 = gamma / 2 * (2 + 9) / 2
    assert get("non_saturating", penalty="r2", penalty_weight=gamma).penalty(critic, real, fake) == r2
    assert get("rpgan", penalty="r1_r2", penalty_weight=gamma).penalty(critic, real, fake) == r1 + r2


def test_a_relativistic_loss_refuses_an_output_bias():
    """Only logit differences reach the loss: D's output bias would get rounding noise for a gradient."""
    spec = get_preset("mlp-2d", loss="rpgan")
    assert spec.discriminator[-1] == Dense(units=1, use_bias=False)
    with pytest.raises(SpecError, match=r"discriminator layer 4 .*relativistic loss 'rpgan'.*use_bias=false"):
        spec.replace(discriminator=(*spec.discriminator[:-1], Dense(units=1)))
    assert get_preset("dcgan-small", loss="r3gan").discriminator[-2].use_bias is False  # Conv, then Flatten


@pytest.mark.parametrize("loss", RELATIVISTIC_LOSSES)
def test_backend_ops_give_the_reference_values(framework, loss, rng):
    """Each backend's ops on float64 logits (the formulas are shared; the ops are each framework's)."""
    from gan_backends.backends import get_backend

    backend = get_backend(framework)
    backend.enable_float64()
    spec = LossSpec(name=loss, d_scale=0.5, g_scale=2.0)
    real, fake = rng.normal(0, 3, (16, 1)), rng.normal(0, 3, (16, 1))
    native = backend.from_numpy
    want = discriminator_loss(NUMPY_OPS, real, fake, spec)
    got = discriminator_loss(backend.loss_ops, native(real), native(fake), spec)
    for key in ("d_real", "d_fake", "d_loss"):
        assert float(got[key]) == pytest.approx(want[key], rel=1e-14, abs=1e-300), key
    got_g = generator_loss(backend.loss_ops, native(fake), spec, native(real))
    assert float(got_g) == pytest.approx(generator_loss(NUMPY_OPS, fake, spec, real), rel=1e-14)


def _check(framework: str, preset: str, loss: str, batch_size: int = 16) -> None:
    require_backend(framework)
    spec = get_preset(preset, loss=loss)
    report = run_check(spec, [framework, "numpy"], steps=1, batch_size=batch_size, seed=2)
    (pair,) = report.pairs
    failing = [r.quantity for r in pair.rows if not r.passed] + [r.label for r in pair.layers if not r.passed]
    assert report.passed, failing or report.lock_rows
    # the lock-step rows: G's and D's updates, and the running statistics where there are some
    assert len(report.lock_rows[framework]) == 2 + spec.has_buffers()


# Every relativistic average form in torch, one in each other stack (the G step's D(real) call
# is the stack's own code; the forms are shared formulas on its ops, checked per backend above).
CHECKED = [("torch", loss) for loss in ("rasgan", "ralsgan", "rahinge")] + [
    ("tensorflow", "rasgan"),
    ("jax", "ralsgan"),
    *((name, "r3gan") for name in ("torch", "tensorflow", "jax")),
]


@pytest.mark.parametrize("name, loss", CHECKED)
def test_check_agrees_with_the_reference(name, loss):
    """Forward, losses, gradients (R1 + R2's second order for r3gan), one free-running and one
    lock-step step on the 2-D MLP: r3gan (RpGAN + R1 + R2) in every stack, the relativistic
    average forms as CHECKED lists them."""
    _check(name, "mlp-2d", loss)


@pytest.mark.long
def test_check_agrees_on_a_batchnorm_dcgan(framework):
    """RpGAN on the BatchNorm DCGAN: G's step calls D(real) in training mode, whose running
    statistics advance once (before D(G(z))): the lock-step buffers row holds every stack to it."""
    _check(framework, "dcgan-small", "rpgan", batch_size=8)


@pytest.mark.long
def test_check_agrees_on_a_conv_critic_with_r1_and_r2():
    """r3gan on dcgan-small (its critic without BatchNorm): R1 + R2's second-order gradients
    through convolutions against the reference (torch; TF and JAX run r3gan on the MLP above)."""
    _check("torch", "dcgan-small", "r3gan", batch_size=8)


def test_per_device_reference_folds_the_g_steps_d_real_call():
    """The data-parallel per-device reference assembles a step from gradients and folded running
    statistics; for a relativistic loss it folds G's D(real) call too, so on one device it is the
    reference's own train_step (float64: to rounding)."""
    from gan_backends.backends import get_backend
    from gan_backends.parallel.agreement import draw_inputs
    from gan_backends.parallel.reference import global_step, max_relative_error, per_device_step
    from gan_backends.spec import Numerics

    spec = get_preset("dcgan-small", loss="rpgan").replace(numerics=Numerics(dtype="float64"))
    params, batch = draw_inputs(spec, 4, seed=1)
    cls = get_backend("numpy")
    assembled = per_device_step(cls(spec, params), batch, devices=1)
    own = global_step(cls(spec, params), batch)
    assert max_relative_error(assembled.buffers, own.buffers)[0] < 1e-12
    assert max_relative_error(assembled.params, own.params)[0] < 1e-12
