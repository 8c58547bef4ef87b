"""The JAX backend's convolutional GAN features against independent float64 NumPy.

Everything expected here is written out in this file: loop-based convolution and transposed
convolution, BatchNorm's formulas, the crops of the layout traps derived by hand, the gradient
penalties through a hand-written input gradient (then central finite differences of the whole
D loss for the second-order parameter gradient), and torch-form RMSprop/SGD updates. Nothing is
compared with an earlier output of the backend itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("jax")

from gan_backends.backends import TrainBatch  # noqa: E402
from gan_backends.backends.jax_backend import JaxBackend  # noqa: E402
from gan_backends.params import init_buffers, init_params  # noqa: E402
from gan_backends.spec import (  # noqa: E402
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    LeakyReLU,
    LossSpec,
    Numerics,
    ReLU,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Tanh,
)

ADAM = AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


# -- NumPy ground truth --------------------------------------------------------------------


def np_conv(x: np.ndarray, kernel: np.ndarray, stride: int, pads) -> np.ndarray:
    """Cross-correlation of NHWC ``x`` with an HWIO kernel after zero padding ``pads``."""
    (top, bottom), (left, right) = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    k = kernel.shape[0]
    rows, cols = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[3]))
    for i in range(rows):
        for j in range(cols):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.einsum("nabc,abco->no", patch, kernel)
    return out


def np_conv_transpose_full(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Every input pixel scatters ``kernel[:, :, :, c] * x`` at ``stride`` spacing; kernel
    ``(kh, kw, out, in)``. Output ``(H - 1) * stride + k`` per axis."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride : i * stride + k, j * stride : j * stride + k, :] += np.einsum(
                "nc,aboc->nabo", x[:, i, j, :], kernel
            )
    return full


def crop(full: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Rows ``[top, H - bottom)``; a negative ``bottom``/``right`` appends zeros."""
    out = full[:, top : full.shape[1] - max(bottom, 0), left : full.shape[2] - max(right, 0)]
    return np.pad(out, ((0, 0), (0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))


def np_batchnorm_train(x: np.ndarray, scale, bias, eps: float) -> np.ndarray:
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def np_running_update(stats, x: np.ndarray, layer: BatchNorm):
    """One running-statistics update of ``layer`` from batch ``x`` (momentum = new weight)."""
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).sum(axis=axes) / (n - 1 if layer.running_var == "unbiased" else n)
    m = layer.momentum
    return (1 - m) * stats[0] + m * mean, (1 - m) * stats[1] + m * var


def softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), kept as float32: by hand, on bits."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


# -- specs ---------------------------------------------------------------------------------


def layer_spec(layer, in_shape: tuple[int, ...], dtype: str = "float64", precision: str = "highest") -> GANSpec:
    """A GAN whose generator is ``Reshape(in_shape) -> layer -> Flatten`` (activation 1 is the
    layer's output in canonical layout); the discriminator is one Dense."""
    out = layer.output_shape(in_shape)
    generator = (Reshape(shape=in_shape), layer, Flatten()) if len(in_shape) == 3 else (Reshape(shape=in_shape), layer)
    return GANSpec(
        name="layer",
        data_shape=(math.prod(out),),
        latent_dim=math.prod(in_shape),
        generator=generator,
        discriminator=(Dense(units=1),),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype=dtype, matmul_precision=precision),  # type: ignore[arg-type]
    )


def randomised(spec: GANSpec, rng: np.random.Generator, seed: int = 0) -> dict[str, np.ndarray]:
    """Parameters with every entry random (BatchNorm scale and bias too, biases non-zero)."""
    params = init_params(spec, seed)
    dtype = np.dtype(spec.numerics.dtype)
    return {k: rng.uniform(-1, 1, v.shape).astype(dtype) for k, v in params.items()}


def run_layer(layer, in_shape, x: np.ndarray, rng, training: bool = False, **kw):
    spec = layer_spec(layer, in_shape, **kw)
    params = randomised(spec, rng)
    backend = JaxBackend(spec, params)
    out = backend.activations("generator", x.reshape(len(x), -1), training=training)[1]
    return out, params, backend


# -- Conv2D --------------------------------------------------------------------------------

