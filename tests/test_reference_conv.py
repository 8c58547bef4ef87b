"""The float64 NumPy reference's convolutions, BatchNorm, loss zoo, penalties and optimisers
against independent values: direct loop convolutions (tests/numeric.py, with the paddings and
crops derived from the frameworks' documentation), the transposed convolution as the adjoint of
the convolution, hand formulas for BatchNorm and its running statistics,
central finite differences of ``loss_terms`` for every gradient (the penalties' second-order
ones included), hand-unrolled optimiser updates and a hand-driven sequence of network calls."""

import numpy as np
import pytest
from numeric import (
    central_difference,
    conv2d,
    conv_transpose,
    expected_crops,
    expected_pads,
    input_gradient,
    running_update,
)

from gan_backends import GANSpec, init_params
from gan_backends.backends.base import TrainBatch
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.backends.numpy.layers import LAYER_MATH
from gan_backends.params import init_buffers, split_tree
from gan_backends.presets import get_preset
from gan_backends.spec import (
    LOSS_NAMES,
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    LeakyReLU,
    LossSpec,
    Numerics,
    ReLU,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Sigmoid,
    Tanh,
    optimizer_slots,
)

# ------------------------------------------------------------------------------------------
# The layers' math of the reference, called as the backend calls it.


def layer_forward(layer, p, x, training=False):
    return LAYER_MATH[type(layer)][0](layer, p, x, training=training)


def layer_backward(layer, p, cache, dy):
    return LAYER_MATH[type(layer)][1](layer, p, cache, dy)


def vdot(a, b):
    return float(np.sum(a * b))


# ------------------------------------------------------------------------------------------
# Convolutions against the loops.

CONV_CASES = [(k, s, pad) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for pad in ("same", "valid", 0, 1, 2)]


@pytest.mark.parametrize("kernel,stride,padding", CONV_CASES)
def test_conv2d_matches_loop(kernel, stride, padding, rng):
    x = rng.standard_normal((2, 7, 6, 2))  # not square: rows and columns cannot be swapped
    layer = Conv2D(filters=3, kernel=kernel, stride=stride, padding=padding)
    p = {"kernel": rng.standard_normal((kernel, kernel, 2, 3)), "bias": rng.standard_normal(3)}
    want = conv2d(x, p["kernel"], stride, expected_pads(padding, x.shape[1:], kernel, stride)) + p["bias"]
    y, _ = layer_forward(layer, p, x)
    assert y.shape[1:] == layer.output_shape(x.shape[1:])
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)


def test_stride_two_same_odd_kernel_is_not_symmetric_padding(rng):
    """k=3, s=2, 'same' on 8 pixels pads (0, 1): torch's padding=1 reads one pixel earlier."""
    x = rng.standard_normal((1, 8, 8, 1))
    kernel = rng.standard_normal((3, 3, 1, 1))
    same, _ = layer_forward(
        Conv2D(filters=1, kernel=3, stride=2, padding="same", use_bias=False), {"kernel": kernel}, x
    )
    np.testing.assert_allclose(same, conv2d(x, kernel, 2, ((0, 1), (0, 1))), rtol=1e-13)
    torch_port, _ = layer_forward(
        Conv2D(filters=1, kernel=3, stride=2, padding=1, use_bias=False), {"kernel": kernel}, x
    )
    assert np.abs(same - torch_port).max() > 0.1


CONVT_CASES = [
    (k, s, pad, op)
    for k in (1, 2, 3, 4, 5)
    for s in (1, 2, 3)
    for pad in ("same", "valid", 0, 1, 2)
    for op in ((0, s - 1) if isinstance(pad, int) and s > 1 else (0,))
    if not (isinstance(pad, int) and (2 - 1) * s + k - 2 * pad + op <= 0)
]


