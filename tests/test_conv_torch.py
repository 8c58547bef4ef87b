"""The torch backend's conv layers, BatchNorm, penalties, clipping and optimisers against
independent float64 NumPy written here: loop-based convolutions (the transposed one as a scatter,
i.e. by its definition as the adjoint), batch normalisation with the running update, input
gradients by hand, central finite differences of the penalised loss, and RMSprop/SGD updates.
Nothing is compared with the backend's own earlier output."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("torch")
import torch  # noqa: E402

from gan_backends.backends import TrainBatch  # noqa: E402
from gan_backends.backends.torch_backend import TorchBackend, to_torch_layout  # noqa: E402
from gan_backends.params import buffer_shapes, init_buffers, init_params  # noqa: E402
from gan_backends.presets import get_preset  # noqa: E402
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


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# -- independent NumPy definitions -----------------------------------------------------------


def conv_ref(x: np.ndarray, kernel: np.ndarray, stride: int, pads) -> np.ndarray:
    """NHWC cross-correlation with an HWIO kernel, explicit ((top, bottom), (left, right)) zero
    padding, one output pixel at a time."""
    (t, b), (left, r) = pads
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, kernel)
    return out


def conv_transpose_full(y: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """The transposed convolution by its definition: every input pixel scatters ``kernel`` times
    its value onto the output, ``stride`` apart. ``kernel`` is ``(kh, kw, out, in)``."""
    kh, kw = kernel.shape[:2]
    n, h, w, _ = y.shape
    full = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kw, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :] += np.einsum(
                "nc,hwoc->nhwo", y[:, i, j, :], kernel
            )
    return full


def crop(full: np.ndarray, crops) -> np.ndarray:
    """Drop ``before`` rows/cols at the start and ``after`` at the end; a negative ``after``
    appends zeros."""
    (t, b), (left, r) = crops
    out = np.pad(full, ((0, 0), (0, max(-b, 0)), (0, max(-r, 0)), (0, 0)))
    return out[:, t : out.shape[1] - max(b, 0), left : out.shape[2] - max(r, 0), :]


def conv_input_grad(dy: np.ndarray, kernel: np.ndarray, stride: int, pads, in_hw) -> np.ndarray:
    """d(sum(conv_ref(x) * dy)) / dx by scattering dy back through the HWIO kernel."""
    (t, b), (left, r) = pads
    full = conv_transpose_full(dy, kernel, stride)  # HWIO read as (kh, kw, out=I, in=O)
    hp, wp = in_hw[0] + t + b, in_hw[1] + left + r
    padded = np.zeros((dy.shape[0], hp, wp, kernel.shape[2]))
    padded[:, : full.shape[1], : full.shape[2], :] = full  # rows no window reached stay 0
    return padded[:, t : t + in_hw[0], left : left + in_hw[1], :]


def bn_ref(x: np.ndarray, scale, bias, eps: float, stats=None) -> np.ndarray:
    """Batch statistics over every axis but the last (or the given running statistics)."""
    axes = tuple(range(x.ndim - 1))
    if stats is None:
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
    else:
        mean, var = stats
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def bn_update(running: tuple[np.ndarray, np.ndarray], x: np.ndarray, layer: BatchNorm):
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    var = ((x - mean) ** 2).mean(axis=axes)
    if layer.running_var == "unbiased":
        var = var * n / (n - 1)
    m = layer.momentum
    return (1 - m) * running[0] + m * mean, (1 - m) * running[1] + m * var


def softplus(x):
    return np.logaddexp(x, 0.0)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), kept as float32: by hand, on bits."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


# -- a spec around one layer -----------------------------------------------------------------


def layer_spec(layer, in_shape, *, numerics: Numerics | None = None, latent: int = 3) -> GANSpec:
    """G: Dense -> Reshape(in_shape) -> layer (its output is the data); D: Flatten -> Dense(1)."""
    out_shape = layer.output_shape(in_shape)
    return GANSpec(
        name="one-layer",
        data_shape=out_shape,
        latent_dim=latent,
        generator=(Dense(units=math.prod(in_shape)), Reshape(shape=in_shape), layer),
        discriminator=(Flatten(), Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=numerics or Numerics(dtype="float64"),
    )


def layer_io(layer, in_shape, seed=0, numerics=None, batch=3):
    """(layer input, layer output as the backend computes it, params, backend)."""
    spec = layer_spec(layer, in_shape, numerics=numerics)
    params = init_params(spec, seed)
    backend = TorchBackend(spec, params, device="cpu")
    z = np.random.default_rng(seed).standard_normal((batch, spec.latent_dim))
    acts = backend.activations("generator", z)
    np.testing.assert_array_equal(acts[-1], backend.generate(z))  # NHWC at the output too
    return acts[1], acts[2], params, backend


CONV_CASES = [
    # (size, kernel, stride, padding, use_bias)
    (7, 3, 1, "same", True),
    (8, 3, 2, "same", True),  # the trap: TF pads (0, 1), torch's padding=1 pads (1, 1)
    (7, 3, 2, "same", False),
    (8, 4, 2, 1, True),  # DCGAN
    (6, 5, 3, "same", True),
    (6, 2, 2, "valid", True),
    (5, 3, 1, 2, False),
    (4, 4, 1, "valid", True),
]


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "use_bias"), CONV_CASES)
def test_conv2d_against_loop(size, kernel, stride, padding, use_bias):
    layer = Conv2D(filters=3, kernel=kernel, stride=stride, padding=padding, use_bias=use_bias)
    x, y, params, _ = layer_io(layer, (size, size + 1, 2))
    want = conv_ref(x, params["generator.2.kernel"], stride, layer.pads(x.shape[1:]))
    if use_bias:
        want = want + params["generator.2.bias"]
    assert y.shape == want.shape == (3, *layer.output_shape(x.shape[1:]))
    assert rel(y, want) < 1e-13


CONV_T_CASES = [
    # (size, kernel, stride, padding, output_padding, use_bias)
    (3, 4, 2, 1, 0, True),  # DCGAN
    (3, 5, 2, "same", 0, True),  # k - s odd: crop (1, 2), torch's padding cannot say it
    (3, 3, 2, "same", 0, False),  # crop (0, 1)
    (4, 4, 2, "same", 0, True),
    (3, 1, 2, "same", 0, True),  # k < s: appends a zero row/col (plus bias)
    (2, 4, 1, "valid", 0, False),  # DCGAN stem
    (3, 2, 3, "valid", 0, True),  # k < s, valid: Keras' in * s
    (3, 3, 2, 1, 1, True),  # torch output_padding
    (3, 3, 3, 0, 2, True),
]


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "output_padding", "use_bias"), CONV_T_CASES)
def test_conv_transpose2d_against_scatter(size, kernel, stride, padding, output_padding, use_bias):
    layer = ConvTranspose2D(
        filters=2, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding, use_bias=use_bias
    )
    x, y, params, _ = layer_io(layer, (size, size + 1, 3))
    full = conv_transpose_full(x, params["generator.2.kernel"], stride)
    want = crop(full, layer.crops(x.shape[1:]))
    if use_bias:
        want = want + params["generator.2.bias"]  # everywhere, the appended zeros included
    assert y.shape == want.shape == (3, *layer.output_shape(x.shape[1:]))
    assert rel(y, want) < 1e-13


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv(x), y> = <x, conv_transpose(y)> with one kernel: the definition, through the backend."""
    rng = np.random.default_rng(3)
    layer = ConvTranspose2D(filters=2, kernel=3, stride=2, padding="valid")
    y_in, out, params, _ = layer_io(layer, (3, 4, 5))
    kernel = params["generator.2.kernel"]  # (kh, kw, out=2, in=5) = HWIO of a conv 2 -> 5
    x = rng.standard_normal(out.shape)
    lhs = np.sum(conv_ref(x, kernel, 2, ((0, 0), (0, 0))) * y_in)
    rhs = np.sum(x * (out - params["generator.2.bias"]))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_tf_same_conv_transpose_is_not_the_common_torch_port():
    """Keras/Flax 'same' k=5 s=2 keeps full[1:-2]; the usual torch port ConvTranspose2d(5, 2,
    padding=2, output_padding=1) keeps full[2:-1]: the same values one pixel shifted."""
    layer = ConvTranspose2D(filters=2, kernel=5, stride=2, padding="same")
    x, y, params, _ = layer_io(layer, (4, 4, 3))
    port = torch.nn.ConvTranspose2d(3, 2, 5, 2, padding=2, output_padding=1).double()
    with torch.no_grad():
        port.weight.copy_(torch.from_numpy(to_torch_layout("k.kernel", params["generator.2.kernel"]).copy()))
        port.bias.copy_(torch.from_numpy(params["generator.2.bias"]))
        ported = port(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert ported.shape == y.shape == (3, 8, 8, 2)
    assert rel(ported, y) > 0.1
    assert rel(ported[:, :-1, :-1], y[:, 1:, 1:]) < 1e-13


def test_stride_two_same_conv_is_not_torch_padding_one():
    layer = Conv2D(filters=2, kernel=3, stride=2, padding="same")
    x, y, params, _ = layer_io(layer, (8, 8, 2))
    port = torch.nn.Conv2d(2, 2, 3, 2, padding=1).double()
    with torch.no_grad():
        port.weight.copy_(torch.from_numpy(to_torch_layout("k.kernel", params["generator.2.kernel"]).copy()))
        port.bias.copy_(torch.from_numpy(params["generator.2.bias"]))
        ported = port(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert ported.shape == y.shape == (3, 4, 4, 2)
    assert rel(ported, y) > 0.1  # the window starts one pixel earlier


def test_state_dict_keys_are_canonical_names():
    spec = get_preset("dcgan-small", dtype="float64")
    params = init_params(spec, 0)
    backend = TorchBackend(spec, params, device="cpu")
    for net, module in (("generator", backend.G), ("discriminator", backend.D)):
        for key, value in module.state_dict().items():
            idx, attr = key.split(".")
            if attr == "num_batches_tracked":
                continue
            layer = spec.layers(net)[int(idx)]
            if attr in ("running_mean", "running_var"):
                np.testing.assert_array_equal(value.numpy(), init_buffers(spec)[f"{net}.{idx}.{attr}"])
                continue
            short = "bias" if attr == "bias" else "scale" if isinstance(layer, BatchNorm) else "kernel"
            canonical = params[f"{net}.{idx}.{short}"]
            if short == "kernel":  # Conv OIHW / ConvTranspose (in, out, kh, kw) from canonical
                canonical = canonical.transpose(3, 2, 0, 1)
            np.testing.assert_array_equal(value.numpy(), canonical)
    assert set(backend.get_buffers()) == set(buffer_shapes(spec))


def test_image_discriminator_against_numpy():
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
    h = conv_ref(x, p["discriminator.0.kernel"], 2, d[0].pads(x.shape[1:])) + p["discriminator.0.bias"]
    h = np.where(h > 0, h, 0.2 * h).reshape(4, -1)
    want = h @ p["discriminator.3.kernel"] + p["discriminator.3.bias"]
    assert rel(TorchBackend(spec, p, device="cpu").discriminate(x), want) < 1e-13


# -- BatchNorm: modes, running statistics, the order of calls ---------------------------------


def bn_spec(running_var: str) -> GANSpec:
    bn = BatchNorm(momentum=0.3, eps=1e-3, running_var=running_var)  # 0.3, not 0.7: the convention shows
    return GANSpec(
        name="bn",
        data_shape=(4, 4, 2),
        latent_dim=3,
        generator=(Dense(units=32), Reshape(shape=(4, 4, 2)), bn, Tanh()),
        discriminator=(
            Conv2D(filters=3, kernel=3, stride=2, padding="same", use_bias=False),
            bn,
            LeakyReLU(slope=0.2),
            Flatten(),
            Dense(units=1),
        ),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.3),
    )


def g_numpy(p, z, stats=None):
    """(G(z), the BatchNorm input)."""
    h = (z @ p["generator.0.kernel"] + p["generator.0.bias"]).reshape(-1, 4, 4, 2)
    return np.tanh(bn_ref(h, p["generator.2.scale"], p["generator.2.bias"], 1e-3, stats)), h


def d_numpy(p, x, stats=None):
    """(D(x), the BatchNorm input)."""
    h = conv_ref(x, p["discriminator.0.kernel"], 2, ((0, 1), (0, 1)))
    a = bn_ref(h, p["discriminator.1.scale"], p["discriminator.1.bias"], 1e-3, stats)
    a = np.where(a > 0, a, 0.2 * a).reshape(x.shape[0], -1)
    return a @ p["discriminator.4.kernel"] + p["discriminator.4.bias"], h


@pytest.mark.parametrize("mode", ["eager", pytest.param("compile", marks=pytest.mark.slow)])
@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
def test_batchnorm_running_statistics_follow_the_documented_calls(running_var, mode):
    spec = bn_spec(running_var)
    layer = spec.generator[2]
    p0 = init_params(spec, 1)
    rng = np.random.default_rng(1)
    real = rng.uniform(-1, 1, (1, 5, 4, 4, 2))
    z_d, z_g = rng.standard_normal((1, 5, 3)), rng.standard_normal((5, 3))
    backend = TorchBackend(spec, p0, mode=mode, device="cpu")
    before = backend.get_buffers()
    # Inference-mode and gradient computations leave the running statistics alone.
    backend.loss_terms(real[0], z_g)
    backend.gradients(real[0], z_g)
    backend.activations("generator", z_g, training=True)
    backend.activations("discriminator", real[0], training=True)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)

    terms = backend.train_step(TrainBatch(real=real, z_d=z_d, z_g=z_g))
    p1 = backend.get_params()
    fake_d, h_g1 = g_numpy(p0, z_d[0])
    fake_g, h_g2 = g_numpy(p0, z_g)  # G changes only after its own step
    l_real, h_d1 = d_numpy(p0, real[0])  # D(real) and D(fake) are separate calls:
    l_fake, h_d2 = d_numpy(p0, fake_d)  # each normalises with its own batch
    l_g, h_d3 = d_numpy(p1, fake_g)  # the G update's D call sees the updated D
    assert terms["d_real"] == pytest.approx(np.mean(softplus(-l_real)), rel=1e-12)
    assert terms["d_fake"] == pytest.approx(np.mean(softplus(l_fake)), rel=1e-12)
    assert terms["g_loss"] == pytest.approx(np.mean(softplus(-l_g)), rel=1e-12)
    expected = {}
    for net, idx, inputs in (("generator", 2, (h_g1, h_g2)), ("discriminator", 1, (h_d1, h_d2, h_d3))):
        stats = (before[f"{net}.{idx}.running_mean"], before[f"{net}.{idx}.running_var"])
        for h in inputs:
            stats = bn_update(stats, h, layer)
        expected[f"{net}.{idx}.running_mean"], expected[f"{net}.{idx}.running_var"] = stats
    got = backend.get_buffers()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert rel(got[name], value) < 1e-13, name

    # Inference mode normalises with exactly those running statistics.
    x = rng.uniform(-1, 1, (3, 4, 4, 2))
    g_stats = (got["generator.2.running_mean"], got["generator.2.running_var"])
    d_stats = (got["discriminator.1.running_mean"], got["discriminator.1.running_var"])
    assert rel(backend.generate(z_g[:3]), g_numpy(p1, z_g[:3], g_stats)[0]) < 1e-13
    assert rel(backend.discriminate(x), d_numpy(p1, x, d_stats)[0]) < 1e-13
    # ... and training-mode activations with the batch's.
    assert rel(backend.activations("discriminator", x, training=True)[-1], d_numpy(p1, x)[0]) < 1e-13
    assert rel(backend.activations("discriminator", x)[-1], d_numpy(p1, x, d_stats)[0]) < 1e-13