# (layer, input (H, W, C), hand-derived pads ((top, bottom), (left, right)))
CONV_CASES = [
    # TF 'same', stride 2, odd kernel: out = ceil(6/2) = 3, total = (3-1)*2+3-6 = 1 -> (0, 1),
    # the odd pixel at the bottom; W = 5: total (3-1)*2+3-5 = 2 -> (1, 1).
    (Conv2D(filters=3, kernel=3, stride=2, padding="same"), (6, 5, 2), ((0, 1), (1, 1))),
    # DCGAN's k=4, s=2, p=1.
    (Conv2D(filters=2, kernel=4, stride=2, padding=1, use_bias=False), (6, 6, 3), ((1, 1), (1, 1))),
    (Conv2D(filters=2, kernel=2, stride=1, padding="valid"), (3, 4, 2), ((0, 0), (0, 0))),
    # 'same' with an even kernel, stride 1: total 3 -> (1, 2).
    (Conv2D(filters=1, kernel=4, stride=1, padding="same"), (4, 3, 1), ((1, 2), (1, 2))),
]


@pytest.mark.parametrize("layer, in_shape, pads", CONV_CASES, ids=lambda v: str(v) if isinstance(v, tuple) else None)
def test_conv2d_matches_loop(layer, in_shape, pads, rng):
    x = rng.standard_normal((3, *in_shape))
    got, params, _ = run_layer(layer, in_shape, x, rng)
    want = np_conv(x, params["generator.1.kernel"], layer.stride, pads)
    if layer.use_bias:
        want = want + params["generator.1.bias"]
    assert rel(got, want) < 1e-13


def test_same_stride2_odd_kernel_pads_bottom_not_both_sides(rng):
    """TF 'same' is not torch's padding=1: the two give outputs of the same size that differ."""
    layer, in_shape = Conv2D(filters=2, kernel=3, stride=2, padding="same", use_bias=False), (6, 6, 1)
    x = rng.standard_normal((2, *in_shape))
    got, params, _ = run_layer(layer, in_shape, x, rng)
    kernel = params["generator.1.kernel"]
    assert rel(got, np_conv(x, kernel, 2, ((0, 1), (0, 1)))) < 1e-13
    symmetric = np_conv(x, kernel, 2, ((1, 1), (1, 1)))
    assert symmetric.shape == got.shape and rel(got, symmetric) > 0.1


def assert_bf16_product(got: np.ndarray, product: np.ndarray, bias: np.ndarray, exact: np.ndarray) -> None:
    """``got`` is bf16(product) + bias in float32: all but a rare product whose float32
    accumulation order tips a bf16 rounding are equal, none is more than one bf16 step away."""
    emulated = to_bf16(product.astype(np.float32)) + bias
    assert got.dtype == np.float32
    assert np.mean(got == emulated) > 0.99
    assert np.all(np.abs(got - emulated) <= 2**-7 * np.abs(product) + 1e-6)
    assert rel(got, exact) > 1e-3  # and bf16 really was applied


@pytest.mark.parametrize("mode", ["jit", "eager"])
def test_conv2d_float32_highest_and_bf16(mode, rng):
    layer, in_shape = Conv2D(filters=8, kernel=3, stride=1, padding="same"), (8, 8, 16)
    x = rng.standard_normal((4, *in_shape)).astype(np.float32)
    spec = layer_spec(layer, in_shape, dtype="float32")
    params = randomised(spec, rng)
    got = JaxBackend(spec, params, mode=mode).activations("generator", x.reshape(4, -1))[1]
    kernel, bias = params["generator.1.kernel"], params["generator.1.bias"]
    exact = np_conv(x.astype(np.float64), kernel.astype(np.float64), 1, ((1, 1), (1, 1))) + bias
    assert got.dtype == np.float32 and rel(got, exact) < 2e-6
    spec = layer_spec(layer, in_shape, dtype="float32", precision="bf16")
    got = JaxBackend(spec, params, mode=mode).activations("generator", x.reshape(4, -1))[1]
    product = np_conv(to_bf16(x).astype(np.float64), to_bf16(kernel).astype(np.float64), 1, ((1, 1), (1, 1)))
    assert_bf16_product(got, product, bias, exact)


# -- ConvTranspose2D -----------------------------------------------------------------------

