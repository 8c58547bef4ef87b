"""The convolutional layers and BatchNorm of every framework backend against independent float64
NumPy (tests/numeric.py): loop convolutions, the transposed convolution as a scatter (its
definition as the adjoint), the padding traps written out by hand, bf16 rounding on bits,
BatchNorm's formulas. Each contract is written once and run in each framework (a framework that is
not installed skips, or fails when ``GAN_BACKENDS_REQUIRE`` names it); nothing is compared with a
backend's own earlier output. Training (running statistics, penalties, optimisers) is in
test_conv_contract_training.py, what only one framework has in test_conv_quirks.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import (
    ADAM,
    BF16_CASES,
    MINI_DCGAN_GENERATOR,
    assert_close,
    check_bf16,
    check_float32,
    layer_output,
    layer_spec,
    make,
    randomised,
)
from numeric import (
    batchnorm,
    conv2d,
    conv_transpose,
    conv_transpose_full,
    crop,
    expected_crops,
    rel_l2,
    rel_max_abs,
)

from gan_backends.params import init_buffers, init_params
from gan_backends.spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LeakyReLU,
    Numerics,
    Reshape,
)


def ids(value) -> str | None:
    return value.describe() if hasattr(value, "describe") else None


# -- Conv2D ---------------------------------------------------------------------------------------

# (layer, input (H, W, C), zero padding ((top, bottom), (left, right)) derived by hand). TF 'same':
# out = ceil(in/s), total = (out-1)*s + k - in, the odd pixel at the bottom/right.
CONV_CASES = [
    (Conv2D(filters=3, kernel=3, stride=1, padding="same"), (7, 8, 2), ((1, 1), (1, 1))),
    # The trap: 8 rows, k=3, s=2: total 1 -> (0, 1); torch's padding=1 pads (1, 1). 9 columns: (1, 1).
    (Conv2D(filters=3, kernel=3, stride=2, padding="same"), (8, 9, 2), ((0, 1), (1, 1))),
    (Conv2D(filters=3, kernel=3, stride=2, padding="same", use_bias=False), (7, 8, 2), ((1, 1), (0, 1))),
    (Conv2D(filters=3, kernel=4, stride=2, padding=1), (8, 9, 2), ((1, 1), (1, 1))),  # DCGAN
    (Conv2D(filters=2, kernel=4, stride=2, padding=1, use_bias=False), (6, 6, 3), ((1, 1), (1, 1))),
    (Conv2D(filters=3, kernel=5, stride=3, padding="same"), (6, 7, 2), ((1, 1), (2, 2))),
    (Conv2D(filters=3, kernel=5, stride=3, padding=2, use_bias=False), (6, 5, 2), ((2, 2), (2, 2))),
    (Conv2D(filters=3, kernel=2, stride=2, padding="valid"), (6, 7, 2), ((0, 0), (0, 0))),
    (Conv2D(filters=3, kernel=2, stride=2, padding="same"), (6, 5, 2), ((0, 0), (0, 1))),
    (Conv2D(filters=3, kernel=3, stride=1, padding=2, use_bias=False), (5, 6, 2), ((2, 2), (2, 2))),
    (Conv2D(filters=3, kernel=4, stride=1, padding="valid"), (4, 5, 2), ((0, 0), (0, 0))),
    (Conv2D(filters=1, kernel=4, stride=1, padding="same"), (4, 3, 1), ((1, 2), (1, 2))),  # even k: (1, 2)
    (Conv2D(filters=3, kernel=1, stride=1, padding=0), (6, 5, 2), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize(("layer", "in_shape", "pads"), CONV_CASES, ids=ids)
def test_conv2d_matches_the_loop(framework, layer, in_shape, pads, rng):
    assert layer.pads(in_shape) == pads
    x = rng.standard_normal((3, *in_shape))
    y, params, _ = layer_output(framework, layer, x, rng)
    want = conv2d(x, params["generator.1.kernel"], layer.stride, pads)
    if layer.use_bias:
        want = want + params["generator.1.bias"]
    assert y.shape == want.shape == (3, *layer.output_shape(in_shape))
    assert_close(y, want, 1e-13)


def test_same_stride_two_conv_is_not_symmetric_padding(framework, rng):
    """The torch port ``Conv2d(3, stride=2, padding=1)`` of TF 'same' on an even input pads a row
    on top that TF does not: same shape, other numbers."""
    layer = Conv2D(filters=2, kernel=3, stride=2, padding="same")
    x = rng.standard_normal((2, 6, 6, 1))
    y, params, _ = layer_output(framework, layer, x, rng)
    kernel, bias = params["generator.1.kernel"], params["generator.1.bias"]
    assert_close(y, conv2d(x, kernel, 2, ((0, 1), (0, 1))) + bias, 1e-13)
    symmetric = conv2d(x, kernel, 2, ((1, 1), (1, 1))) + bias
    assert symmetric.shape == y.shape
    assert rel_l2(y, symmetric) > 0.1 and rel_max_abs(y, symmetric) > 0.1


# -- ConvTranspose2D ------------------------------------------------------------------------------


def convt(kernel: int, stride: int, padding, output_padding: int = 0, filters: int = 2, bias: bool = True):
    """A ConvTranspose2D, short enough for one table row."""
    return ConvTranspose2D(
        filters=filters, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding, use_bias=bias
    )


# (layer, input (H, W, C), what is cut off the full (in-1)*s + k scatter, ((top, bottom), (left,
# right)), by hand (negative: zero rows/columns appended), output (H, W)).
CONV_T_CASES = [
    (convt(4, 2, 1), (3, 4, 3), ((1, 1), (1, 1)), (6, 8)),  # DCGAN
    (convt(4, 2, 1, filters=3, bias=False), (3, 3, 2), ((1, 1), (1, 1)), (6, 6)),
    # Keras/Flax 'same', k - s = 3 odd: (1, 2), which torch's padding cannot say.
    (convt(5, 2, "same"), (3, 2, 3), ((1, 2), (1, 2)), (6, 4)),
    # The common torch port of it, padding=2, output_padding=1: (2, 1).
    (convt(5, 2, 2, 1), (3, 2, 3), ((2, 1), (2, 1)), (6, 4)),
    (convt(3, 2, "same", bias=False), (3, 4, 3), ((0, 1), (0, 1)), (6, 8)),
    (convt(4, 2, "same"), (4, 5, 3), ((1, 1), (1, 1)), (8, 10)),
    # k < s, 'same': in * s, a zero row/column appended that only the bias reaches.
    (convt(1, 2, "same"), (3, 4, 3), ((0, -1), (0, -1)), (6, 8)),
    (convt(1, 2, "same", bias=False), (3, 4, 3), ((0, -1), (0, -1)), (6, 8)),
    (convt(2, 3, "same", filters=3), (3, 2, 2), ((0, -1), (0, -1)), (9, 6)),
    # k < s, 'valid': Keras' in * s.
    (convt(2, 3, "valid", filters=3, bias=False), (3, 2, 2), ((0, -1), (0, -1)), (9, 6)),
    (convt(4, 1, "valid", bias=False), (2, 3, 3), ((0, 0), (0, 0)), (5, 6)),
    # DCGAN's stem: 1x1 -> k x k.
    (convt(3, 1, "valid", filters=4, bias=False), (1, 1, 5), ((0, 0), (0, 0)), (3, 3)),
    # torch output_padding: (1, 0); past the full output: zeros appended.
    (convt(3, 2, 1, 1, filters=3), (3, 2, 2), ((1, 0), (1, 0)), (6, 4)),
    (convt(3, 2, 0, 1, filters=3), (3, 2, 2), ((0, -1), (0, -1)), (8, 6)),
    (convt(3, 3, 0, 2), (3, 4, 3), ((0, -2), (0, -2)), (11, 14)),
    # A crop beyond k - 1 (torch accepts padding >= kernel): keep 2 of 6 rows.
    (convt(2, 1, 2), (5, 4, 1), ((2, 2), (2, 2)), (2, 1)),
]


@pytest.mark.parametrize(("layer", "in_shape", "crops", "out_hw"), CONV_T_CASES, ids=ids)
def test_conv_transpose_matches_the_scatter(framework, layer, in_shape, crops, out_hw, rng):
    assert layer.crops(in_shape) == crops
    k, s = layer.kernel, layer.stride
    assert expected_crops(layer.padding, in_shape, k, s, layer.output_padding) == crops  # the table, from the docs
    x = rng.standard_normal((2, *in_shape))
    y, params, _ = layer_output(framework, layer, x, rng)
    assert params["generator.1.kernel"].shape == (k, k, layer.filters, in_shape[2])  # (kh, kw, out, in)
    want = crop(conv_transpose_full(x, params["generator.1.kernel"], s), crops)
    if layer.use_bias:
        want = want + params["generator.1.bias"]  # everywhere, the appended zeros included
    assert y.shape == want.shape == (2, *layer.output_shape(in_shape)) and want.shape[1:3] == out_hw
    assert_close(y, want, 1e-13)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (4, 2), (2, 1), (5, 3)])
def test_conv_transpose_is_the_adjoint_of_conv(framework, kernel, stride, rng):
    """<conv(y), x> = <y, conv_transpose(x)> with one kernel array: the transposed convolution's
    ``(kh, kw, out, in)`` is the VALID convolution's HWIO. The backend's two layers against each
    other, and its transposed one against the loop convolution."""
    in_shape = (3, 4, 3)
    t_layer = ConvTranspose2D(filters=2, kernel=kernel, stride=stride, padding="valid", use_bias=False)
    out = t_layer.output_shape(in_shape)
    spec = layer_spec(t_layer, in_shape).replace(
        discriminator=(
            Conv2D(filters=3, kernel=kernel, stride=stride, padding="valid", use_bias=False),
            Flatten(),
            Dense(units=1),
        )
    )
    params = randomised(spec, rng)
    params["discriminator.0.kernel"] = params["generator.1.kernel"]
    backend = make(framework, spec, params)
    x, y = rng.standard_normal((2, *in_shape)), rng.standard_normal((2, *out))
    t_x = backend.activations("generator", x.reshape(2, -1))[1]
    conv_y = backend.activations("discriminator", y)[0]
    assert conv_y.shape == x.shape
    assert np.sum(conv_y * x) == pytest.approx(np.sum(y * t_x), rel=1e-12)
    loop = conv2d(y, params["generator.1.kernel"], stride, ((0, 0), (0, 0)))
    assert np.sum(loop * x) == pytest.approx(np.sum(y * t_x), rel=1e-13)


def test_same_conv_transpose_is_the_torch_port_shifted_by_one_pixel(framework, rng):
    """Keras/Flax 'same' k=5 s=2 keeps full[1:-2]; the usual torch port ConvTranspose2d(5, 2,
    padding=2, output_padding=1) keeps full[2:-1]: the same values one pixel shifted."""
    in_shape = (3, 4, 2)
    same = layer_spec(ConvTranspose2D(filters=2, kernel=5, stride=2, padding="same"), in_shape)
    port = layer_spec(ConvTranspose2D(filters=2, kernel=5, stride=2, padding=2, output_padding=1), in_shape)
    params = randomised(same, rng)
    z = rng.standard_normal((2, same.latent_dim))
    a = make(framework, same, params).activations("generator", z)[1]
    b = make(framework, port, params).activations("generator", z)[1]
    assert a.shape == b.shape == (2, 6, 8, 2)
    assert rel_l2(a, b) > 0.1 and rel_max_abs(a, b) > 0.1
    np.testing.assert_allclose(a[:, 1:, 1:], b[:, :-1, :-1], rtol=1e-13, atol=1e-13)
    assert rel_l2(b[:, :-1, :-1], a[:, 1:, 1:]) < 1e-13


# -- whole networks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (ConvTranspose2D(filters=2, kernel=4, stride=2, padding=1), (3, 4, 3)),
        (Conv2D(filters=3, kernel=3, stride=2, padding="same"), (6, 5, 2)),
    ],
    ids=["conv-transpose", "conv"],
)
def test_generated_images_are_the_last_activation_in_nhwc(framework, layer, in_shape, rng):
    spec = layer_spec(layer, in_shape)
    backend = make(framework, spec, randomised(spec, rng))
    z = rng.standard_normal((3, spec.latent_dim))
    np.testing.assert_array_equal(backend.activations("generator", z)[-1], backend.generate(z))


def test_image_discriminator_against_numpy(framework):
    """Canonical NHWC input, a conv, and a Flatten in (H, W, C) order before the Dense."""
    d = (Conv2D(filters=3, kernel=3, stride=2, padding="same"), LeakyReLU(slope=0.2), Flatten(), Dense(units=1))
    spec = GANSpec(
        name="d",
        data_shape=(5, 6, 2),
        latent_dim=2,
        generator=(Dense(units=60), Reshape(shape=(5, 6, 2))),
        discriminator=d,
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
    )
    p = init_params(spec, 2)
    x = np.random.default_rng(2).uniform(-1, 1, (4, 5, 6, 2))
    h = conv2d(x, p["discriminator.0.kernel"], 2, ((1, 1), (0, 1))) + p["discriminator.0.bias"]
    h = np.where(h > 0, h, 0.2 * h).reshape(4, -1)
    want = h @ p["discriminator.3.kernel"] + p["discriminator.3.bias"]
    assert_close(make(framework, spec, p).discriminate(x), want, 1e-13)


def test_dcgan_generator_by_hand(framework, rng):
    """A conv generator in training mode (stem, BatchNorm, ReLU, stride-2 transposed conv, tanh),
    assembled from the NumPy layers."""
    spec = GANSpec(
        name="mini-dcgan",
        data_shape=(6, 6, 1),
        latent_dim=4,
        generator=MINI_DCGAN_GENERATOR,
        discriminator=(Flatten(), Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
    )
    params = randomised(spec, rng)
    z = rng.standard_normal((3, 4))
    got = make(framework, spec, params).activations("generator", z, training=True)
    h = conv_transpose_full(z.reshape(3, 1, 1, 4), params["generator.1.kernel"], 1)
    h = np.maximum(batchnorm(h, params["generator.2.scale"], params["generator.2.bias"], 1e-5), 0)
    h = np.tanh(conv_transpose(h, params["generator.4.kernel"], 2, ((1, 1), (1, 1))))
    assert_close(got[-1], h, 1e-13)


# -- precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "in_shape", "pads"), BF16_CASES, ids=ids)
def test_bf16_convolutions_are_the_spec_semantics(framework, layer, in_shape, pads, rng):
    check_bf16(framework, layer, in_shape, pads, rng)


def test_float32_conv_is_the_float64_product_rounded(framework, rng):
    check_float32(framework, rng)


# -- BatchNorm forward ----------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(4, 3, 2), (5,)], ids=["image", "vector"])
def test_batchnorm_training_and_inference(framework, in_shape, rng):
    x = rng.standard_normal((6, *in_shape)) * 3 + 2
    got, params, backend = layer_output(framework, BatchNorm(momentum=0.3, eps=1e-3), x, rng, training=True)
    scale, bias = params["generator.1.scale"], params["generator.1.bias"]
    assert_close(got, batchnorm(x, scale, bias, 1e-3), 1e-13)
    # Inference: the running statistics, here loaded by hand.
    channels = in_shape[-1]
    mean, var = rng.standard_normal(channels), rng.uniform(0.5, 2, channels)
    backend.set_buffers({"generator.1.running_mean": mean, "generator.1.running_var": var})
    want = batchnorm(x, scale, bias, 1e-3, (mean, var))
    assert_close(backend.activations("generator", x.reshape(6, -1))[1], want, 1e-13)
    assert_close(backend.generate(x.reshape(6, -1)), want, 1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_variance_is_two_pass(framework, dtype, rng):
    """At a mean offset of 1e4, E[x^2] - E[x]^2 loses the whole variance in float32 and about 8
    digits in float64."""
    shape, std = ((64, 2), 1.0) if dtype == "float32" else ((8, 3), 1e-2)
    x = (1e4 + std * rng.standard_normal(shape)).astype(dtype)
    got, params, _ = layer_output(framework, BatchNorm(), x, rng, training=True, dtype=dtype)
    want = batchnorm(x.astype(np.float64), params["generator.1.scale"], params["generator.1.bias"], 1e-5)
    if dtype == "float32":
        assert np.max(np.abs(got - want)) < 1e-2
    else:
        assert rel_max_abs(got, want) < 1e-9


def test_batchnorm_after_conv_layer_by_layer(framework, rng):
    """A conv + BatchNorm critic: layer by layer, training and inference mode."""
    spec = GANSpec(
        name="conv-bn",
        data_shape=(4, 4, 1),
        latent_dim=2,
        generator=(Dense(units=16), Reshape(shape=(4, 4, 1))),
        discriminator=(
            Conv2D(filters=3, kernel=3, stride=2, padding="same", use_bias=False),
            BatchNorm(),
            Flatten(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.5),
    )
    params = init_params(spec, 4)
    backend = make(framework, spec, params)
    x = rng.uniform(-1, 1, (3, 4, 4, 1))
    conv = conv2d(x, params["discriminator.0.kernel"], 2, ((0, 1), (0, 1)))
    scale, bias = params["discriminator.1.scale"], params["discriminator.1.bias"]
    train = backend.activations("discriminator", x, training=True)
    assert_close(train[0], conv, 1e-13)
    assert_close(train[1], batchnorm(conv, scale, bias, 1e-5), 1e-13)
    infer = backend.activations("discriminator", x)
    assert_close(infer[1], batchnorm(conv, scale, bias, 1e-5, (0.0, 1.0)), 1e-13)


def test_set_buffers_round_trip_and_missing_names(framework, rng):
    spec = layer_spec(BatchNorm(), (3, 3, 2)).replace(
        discriminator=(BatchNorm(running_var="biased"), Flatten(), Dense(units=1))
    )
    backend = make(framework, spec, init_params(spec, 0))
    assert set(backend.get_buffers()) == set(init_buffers(spec))
    new = {k: rng.uniform(0.5, 2.0, v.shape) for k, v in init_buffers(spec).items()}
    backend.set_buffers(new)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, new[name], err_msg=name)
    for missing in ("generator.1.running_mean", "discriminator.0.running_var"):
        with pytest.raises(ValueError, match=f"missing {missing}"):
            backend.set_buffers({k: v for k, v in new.items() if k != missing})
    with pytest.raises(ValueError, match="missing"):
        backend.set_buffers({})