def test_set_buffers_round_trip_and_names():
    spec = bn_spec("unbiased")
    backend = TorchBackend(spec, init_params(spec, 0), device="cpu")
    rng = np.random.default_rng(0)
    new = {k: rng.uniform(0.5, 2.0, v.shape) for k, v in backend.get_buffers().items()}
    backend.set_buffers(new)
    for name, value in backend.get_buffers().items():
        np.testing.assert_array_equal(value, new[name])
    assert backend.G.state_dict()["2.running_var"].numpy().tolist() == new["generator.2.running_var"].tolist()
    with pytest.raises(ValueError, match="missing generator.2.running_mean"):
        backend.set_buffers({k: v for k, v in new.items() if k != "generator.2.running_mean"})


def test_batchnorm_after_dense_on_vectors():
    bn = BatchNorm(momentum=0.2, eps=1e-4, running_var="biased")
    spec = layer_spec(bn, (5,))
    p = init_params(spec, 0)
    backend = TorchBackend(spec, p, device="cpu")
    z = np.random.default_rng(0).standard_normal((6, 3))
    x, y = backend.activations("generator", z, training=True)[1:]
    assert rel(y, bn_ref(x, p["generator.2.scale"], p["generator.2.bias"], 1e-4)) < 1e-13
    backend.train_step(TrainBatch(real=np.zeros((1, 6, 5)), z_d=z[None], z_g=z))
    h = z @ p["generator.0.kernel"] + p["generator.0.bias"]
    stats = bn_update(bn_update((np.zeros(5), np.ones(5)), h, bn), h, bn)
    assert rel(backend.get_buffers()["generator.2.running_var"], stats[1]) < 1e-13


