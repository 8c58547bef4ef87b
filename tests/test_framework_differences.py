"""Each catalogued difference (docs/framework-differences.md): shown to exist in the framework,
and shown to be neutralised by the backend. If a framework changes a default, the first half
fails and the catalog needs updating."""

import inspect

import numpy as np
import pytest
from conftest import require_backend

from gan_backends import get_preset, init_params
from gan_backends.backends import get_backend


def test_leaky_relu_default_slopes_differ():
    require_backend("torch")
    require_backend("tensorflow")
    require_backend("jax")
    import flax.linen as fnn
    import tensorflow as tf
    import torch

    assert torch.nn.LeakyReLU().negative_slope == 0.01
    assert inspect.signature(tf.nn.leaky_relu).parameters["alpha"].default == 0.2
    assert tf.keras.layers.LeakyReLU().negative_slope == 0.3
    assert inspect.signature(fnn.leaky_relu).parameters["negative_slope"].default == 0.01


def test_adam_eps_defaults_differ():
    require_backend("torch")
    require_backend("tensorflow")
    require_backend("jax")
    import optax
    import tensorflow as tf
    import torch

    assert torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults["eps"] == 1e-8
    assert tf.keras.optimizers.Adam().epsilon == 1e-7
    assert inspect.signature(optax.adam).parameters["eps"].default == 1e-8


def test_tf_leaky_relu_alpha_is_float32_in_float64():
    """tf.nn.leaky_relu's alpha is a float32 op attribute: 0.2 becomes 0.2f in float64 math."""
    require_backend("tensorflow")
    import tensorflow as tf

    x = -np.linspace(1, 3, 7)
    native = tf.nn.leaky_relu(tf.constant(x), alpha=0.2).numpy()
    assert np.abs(native / (0.2 * x) - 1).max() > 1e-8  # 0.2f / 0.2 - 1 = 1.5e-8: the op is off
    spec = get_preset("tiny", dtype="float64")
    params = init_params(spec, 0)
    z = np.random.default_rng(0).standard_normal((4, 8))
    ours = get_backend("tensorflow")(spec, params).generate(z)
    want = get_backend("numpy")(spec, params).generate(z)
    assert np.abs(ours - want).max() < 1e-15


def test_torch_softplus_threshold_is_inexact():
    """F.softplus returns x itself past threshold=20: log1p(exp(-25)) = 1.4e-11 lost in float64."""
    require_backend("torch")
    import torch

    from gan_backends.backends.torch_backend import TORCH_OPS

    x = torch.tensor([25.0], dtype=torch.float64)
    exact = 25.0 + np.log1p(np.exp(-25.0))
    assert abs(float(torch.nn.functional.softplus(x)) - exact) > 1e-11
    assert float(TORCH_OPS.softplus(x)) == pytest.approx(exact, rel=1e-16)


def test_leaky_relu_gradient_at_zero():
    """torch: slope at x = 0; jax.nn.leaky_relu: 1 (it tests x >= 0). Our JAX backend follows torch."""
    require_backend("torch")
    require_backend("jax")
    import jax
    import jax.numpy as jnp
    import torch

    x = torch.zeros(1, requires_grad=True)
    torch.nn.functional.leaky_relu(x, 0.2).backward()
    assert float(x.grad) == pytest.approx(0.2)
    assert float(jax.grad(lambda v: jax.nn.leaky_relu(v, 0.2))(jnp.float32(0.0))) == 1.0

    from gan_backends.backends.jax_backend import Sequential
    from gan_backends.spec import LeakyReLU

    net = Sequential((LeakyReLU(slope=0.2),), jnp.float32, jax.lax.Precision.HIGHEST)
    grad = jax.grad(lambda v: net.apply({}, v).sum())(jnp.zeros((1, 1), jnp.float32))
    assert float(grad[0, 0]) == pytest.approx(0.2)


def test_jax_silently_downcasts_float64_without_x64():
    require_backend("jax")
    import subprocess
    import sys

    code = "import jax.numpy as jnp, numpy as np; print(jnp.asarray(np.zeros(1)).dtype)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "float32"


def test_framework_defaults_report_shows_what_each_default_costs(framework):
    """``check --framework-defaults``: the spec's values give float32 agreement; a framework's own
    LeakyReLU slope (every framework's differs from DCGAN's 0.2) moves G(z) by far more, and its
    own BCE caps a saturated D's loss."""
    from gan_backends.check.framework_defaults import FRAMEWORK_DEFAULTS, framework_defaults_report

    rows = {r.setting: r for r in framework_defaults_report(get_preset("tiny"), [framework], steps=3, batch_size=8)}
    assert rows["as specified"].g_out < 1e-6 and rows["as specified"].params < 1e-5
    slope = rows["leaky_relu_slope"]
    assert slope.default == str(FRAMEWORK_DEFAULTS[framework]["leaky_relu_slope"]) and slope.spec_value == "0.2"
    assert slope.g_out > 1e-2 and slope.d_out > 1e-2
    if framework == "tensorflow":  # Keras' eps 1e-7: the forward pass is untouched, training is not
        eps = rows["adam_eps"]
        assert eps.g_out < 1e-6 and eps.params > 10 * rows["as specified"].params
    assert rows["as specified"].saturated < 1e-6
    if framework == "jax":  # optax's BCE is on logits, as the spec
        assert "bce" not in rows
    else:  # BCE on probabilities: the same until D saturates, then capped
        assert rows["bce"].g_out < 1e-6
        # softplus(30): torch's sigmoid(30) is 1.0f, log(0) clamps at -100 -> 100; Keras clips at
        # 1e-7 -> -log(1e-7) = 16.12 (both by hand).
        expected = {"torch": (100 - 30) / 30, "tensorflow": (30 + np.log(1e-7)) / 30}[framework]
        assert rows["bce"].saturated == pytest.approx(expected, rel=1e-3)
    if framework != "torch":  # glorot / lecun draws: a different network altogether
        assert rows["init"].g_out > 0.5
    else:
        assert "init" not in rows and "adam_eps" not in rows  # the spec's values are torch's


def test_framework_defaults_report_shows_keras_batchnorm_cost():
    """On the BatchNorm DCGAN, Keras' BatchNormalization defaults (eps 1e-3, momentum 0.99 of the
    old value) change the trained parameters far beyond float32 agreement; torch's are the spec's."""
    require_backend("tensorflow")
    require_backend("torch")
    from gan_backends.check.framework_defaults import framework_defaults_report

    spec = get_preset("dcgan-small")
    rows = framework_defaults_report(spec, ["tensorflow", "torch"], steps=2, batch_size=8)
    by = {(r.framework, r.setting): r for r in rows}
    floor = by[("tensorflow", "as specified")].params
    bn = by[("tensorflow", "batchnorm")]
    assert (bn.spec_value, bn.default) == ("(0.1, 1e-05)", "(0.01, 0.001)")
    assert floor < 1e-5 and bn.params > 100 * floor
    assert ("torch", "batchnorm") not in by