# (layer, input (H, W, C), hand-derived crops (top, bottom, left, right), output (H, W))
CONV_T_CASES = [
    # Keras/Flax 'same', k=5, s=2: full 2*2+5 = 9 rows, keep 6: crop k-s = 3 as (1, 2);
    # W = 2: full 7, keep 4, (1, 2).
    (ConvTranspose2D(filters=2, kernel=5, stride=2, padding="same"), (3, 2, 3), (1, 2, 1, 2), (6, 4)),
    # The common torch port ConvTranspose2d(5, 2, padding=2, output_padding=1): crop (2, 1).
    (ConvTranspose2D(filters=2, kernel=5, stride=2, padding=2, output_padding=1), (3, 2, 3), (2, 1, 2, 1), (6, 4)),
    # DCGAN's k=4, s=2, p=1: (1, 1), size doubles.
    (ConvTranspose2D(filters=3, kernel=4, stride=2, padding=1, use_bias=False), (3, 3, 2), (1, 1, 1, 1), (6, 6)),
    # k=3, s=2, p=1, output_padding=1: (1, 0).
    (ConvTranspose2D(filters=1, kernel=3, stride=2, padding=1, output_padding=1), (3, 2, 2), (1, 0, 1, 0), (6, 4)),
    # k < s, 'valid': Keras' size H*s, one appended zero row/column (crop (0, -1)) that only the
    # bias reaches.
    (ConvTranspose2D(filters=2, kernel=2, stride=3, padding="valid"), (2, 3, 2), (0, -1, 0, -1), (6, 9)),
    # A crop beyond k - 1 (torch accepts padding >= kernel): full H+1 = 6 rows, keep 2.
    (ConvTranspose2D(filters=2, kernel=2, stride=1, padding=2), (5, 4, 1), (2, 2, 2, 2), (2, 1)),
    # DCGAN's stem: 1x1 -> k x k.
    (ConvTranspose2D(filters=4, kernel=3, stride=1, padding="valid", use_bias=False), (1, 1, 5), (0, 0, 0, 0), (3, 3)),
]


@pytest.mark.parametrize("layer, in_shape, crops, out_hw", CONV_T_CASES)
def test_conv_transpose_matches_loop(layer, in_shape, crops, out_hw, rng):
    x = rng.standard_normal((2, *in_shape))
    got, params, _ = run_layer(layer, in_shape, x, rng)
    want = crop(np_conv_transpose_full(x, params["generator.1.kernel"], layer.stride), *crops)
    if layer.use_bias:
        want = want + params["generator.1.bias"]
    assert want.shape[1:3] == out_hw
    assert rel(got, want) < 1e-13


def test_conv_transpose_is_the_adjoint_of_conv(rng):
    """<conv(y), x> = <y, conv_transpose(x)> for the VALID conv with the same kernel."""
    layer, in_shape = ConvTranspose2D(filters=3, kernel=3, stride=2, padding="valid", use_bias=False), (3, 4, 2)
    x = rng.standard_normal((2, *in_shape))
    got, params, _ = run_layer(layer, in_shape, x, rng)
    y = rng.standard_normal(got.shape)
    conv_y = np_conv(y, params["generator.1.kernel"], 2, ((0, 0), (0, 0)))
    assert np.sum(conv_y * x) == pytest.approx(np.sum(y * got), rel=1e-13)


def test_same_transpose_is_one_pixel_off_the_torch_port(rng):
    """'same' with odd k - s against torch's padding=2, output_padding=1: same size, shifted."""
    in_shape = (3, 3, 1)
    x = rng.standard_normal((2, *in_shape))
    same = ConvTranspose2D(filters=1, kernel=5, stride=2, padding="same", use_bias=False)
    port = ConvTranspose2D(filters=1, kernel=5, stride=2, padding=2, output_padding=1, use_bias=False)
    spec = layer_spec(same, in_shape)
    params = randomised(spec, rng)
    a = JaxBackend(spec, params).activations("generator", x.reshape(2, -1))[1]
    b = JaxBackend(layer_spec(port, in_shape), params).activations("generator", x.reshape(2, -1))[1]
    assert a.shape == b.shape == (2, 6, 6, 1)
    assert rel(a, b) > 0.1
    np.testing.assert_allclose(a[:, 1:, 1:], b[:, :-1, :-1], rtol=1e-13, atol=1e-13)


