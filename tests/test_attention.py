"""SAGAN's SelfAttention: the spec's checks, the float64 reference against a per-position loop
written here from the paper's formula and its hand-written backward against central differences
(dx and every parameter), the refusal of a gradient penalty through it, and its FLOP rule derived
by hand. No framework needed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from numeric import central_difference

from gan_backends import init_params
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.backends.numpy.layers import LAYER_MATH
from gan_backends.bench.flops import layer_flops, step_flops
from gan_backends.layouts import role_of
from gan_backends.spec import (
    AdamSpec,
    Conv2D,
    Dense,
    Flatten,
    GANSpec,
    InitSpec,
    LossSpec,
    Reshape,
    SelfAttention,
    SpecError,
    layer_from_dict,
)

ADAM = AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def attention_spec(layer: SelfAttention, shape=(2, 3, 4), **kwargs) -> GANSpec:
    """G: Dense -> Reshape(shape) -> ``layer``; D: ``layer`` -> Flatten -> Dense(1)."""
    return GANSpec(
        name="attention",
        data_shape=shape,
        latent_dim=3,
        generator=(Dense(units=math.prod(shape)), Reshape(shape=shape), layer),
        discriminator=(layer, Flatten(), Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        **kwargs,
    )


def by_loop(layer: SelfAttention, p: dict, x: np.ndarray) -> np.ndarray:
    """The paper's formula one query position at a time (no softmax max trick: small values)."""
    n, hh, ww, c = x.shape
    y = x.copy()

    def conv(part, v):
        out = v @ p[f"{part}_kernel"][0, 0]
        return out + p[f"{part}_bias"] if layer.use_bias else out

    for b in range(n):
        pixels = [x[b, i, j] for i in range(hh) for j in range(ww)]
        for pos, xi in enumerate(pixels):
            q = conv("query", xi)
            weights = np.array([math.exp(float(q @ conv("key", xj))) for xj in pixels])
            weights /= weights.sum()
            o = sum(w * conv("value", xj) for w, xj in zip(weights, pixels))
            if layer.value_channels not in (None, c):
                o = conv("out", o)
            y[b, pos // ww, pos % ww] += p["gamma"] * o
    return y


def test_spec_shapes_names_and_json_round_trip():
    layer = layer_from_dict({"type": "SelfAttention", "key_channels": 2, "value_channels": 3})
    assert layer.output_shape((4, 5, 6)) == (4, 5, 6)
    assert layer.param_shapes((4, 5, 6)) == {
        "query_kernel": (1, 1, 6, 2),
        "query_bias": (2,),
        "key_kernel": (1, 1, 6, 2),
        "key_bias": (2,),
        "value_kernel": (1, 1, 6, 3),
        "value_bias": (3,),
        "out_kernel": (1, 1, 3, 6),
        "out_bias": (6,),
        "gamma": (1,),
    }
    assert list(SelfAttention(key_channels=1, use_bias=False).param_shapes((2, 2, 4))) == [
        "query_kernel",
        "key_kernel",
        "value_kernel",
        "gamma",
    ]  # value = C: no output conv (the original SAGAN form)
    assert layer_from_dict(layer.to_dict()) == layer
    assert role_of("generator.2.query_kernel") == "kernel" and role_of("generator.2.query_bias") == "query_bias"
    with pytest.raises(SpecError, match="SelfAttention.spectral_norm is not supported"):
        SelfAttention(key_channels=2, spectral_norm={})
    with pytest.raises(SpecError, match="SelfAttention expects an image"):
        SelfAttention(key_channels=2).output_shape((8,))


@pytest.mark.parametrize("scheme", ["torch_default", "normal", "glorot_uniform", "lecun_normal"])
def test_init_starts_gamma_at_zero_and_kernels_with_their_own_fans(scheme):
    spec = attention_spec(SelfAttention(key_channels=2), init=InitSpec(scheme=scheme))
    params = init_params(spec, 0)
    assert params["generator.2.gamma"].shape == (1,) and params["generator.2.gamma"] == 0
    assert params["discriminator.0.gamma"] == 0
    q = params["generator.2.query_kernel"]
    assert q.shape == (1, 1, 4, 2) and np.abs(q).max() > 0
    if scheme == "torch_default":  # nn.Conv2d's U(±1/√fan_in), fan_in = 1·1·C = 4
        assert np.abs(q).max() <= 0.5 and np.abs(params["generator.2.query_bias"]).max() > 0


@pytest.mark.parametrize(
    "layer", [SelfAttention(key_channels=2), SelfAttention(key_channels=3, value_channels=2, use_bias=False)], ids=str
)
def test_reference_forward_by_loop_and_backward_by_central_differences(layer, rng):
    shape = (2, 3, 4)
    x = rng.standard_normal((2, *shape))
    p = {
        k.split(".")[-1]: rng.uniform(-0.7, 0.7, v.shape)
        for k, v in init_params(attention_spec(layer)).items()
        if k.startswith("discriminator.0.")
    }
    p["gamma"] = np.array([0.8])  # γ ≠ 0: the attention branch counts
    forward, backward = LAYER_MATH[SelfAttention]
    y, cache = forward(layer, p, x)
    np.testing.assert_allclose(y, by_loop(layer, p, x), rtol=1e-13, atol=1e-13)

    u = rng.standard_normal(y.shape)  # L = <u, y>

    def loss(params):
        return float((forward(layer, params, x)[0] * u).sum())

    dx, grads = backward(layer, p, cache, u)
    assert set(grads) == set(p)
    for name, value in p.items():
        want = np.array([central_difference(loss, p, name, idx) for idx in np.ndindex(value.shape)]).reshape(
            value.shape
        )
        np.testing.assert_allclose(grads[name], want, rtol=1e-7, atol=1e-8, err_msg=name)
    h = 1e-6
    want_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        want_dx[idx] = ((forward(layer, p, plus)[0] - forward(layer, p, minus)[0]) * u).sum() / (2 * h)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-7, atol=1e-8)


