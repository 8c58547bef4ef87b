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

    from gan_backends.backends.torch.backend import TORCH_OPS

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

    from gan_backends.backends.jax.layers import Sequential
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


def test_bce_on_probabilities_saturates_differently():
    """Cross-entropy on sigmoid probabilities in float32, at logits where D is confidently wrong
    or right: torch clamps the log at -100 and its backward floors p(1-p) at 1e-12; Keras clips
    p to [1e-7, 1-1e-7]. The exact values (softplus on logits) are 20 and gradient -1."""
    require_backend("torch")
    require_backend("tensorflow")
    import tensorflow as tf
    import torch

    fake = torch.tensor([20.0], requires_grad=True)  # sigmoid(20) rounds to 1.0f
    value = torch.nn.BCELoss()(torch.sigmoid(fake), torch.zeros(1))
    assert float(value) == 100.0  # exact: softplus(20) = 20.000000002
    real = torch.tensor([-40.0], requires_grad=True)
    torch.nn.BCELoss()(torch.sigmoid(real), torch.ones(1)).backward()
    assert abs(float(real.grad)) < 1e-5  # exact: sigmoid(-40) - 1 = -1; torch: -p/1e-12 = -4.2e-6
    keras = tf.keras.losses.BinaryCrossentropy(from_logits=False)
    clipped = float(keras(tf.zeros((1, 1)), tf.sigmoid(tf.constant([[20.0]]))))
    assert clipped == pytest.approx(-np.log(np.float32(1) - np.float32(1 - 1e-7)), rel=1e-5)  # 15.94
    from gan_backends.losscheck import check_loss

    def tutorial_d(real_prob, fake_prob):
        bce = torch.nn.BCELoss()
        return bce(real_prob, torch.ones_like(real_prob)) + bce(fake_prob, torch.zeros_like(fake_prob))

    report = check_loss(tutorial_d, "non_saturating", role="d", framework="torch", inputs="probabilities", dtypes=())
    assert report.diagnosis.findings[-1].kind == "probabilities"  # and losscheck names it


def test_label_smoothing_means_three_things():
    """ "Label smoothing s" is real labels 1-s (Salimans et al.), real labels smoothed toward ½
    (TF-GAN: 1-s/2) or both labels toward ½ (Keras BinaryCrossentropy: 1-s/2 and s/2)."""
    require_backend("tensorflow")
    import tensorflow as tf

    logits = np.array([[-2.0], [0.5], [3.0]], dtype=np.float32)

    def bce(target: float) -> float:  # hand-derived: t·softplus(-l) + (1-t)·softplus(l), batch mean
        return float(np.mean(target * np.logaddexp(0, -logits) + (1 - target) * np.logaddexp(0, logits)))

    smooth = tf.keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)
    assert float(smooth(tf.ones_like(logits), logits)) == pytest.approx(bce(0.9), rel=1e-6)
    assert float(smooth(tf.zeros_like(logits), logits)) == pytest.approx(bce(0.1), rel=1e-6)
    assert bce(0.9) != pytest.approx(bce(0.8), rel=1e-3)  # one-sided 0.2 would be target 0.8
    # The spec trains Keras' meaning: label_smoothing and fake_label_smoothing s on D's two terms
    from gan_backends.losses import get

    real, fake = logits, logits[::-1] - 1.0
    keras_d = float(smooth(tf.ones_like(real), real)) + float(smooth(tf.zeros_like(fake), fake))
    ours = get("non_saturating", label_smoothing=0.2, fake_label_smoothing=0.2).d(real, fake)
    assert ours == pytest.approx(keras_d, rel=1e-6)