@pytest.mark.parametrize("kernel,stride,padding,output_padding", CONVT_CASES)
def test_conv_transpose2d_matches_loop(kernel, stride, padding, output_padding, rng):
    x = rng.standard_normal((2, 2, 3, 2))
    layer = ConvTranspose2D(filters=3, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding)
    p = {"kernel": rng.standard_normal((kernel, kernel, 3, 2)), "bias": rng.standard_normal(3)}
    crops = expected_crops(padding, x.shape[1:], kernel, stride, output_padding)
    want = conv_transpose(x, p["kernel"], stride, crops) + p["bias"]
    y, _ = layer_forward(layer, p, x)
    assert y.shape[1:] == layer.output_shape(x.shape[1:]) == want.shape[1:]
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kernel,stride,padding,output_padding", CONVT_CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(kernel, stride, padding, output_padding, rng):
    """<convT(y), x> == <y, conv(x)> for the bias-free layers with one kernel array."""
    y = rng.standard_normal((2, 3, 2, 2))
    kernel_array = rng.standard_normal((kernel, kernel, 3, 2))  # conv HWIO (in 3, out 2) = convT (out 3, in 2)
    convt = ConvTranspose2D(
        filters=3, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding, use_bias=False
    )
    conv = Conv2D(filters=2, kernel=kernel, stride=stride, padding=padding, use_bias=False)
    x_shape = convt.output_shape(y.shape[1:])
    if conv.output_shape(x_shape) != y.shape[1:]:
        pytest.skip(f"conv maps {x_shape} to {conv.output_shape(x_shape)}, not {y.shape[1:]}: no adjoint pair")
    x = rng.standard_normal((2, *x_shape))
    ty, _ = layer_forward(convt, {"kernel": kernel_array}, y)
    cx, _ = layer_forward(conv, {"kernel": kernel_array}, x)
    assert vdot(ty, x) == pytest.approx(vdot(y, cx), rel=1e-12, abs=1e-12)


def test_conv_transpose_same_odd_k_minus_s_is_one_pixel_off_torchs_port(rng):
    x = rng.standard_normal((1, 4, 4, 1))
    kernel = {"kernel": rng.standard_normal((5, 5, 1, 1))}
    same, _ = layer_forward(ConvTranspose2D(filters=1, kernel=5, stride=2, padding="same", use_bias=False), kernel, x)
    port, _ = layer_forward(
        ConvTranspose2D(filters=1, kernel=5, stride=2, padding=2, output_padding=1, use_bias=False), kernel, x
    )
    assert same.shape == port.shape == (1, 8, 8, 1)
    np.testing.assert_allclose(same[:, 1:, 1:], port[:, :-1, :-1], rtol=1e-14)  # shifted by one pixel
    assert np.abs(same - port).max() > 0.1


LINEAR_LAYERS = [
    Conv2D(filters=3, kernel=3, stride=2, padding="same"),
    Conv2D(filters=2, kernel=4, stride=2, padding=1),
    Conv2D(filters=2, kernel=2, stride=3, padding="valid", use_bias=False),
    ConvTranspose2D(filters=3, kernel=3, stride=2, padding="same"),
    ConvTranspose2D(filters=2, kernel=4, stride=2, padding=1),
    ConvTranspose2D(filters=2, kernel=3, stride=2, padding=1, output_padding=1),
    ConvTranspose2D(filters=2, kernel=1, stride=3, padding="valid", use_bias=False),
    Dense(units=3),
]


@pytest.mark.parametrize("layer", LINEAR_LAYERS, ids=lambda layer: layer.describe())
def test_linear_layer_backward_by_linearity(layer, rng):
    """For a layer linear in x and in its kernel, <dx, u> = <f(x + u) - f(x), dy> exactly (and
    alike for the kernel and bias): the backward pass checked without finite differences."""
    in_shape = (12,) if isinstance(layer, Dense) else (5, 4, 2)
    x = rng.standard_normal((3, *in_shape))
    p = {k: rng.standard_normal(v) for k, v in layer.param_shapes(in_shape).items()}
    y, cache = layer_forward(layer, p, x)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer_backward(layer, p, cache, dy)
    u = rng.standard_normal(x.shape)
    assert vdot(dx, u) == pytest.approx(vdot(layer_forward(layer, p, x + u)[0] - y, dy), rel=1e-11)
    for name, grad in grads.items():
        du = rng.standard_normal(grad.shape)
        shifted = dict(p, **{name: p[name] + du})
        assert vdot(grad, du) == pytest.approx(vdot(layer_forward(layer, shifted, x)[0] - y, dy), rel=1e-11), name


# ------------------------------------------------------------------------------------------
# BatchNorm.