# -- gradient penalties: values and true second-order gradients ------------------------------


def penalty_spec(loss: str, penalty: str) -> GANSpec:
    return GANSpec(
        name="gp",
        data_shape=(4, 4, 2),
        latent_dim=3,
        generator=(Dense(units=32), Reshape(shape=(4, 4, 2)), Tanh()),
        # tanh, not LeakyReLU: its second derivative is non-zero, so the double backward matters.
        discriminator=(Conv2D(filters=3, kernel=3, stride=2, padding="same"), Tanh(), Flatten(), Dense(units=1)),
        loss=LossSpec(name=loss, penalty=penalty, penalty_weight=10.0, norm_eps=1e-12),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
        init=InitSpec(scheme="normal", std=0.5),
    )


PADS = ((0, 1), (0, 1))


def numpy_losses(spec: GANSpec, p, real, z, alpha) -> dict[str, float]:
    fake = np.tanh(z @ p["generator.0.kernel"] + p["generator.0.bias"]).reshape(-1, 4, 4, 2)
    k, b = p["discriminator.0.kernel"], p["discriminator.0.bias"]
    w, c = p["discriminator.3.kernel"], p["discriminator.3.bias"]

    def d(x):
        return np.tanh(conv_ref(x, k, 2, PADS) + b).reshape(x.shape[0], -1) @ w + c

    def d_input_grad(x):  # ∇_x Σ_j D(x_j), by hand
        a = np.tanh(conv_ref(x, k, 2, PADS) + b)
        da = np.broadcast_to(w[:, 0], (x.shape[0], w.shape[0])).reshape(a.shape)
        return conv_input_grad(da * (1 - a**2), k, 2, PADS, x.shape[1:3])

    l_real, l_fake = d(real), d(fake)
    if spec.loss.penalty == "wgan_gp":
        a = alpha[:, None, None, None]
        s = np.sum(d_input_grad(a * real + (1 - a) * fake) ** 2, axis=(1, 2, 3))
        penalty = 10.0 * np.mean((np.sqrt(s + 1e-12) - 1) ** 2)
    else:
        s = np.sum(d_input_grad(real) ** 2, axis=(1, 2, 3))
        penalty = 5.0 * np.mean(s)
    if spec.loss.name == "wasserstein":
        d_real, d_fake, g_loss = -np.mean(l_real), np.mean(l_fake), -np.mean(l_fake)
    else:
        d_real, d_fake, g_loss = np.mean(softplus(-l_real)), np.mean(softplus(l_fake)), np.mean(softplus(-l_fake))
    return {
        "d_real": d_real,
        "d_fake": d_fake,
        "d_penalty": penalty,
        "d_loss": d_real + d_fake + penalty,
        "g_loss": g_loss,
    }