def test_conv_transpose_bf16(rng):
    layer, in_shape = ConvTranspose2D(filters=8, kernel=4, stride=2, padding=1), (4, 4, 16)
    x = rng.standard_normal((4, *in_shape)).astype(np.float32)
    got, params, _ = run_layer(layer, in_shape, x, rng, dtype="float32", precision="bf16")
    kernel, bias = params["generator.1.kernel"], params["generator.1.bias"]
    product = np_conv_transpose_full(to_bf16(x).astype(np.float64), to_bf16(kernel).astype(np.float64), 2)
    exact = crop(np_conv_transpose_full(x.astype(np.float64), kernel.astype(np.float64), 2), 1, 1, 1, 1) + bias
    assert_bf16_product(got, crop(product, 1, 1, 1, 1), bias, exact)


# -- BatchNorm -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(4, 3, 2), (5,)], ids=["image", "vector"])
def test_batchnorm_train_and_eval(in_shape, rng):
    layer = BatchNorm(momentum=0.3, eps=1e-3)
    x = rng.standard_normal((6, *in_shape)) * 3 + 2
    got, params, backend = run_layer(layer, in_shape, x, rng, training=True)
    scale, bias = params["generator.1.scale"], params["generator.1.bias"]
    assert rel(got, np_batchnorm_train(x, scale, bias, 1e-3)) < 1e-13
    # Inference mode: the running statistics, here loaded by hand.
    channels = in_shape[-1]
    mean, var = rng.standard_normal(channels), rng.uniform(0.5, 2, channels)
    backend.set_buffers({"generator.1.running_mean": mean, "generator.1.running_var": var})
    got = backend.activations("generator", x.reshape(len(x), -1))[1]
    assert rel(got, (x - mean) / np.sqrt(var + 1e-3) * scale + bias) < 1e-13
    assert (
        rel(backend.generate(x.reshape(len(x), -1)), ((x - mean) / np.sqrt(var + 1e-3) * scale + bias).reshape(6, -1))
        < 1e-13
    )


def test_batchnorm_uses_two_pass_variance(rng):
    """A mean offset of 1e4 would cost E[x^2] - E[x]^2 about 8 digits in float64."""
    layer = BatchNorm()
    x = rng.standard_normal((8, 3)) * 1e-2 + 1e4
    got, params, _ = run_layer(layer, (3,), x, rng, training=True)
    want = np_batchnorm_train(x, params["generator.1.scale"], params["generator.1.bias"], 1e-5)
    assert rel(got, want) < 1e-9