def random_batchnorm(rng: np.random.Generator, c: int) -> dict[str, np.ndarray]:
    """A BatchNorm's parameters and running statistics, none of them trivial."""
    return {
        "scale": rng.uniform(0.5, 2, c),
        "bias": rng.standard_normal(c),
        "running_mean": rng.standard_normal(c),
        "running_var": rng.uniform(0.5, 2, c),
    }


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 3)])
def test_batchnorm_train_and_eval_by_hand(shape, rng):
    layer = BatchNorm(eps=1e-3)
    x = 1e4 + 0.01 * rng.standard_normal(shape)  # large offset: E[x^2] - E[x]^2 would lose 1e-4
    p = random_batchnorm(rng, shape[-1])
    flat = x.reshape(-1, shape[-1])
    mean, var = flat.mean(axis=0), np.var(flat, axis=0)
    y, _ = layer_forward(layer, p, x, training=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * p["scale"] + p["bias"], rtol=1e-9, atol=1e-9)
    y, _ = layer_forward(layer, p, x, training=False)
    want = (x - p["running_mean"]) / np.sqrt(p["running_var"] + 1e-3) * p["scale"] + p["bias"]
    np.testing.assert_allclose(y, want, rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 3)])
def test_batchnorm_backward_against_central_differences(training, shape, rng):
    layer = BatchNorm()
    x = rng.standard_normal(shape) * 2 + 0.5
    p = random_batchnorm(rng, shape[-1])
    y, cache = layer_forward(layer, p, x, training=training)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer_backward(layer, p, cache, dy)
    h = 1e-6

    def loss(x_, p_):
        return vdot(layer_forward(layer, p_, x_, training=training)[0], dy)

    u = rng.standard_normal(x.shape)
    fd = (loss(x + h * u, p) - loss(x - h * u, p)) / (2 * h)
    assert vdot(dx, u) == pytest.approx(fd, rel=1e-7, abs=1e-9)
    for name in ("scale", "bias"):
        du = rng.standard_normal(shape[-1])
        fd = (loss(x, dict(p, **{name: p[name] + h * du})) - loss(x, dict(p, **{name: p[name] - h * du}))) / (2 * h)
        assert vdot(grads[name], du) == pytest.approx(fd, rel=1e-7), name


# ------------------------------------------------------------------------------------------
# Tiny specs with every layer type.


def every_layer_spec(loss="non_saturating", discriminator=None, **loss_kwargs) -> GANSpec:
    """BatchNorm in both networks (after Dense on vectors and after convs, both running_var
    conventions), every conv padding kind, output_padding, all activations."""
    generator = (
        Dense(units=18, use_bias=False),
        BatchNorm(momentum=0.3, running_var="biased"),
        ReLU(),
        Reshape(shape=(3, 3, 2)),
        ConvTranspose2D(filters=3, kernel=3, stride=2, padding=1, output_padding=1, use_bias=False),
        BatchNorm(momentum=0.2),
        LeakyReLU(slope=0.2),
        ConvTranspose2D(filters=2, kernel=3, stride=1, padding="same"),
        Tanh(),
    )
    discriminator = discriminator or (
        Conv2D(filters=3, kernel=3, stride=2, padding="same"),
        BatchNorm(),
        LeakyReLU(slope=0.2),
        ConvTranspose2D(filters=2, kernel=2, stride=1, padding="valid"),
        Sigmoid(),
        Conv2D(filters=2, kernel=3, stride=1, padding=0, use_bias=False),
        ReLU(),
        Flatten(),
        Dense(units=4),
        BatchNorm(eps=1e-3, running_var="biased"),
        Tanh(),
        Dense(units=1),
    )
    return GANSpec(
        name="every-layer",
        data_shape=(6, 6, 2),
        latent_dim=5,
        generator=generator,
        discriminator=discriminator,
        loss=LossSpec(name=loss, **loss_kwargs),
        g_optimizer=AdamSpec(lr=1e-2, beta1=0.5, beta2=0.999, eps=1e-8),
        d_optimizer=AdamSpec(lr=1e-2, beta1=0.5, beta2=0.999, eps=1e-8),
        numerics=Numerics(dtype="float64"),  # finite differences need float64 parameters
    )


def penalty_spec(loss="wasserstein", penalty="wgan_gp", **kwargs) -> GANSpec:
    """A critic of only piecewise linear layers (every one of them), for the penalties."""
    discriminator = (
        Conv2D(filters=3, kernel=3, stride=2, padding="same"),
        LeakyReLU(slope=0.2),
        ConvTranspose2D(filters=2, kernel=3, stride=2, padding=1, output_padding=1),
        LeakyReLU(slope=0.1),
        Conv2D(filters=3, kernel=3, stride=2, padding="valid"),
        Flatten(),
        Dense(units=6),
        ReLU(),
        Reshape(shape=(1, 2, 3)),
        Conv2D(filters=2, kernel=1),
        Flatten(),
        Dense(units=1),
    )
    return every_layer_spec(loss, discriminator, penalty=penalty, penalty_weight=3.0, **kwargs)


