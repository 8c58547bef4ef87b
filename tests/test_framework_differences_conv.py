"""The conv/BatchNorm/optimiser/penalty rows of docs/framework-differences.md: each difference
shown to exist in the frameworks themselves (if a framework changes a default, the test fails and
the catalog needs updating). That the backends neutralise them is shown by the agreement tests."""

import inspect

import numpy as np
import pytest
from conftest import require_backend


@pytest.fixture
def all_three():
    for name in ("torch", "tensorflow", "jax"):
        require_backend(name)


def test_batchnorm_momentum_and_eps_conventions_differ(all_three):
    import flax.linen as fnn
    import tensorflow as tf
    import torch

    bn = torch.nn.BatchNorm2d(3)
    assert (bn.momentum, bn.eps) == (0.1, 1e-5)  # weight of the NEW statistic
    keras = tf.keras.layers.BatchNormalization()
    assert (keras.momentum, keras.epsilon) == (0.99, 1e-3)  # weight of the OLD value
    flax_defaults = {k: v.default for k, v in inspect.signature(fnn.BatchNorm).parameters.items()}
    assert (flax_defaults["momentum"], flax_defaults["epsilon"]) == (0.99, 1e-5)
    assert flax_defaults["use_fast_variance"] is True  # E[x^2] - E[x]^2


def test_running_variance_is_unbiased_in_torch_and_biased_in_flax(all_three):
    import flax.linen as fnn
    import jax.numpy as jnp
    import torch

    x = np.random.default_rng(0).standard_normal((4, 3))
    var = x.var(axis=0)  # biased, 1/n
    bn = torch.nn.BatchNorm1d(3, momentum=1.0).double()
    bn(torch.from_numpy(x))
    np.testing.assert_allclose(bn.running_var.numpy(), var * 4 / 3, rtol=1e-12)
    module = fnn.BatchNorm(use_running_average=False, momentum=0.0, use_fast_variance=False)
    variables = module.init({"params": __import__("jax").random.key(0)}, jnp.asarray(x, jnp.float32))
    _, state = module.apply(variables, jnp.asarray(x, jnp.float32), mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(state["batch_stats"]["var"]), var, rtol=1e-5)


def test_default_conv_padding_differs(all_three):
    import flax.linen as fnn
    import tensorflow as tf
    import torch

    assert torch.nn.Conv2d(1, 1, 3).padding == (0, 0)
    assert tf.keras.layers.Conv2D(1, 3).padding == "valid"
    assert inspect.signature(fnn.Conv).parameters["padding"].default == "SAME"


def test_rmsprop_defaults_and_eps_placement_differ(all_three):
    import optax
    import tensorflow as tf
    import torch

    torch_defaults = torch.optim.RMSprop([torch.zeros(1, requires_grad=True)]).defaults
    assert (torch_defaults["alpha"], torch_defaults["eps"]) == (0.99, 1e-8)
    keras = tf.keras.optimizers.RMSprop()
    assert (keras.rho, keras.epsilon) == (0.9, 1e-7)
    optax_defaults = {k: v.default for k, v in inspect.signature(optax.rmsprop).parameters.items()}
    assert (optax_defaults["decay"], optax_defaults["eps_in_sqrt"]) == (0.9, True)  # 1/sqrt(v + eps)
    # One step from v = 0 with g = 1e-4: torch divides by sqrt(v) + eps, optax's default by sqrt(v + eps).
    g, lr = 1e-4, 1.0
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RMSprop([p], lr=lr, alpha=0.99, eps=1e-8)
    p.grad = torch.full((1,), g, dtype=torch.float64)
    opt.step()
    tx = optax.rmsprop(lr, decay=0.99, eps=1e-8)
    updates, _ = tx.update(np.full(1, g), tx.init(np.zeros(1)))
    torch_step, optax_step = -float(p.detach()[0]), -float(np.asarray(updates)[0])
    assert torch_step == pytest.approx(g / (np.sqrt(0.01) * g + 1e-8), rel=1e-12)
    assert optax_step == pytest.approx(g / np.sqrt(0.01 * g * g + 1e-8), rel=1e-6)
    assert abs(optax_step / torch_step - 1) > 0.5


