"""The TensorFlow backend's convolutional GAN features against independent values.

Every expected value here is computed in the test itself, in float64 NumPy, from the formulas
of docs/conv-gans.md: loop-based convolutions and transposed convolutions, BatchNorm and its
running statistics folded in the documented order, the torch-form optimisers, bf16 rounding on
bits; gradient penalties and their second-order weight gradients against central finite
differences. Tiny shapes, float64: seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("tensorflow")
import tensorflow as tf  # noqa: E402

from gan_backends.backends import TrainBatch  # noqa: E402
from gan_backends.backends.tensorflow_backend import (  # noqa: E402
    TensorFlowBackend,
    TorchFormRMSprop,
    TorchFormSGD,
    build_layer,
)
from gan_backends.params import init_buffers, init_params  # noqa: E402
from gan_backends.spec import (  # noqa: E402
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Tanh,
)

ADAM = AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make_spec(generator, discriminator, data_shape, latent_dim, **kwargs) -> GANSpec:
    fields = dict(g_optimizer=ADAM, d_optimizer=ADAM, numerics=Numerics(dtype="float64"))
    fields.update(kwargs)
    return GANSpec(
        name="test",
        data_shape=data_shape,
        latent_dim=latent_dim,
        generator=tuple(generator),
        discriminator=tuple(discriminator),
        **fields,
    )


# -- loop-based references ---------------------------------------------------------------------


def np_conv2d(x, kernel, bias, stride, pads):
    """Cross-correlation over zero-padded NHWC input, HWIO kernel, one output pixel at a time."""
    (top, bottom), (left, right) = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    k = kernel.shape[0]
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(oh):
        for j in range(ow):
            for a in range(k):
                for c in range(k):
                    out[:, i, j, :] += xp[:, i * stride + a, j * stride + c, :] @ kernel[a, c]
    return out if bias is None else out + bias


def np_conv_transpose(x, kernel, bias, stride, crops):
    """Each input pixel scatters ``kernel[a, c] (out, in) @ x`` to ``(i*s + a, j*s + c)`` of the
    full output, which is then cropped (negative: zero rows/columns appended)."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for c in range(k):
                    full[:, i * stride + a, j * stride + c, :] += x[:, i, j, :] @ kernel[a, c].T
    (top, bottom), (left, right) = crops
    y = full[:, top : full.shape[1] - max(bottom, 0), left : full.shape[2] - max(right, 0)]
    y = np.pad(y, ((0, 0), (0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))
    return y if bias is None else y + bias


def np_batchnorm(x, scale, bias, eps, mean=None, var=None):
    axes = tuple(range(x.ndim - 1))
    if mean is None:
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), kept as float32: on bits."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


def built(layer, in_shape, rng, dtype=tf.float64):
    """The backend's module for ``layer`` with random weights; returns (module, weights)."""
    module = build_layer(layer, in_shape, dtype, "layer")
    weights = {}
    for pname, var in module.params().items():
        weights[pname] = rng.standard_normal(var.shape).astype(dtype.as_numpy_dtype)
        var.assign(weights[pname])
    return module, weights


# -- Conv2D and ConvTranspose2D ----------------------------------------------------------------