def check_gradients_by_fd(spec, rng, per_tensor=4, batch=3, seed=3, rel=1e-6, abs_=1e-9):
    params = init_params(spec, seed)
    real = rng.uniform(-1, 1, (batch, *spec.data_shape))
    z = rng.standard_normal((batch, spec.latent_dim))
    alpha = rng.uniform(0, 1, batch) if spec.loss.penalty == "wgan_gp" else None
    ref = NumpyReference(spec, params)
    terms, grads = ref.gradients(real, z, alpha)
    assert terms == pytest.approx(ref.loss_terms(real, z, alpha), rel=1e-14)
    assert set(grads) == set(params)

    def term(which):
        return lambda p: NumpyReference(spec, p).loss_terms(real, z, alpha)[which]

    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        for flat in rng.choice(grad.size, size=min(per_tensor, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            fd = central_difference(term(which), params, name, index)
            assert grad[index] == pytest.approx(fd, rel=rel, abs=abs_), (name, index)
    return terms


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_layer_gradients_match_finite_differences(loss, rng):
    terms = check_gradients_by_fd(every_layer_spec(loss, d_scale=0.5), rng)
    assert terms["d_penalty"] == 0.0


@pytest.mark.parametrize(
    "loss,penalty",
    [("wasserstein", "wgan_gp"), ("non_saturating", "r1"), ("least_squares", "wgan_gp"), ("hinge", "r1")],
)
def test_penalty_second_order_gradients_match_finite_differences(loss, penalty, rng):
    terms = check_gradients_by_fd(penalty_spec(loss, penalty), rng, per_tensor=6)
    assert terms["d_penalty"] > 0


def test_dcgan_small_wgan_gp_gradients_match_finite_differences(rng):
    spec = get_preset("dcgan-small", dtype="float64", loss="wgan-gp")
    check_gradients_by_fd(spec, rng, per_tensor=2, batch=2, rel=1e-5, abs_=1e-8)


@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_penalty_value_from_finite_difference_input_gradients(penalty, rng):
    spec = penalty_spec("wasserstein", penalty, norm_eps=1e-3)
    params = init_params(spec, 8)
    ref = NumpyReference(spec, params)
    real = rng.uniform(-1, 1, (4, *spec.data_shape))
    z = rng.standard_normal((4, spec.latent_dim))
    alpha = rng.uniform(0, 1, 4)
    if penalty == "wgan_gp":
        fake = ref.activations("generator", z, training=True)[-1]  # G in training mode: batch statistics
        a = alpha[:, None, None, None]
        x = a * real + (1 - a) * fake
    else:
        x = real
    s = (input_gradient(ref.discriminate, x) ** 2).reshape(4, -1).sum(axis=1)
    if penalty == "wgan_gp":
        want = 3.0 * np.mean((np.sqrt(s + 1e-3) - 1.0) ** 2)
    else:
        want = 3.0 / 2 * np.mean(s)
    assert ref.loss_terms(real, z, alpha)["d_penalty"] == pytest.approx(want, rel=1e-7)


def test_penalty_with_a_non_piecewise_linear_critic_refuses_gradients(rng):
    spec = penalty_spec()
    disc = list(spec.discriminator)
    disc[3] = Tanh()
    spec = spec.replace(discriminator=tuple(disc))
    ref = NumpyReference(spec, init_params(spec, 0))
    real, z, alpha = rng.uniform(-1, 1, (2, 6, 6, 2)), rng.standard_normal((2, 5)), rng.uniform(0, 1, 2)
    assert np.isfinite(ref.loss_terms(real, z, alpha)["d_penalty"])  # the value is still exact
    with pytest.raises(NotImplementedError, match=r"discriminator layer 3 Tanh"):
        ref.gradients(real, z, alpha)
    batch = TrainBatch(real=real[None], z_d=z[None], z_g=z, alpha=alpha[None])
    with pytest.raises(NotImplementedError, match="Tanh"):
        ref.train_step(batch)


def test_wgan_gp_needs_alpha(rng):
    spec = penalty_spec()
    ref = NumpyReference(spec, init_params(spec, 0))
    with pytest.raises(ValueError, match="alpha"):
        ref.loss_terms(rng.uniform(-1, 1, (2, 6, 6, 2)), rng.standard_normal((2, 5)))


# ------------------------------------------------------------------------------------------
# Modes and running statistics.


def hand_call(spec, params, buffers, net, x):
    """One training-mode network call, its running statistics updated by hand; returns its output."""
    acts = NumpyReference(spec, params).activations(net, x, training=True)
    inputs = [x, *acts[:-1]]
    for i, layer in enumerate(spec.layers(net)):
        if isinstance(layer, BatchNorm):
            key = f"{net}.{i}."
            running = (buffers[key + "running_mean"], buffers[key + "running_var"])
            buffers[key + "running_mean"], buffers[key + "running_var"] = running_update(
                running, inputs[i], layer.momentum, layer.running_var
            )
    return acts[-1]


def test_train_step_updates_running_statistics_in_the_documented_order(rng):
    spec = every_layer_spec("least_squares").replace(
        n_critic=2, g_optimizer=SGDSpec(lr=0.05), d_optimizer=SGDSpec(lr=0.05)
    )
    params = init_params(spec, 4)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (2, 5, 6, 6, 2)), z_d=rng.standard_normal((2, 5, 5)), z_g=rng.standard_normal((5, 5))
    )
    # By hand: G(z_d[i]), D(real[i]), D(fake), D step (SGD, gradients at the current params);
    # then G(z_g), D(G(z_g)), G step.
    hand = {k: v.copy() for k, v in params.items()}
    buffers = {k: v.astype(np.float64) for k, v in init_buffers(spec).items()}
    for i in range(2):
        fake = hand_call(spec, hand, buffers, "generator", batch.z_d[i])
        hand_call(spec, hand, buffers, "discriminator", batch.real[i])
        hand_call(spec, hand, buffers, "discriminator", fake)
        _, grads = NumpyReference(spec, hand).gradients(batch.real[i], batch.z_d[i])
        for name in split_tree(hand)["discriminator"]:
            hand[name] = hand[name] - 0.05 * grads[name]
    fake = hand_call(spec, hand, buffers, "generator", batch.z_g)
    hand_call(spec, hand, buffers, "discriminator", fake)
    _, grads = NumpyReference(spec, hand).gradients(batch.real[0], batch.z_g)
    for name in split_tree(hand)["generator"]:
        hand[name] = hand[name] - 0.05 * grads[name]

    ref = NumpyReference(spec, params)
    ref.train_step(batch)
    got = ref.get_buffers()
    assert set(got) == set(buffers) and len(got) == 8
    for name, value in buffers.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-13, atol=1e-15, err_msg=name)
    for name, value in hand.items():
        np.testing.assert_allclose(ref.params[name], value, rtol=1e-12, atol=1e-15, err_msg=name)