@pytest.mark.parametrize(
    "mode", ["eager", pytest.param("compile", marks=pytest.mark.slow)]
)  # compile: the penalty's D call runs eagerly (no double backward in torch.compile)
@pytest.mark.parametrize(("loss", "penalty"), [("wasserstein", "wgan_gp"), ("non_saturating", "r1")])
def test_penalty_gradients_match_finite_differences(loss, penalty, mode):
    spec = penalty_spec(loss, penalty)
    params = init_params(spec, 5)
    rng = np.random.default_rng(5)
    real, z, alpha = rng.uniform(-1, 1, (4, 4, 4, 2)), rng.standard_normal((4, 3)), rng.uniform(0, 1, 4)
    backend = TorchBackend(spec, params, mode=mode, device="cpu")
    want = numpy_losses(spec, params, real, z, alpha)
    assert want["d_penalty"] > 1e-3
    assert backend.loss_terms(real, z, alpha) == pytest.approx(want, rel=1e-12)
    terms, grads = backend.gradients(real, z, alpha)
    assert terms == pytest.approx(want, rel=1e-12)
    h = 1e-6
    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        fd = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += h
            minus[name][index] -= h
            fd[index] = (
                numpy_losses(spec, plus, real, z, alpha)[which] - numpy_losses(spec, minus, real, z, alpha)[which]
            ) / (2 * h)
        assert rel(grad, fd) < 1e-7, name
    # A training step uses the same penalty on (real[0], G(z_d[0]), alpha[0]).
    step = backend.train_step(TrainBatch(real=real[None], z_d=z[None], z_g=z, alpha=alpha[None]))
    assert step["d_penalty"] == pytest.approx(want["d_penalty"], rel=1e-12)