def bn_order_spec(running_var: str, n_critic: int) -> GANSpec:
    """BatchNorm in G after a bias-free Dense (image-shaped), and as D's first layer, so every
    BatchNorm input of a training step is computable from the initial parameters."""
    return GANSpec(
        name="bn-order",
        data_shape=(18,),
        latent_dim=4,
        generator=(
            Dense(units=18, use_bias=False),
            Reshape(shape=(3, 3, 2)),
            BatchNorm(momentum=0.3, running_var=running_var),
            Flatten(),
        ),
        discriminator=(
            Reshape(shape=(3, 3, 2)),
            BatchNorm(momentum=0.2, eps=1e-3, running_var=running_var),
            Flatten(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        n_critic=n_critic,
        numerics=Numerics(dtype="float64"),
    )


@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
def test_running_statistics_follow_the_documented_call_order(running_var, rng):
    spec = bn_order_spec(running_var, n_critic=2)
    params = randomised(spec, rng)
    backend = JaxBackend(spec, params)
    batch = TrainBatch(
        real=rng.standard_normal((2, 5, 18)) + 1.5,
        z_d=rng.standard_normal((2, 5, 4)),
        z_g=rng.standard_normal((5, 4)),
    )
    initial = init_buffers(spec)
    assert (
        set(backend.get_buffers())
        == set(initial)
        == {
            "generator.2.running_mean",
            "generator.2.running_var",
            "discriminator.1.running_mean",
            "discriminator.1.running_var",
        }
    )
    # loss_terms, gradients and activations (even in training mode) never move them.
    backend.loss_terms(batch.real[0], batch.z_g)
    backend.gradients(batch.real[0], batch.z_g)
    backend.activations("generator", batch.z_g, training=True)
    backend.activations("discriminator", batch.real[0], training=True)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, initial[name], err_msg=name)

    g_bn, d_bn = spec.generator[2], spec.discriminator[1]
    kernel, scale, bias = params["generator.0.kernel"], params["generator.2.scale"], params["generator.2.bias"]

    def g_pre(z):  # G's BatchNorm input (G's parameters only change after all D updates)
        return (z @ kernel).reshape(-1, 3, 3, 2)

    def g_out(z):
        return np_batchnorm_train(g_pre(z), scale, bias, g_bn.eps).reshape(-1, 18)

    g_stats, d_stats = (np.zeros(2), np.ones(2)), (np.zeros(2), np.ones(2))
    for i in range(2):
        g_stats = np_running_update(g_stats, g_pre(batch.z_d[i]), g_bn)
        d_stats = np_running_update(d_stats, batch.real[i].reshape(-1, 3, 3, 2), d_bn)
        d_stats = np_running_update(d_stats, g_out(batch.z_d[i]).reshape(-1, 3, 3, 2), d_bn)
    g_stats = np_running_update(g_stats, g_pre(batch.z_g), g_bn)
    d_stats = np_running_update(d_stats, g_out(batch.z_g).reshape(-1, 3, 3, 2), d_bn)

    backend.train_step(batch)
    got = backend.get_buffers()
    want = {
        "generator.2.running_mean": g_stats[0],
        "generator.2.running_var": g_stats[1],
        "discriminator.1.running_mean": d_stats[0],
        "discriminator.1.running_var": d_stats[1],
    }
    for name, value in want.items():
        assert rel(got[name], value) < 1e-13, name
    # set_params leaves buffers alone; generate then runs on the running statistics.
    backend.set_params(params)
    z = rng.standard_normal((3, 4))
    expected = (g_pre(z) - g_stats[0]) / np.sqrt(g_stats[1] + g_bn.eps) * scale + bias
    assert rel(backend.generate(z), expected.reshape(3, 18)) < 1e-13


def test_buffers_round_trip_and_are_checked(rng):
    spec = bn_order_spec("unbiased", 1)
    backend = JaxBackend(spec, init_params(spec))
    new = {k: rng.uniform(0.5, 1.5, v.shape) for k, v in init_buffers(spec).items()}
    backend.set_buffers(new)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, new[name])
    with pytest.raises(ValueError, match="missing generator.2.running_var"):
        backend.set_buffers({k: v for k, v in new.items() if k != "generator.2.running_var"})


# -- gradient penalties ---------------------------------------------------------------------


def penalty_spec(penalty: str) -> GANSpec:
    loss = LossSpec(
        name="wasserstein" if penalty == "wgan_gp" else "non_saturating", penalty=penalty, penalty_weight=3.0
    )
    return GANSpec(
        name="penalty",
        data_shape=(4, 4, 1),
        latent_dim=3,
        generator=(Dense(units=16), Reshape(shape=(4, 4, 1))),
        discriminator=(Conv2D(filters=2, kernel=3, stride=2, padding="same"), Tanh(), Flatten(), Dense(units=1)),
        loss=loss,
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
    )


