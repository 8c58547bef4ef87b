"""The FLOP model of gan_backends.bench.flops, checked against numbers derived here by hand from the
layer sizes (never from the module's own output), and convolution counts against brute-force loops."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gan_backends.bench.flops import LayerFlops, StepFlops, forward_flops, layer_flops, step_flops
from gan_backends.presets import get_preset, tutorial_adam
from gan_backends.spec import Conv2D, ConvTranspose2D, Dense, Flatten, GANSpec, Reshape

# -- the MLP preset, by hand -------------------------------------------------------------------
# G: 100 -> 256 -> 512 -> 1024 -> 784, D: 784 -> 512 -> 256 -> 1, every Dense with a bias.
G_DENSE = [(100, 256), (256, 512), (512, 1024), (1024, 784)]
D_DENSE = [(784, 512), (512, 256), (256, 1)]


def _product(dense: list[tuple[int, int]]) -> int:
    return sum(2 * i * o for i, o in dense)


def _bias(dense: list[tuple[int, int]]) -> int:
    return sum(o for _, o in dense)


G_FWD = _product(G_DENSE) + _bias(G_DENSE)  # 2 * 1_483_776 + 2_576 = 2_970_128
D_FWD = _product(D_DENSE) + _bias(D_DENSE)  # 2 * 532_736 + 769 = 1_066_241
# Input gradients of every layer but the first (data / noise needs none).
G_DX_BUT_FIRST = _product(G_DENSE[1:])
D_DX_BUT_FIRST = _product(D_DENSE[1:])
D_DX_ALL = _product(D_DENSE)

# D update: G forward, D forward on real and on fake, D backward for both (weights + bias grads,
# input grads but the first layer's).
MLP_D_UPDATE = G_FWD + 2 * D_FWD + 2 * (D_FWD + D_DX_BUT_FIRST)
# G update: G forward, D forward, D input grads through every layer (no weight grads), G backward.
MLP_G_UPDATE = G_FWD + D_FWD + D_DX_ALL + (G_FWD + G_DX_BUT_FIRST)


def test_mlp_hand_constants():
    assert G_FWD == 2_970_128 and D_FWD == 1_066_241
    assert MLP_D_UPDATE + MLP_G_UPDATE == 18_748_725


@pytest.mark.parametrize("batch", [1, 64, 256])
def test_mlp_step_matmul_by_hand(batch):
    spec = get_preset("mlp")
    assert forward_flops(spec, "generator", batch) == batch * G_FWD
    assert forward_flops(spec, "discriminator", batch) == batch * D_FWD
    assert step_flops(spec, batch).matmul == batch * (MLP_D_UPDATE + MLP_G_UPDATE)


def test_mlp_elementwise_by_hand():
    # LeakyReLU: 2 forward, 2 backward per element; Tanh: 1 forward, 3 backward; Adam 13 per parameter.
    g_act, d_act = 256 + 512 + 1024, 512 + 256
    g_fwd, d_fwd = 2 * g_act + 784, 2 * d_act
    g_bwd, d_bwd = 2 * g_act + 3 * 784, 2 * d_act  # every activation sits after a Dense
    d_update = g_fwd + 2 * d_fwd + 2 * d_bwd
    g_update = g_fwd + d_fwd + d_bwd + g_bwd
    params = sum(i * o + o for i, o in G_DENSE + D_DENSE)
    assert params == 1_486_352 + 533_505
    for batch in (64, 256):
        assert step_flops(get_preset("mlp"), batch).elementwise == batch * (d_update + g_update) + 13 * params


def test_layer_flops_and_api_shape():
    spec = get_preset("mlp")
    layers = layer_flops(spec)
    assert [(lf.net, lf.index, lf.layer) for lf in layers[:2]] == [
        ("generator", 0, "Dense"),
        ("generator", 1, "LeakyReLU"),
    ]
    assert layers[0] == LayerFlops("generator", 0, "Dense", 2 * 100 * 256 + 256, 0)
    assert layers[1].forward_matmul == 0 and layers[1].forward_elementwise == 2 * 256
    assert len(layers) == len(spec.generator) + len(spec.discriminator)
    step = step_flops(spec, 64)
    assert isinstance(step, StepFlops) and step.batch_size == 64
    assert step.total == step.matmul + step.elementwise
    assert step.per_layer == tuple(layers)
    with pytest.raises(ValueError):
        step_flops(spec, 0)


# -- convolutions against brute force ------------------------------------------------------------


def _conv_brute_force(layer: Conv2D, x: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    """Direct Conv2D: one im2col row per output position; returns (output, multiply-adds)."""
    (top, bottom), (left, right) = layer.pads(x.shape)
    xp = np.pad(x, ((top, bottom), (left, right), (0, 0)))
    k, s = layer.kernel, layer.stride
    rows, macs = [], 0
    for i in range(0, xp.shape[0] - k + 1, s):
        row = []
        for j in range(0, xp.shape[1] - k + 1, s):
            patch = xp[i : i + k, j : j + k, :].reshape(-1)  # zero taps of the padding included
            w = kernel.reshape(-1, kernel.shape[-1])
            row.append(patch @ w)
            macs += patch.size * w.shape[1]
        rows.append(row)
    return np.array(rows), macs


def _conv_transpose_brute_force(layer: ConvTranspose2D, x: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    """Direct transposed conv: scatter every input pixel through every tap, then crop."""
    k, s = layer.kernel, layer.stride
    h, w, _ = x.shape
    full = np.zeros(((h - 1) * s + k, (w - 1) * s + k, kernel.shape[2]))
    macs = 0
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for b in range(k):
                    tap = kernel[a, b]  # (out, in)
                    full[i * s + a, j * s + b] += tap @ x[i, j]
                    macs += tap.size
    (top, bottom), (left, right) = layer.crops(x.shape)
    full = np.pad(full, ((0, max(-bottom, 0)), (0, max(-right, 0)), (0, 0)))
    out = full[top : full.shape[0] - max(bottom, 0), left : full.shape[1] - max(right, 0)]
    return out, macs


def _disc_spec(layer: Conv2D, shape: tuple[int, int, int]) -> GANSpec:
    return GANSpec(
        name="conv",
        data_shape=shape,
        latent_dim=4,
        generator=(Dense(units=math.prod(shape)), Reshape(shape=shape)),
        discriminator=(layer, Flatten(), Dense(units=1)),
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
    )


def _gen_spec(layer: ConvTranspose2D, shape: tuple[int, int, int]) -> GANSpec:
    out = layer.output_shape(shape)
    return GANSpec(
        name="convt",
        data_shape=out,
        latent_dim=4,
        generator=(Dense(units=math.prod(shape)), Reshape(shape=shape), layer),
        discriminator=(Flatten(), Dense(units=1)),
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
    )


@pytest.mark.parametrize("padding", ["same", 1, "valid", 0])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv2d_matches_brute_force(padding, use_bias):
    shape, layer = (7, 6, 3), Conv2D(filters=4, kernel=3, stride=2, padding=padding, use_bias=use_bias)
    rng = np.random.default_rng(0)
    x, kernel = rng.standard_normal(shape), rng.standard_normal((3, 3, 3, 4))
    out, macs = _conv_brute_force(layer, x, kernel)
    assert out.shape == layer.output_shape(shape)
    expected = 2 * macs + (out.size if use_bias else 0)
    assert layer_flops(_disc_spec(layer, shape))[2] == LayerFlops("discriminator", 0, "Conv2D", expected, 0)


@pytest.mark.parametrize(
    "padding, output_padding, kernel", [("same", 0, 3), ("same", 0, 4), (1, 0, 4), (1, 1, 3), ("valid", 0, 3)]
)
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_transpose2d_matches_brute_force(padding, output_padding, kernel, use_bias):
    shape = (3, 4, 2)
    layer = ConvTranspose2D(
        filters=5, kernel=kernel, stride=2, padding=padding, output_padding=output_padding, use_bias=use_bias
    )
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(shape), rng.standard_normal((kernel, kernel, 5, 2))
    out, macs = _conv_transpose_brute_force(layer, x, w)
    assert out.shape == layer.output_shape(shape)
    expected = 2 * macs + (out.size if use_bias else 0)  # crops save nothing; the bias is per output element
    assert layer_flops(_gen_spec(layer, shape))[2] == LayerFlops("generator", 2, "ConvTranspose2D", expected, 0)


def test_dcgan_forward_macs_by_hand():
    # The PyTorch DCGAN tutorial networks (nz 100, ngf = ndf = 64, 64x64x3, no biases).
    # A transposed conv costs Hin * Win * k^2 * Cin * Cout multiply-adds (each input pixel meets every tap);
    # counters that go by OUTPUT pixels (Ho * Wo * k^2 * Cin * Cout) report 4x more for the stride-2 layers.
    g_macs = (
        1 * 1 * 16 * 100 * 512  # 1x1 -> 4x4
        + 4 * 4 * 16 * 512 * 256  # 4 -> 8
        + 8 * 8 * 16 * 256 * 128  # 8 -> 16
        + 16 * 16 * 16 * 128 * 64  # 16 -> 32
        + 32 * 32 * 16 * 64 * 3  # 32 -> 64
    )
    d_macs = (
        32 * 32 * 16 * 3 * 64  # 64 -> 32
        + 16 * 16 * 16 * 64 * 128
        + 8 * 8 * 16 * 128 * 256
        + 4 * 4 * 16 * 256 * 512
        + 1 * 1 * 16 * 512 * 1  # 4x4 valid -> one logit
    )
    assert g_macs == 104_628_224 and d_macs == 103_817_216
    spec = get_preset("dcgan")
    assert forward_flops(spec, "generator", 1) == 2 * g_macs
    assert forward_flops(spec, "discriminator", 1) == 2 * d_macs
    assert forward_flops(spec, "generator", 64) == 64 * 2 * g_macs


def test_n_critic_scaling():
    batch = 32
    one, five = step_flops(get_preset("mlp"), batch), step_flops(get_preset("mlp", n_critic=5), batch)
    assert five.matmul - one.matmul == 4 * batch * MLP_D_UPDATE
    two = step_flops(get_preset("mlp", n_critic=2), batch)
    assert five.elementwise - one.elementwise == 4 * (two.elementwise - one.elementwise) > 0


@pytest.mark.parametrize("preset", ["mlp", "dcgan-small"])
@pytest.mark.parametrize("loss", ["r1", "wgan-gp"])
def test_penalty_counts_more(preset, loss):
    penalised = get_preset(preset, loss=loss)  # dcgan's critic drops BatchNorm for a penalty: keep that D
    plain = penalised.replace(loss=dataclasses.replace(penalised.loss, penalty="none"))
    a, b = step_flops(plain, 16), step_flops(penalised, 16)
    assert b.matmul > a.matmul and b.elementwise > a.elementwise


def test_penalty_matmul_by_hand():
    # Same networks and optimiser (r1 keeps non-saturating Adam and n_critic 1): the penalty adds
    # ∇x D (a D forward + input grads through all layers), differentiated w.r.t. D's weights at about
    # twice that again: 3 * (D forward + D input grads through every layer) per sample.
    batch = 8
    plain, r1 = step_flops(get_preset("mlp"), batch), step_flops(get_preset("mlp", loss="r1"), batch)
    assert r1.matmul - plain.matmul == batch * 3 * (D_FWD + D_DX_ALL)
    # Elementwise: 3 * (LeakyReLU forward 2 + backward 2 per element) + 4 per data element for the norm.
    assert r1.elementwise - plain.elementwise == batch * (3 * (2 + 2) * (512 + 256) + 4 * 784)


@pytest.mark.parametrize("preset", ["mlp", "dcgan-small", "dcgan"])
def test_batch_scaling(preset):
    spec = get_preset(preset)
    s1, s2, s3, s64 = (step_flops(spec, b) for b in (1, 2, 3, 64))
    assert s64.matmul == 64 * s1.matmul and s3.matmul == 3 * s1.matmul
    # Elementwise is affine: per-sample work plus the optimiser update, which the batch does not change.
    per_sample = s2.elementwise - s1.elementwise
    assert s3.elementwise - s2.elementwise == per_sample > 0
    assert s64.elementwise == s1.elementwise + 63 * per_sample


@pytest.mark.parametrize("loss", ["rasgan", "ralsgan", "rahinge", "rpgan"])
def test_relativistic_g_step_adds_one_d_forward_by_hand(loss):
    # G's step also runs D on the real batch, forward only (its logits are a constant of G's
    # update). The relativistic presets drop D's output bias: D forward is D_FWD - 1 there.
    batch = 8
    rel = get_preset("mlp", loss=loss)
    plain = rel.replace(loss=dataclasses.replace(rel.loss, name="non_saturating"))
    a, b = step_flops(plain, batch), step_flops(rel, batch)
    assert b.matmul - a.matmul == batch * (D_FWD - 1)
    assert b.elementwise - a.elementwise == batch * 2 * (512 + 256)  # LeakyReLU forward, 2 per element


def test_r2_and_r1_r2_penalties_by_hand():
    # R2 costs what R1 does (one penalised batch); R1 + R2 twice that.
    batch = 8
    r3 = get_preset("mlp", loss="r3gan")  # rpgan + γ/2 (R1 + R2), D without its output bias
    none, r1, r2 = (r3.replace(loss=dataclasses.replace(r3.loss, penalty=p)) for p in ("none", "r1", "r2"))
    one_matmul = batch * 3 * (D_FWD - 1 + D_DX_ALL)
    one_elementwise = batch * (3 * (2 + 2) * (512 + 256) + 4 * 784)
    flops = {name: step_flops(spec, batch) for name, spec in [("none", none), ("r1", r1), ("r2", r2), ("r3", r3)]}
    for name, sites in [("r1", 1), ("r2", 1), ("r3", 2)]:
        assert flops[name].matmul - flops["none"].matmul == sites * one_matmul, name
        assert flops[name].elementwise - flops["none"].elementwise == sites * one_elementwise, name