def test_wgan_gp_needs_alpha():
    spec = penalty_spec("wasserstein", "wgan_gp")
    backend = TorchBackend(spec, init_params(spec, 0), device="cpu")
    with pytest.raises(ValueError, match="alpha"):
        backend.loss_terms(np.zeros((2, 4, 4, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="alpha"):
        backend.train_step(TrainBatch(real=np.zeros((1, 2, 4, 4, 2)), z_d=np.zeros((1, 2, 3)), z_g=np.zeros((2, 3))))


# -- optimisers and clipping against hand-written NumPy --------------------------------------


def numpy_update(opt, p, g, slots, step):
    """One step of the spec's optimiser in torch's form; ``slots`` updated in place."""
    if isinstance(opt, AdamSpec):
        g = g + opt.weight_decay * p
        slots["m"] = opt.beta1 * slots["m"] + (1 - opt.beta1) * g
        slots["v"] = opt.beta2 * slots["v"] + (1 - opt.beta2) * g * g
        vhat = np.sqrt(slots["v"]) / np.sqrt(1 - opt.beta2**step)
        return p - opt.lr / (1 - opt.beta1**step) * slots["m"] / (vhat + opt.eps)
    g = g + opt.weight_decay * p
    if isinstance(opt, RMSpropSpec):
        slots["v"] = opt.alpha * slots["v"] + (1 - opt.alpha) * g * g
        if opt.centered:
            slots["grad_avg"] = opt.alpha * slots["grad_avg"] + (1 - opt.alpha) * g
            denom = np.sqrt(slots["v"] - slots["grad_avg"] ** 2)
        else:
            denom = np.sqrt(slots["v"])
        denom = denom + opt.eps
        if opt.momentum:
            slots["momentum"] = opt.momentum * slots["momentum"] + g / denom
            return p - opt.lr * slots["momentum"]
        return p - opt.lr * g / denom
    if opt.momentum:
        slots["momentum"] = opt.momentum * slots["momentum"] + g
        g = g + opt.momentum * slots["momentum"] if opt.nesterov else slots["momentum"]
    return p - opt.lr * g


OPT_CASES = {
    "sgd-nesterov/rmsprop-centered": (
        SGDSpec(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        RMSpropSpec(lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01),
        LossSpec(name="least_squares"),
    ),
    "rmsprop/sgd-plain/clip": (
        RMSpropSpec(lr=1e-3, alpha=0.95, eps=1e-7),
        SGDSpec(lr=0.2),
        LossSpec(name="wasserstein", clip_value=0.3),
    ),
    "adam/rmsprop-momentum/hinge-clip": (
        ADAM,
        # eps 1e-4, and not wasserstein: RMSprop divides a gradient by its own running size,
        # so a gradient that is rounding noise (wasserstein's last bias: -1 + 1; a unit whose
        # gradient nearly vanishes) is amplified up to 1/eps and the trajectory compares noise.
        RMSpropSpec(lr=1e-2, alpha=0.99, eps=1e-4, momentum=0.9),
        LossSpec(name="hinge", clip_value=0.3),
    ),
    "sgd-momentum/sgd-momentum": (SGDSpec(lr=0.05, momentum=0.5), SGDSpec(lr=0.1, momentum=0.8), LossSpec()),
}


@pytest.mark.parametrize("case", list(OPT_CASES))
def test_optimizers_and_clipping_against_numpy(case):
    g_opt, d_opt, loss = OPT_CASES[case]
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=g_opt, d_optimizer=d_opt, loss=loss)
    params = init_params(spec, 7)
    rng = np.random.default_rng(7)
    batches = [
        TrainBatch(
            real=rng.uniform(-1, 1, (1, 6, 12)), z_d=rng.standard_normal((1, 6, 8)), z_g=rng.standard_normal((6, 8))
        )
        for _ in range(4)
    ]
    backend = TorchBackend(spec, params, device="cpu")
    p = {k: v.copy() for k, v in params.items()}
    opts = {"generator": g_opt, "discriminator": d_opt}
    slots = {name: {} for name in p}
    for name in p:
        opt = opts[name.split(".")[0]]
        for slot in ("m", "v") if isinstance(opt, AdamSpec) else ("v", "grad_avg", "momentum"):
            slots[name][slot] = np.zeros_like(p[name])
    for t, batch in enumerate(batches[:3], start=1):
        backend.train_step(batch)
        # D: gradient at the current parameters (fake = G(z_d)), update, clip.
        _, grads = TorchBackend(spec, p, device="cpu").gradients(batch.real[0], batch.z_d[0])
        for name in [n for n in p if n.startswith("discriminator")]:
            p[name] = numpy_update(d_opt, p[name], grads[name], slots[name], t)
            if loss.clip_value is not None:
                p[name] = np.clip(p[name], -loss.clip_value, loss.clip_value)
        # G: gradient through the updated D.
        _, grads = TorchBackend(spec, p, device="cpu").gradients(batch.real[0], batch.z_g)
        for name in [n for n in p if n.startswith("generator")]:
            p[name] = numpy_update(g_opt, p[name], grads[name], slots[name], t)
    got = backend.get_params()
    for name in p:
        assert rel(got[name], p[name]) < 1e-12, name
    if loss.clip_value is not None:
        d_values = np.concatenate([v.ravel() for k, v in got.items() if k.startswith("discriminator")])
        assert np.max(np.abs(d_values)) == loss.clip_value  # clipping was active, and exact

    # The state in canonical slots, and loaded into a fresh backend it continues the trajectory.
    state = backend.get_optimizer_state()
    assert state.steps == {"generator": 3, "discriminator": 3}
    from gan_backends.spec import optimizer_slots

    for net, opt in opts.items():
        for slot in optimizer_slots(opt):
            for name in [n for n in p if n.startswith(net)]:
                assert rel(state.slots[slot][name], slots[name][slot]) < 1e-12, (slot, name)
    fresh = TorchBackend(spec, params, device="cpu")
    fresh.set_params(got)
    fresh.set_optimizer_state(state)
    backend.train_step(batches[3])
    fresh.train_step(batches[3])
    after, want = fresh.get_params(), backend.get_params()
    assert all(rel(after[k], want[k]) < 1e-14 for k in want)
    assert fresh.get_optimizer_state().steps == {"generator": 4, "discriminator": 4}


def test_optimizer_state_is_zero_before_the_first_step():
    g_opt, d_opt, loss = OPT_CASES["sgd-nesterov/rmsprop-centered"]
    spec = get_preset("tiny", dtype="float64").replace(g_optimizer=g_opt, d_optimizer=d_opt, loss=loss)
    state = TorchBackend(spec, init_params(spec, 0), device="cpu").get_optimizer_state()
    assert state.steps == {"generator": 0, "discriminator": 0}
    assert set(state.slots) == {"momentum", "v", "grad_avg"}
    assert {n.split(".")[0] for n in state.slots["v"]} == {"discriminator"}
    assert {n.split(".")[0] for n in state.slots["momentum"]} == {"generator", "discriminator"}
    assert all(not v.any() for tree in state.slots.values() for v in tree.values())


# -- bf16 convolutions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        Conv2D(filters=8, kernel=3, stride=2, padding="same"),
        ConvTranspose2D(filters=8, kernel=4, stride=2, padding=1),
        ConvTranspose2D(filters=8, kernel=5, stride=2, padding="same"),
    ],
    ids=["conv", "conv-transpose", "conv-transpose-same"],
)
def test_bf16_conv_is_the_spec_semantics(layer):
    """bf16(conv(bf16(x), bf16(kernel))) + bias in float32, emulated in NumPy."""
    numerics = Numerics(dtype="float32", matmul_precision="bf16")
    x, y, params, _ = layer_io(layer, (6, 6, 16), numerics=numerics, batch=4)
    assert y.dtype == np.float32
    kernel, bias = params["generator.2.kernel"], params["generator.2.bias"]
    if isinstance(layer, Conv2D):

        def op(a, k):
            return conv_ref(a, k, layer.stride, layer.pads(x.shape[1:]))
    else:

        def op(a, k):
            return crop(conv_transpose_full(a, k, layer.stride), layer.crops(x.shape[1:]))

    exact = op(x.astype(np.float64), kernel.astype(np.float64)) + bias
    emulated = to_bf16(op(to_bf16(x).astype(np.float64), to_bf16(kernel).astype(np.float64)).astype(np.float32)) + bias
    assert rel(y, emulated) < 2e-4  # only a rare product rounding differs (accumulation order)
    assert rel(y, exact) > 1e-3  # and bf16 really was applied