def test_only_train_step_changes_running_statistics(rng):
    spec = every_layer_spec()
    ref = NumpyReference(spec, init_params(spec, 1))
    start = ref.get_buffers()
    real, z = rng.uniform(-1, 1, (4, 6, 6, 2)), rng.standard_normal((4, 5))
    ref.loss_terms(real, z)
    ref.gradients(real, z)
    ref.activations("generator", z, training=True)
    ref.activations("discriminator", real, training=True)
    ref.generate(z)
    ref.discriminate(real)
    for name, value in ref.get_buffers().items():
        np.testing.assert_array_equal(value, start[name])
    ref.set_params(init_params(spec, 2))  # buffers are left alone by set_params too
    assert all(np.array_equal(v, start[k]) for k, v in ref.get_buffers().items())


def test_inference_mode_uses_the_running_statistics(rng):
    spec = every_layer_spec()
    ref = NumpyReference(spec, init_params(spec, 1))
    buffers = {
        k: (rng.uniform(0.5, 2, v.shape) if k.endswith("var") else rng.standard_normal(v.shape))
        for k, v in init_buffers(spec).items()
    }
    ref.set_buffers(buffers)
    z = rng.standard_normal((4, 5))
    acts = ref.activations("generator", z)
    np.testing.assert_array_equal(acts[-1], ref.generate(z))
    x, layer = acts[4], spec.generator[5]
    want = (x - buffers["generator.5.running_mean"]) / np.sqrt(buffers["generator.5.running_var"] + layer.eps)
    want = want * ref.params["generator.5.scale"] + ref.params["generator.5.bias"]
    np.testing.assert_allclose(acts[5], want, rtol=1e-13)
    train = ref.activations("generator", z, training=True)
    flat = train[4].reshape(-1, 3)
    normed = (train[5] - ref.params["generator.5.bias"]) / ref.params["generator.5.scale"]
    np.testing.assert_allclose(normed, (train[4] - flat.mean(0)) / np.sqrt(flat.var(0) + layer.eps), atol=1e-12)
    real = rng.uniform(-1, 1, (4, 6, 6, 2))
    np.testing.assert_array_equal(ref.activations("discriminator", real)[-1], ref.discriminate(real))
    with pytest.raises(ValueError, match="buffers do not fit"):
        ref.set_buffers({})