# (kernel, stride, padding, use_bias, expected pads for a 6x5 input), pads written out by hand
CONV_CASES = [
    (3, 2, "same", True, ((0, 1), (1, 1))),  # odd kernel, stride 2: TF puts the odd row at the bottom
    (4, 2, 1, True, ((1, 1), (1, 1))),
    (3, 1, "valid", False, ((0, 0), (0, 0))),
    (2, 2, "same", True, ((0, 0), (0, 1))),
    (5, 3, 2, False, ((2, 2), (2, 2))),
    (1, 1, 0, True, ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("kernel, stride, padding, use_bias, pads", CONV_CASES)
def test_conv2d_matches_loops(kernel, stride, padding, use_bias, pads, rng):
    layer = Conv2D(filters=3, kernel=kernel, stride=stride, padding=padding, use_bias=use_bias)
    in_shape = (6, 5, 2)
    assert layer.pads(in_shape) == pads
    module, w = built(layer, in_shape, rng)
    x = rng.standard_normal((2, *in_shape))
    got = module(tf.constant(x)).numpy()
    want = np_conv2d(x, w["kernel"], w.get("bias"), stride, pads)
    assert got.shape == want.shape == (2, *layer.output_shape(in_shape))
    assert rel(got, want) < 1e-13


def test_conv2d_same_stride2_is_not_symmetric_padding(rng):
    """The torch port ``Conv2d(3, stride=2, padding=1)`` of TF 'same' on an even input pads a row
    on top that TF does not: same shape, other numbers."""
    module, w = built(Conv2D(filters=2, kernel=3, stride=2, padding="same"), (6, 6, 1), rng)
    x = rng.standard_normal((2, 6, 6, 1))
    got = module(tf.constant(x)).numpy()
    assert rel(got, np_conv2d(x, w["kernel"], w["bias"], 2, ((0, 1), (0, 1)))) < 1e-13
    torch_port = np_conv2d(x, w["kernel"], w["bias"], 2, ((1, 1), (1, 1)))
    assert torch_port.shape == got.shape and rel(got, torch_port) > 0.1


# (kernel, stride, padding, output_padding, expected crops), crops written out by hand
CONV_T_CASES = [
    (5, 2, "same", 0, (1, 2)),  # odd k - s: the odd pixel cropped at the end
    (4, 2, 1, 0, (1, 1)),  # the DCGAN doubling
    (3, 2, 1, 1, (1, 0)),  # torch output_padding
    (3, 2, 0, 1, (0, -1)),  # output_padding past the full output: a zero row appended
    (2, 3, "valid", 0, (0, -1)),  # kernel < stride: Keras' size * stride
    (2, 3, "same", 0, (0, -1)),
    (4, 1, "valid", 0, (0, 0)),
    (3, 2, "same", 0, (0, 1)),
]


@pytest.mark.parametrize("kernel, stride, padding, output_padding, crop", CONV_T_CASES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_transpose_matches_loops(kernel, stride, padding, output_padding, crop, use_bias, rng):
    layer = ConvTranspose2D(
        filters=3, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding, use_bias=use_bias
    )
    in_shape = (3, 2, 2)  # not square: rows and columns must not swap
    assert layer.crops(in_shape) == (crop, crop)
    module, w = built(layer, in_shape, rng)
    assert w["kernel"].shape == (kernel, kernel, 3, 2)  # (kh, kw, out, in)
    x = rng.standard_normal((2, *in_shape))
    got = module(tf.constant(x)).numpy()
    want = np_conv_transpose(x, w["kernel"], w.get("bias"), stride, (crop, crop))
    assert got.shape == want.shape == (2, *layer.output_shape(in_shape))
    assert rel(got, want) < 1e-13


def test_conv_transpose_same_vs_torch_port_is_one_pixel_shifted(rng):
    """TF 'same' (k=5, s=2) crops (1, 2); the common torch port padding=2, output_padding=1
    crops (2, 1): the same size, shifted by one pixel."""
    in_shape = (3, 3, 2)
    same, w = built(ConvTranspose2D(filters=2, kernel=5, stride=2, padding="same"), in_shape, rng)
    port = build_layer(
        ConvTranspose2D(filters=2, kernel=5, stride=2, padding=2, output_padding=1), in_shape, tf.float64, "port"
    )
    port.kernel.assign(w["kernel"])
    port.bias.assign(w["bias"])
    x = tf.constant(rng.standard_normal((2, *in_shape)))
    a, b = same(x).numpy(), port(x).numpy()
    assert a.shape == b.shape == (2, 6, 6, 2)
    np.testing.assert_allclose(a[:, 1:, 1:], b[:, :-1, :-1], rtol=1e-13, atol=1e-13)
    assert rel(a, b) > 0.1


@pytest.mark.parametrize("kernel, stride", [(3, 2), (4, 2), (2, 1), (5, 3)])
def test_conv_transpose_is_the_adjoint_of_conv(kernel, stride, rng):
    """<conv(y), x> = <y, conv_transpose(x)> for the VALID conv with the same kernel read HWIO."""
    h = 3
    full = (h - 1) * stride + kernel
    t_layer, w = built(ConvTranspose2D(filters=2, kernel=kernel, stride=stride, use_bias=False), (h, h, 3), rng)
    conv = build_layer(
        Conv2D(filters=3, kernel=kernel, stride=stride, use_bias=False), (full, full, 2), tf.float64, "c"
    )
    conv.kernel.assign(w["kernel"])  # (kh, kw, out, in) of the transpose = HWIO of the conv
    x, y = rng.standard_normal((2, h, h, 3)), rng.standard_normal((2, full, full, 2))
    lhs = np.sum(conv(tf.constant(y)).numpy() * x)
    rhs = np.sum(y * t_layer(tf.constant(x)).numpy())
    assert lhs == pytest.approx(rhs, rel=1e-12)


# -- BatchNorm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (6, 3)], ids=["image", "vector"])
@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
def test_batchnorm_layer(shape, running_var, rng):
    layer = BatchNorm(momentum=0.25, eps=1e-3, running_var=running_var)
    module, w = built(layer, shape[1:], rng)
    x = rng.standard_normal(shape) * 2.0 + 5.0
    n = int(np.prod(shape[:-1]))
    axes = tuple(range(len(shape) - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    # Training: batch statistics; the running statistics stay unless asked to update.
    got = module(tf.constant(x), training=True).numpy()
    assert rel(got, np_batchnorm(x, w["scale"], w["bias"], 1e-3)) < 1e-13
    np.testing.assert_array_equal(module.running_mean.numpy(), 0.0)
    np.testing.assert_array_equal(module.running_var.numpy(), 1.0)
    module(tf.constant(x), training=True, update_stats=True)
    stored = var * n / (n - 1) if running_var == "unbiased" else var
    assert rel(module.running_mean.numpy(), 0.25 * mean) < 1e-13  # momentum = weight of the NEW value
    assert rel(module.running_var.numpy(), 0.75 * 1.0 + 0.25 * stored) < 1e-13
    # Inference: running statistics.
    rm, rv = module.running_mean.numpy(), module.running_var.numpy()
    got = module(tf.constant(x)).numpy()
    assert rel(got, np_batchnorm(x, w["scale"], w["bias"], 1e-3, rm, rv)) < 1e-13


def test_batchnorm_variance_is_two_pass(rng):
    """At a mean offset of 1e4 in float32, E[x^2] - E[x]^2 loses the variance entirely."""
    module = build_layer(BatchNorm(), (2,), tf.float32, "bn")
    x = (1e4 + rng.standard_normal((64, 2))).astype(np.float32)
    got = module(tf.constant(x), training=True).numpy()
    want = np_batchnorm(x.astype(np.float64), 1.0, 0.0, 1e-5)
    assert np.max(np.abs(got - want)) < 1e-2


def bn_first_spec(running_var: str, n_critic: int = 2) -> GANSpec:
    """BatchNorm as the FIRST layer of both networks: its batch statistics are those of the
    network's input, so the expected running statistics need no network weights but G's."""
    bn = BatchNorm(momentum=0.3, eps=1e-5, running_var=running_var)
    return make_spec(
        [bn, Dense(units=3), Tanh()], [bn, Dense(units=1)], (3,), 2, n_critic=n_critic, init=InitSpec(scheme="normal")
    )


def np_g_train(params, z, eps=1e-5):
    h = np_batchnorm(z, params["generator.0.scale"], params["generator.0.bias"], eps)
    return np.tanh(h @ params["generator.1.kernel"] + params["generator.1.bias"])


def fold(mean, var, batches, running_var, momentum=0.3):
    for x in batches:
        n = x.shape[0]
        stored = x.var(axis=0) * (n / (n - 1) if running_var == "unbiased" else 1.0)
        mean = (1 - momentum) * mean + momentum * x.mean(axis=0)
        var = (1 - momentum) * var + momentum * stored
    return mean, var


def draw(rng, spec, batch=5, alpha=False):
    n = spec.n_critic
    return TrainBatch(
        real=rng.uniform(-1, 1, (n, batch, *spec.data_shape)),
        z_d=rng.standard_normal((n, batch, spec.latent_dim)),
        z_g=rng.standard_normal((batch, spec.latent_dim)),
        alpha=rng.uniform(0, 1, (n, batch)) if alpha else None,
    )


@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
@pytest.mark.parametrize("mode", ["function", "eager"])
def test_running_statistics_follow_the_documented_order(running_var, mode, rng):
    """G's statistics: z_d[0], z_d[1], z_g. D's: real[0], G(z_d[0]), real[1], G(z_d[1]),
    G(z_g), with G's weights as they were (G only moves after the D updates)."""
    spec = bn_first_spec(running_var)
    params = init_params(spec, 2)
    backend = TensorFlowBackend(spec, params, mode=mode)
    assert set(backend.get_buffers()) == set(init_buffers(spec))
    batch = draw(rng, spec)
    backend.train_step(batch)
    fakes = [np_g_train(params, z) for z in batch.z_d]
    g_seen = [*batch.z_d, batch.z_g]
    d_seen = [batch.real[0], fakes[0], batch.real[1], fakes[1], np_g_train(params, batch.z_g)]
    buffers = backend.get_buffers()
    for net, seen, dim in (("generator", g_seen, 2), ("discriminator", d_seen, 3)):
        mean, var = fold(np.zeros(dim), np.ones(dim), seen, running_var)
        assert rel(buffers[f"{net}.0.running_mean"], mean) < 1e-13, net
        assert rel(buffers[f"{net}.0.running_var"], var) < 1e-13, net


def test_only_train_step_moves_running_statistics(rng):
    spec = bn_first_spec("unbiased")
    params = init_params(spec, 3)
    backend = TensorFlowBackend(spec, params)
    backend.set_buffers({k: v + rng.uniform(0.1, 0.5, v.shape) for k, v in init_buffers(spec).items()})
    before = backend.get_buffers()
    batch = draw(rng, spec)
    real, z = batch.real[0], batch.z_g
    backend.loss_terms(real, z)
    backend.gradients(real, z)
    backend.activations("generator", z, training=True)
    backend.activations("discriminator", real, training=True)
    backend.generate(z)
    backend.discriminate(real)
    backend.set_params(params)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # Inference uses them; training mode uses the batch's.
    mean, var = before["generator.0.running_mean"], before["generator.0.running_var"]
    h = np_batchnorm(z, params["generator.0.scale"], params["generator.0.bias"], 1e-5, mean, var)
    want = np.tanh(h @ params["generator.1.kernel"] + params["generator.1.bias"])
    assert rel(backend.generate(z), want) < 1e-13
    assert rel(backend.activations("generator", z, training=True)[-1], np_g_train(params, z)) < 1e-13
    with pytest.raises(ValueError, match="missing"):
        backend.set_buffers({})


def test_batchnorm_after_conv_in_activations(rng):
    """A conv + BatchNorm critic: layer by layer, training and inference mode."""
    spec = make_spec(
        [Dense(units=16), Reshape(shape=(4, 4, 1))],
        [Conv2D(filters=3, kernel=3, stride=2, padding="same", use_bias=False), BatchNorm(), Flatten(), Dense(units=1)],
        (4, 4, 1),
        2,
        init=InitSpec(scheme="normal", std=0.5),
    )
    params = init_params(spec, 4)
    backend = TensorFlowBackend(spec, params)
    x = rng.uniform(-1, 1, (3, 4, 4, 1))
    conv = np_conv2d(x, params["discriminator.0.kernel"], None, 2, ((0, 1), (0, 1)))
    scale, bias = params["discriminator.1.scale"], params["discriminator.1.bias"]
    train = backend.activations("discriminator", x, training=True)
    assert rel(train[0], conv) < 1e-13
    assert rel(train[1], np_batchnorm(conv, scale, bias, 1e-5)) < 1e-13
    infer = backend.activations("discriminator", x)
    assert rel(infer[1], np_batchnorm(conv, scale, bias, 1e-5, 0.0, 1.0)) < 1e-13


# -- gradient penalties ------------------------------------------------------------------------


def penalty_spec(penalty: str) -> GANSpec:
    loss = (
        LossSpec(name="wasserstein", penalty="wgan_gp", penalty_weight=10.0)
        if penalty == "wgan_gp"
        else LossSpec(name="non_saturating", penalty="r1", penalty_weight=3.0)
    )
    return make_spec(
        [Dense(units=18), Tanh(), Reshape(shape=(3, 3, 2))],
        [Conv2D(filters=2, kernel=3, stride=2, padding="same"), Tanh(), Flatten(), Dense(units=1)],
        (3, 3, 2),
        3,
        loss=loss,
        init=InitSpec(scheme="normal", std=0.7),
    )


def fd_input_gradient(backend, x, h=1e-5):
    """Per-sample ∇_x D(x) by central differences of the forward pass (each sample's logit
    depends on its own input only: no BatchNorm in a critic with a penalty)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape[1:]):
        plus, minus = x.copy(), x.copy()
        plus[(slice(None), *idx)] += h
        minus[(slice(None), *idx)] -= h
        g[(slice(None), *idx)] = (backend.discriminate(plus) - backend.discriminate(minus))[:, 0] / (2 * h)
    return g


@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_penalty_value_and_second_order_gradients(penalty, rng):
    spec = penalty_spec(penalty)
    params = init_params(spec, 5)
    backend = TensorFlowBackend(spec, params)
    real, z, alpha = rng.uniform(-1, 1, (4, 3, 3, 2)), rng.standard_normal((4, 3)), rng.uniform(0, 1, 4)
    terms, grads = backend.gradients(real, z, alpha)
    assert backend.loss_terms(real, z, alpha) == pytest.approx(terms, rel=1e-14)

    # The penalty from input gradients taken by finite differences.
    if penalty == "wgan_gp":
        a = alpha[:, None, None, None]
        x = a * real + (1 - a) * backend.generate(z)
        norms = np.sqrt(np.sum(fd_input_gradient(backend, x) ** 2, axis=(1, 2, 3)) + 1e-12)
        want = 10.0 * np.mean((norms - 1) ** 2)
    else:
        want = 0.5 * 3.0 * np.mean(np.sum(fd_input_gradient(backend, real) ** 2, axis=(1, 2, 3)))
    assert terms["d_penalty"] == pytest.approx(want, rel=1e-8)
    assert terms["d_penalty"] > 1e-3

    # Weight gradients (through ∇_x D: second order) against central differences of the losses
    # (d_loss is ~10: h = 1e-5 keeps the rounding noise of the difference near 1e-10).
    h = 1e-5
    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        for flat in rng.choice(grad.size, size=min(4, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            values = []
            for step in (h, -h):
                moved = {k: v.copy() for k, v in params.items()}
                moved[name][index] += step
                backend.set_params(moved)
                values.append(backend.loss_terms(real, z, alpha)[which])
            assert grad[index] == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6, abs=2e-9), (name, index)


def test_penalty_needs_alpha(rng):
    spec = penalty_spec("wgan_gp")
    backend = TensorFlowBackend(spec, init_params(spec, 0))
    with pytest.raises(ValueError, match="alpha"):
        backend.loss_terms(rng.uniform(-1, 1, (2, 3, 3, 2)), rng.standard_normal((2, 3)))


# -- optimisers and clipping -------------------------------------------------------------------


def np_rmsprop(p, g, state, s: RMSpropSpec):
    g = g + s.weight_decay * p
    state["v"] = s.alpha * state.get("v", 0.0) + (1 - s.alpha) * g * g
    if s.centered:
        state["grad_avg"] = s.alpha * state.get("grad_avg", 0.0) + (1 - s.alpha) * g
        avg = np.sqrt(state["v"] - state["grad_avg"] ** 2) + s.eps
    else:
        avg = np.sqrt(state["v"]) + s.eps
    if s.momentum:
        state["momentum"] = s.momentum * state.get("momentum", 0.0) + g / avg
        return p - s.lr * state["momentum"]
    return p - s.lr * g / avg


def np_sgd(p, g, state, s: SGDSpec):
    g = g + s.weight_decay * p
    if s.momentum:
        # torch: the buffer is a copy of the first gradient, then momentum * buf + g
        state["momentum"] = g.copy() if "momentum" not in state else s.momentum * state["momentum"] + g
        g = g + s.momentum * state["momentum"] if s.nesterov else state["momentum"]
    return p - s.lr * g


RMSPROP_CASES = [
    RMSpropSpec(lr=1e-2),
    RMSpropSpec(lr=1e-2, alpha=0.9, eps=1e-3, centered=True),
    RMSpropSpec(lr=1e-2, momentum=0.8, weight_decay=0.1),
    RMSpropSpec(lr=1e-2, alpha=0.5, momentum=0.5, centered=True, weight_decay=0.01),
]
SGD_CASES = [
    SGDSpec(lr=0.1),
    SGDSpec(lr=0.1, momentum=0.9),
    SGDSpec(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
]


@pytest.mark.parametrize("opt", RMSPROP_CASES + SGD_CASES, ids=lambda s: repr(s))
def test_torch_form_optimizers(opt, rng):
    cls = TorchFormRMSprop if isinstance(opt, RMSpropSpec) else TorchFormSGD
    update = np_rmsprop if isinstance(opt, RMSpropSpec) else np_sgd
    p = rng.standard_normal((3, 2))
    var = tf.Variable(p)
    optimizer = cls(opt, [var], "opt")
    state: dict = {}
    for _ in range(4):
        g = rng.standard_normal(p.shape)
        optimizer.apply([tf.constant(g)])
        p = update(p, g, state, opt)
        assert rel(var.numpy(), p) < 1e-14
    assert int(optimizer.step.numpy()) == 4
    assert set(optimizer.slots) == set(state)
    for slot, value in state.items():
        assert rel(optimizer.slots[slot][0].numpy(), value) < 1e-14, slot


D_RMSPROP = RMSpropSpec(lr=1e-2, alpha=0.9, momentum=0.5, centered=True)
G_SGD = SGDSpec(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)


def clip_spec() -> GANSpec:
    """WGAN with clipping, a BatchNorm in the critic (its scale starts near 1: clipped too),
    RMSprop for D and SGD for G."""
    return make_spec(
        [Dense(units=16), Tanh(), Reshape(shape=(4, 4, 1))],
        [
            Conv2D(filters=2, kernel=3, stride=2, padding=1, use_bias=False),
            BatchNorm(),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ],
        (4, 4, 1),
        3,
        loss=LossSpec(name="wasserstein", clip_value=0.05),
        g_optimizer=G_SGD,
        d_optimizer=D_RMSPROP,
        init=InitSpec(scheme="normal", std=0.3),
    )


def test_clipping_rmsprop_and_sgd_in_train_step(rng):
    """One step: D = clip(RMSprop(D, ∇D)), then G = SGD(G, ∇G at the clipped D); the
    gradients from ``gradients`` (held against finite differences elsewhere)."""
    spec = clip_spec()
    params = init_params(spec, 6)
    batch = draw(rng, spec, batch=4)
    backend = TensorFlowBackend(spec, params)
    _, grads = backend.gradients(batch.real[0], batch.z_d[0])
    state: dict = {}
    want = dict(params)
    for name in params:
        if name.startswith("discriminator"):
            state[name] = {}
            want[name] = np.clip(np_rmsprop(params[name], grads[name], state[name], D_RMSPROP), -0.05, 0.05)
    assert any(np.abs(np_rmsprop(params[n], grads[n], {}, D_RMSPROP)).max() > 0.05 for n in state)  # clipping bites
    _, g_grads = TensorFlowBackend(spec, want).gradients(batch.real[0], batch.z_g)
    for name in params:
        if name.startswith("generator"):
            state[name] = {}
            want[name] = np_sgd(params[name], g_grads[name], state[name], G_SGD)
    backend.train_step(batch)
    got = backend.get_params()
    for name in params:
        assert rel(got[name], want[name]) < 1e-12, name
        assert np.abs(got[name]).max() <= 0.05 or name.startswith("generator"), name
    opt_state = backend.get_optimizer_state()
    assert opt_state.steps == {"generator": 1, "discriminator": 1}
    for name in params:
        for slot, value in state[name].items():
            assert rel(opt_state.slots[slot][name], value) < 1e-12, (slot, name)


def test_optimizer_state_and_buffers_continue_a_trajectory(rng):
    spec = clip_spec()
    params = init_params(spec, 7)
    batches = [draw(rng, spec, batch=4) for _ in range(3)]
    a = TensorFlowBackend(spec, params)
    for batch in batches[:2]:
        a.train_step(batch)
    state = a.get_optimizer_state()
    d_names = {n for n in params if n.startswith("discriminator")}
    assert set(state.slots) == {"v", "grad_avg", "momentum"}  # SGD: momentum; RMSprop: all three
    assert set(state.slots["v"]) == set(state.slots["grad_avg"]) == d_names
    assert set(state.slots["momentum"]) == set(params)
    b = TensorFlowBackend(spec, a.get_params())
    b.set_buffers(a.get_buffers())
    b.set_optimizer_state(state)
    assert b.get_optimizer_state().steps == {"generator": 2, "discriminator": 2}
    a.train_step(batches[2])
    b.train_step(batches[2])
    for name, value in a.get_params().items():
        np.testing.assert_array_equal(b.get_params()[name], value, err_msg=name)
    # set_params resets the optimisers, not the running statistics.
    buffers = b.get_buffers()
    b.set_params(params)
    assert b.get_optimizer_state().steps == {"generator": 0, "discriminator": 0}
    assert all(not v.any() for tree in b.get_optimizer_state().slots.values() for v in tree.values())
    for name, value in b.get_buffers().items():
        np.testing.assert_array_equal(value, buffers[name])


# -- precision ---------------------------------------------------------------------------------


def test_bf16_convolutions_are_the_spec_semantics(rng):
    """Conv2D and ConvTranspose2D under bf16: bf16(conv(bf16(x), bf16(K))) + b in float32."""
    spec = make_spec(
        [Dense(units=12), Reshape(shape=(2, 2, 3)), ConvTranspose2D(filters=4, kernel=3, stride=2, padding="same")],
        [Conv2D(filters=8, kernel=3, stride=1, padding=1), Flatten(), Dense(units=1)],
        (4, 4, 4),
        5,
        numerics=Numerics(dtype="float32", matmul_precision="bf16"),
    )
    params = init_params(spec, 8)
    backend = TensorFlowBackend(spec, params)
    z = rng.standard_normal((6, 5)).astype(np.float32)
    x = rng.standard_normal((6, 4, 4, 4)).astype(np.float32)
    g_acts, d_act = backend.activations("generator", z), backend.activations("discriminator", x)[0]
    b64 = lambda a: to_bf16(a).astype(np.float64)  # noqa: E731
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    kt, bt = params["generator.2.kernel"], params["generator.2.bias"]
    kc, bc = params["discriminator.0.kernel"], params["discriminator.0.bias"]
    t_crops, c_pads = ((0, 1), (0, 1)), ((1, 1), (1, 1))
    cases = {
        "ConvTranspose2D": (
            g_acts[2],
            np_conv_transpose(b64(g_acts[1]), b64(kt), None, 2, t_crops),
            np_conv_transpose(f64(g_acts[1]), f64(kt), None, 2, t_crops),
            bt,
        ),
        "Conv2D": (d_act, np_conv2d(b64(x), b64(kc), None, 1, c_pads), np_conv2d(f64(x), f64(kc), None, 1, c_pads), bc),
    }
    for layer, (got, product, exact, bias) in cases.items():
        assert got.dtype == np.float32, layer
        emulated = to_bf16(product.astype(np.float32)) + bias
        assert rel(got, emulated) < 2e-4, layer  # only a rare product rounding differs (accumulation order)
        assert rel(got, exact + bias) > 1e-3, layer  # and bf16 really was applied


# -- modes ---------------------------------------------------------------------------------------


def bn_conv_spec() -> GANSpec:
    return make_spec(
        [
            Reshape(shape=(1, 1, 3)),
            ConvTranspose2D(filters=3, kernel=2, stride=1, padding="valid", use_bias=False),
            BatchNorm(momentum=0.2),
            LeakyReLU(slope=0.2),
            ConvTranspose2D(filters=1, kernel=4, stride=2, padding=1),
            Tanh(),
        ],
        [
            Conv2D(filters=2, kernel=4, stride=2, padding=1, use_bias=False),
            BatchNorm(running_var="biased"),
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ],
        (4, 4, 1),
        3,
        n_critic=2,
        init=InitSpec(scheme="normal", std=0.3),
    )


@pytest.mark.slow
@pytest.mark.parametrize("spec_fn", [bn_conv_spec, lambda: penalty_spec("wgan_gp")], ids=["batchnorm", "wgan_gp"])
def test_modes_agree(spec_fn, rng):
    """function, xla and eager: one trajectory (parameters and running statistics) in float64."""
    spec = spec_fn()
    params = init_params(spec, 9)
    batches = [draw(rng, spec, batch=4, alpha=True) for _ in range(2)]
    results = {}
    for mode in TensorFlowBackend.modes:
        backend = TensorFlowBackend(spec, params, mode=mode)
        terms, grads = backend.gradients(batches[0].real[0], batches[0].z_g, batches[0].alpha[0])
        for batch in batches:
            backend.train_step(batch)
        results[mode] = (terms, grads, backend.get_params(), backend.get_buffers())
    terms0, grads0, params0, buffers0 = results["function"]
    for mode in ("xla", "eager"):
        terms, grads, got, buffers = results[mode]
        assert terms == pytest.approx(terms0, rel=1e-12), mode
        assert max(rel(grads[k], grads0[k]) for k in grads0) < 1e-12, mode
        assert max(rel(got[k], params0[k]) for k in params0) < 1e-12, mode
        assert all(rel(buffers[k], buffers0[k]) < 1e-12 for k in buffers0), mode