def np_critic(p, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """D(x) and the input gradient of sum D(x), by hand: the conv's adjoint is the transposed
    conv's scatter (kernel read as (kh, kw, out, in) = the conv's HWIO), cropped by the pads."""
    pads = ((0, 1), (0, 1))  # 'same', k=3, s=2 on 4: total (2-1)*2+3-4 = 1
    h = np.tanh(np_conv(x, p["discriminator.0.kernel"], 2, pads) + p["discriminator.0.bias"])
    logits = h.reshape(len(x), -1) @ p["discriminator.3.kernel"] + p["discriminator.3.bias"]
    dh = np.broadcast_to(p["discriminator.3.kernel"][:, 0], (len(x), 8)).reshape(h.shape) * (1 - h * h)
    full = np_conv_transpose_full(dh, p["discriminator.0.kernel"], 2)  # 5 x 5 = the padded input
    return logits, full[:, :4, :4, :]


def np_d_loss(p, spec: GANSpec, real, z, alpha) -> tuple[float, float]:
    fake = (z @ p["generator.0.kernel"] + p["generator.0.bias"]).reshape(-1, 4, 4, 1)
    l_real, _ = np_critic(p, real)
    l_fake, _ = np_critic(p, fake)
    a = alpha.reshape(-1, 1, 1, 1)
    _, g = np_critic(p, a * real + (1 - a) * fake if spec.loss.penalty == "wgan_gp" else real)
    s = np.sum(g * g, axis=(1, 2, 3))
    lam = spec.loss.penalty_weight
    if spec.loss.penalty == "wgan_gp":
        penalty = lam * np.mean((np.sqrt(s + spec.loss.norm_eps) - 1) ** 2)
        return float(-l_real.mean() + l_fake.mean() + penalty), float(penalty)
    penalty = 0.5 * lam * np.mean(s)
    return float(softplus(-l_real).mean() + softplus(l_fake).mean() + penalty), float(penalty)


@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_penalty_and_its_second_order_gradient(penalty, rng):
    spec = penalty_spec(penalty)
    params = {k: v * 1.5 for k, v in randomised(spec, rng).items()}
    real, z, alpha = rng.uniform(-1, 1, (5, 4, 4, 1)), rng.standard_normal((5, 3)), rng.uniform(size=5)
    backend = JaxBackend(spec, params)
    d_loss, d_penalty = np_d_loss(params, spec, real, z, alpha)
    terms = backend.loss_terms(real, z, alpha)
    assert terms["d_penalty"] == pytest.approx(d_penalty, rel=1e-12)
    assert terms["d_loss"] == pytest.approx(d_loss, rel=1e-12)
    _, grads = backend.gradients(real, z, alpha)
    h = 1e-6
    penalty_part = []
    for name in [n for n in params if n.startswith("discriminator")]:
        for index in np.ndindex(params[name].shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += h
            minus[name][index] -= h
            (lp, pp), (lm, pm) = np_d_loss(plus, spec, real, z, alpha), np_d_loss(minus, spec, real, z, alpha)
            assert grads[name][index] == pytest.approx((lp - lm) / (2 * h), rel=1e-6, abs=1e-8), (name, index)
            penalty_part.append(abs(pp - pm) / (2 * h))
    assert max(penalty_part) > 1e-2  # the penalty really contributes to D's gradient


def test_wgan_gp_needs_alpha(rng):
    spec = penalty_spec("wgan_gp")
    backend = JaxBackend(spec, init_params(spec))
    with pytest.raises(ValueError, match="alpha"):
        backend.loss_terms(rng.uniform(-1, 1, (2, 4, 4, 1)), rng.standard_normal((2, 3)))


# -- optimisers and clipping ----------------------------------------------------------------


class NpOptimizer:
    """torch.optim.RMSprop / SGD, written out from their documented algorithms."""

    def __init__(self, spec, names):
        self.spec, self.names, self.state, self.steps = spec, names, {}, 0

    def update(self, params, grads):
        s, self.steps = self.spec, self.steps + 1
        for n in self.names:
            g = grads[n] + s.weight_decay * params[n]
            st = self.state.setdefault(n, {})
            if isinstance(s, RMSpropSpec):
                st["v"] = s.alpha * st.get("v", 0.0) + (1 - s.alpha) * g * g
                avg = st["v"]
                if s.centered:
                    st["grad_avg"] = s.alpha * st.get("grad_avg", 0.0) + (1 - s.alpha) * g
                    avg = avg - st["grad_avg"] ** 2
                avg = np.sqrt(avg) + s.eps
                if s.momentum:
                    st["momentum"] = s.momentum * st.get("momentum", 0.0) + g / avg
                    params[n] = params[n] - s.lr * st["momentum"]
                else:
                    params[n] = params[n] - s.lr * g / avg
            else:  # SGD
                if s.momentum:
                    st["momentum"] = g.copy() if self.steps == 1 else s.momentum * st["momentum"] + g
                    g = g + s.momentum * st["momentum"] if s.nesterov else st["momentum"]
                params[n] = params[n] - s.lr * g


def tiny_spec(g_opt, d_opt, loss: LossSpec | None = None) -> GANSpec:
    return GANSpec(
        name="tiny-opt",
        data_shape=(6,),
        latent_dim=3,
        generator=(Dense(units=7), LeakyReLU(slope=0.2), Dense(units=6), Tanh()),
        discriminator=(Dense(units=5), LeakyReLU(slope=0.2), Dense(units=1)),
        loss=loss or LossSpec(),
        g_optimizer=g_opt,
        d_optimizer=d_opt,
        numerics=Numerics(dtype="float64"),
    )


OPTIMIZER_CASES = [
    (
        RMSpropSpec(lr=1e-2, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01),
        SGDSpec(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    (SGDSpec(lr=0.1, momentum=0.8), RMSpropSpec(lr=3e-3, alpha=0.99, eps=1e-8)),
    (SGDSpec(lr=0.1), RMSpropSpec(lr=3e-3, momentum=0.3)),
]


@pytest.mark.parametrize("g_opt, d_opt", OPTIMIZER_CASES)
def test_rmsprop_and_sgd_are_torch_form(g_opt, d_opt, rng):
    """Each step: the gradients at the current parameters (from a second backend used as a
    gradient oracle, checked against finite differences elsewhere) fed to the NumPy optimisers
    must give what train_step gives; the exported slots must be the NumPy buffers."""
    spec = tiny_spec(g_opt, d_opt)
    params = randomised(spec, rng)
    backend, oracle = JaxBackend(spec, params), JaxBackend(spec, params)
    g_names = [n for n in params if n.startswith("generator")]
    d_names = [n for n in params if n.startswith("discriminator")]
    g_np, d_np = NpOptimizer(g_opt, g_names), NpOptimizer(d_opt, d_names)
    want = dict(params)
    for _ in range(3):
        batch = TrainBatch(
            real=rng.uniform(-1, 1, (1, 4, 6)), z_d=rng.standard_normal((1, 4, 3)), z_g=rng.standard_normal((4, 3))
        )
        oracle.set_params(want)
        _, grads = oracle.gradients(batch.real[0], batch.z_d[0])
        d_np.update(want, grads)
        oracle.set_params(want)
        _, grads = oracle.gradients(batch.real[0], batch.z_g)
        g_np.update(want, grads)
        backend.train_step(batch)
    got = backend.get_params()
    for name in params:
        assert rel(got[name], want[name]) < 1e-12, name
    state = backend.get_optimizer_state()
    assert state.steps == {"generator": 3, "discriminator": 3}
    expected_slots = {}
    for opt in (g_np, d_np):
        for n in opt.names:
            for slot, value in opt.state[n].items():
                expected_slots.setdefault(slot, {})[n] = value
    assert set(state.slots) == set(expected_slots)
    for slot, tree in expected_slots.items():
        assert list(state.slots[slot]) == [n for n in params if n in tree], slot
        for n, value in tree.items():
            assert rel(state.slots[slot][n], value) < 1e-12, (slot, n)

    # The exported state continues the trajectory in a fresh backend.
    fresh = JaxBackend(spec, got)
    fresh.set_optimizer_state(state)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (1, 4, 6)), z_d=rng.standard_normal((1, 4, 3)), z_g=rng.standard_normal((4, 3))
    )
    fresh.train_step(batch)
    backend.train_step(batch)
    a, b = fresh.get_params(), backend.get_params()
    for name in params:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert fresh.get_optimizer_state().steps == {"generator": 4, "discriminator": 4}


def test_weight_clipping_after_each_d_update(rng):
    spec = tiny_spec(SGDSpec(lr=0.1), SGDSpec(lr=0.5), LossSpec(name="wasserstein", clip_value=0.05))
    spec = spec.replace(n_critic=2)
    params = {k: v * 0.06 for k, v in randomised(spec, rng).items()}  # some start beyond the clip
    backend, oracle = JaxBackend(spec, params), JaxBackend(spec, params)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (2, 4, 6)), z_d=rng.standard_normal((2, 4, 3)), z_g=rng.standard_normal((4, 3))
    )
    want = dict(params)
    for i in range(2):
        oracle.set_params(want)
        _, grads = oracle.gradients(batch.real[i], batch.z_d[i])
        for n in want:
            if n.startswith("discriminator"):
                want[n] = np.clip(want[n] - 0.5 * grads[n], -0.05, 0.05)
    oracle.set_params(want)
    _, grads = oracle.gradients(batch.real[0], batch.z_g)
    for n in want:
        if n.startswith("generator"):
            want[n] = want[n] - 0.1 * grads[n]
    backend.train_step(batch)
    got = backend.get_params()
    for name in params:
        assert rel(got[name], want[name]) < 1e-12, name
    clipped = np.concatenate([np.abs(v).ravel() for k, v in got.items() if k.startswith("discriminator")])
    assert clipped.max() <= 0.05 and np.sum(clipped == 0.05) > 3