def test_norm_gradient_at_zero_differs(all_three):
    import jax
    import jax.numpy as jnp
    import tensorflow as tf
    import torch

    v = torch.zeros(3, requires_grad=True)
    torch.linalg.vector_norm(v).backward()
    assert (v.grad == 0).all()
    x = tf.zeros(3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        norm = tf.norm(x)
    assert np.isnan(tape.gradient(norm, x).numpy()).all()
    assert np.isnan(np.asarray(jax.grad(jnp.linalg.norm)(jnp.zeros(3)))).all()


def test_torch_port_of_keras_same_conv_transpose_is_shifted(all_three):
    """``ConvTranspose2d(5, 2, padding=2, output_padding=1)``, the usual port of Keras'
    ``Conv2DTranspose(5, 2, padding='same')``, has the right size and a one-pixel shift."""
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 7, 7, 2))
    kernel = rng.standard_normal((5, 5, 3, 2))  # (kh, kw, out, in): Keras' layout
    keras = tf.nn.conv2d_transpose(x, kernel, output_shape=(1, 14, 14, 3), strides=2, padding="SAME").numpy()
    weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())  # (in, out, kh, kw)
    port = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), weight, stride=2, padding=2, output_padding=1
    )
    port = port.numpy().transpose(0, 2, 3, 1)
    assert port.shape == keras.shape
    assert np.abs(port - keras).max() > 0.5
    # Shifted by one pixel: the port crops (2, 1) pixels off the full output, Keras (1, 2).
    np.testing.assert_allclose(port[:, :-1, :-1], keras[:, 1:, 1:], atol=1e-10)


def test_xla_cpu_drops_the_bf16_product_rounding_under_jit():
    """``dot(x.bf16, w.bf16).astype(f32)``: eager rounds the product to bfloat16; XLA on CPU
    fuses the casts away under jit and keeps the float32 product. The JAX backend rounds
    explicitly (``lax.reduce_precision``) so jit and eager compute the spec's bf16."""
    require_backend("jax")
    import jax
    import jax.numpy as jnp

    if jax.default_backend() != "cpu":
        pytest.skip("measured on XLA's CPU backend")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 64)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((64, 32)), jnp.float32)

    def f(x, w):
        return jnp.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).astype(jnp.float32)

    operands = [np.asarray(a.astype(jnp.bfloat16).astype(jnp.float32), np.float64) for a in (x, w)]
    exact = operands[0] @ operands[1]
    assert np.abs(np.asarray(jax.jit(f)(x, w)) - exact).max() < 1e-4  # float32 product kept
    assert np.abs(np.asarray(f(x, w)) - exact).max() > 1e-2  # bf16-rounded product


def test_optax_rmsprop_momentum_trace_holds_lr_times_torchs_buffer(all_three):
    """With momentum, ``optax.rmsprop`` traces the lr-scaled update, torch the unscaled one: the
    same step while lr is constant, but the state differs by a factor lr (and moving the state
    between the two needs that conversion)."""
    import optax
    import torch

    lr, g = 0.01, np.array([0.5])
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RMSprop([p], lr=lr, alpha=0.99, eps=1e-8, momentum=0.9)
    p.grad = torch.from_numpy(g.copy())
    opt.step()
    buffer = float(opt.state[p]["momentum_buffer"][0])
    tx = optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=0.9)
    updates, state = tx.update(g, tx.init(np.zeros(1)))
    trace = float(np.asarray(optax.tree_utils.tree_get(state, "trace"))[0])
    assert float(np.asarray(updates)[0]) == pytest.approx(float(p.detach()[0]), rel=1e-6)  # the same step
    assert trace == pytest.approx(-lr * buffer, rel=1e-6)