# ------------------------------------------------------------------------------------------
# Optimisers, unrolled by hand.


def rmsprop_steps(o: RMSpropSpec, gs):
    """Parameter increments of the first len(gs) <= 2 torch RMSprop steps, written out."""
    a = o.alpha
    g1 = gs[0]
    v1 = (1 - a) * g1**2
    avg1 = (1 - a) * g1
    d1 = (np.sqrt(v1 - avg1**2) if o.centered else np.sqrt(v1)) + o.eps
    b1 = g1 / d1  # the momentum buffer's first value, and the plain step
    steps = [-o.lr * b1]
    if len(gs) == 2:
        g2 = gs[1]
        v2 = a * (1 - a) * g1**2 + (1 - a) * g2**2
        avg2 = a * (1 - a) * g1 + (1 - a) * g2
        d2 = (np.sqrt(v2 - avg2**2) if o.centered else np.sqrt(v2)) + o.eps
        steps.append(-o.lr * (o.momentum * b1 + g2 / d2 if o.momentum else g2 / d2))
    return steps


def sgd_steps(o: SGDSpec, gs):
    g1 = gs[0]
    steps = [-o.lr * (g1 + o.momentum * g1 if o.nesterov else g1)]  # torch: buffer = g1 at step 1
    if len(gs) == 2:
        g2 = gs[1]
        if not o.momentum:
            steps.append(-o.lr * g2)
        elif o.nesterov:
            steps.append(-o.lr * (g2 + o.momentum * (o.momentum * g1 + g2)))
        else:
            steps.append(-o.lr * (o.momentum * g1 + g2))
    return steps


OPTIMIZERS = [
    RMSpropSpec(lr=1e-2, alpha=0.9),
    RMSpropSpec(lr=1e-2, alpha=0.9, centered=True),
    RMSpropSpec(lr=1e-2, alpha=0.8, momentum=0.7),
    RMSpropSpec(lr=1e-2, alpha=0.8, momentum=0.7, centered=True),
    SGDSpec(lr=0.1),
    SGDSpec(lr=0.1, momentum=0.9),
    SGDSpec(lr=0.1, momentum=0.9, nesterov=True),
]


def hand_train(spec, params, batches, steps_fn, clip=None):
    """n_critic=1 training with gradients from the reference and updates from ``steps_fn``."""
    p = {k: v.copy() for k, v in params.items()}
    names = split_tree(p)
    history = {k: [] for k in p}

    def apply(net, grads, opt):
        for name in names[net]:
            history[name].append(grads[name])
            p[name] = p[name] + steps_fn(opt, history[name])[-1]
            if clip is not None and net == "discriminator":
                p[name] = np.clip(p[name], -clip, clip)

    for batch in batches:
        _, grads = NumpyReference(spec, p).gradients(batch.real[0], batch.z_d[0])
        apply("discriminator", grads, spec.d_optimizer)
        _, grads = NumpyReference(spec, p).gradients(batch.real[0], batch.z_g)
        apply("generator", grads, spec.g_optimizer)
    return p