# -- the whole network -----------------------------------------------------------------------


def mini_dcgan(penalty: str = "none") -> GANSpec:
    bn = penalty == "none"
    d_mid = [BatchNorm()] if bn else []
    return GANSpec(
        name="mini-dcgan",
        data_shape=(6, 6, 1),
        latent_dim=4,
        generator=(
            Reshape(shape=(1, 1, 4)),
            ConvTranspose2D(filters=4, kernel=3, stride=1, padding="valid", use_bias=False),
            BatchNorm(),
            ReLU(),
            ConvTranspose2D(filters=1, kernel=4, stride=2, padding=1, use_bias=False),
            Tanh(),
        ),
        discriminator=(
            Conv2D(filters=4, kernel=4, stride=2, padding=1, use_bias=not bn),
            *d_mid,
            LeakyReLU(slope=0.2),
            Conv2D(filters=1, kernel=3, stride=1, padding="valid"),
            Flatten(),
        ),
        loss=LossSpec(name="wasserstein", penalty=penalty) if penalty != "none" else LossSpec(),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        n_critic=2,
        numerics=Numerics(dtype="float64"),
    )


@pytest.mark.slow
def test_jit_and_eager_agree(rng):
    """One step of a conv GAN with BatchNorm in G and a WGAN-GP critic, compiled and op by op
    (one case only: compiling conv gradients on a CPU takes seconds)."""
    spec = mini_dcgan("wgan_gp").replace(n_critic=1)
    params = randomised(spec, rng)
    batch = TrainBatch(
        real=rng.uniform(-1, 1, (1, 4, 6, 6, 1)),
        z_d=rng.standard_normal((1, 4, 4)),
        z_g=rng.standard_normal((4, 4)),
        alpha=rng.uniform(size=(1, 4)),
    )
    results = []
    for mode in ("jit", "eager"):
        backend = JaxBackend(spec, params, mode=mode)
        terms = backend.train_step(batch)
        results.append((terms, backend.get_params(), backend.get_buffers()))
    (t1, p1, b1), (t2, p2, b2) = results
    assert t1 == pytest.approx(t2, rel=1e-12, abs=1e-14)
    for name in p1:
        assert rel(p1[name], p2[name]) < 1e-12, name
    for name in b1:
        assert rel(b1[name], b2[name]) < 1e-12, name
    assert set(b1) == {"generator.2.running_mean", "generator.2.running_var"}


