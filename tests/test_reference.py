"""The float64 NumPy reference against central finite differences: it is the ground truth for
everything else, so its hand-written backward pass is checked from the forward alone."""

import numpy as np
import pytest

from gan_backends import get_preset, init_params
from gan_backends.backends.base import TrainBatch
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.presets import LOSS_PRESETS
from gan_backends.spec import AdamSpec, LeakyReLU, ReLU, Sigmoid


def central_difference(f, params, name, index, h=1e-6):
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus[name][index] += h
    minus[name][index] -= h
    return (f(plus) - f(minus)) / (2 * h)


@pytest.mark.parametrize("loss", LOSS_PRESETS)
@pytest.mark.parametrize("d_scale", [1.0, 0.5])
def test_gradients_match_finite_differences(loss, d_scale, rng):
    """Every loss of the zoo; with a penalty the D gradient is the hand-written second-order one."""
    spec = get_preset("tiny", dtype="float64", loss=loss, d_scale=d_scale)
    params = init_params(spec, 11)
    real = rng.uniform(-1, 1, (6, 12))
    z = rng.standard_normal((6, 8))
    alpha = rng.uniform(0, 1, 6)
    ref = NumpyReference(spec, params)
    _, grads = ref.gradients(real, z, alpha)

    def term(which):
        return lambda p: NumpyReference(spec, p).loss_terms(real, z, alpha)[which]

    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        for flat in rng.choice(grad.size, size=min(6, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            fd = central_difference(term(which), params, name, index)
            assert grad[index] == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, index)


@pytest.mark.parametrize("layer", [ReLU(), Sigmoid(), LeakyReLU(slope=0.1)])
def test_every_activation_backward(layer, rng):
    spec = get_preset("tiny", dtype="float64")
    gen = list(spec.generator)
    gen[1] = layer
    spec = spec.replace(generator=tuple(gen))
    params = init_params(spec, 2)
    z = rng.standard_normal((5, 8))
    real = rng.uniform(-1, 1, (5, 12))
    _, grads = NumpyReference(spec, params).gradients(real, z)
    f = lambda p: NumpyReference(spec, p).loss_terms(real, z)["g_loss"]  # noqa: E731
    for index in [(0, 0), (3, 5), (7, 15)]:
        fd = central_difference(f, params, "generator.0.kernel", index)
        assert grads["generator.0.kernel"][index] == pytest.approx(fd, rel=1e-6, abs=1e-10)


def test_adam_first_steps_by_hand():
    """Adam's first step moves each parameter by lr * g / (|g| + eps) (bias corrections cancel)."""
    spec = get_preset("tiny", dtype="float64")
    params = init_params(spec, 0)
    ref = NumpyReference(spec, params)
    rng = np.random.default_rng(0)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (1, 4, 12)), z_d=rng.standard_normal((1, 4, 8)), z_g=rng.standard_normal((4, 8))
    )
    _, d_grads = ref.gradients(batch.real[0], batch.z_d[0])
    ref.train_step(batch)
    opt: AdamSpec = spec.d_optimizer
    for name in d_grads:
        if name.startswith("discriminator"):
            g = d_grads[name]
            expected = params[name] - opt.lr * g / (np.abs(g) + opt.eps)
            np.testing.assert_allclose(ref.params[name], expected, rtol=1e-14, atol=1e-18)