def draw(rng, spec, batch=4):
    n = spec.n_critic
    return TrainBatch(
        real=rng.uniform(-1, 1, (n, batch, *spec.data_shape)),
        z_d=rng.standard_normal((n, batch, spec.latent_dim)),
        z_g=rng.standard_normal((batch, spec.latent_dim)),
    )


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: repr(o))
def test_optimizers_against_hand_unrolled_updates(opt, rng):
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=opt, d_optimizer=opt)
    params = init_params(spec, 5)
    batches = [draw(rng, spec) for _ in range(2)]
    steps_fn = rmsprop_steps if isinstance(opt, RMSpropSpec) else sgd_steps
    want = hand_train(spec, params, batches, steps_fn)
    ref = NumpyReference(spec, params)
    for batch in batches:
        ref.train_step(batch)
    for name, value in want.items():
        np.testing.assert_allclose(ref.params[name], value, rtol=1e-12, atol=1e-15, err_msg=name)
    state = ref.get_optimizer_state()
    assert state.steps == {"generator": 2, "discriminator": 2}
    assert tuple(state.slots) == optimizer_slots(opt)
    for tree in state.slots.values():
        assert set(tree) == set(params)


def test_sgd_weight_decay_is_l2_on_the_gradient(rng):
    opt = SGDSpec(lr=0.1, momentum=0.5, weight_decay=0.3)
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=opt, d_optimizer=opt)
    params = init_params(spec, 5)
    batch = draw(rng, spec)
    _, grads = NumpyReference(spec, params).gradients(batch.real[0], batch.z_d[0])
    ref = NumpyReference(spec, params)
    ref.train_step(batch)
    for name in split_tree(params)["discriminator"]:
        want = params[name] - 0.1 * (grads[name] + 0.3 * params[name])
        np.testing.assert_allclose(ref.params[name], want, rtol=1e-13, err_msg=name)


def test_mixed_optimizers_state_round_trip(rng):
    spec = get_preset("tiny", dtype="float64").replace(
        g_optimizer=AdamSpec(lr=1e-2, beta1=0.5, beta2=0.9, eps=1e-8),
        d_optimizer=RMSpropSpec(lr=1e-2, momentum=0.5, centered=True),
    )
    params = init_params(spec, 2)
    batches = [draw(rng, spec) for _ in range(3)]
    ref = NumpyReference(spec, params)
    for batch in batches[:2]:
        ref.train_step(batch)
    state = ref.get_optimizer_state()
    parts = split_tree(params)
    assert set(state.slots) == {"m", "v", "grad_avg", "momentum"}
    assert set(state.slots["m"]) == set(parts["generator"])
    assert set(state.slots["v"]) == set(params)
    assert set(state.slots["grad_avg"]) == set(state.slots["momentum"]) == set(parts["discriminator"])
    other = NumpyReference(spec, ref.get_params())
    other.set_optimizer_state(state)
    ref.train_step(batches[2])
    other.train_step(batches[2])
    for name, value in ref.get_params().items():
        np.testing.assert_array_equal(other.params[name], value, err_msg=name)


def test_weight_clipping_after_every_d_update(rng):
    spec = get_preset("tiny", dtype="float64", loss="wgan").replace(n_critic=1)
    assert spec.loss.clip_value == 0.01 and isinstance(spec.d_optimizer, RMSpropSpec)
    params = init_params(spec, 3)  # U(±1/sqrt(fan_in)): mostly outside [-0.01, 0.01]
    batches = [draw(rng, spec) for _ in range(2)]
    want = hand_train(spec, params, batches, rmsprop_steps, clip=0.01)
    ref = NumpyReference(spec, params)
    for batch in batches:
        ref.train_step(batch)
    for name, value in want.items():
        np.testing.assert_allclose(ref.params[name], value, rtol=1e-12, atol=1e-15, err_msg=name)
        if name.startswith("discriminator"):
            assert np.abs(value).max() == pytest.approx(0.01)
        else:
            assert np.abs(value).max() > 0.05  # the generator is never clipped


def test_wasserstein_train_step_with_n_critic_runs(rng):
    for preset in ("wgan", "wgan-gp"):
        spec = get_preset("dcgan-small", dtype="float64", loss=preset)
        ref = NumpyReference(spec, init_params(spec, 0))
        batch = draw(rng, spec, batch=3)
        if spec.loss.penalty == "wgan_gp":
            batch = TrainBatch(batch.real, batch.z_d, batch.z_g, rng.uniform(0, 1, (spec.n_critic, 3)))
        terms = ref.train_step(batch)
        assert set(terms) == {"d_real", "d_fake", "d_penalty", "d_loss", "g_loss"}
        assert all(np.isfinite(v) for v in terms.values())
        assert ref.get_optimizer_state().steps == {"generator": 1, "discriminator": 5}