def test_mini_dcgan_generator_by_hand(rng):
    """The conv generator's output in training mode, assembled from this file's NumPy layers."""
    spec = mini_dcgan()
    params = randomised(spec, rng)
    z = rng.standard_normal((3, 4))
    got = JaxBackend(spec, params).activations("generator", z, training=True)
    h = np_conv_transpose_full(z.reshape(3, 1, 1, 4), params["generator.1.kernel"], 1)
    h = np.maximum(np_batchnorm_train(h, params["generator.2.scale"], params["generator.2.bias"], 1e-5), 0)
    h = np.tanh(crop(np_conv_transpose_full(h, params["generator.4.kernel"], 2), 1, 1, 1, 1))
    assert rel(got[-1], h) < 1e-13


def test_optimizer_state_of_another_optimiser_is_refused():
    adam = tiny_spec(ADAM, ADAM)
    rms = tiny_spec(ADAM, RMSpropSpec(lr=1e-3, momentum=0.9))
    state = JaxBackend(adam, init_params(adam)).get_optimizer_state()
    assert set(state.slots) == {"m", "v"}
    backend = JaxBackend(rms, init_params(rms))
    assert set(backend.get_optimizer_state().slots) == {"m", "v", "momentum"}
    with pytest.raises(ValueError, match="slot 'momentum' of the discriminator"):
        backend.set_optimizer_state(state)