def test_softmax_subtracts_the_max():
    """Logits of 1000 overflow exp; the reference's softmax subtracts the row maximum first."""
    layer = SelfAttention(key_channels=1, use_bias=False)
    x = np.zeros((1, 1, 2, 1))
    x[0, 0] = [[40.0], [-40.0]]
    p = {
        "query_kernel": np.ones((1, 1, 1, 1)),
        "key_kernel": np.ones((1, 1, 1, 1)),
        "value_kernel": np.ones((1, 1, 1, 1)),
        "gamma": np.array([1.0]),
    }
    y, _ = LAYER_MATH[SelfAttention][0](layer, p, x)
    # s = x_i·x_j = ±1600: each query attends to one key only (position 0 for 40, position 1 for -40).
    np.testing.assert_array_equal(y[0, 0, :, 0], [80.0, -80.0])


def test_gradient_penalty_through_attention_is_refused(rng):
    """The penalty's value is first order (the reference computes it); its parameter gradient is
    written for piecewise-linear critics only, so gradients and train_step refuse the block."""
    loss = LossSpec(name="wasserstein", penalty="wgan_gp", penalty_weight=10.0)
    spec = attention_spec(SelfAttention(key_channels=2), loss=loss)
    ref = NumpyReference(spec, init_params(spec))
    real, z, alpha = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 3)), rng.uniform(size=2)
    assert np.isfinite(ref.loss_terms(real, z, alpha)["d_penalty"])
    with pytest.raises(
        NotImplementedError, match=r"piecewise linear in their input; discriminator layer 0 SelfAttention"
    ):
        ref.gradients(real, z, alpha)


def test_flop_rule_by_hand():
    """N = 6 positions, C = 4, K = 2, V = 3 (an output conv), biases: counted here from the formula."""
    layer = SelfAttention(key_channels=2, value_channels=3)
    spec = GANSpec(
        name="attention-flops",
        data_shape=(2, 3, 4),
        latent_dim=3,
        generator=(Dense(units=24), Reshape(shape=(2, 3, 4))),
        discriminator=(Conv2D(filters=4, kernel=1), layer, Flatten(), Dense(units=1)),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
    )
    n, c, k, v = 6, 4, 2, 3
    convs = 2 * n * c * (2 * k + v) + 2 * n * v * c  # query, key, value, out
    biases = n * (2 * k + v + c)
    products = 2 * n * n * k + 2 * n * n * v  # s = f gᵀ, o = β h
    row = next(r for r in layer_flops(spec) if r.layer == "SelfAttention")
    assert row.forward_matmul == convs + biases + products
    assert row.forward_elementwise == 5 * n * n + 2 * n * c  # softmax; x + γ·o
    # Against a spec without the block: one D update's share of the block, its weight gradients
    # (D(real), D(fake)) and the G update's input gradient through it (D's weights frozen).
    base = dataclasses.replace(spec, discriminator=(Conv2D(filters=4, kernel=1), Flatten(), Dense(units=1)))
    batch = 2
    diff = step_flops(spec, batch).matmul - step_flops(base, batch).matmul
    fwd = convs + biases + products
    attention_backward = 2 * products  # dβ, dh, df, dg
    conv_input_grads = convs  # the Conv2D before the block gets gradients: dx is needed in every backward
    d_update = 2 * fwd + 2 * (convs + biases + attention_backward + conv_input_grads)  # D(real), D(fake)
    g_update = fwd + (attention_backward + conv_input_grads)
    assert diff == batch * (d_update + g_update)
