"""Upsample, AvgPool2D and GlobalSumPool: the spec's checks and the float64 reference against values
derived here by hand or by loops (never from the reference's own output): bilinear weights
written out for a two-pixel axis, average pooling as a loop over windows and real pixels, the
backward by linearity (<dx, u> = <dy, f(u)>, the layers being linear), and a gradient penalty
through them (second order) against central differences. No framework needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numeric import central_difference

from gan_backends import init_params
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.backends.numpy.layers import LAYER_MATH, PIECEWISE_LINEAR
from gan_backends.spec import (
    AdamSpec,
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    GANSpec,
    GlobalSumPool,
    LeakyReLU,
    LossSpec,
    Numerics,
    Reshape,
    SpecError,
    Upsample,
    layer_from_dict,
)

ADAM = AdamSpec(lr=1e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def forward(layer, x):
    return LAYER_MATH[type(layer)][0](layer, {}, x)[0]


# -- the spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "Upsample", "factor": 2}, "method"),
        ({"type": "Upsample", "factor": 0, "method": "nearest"}, "Upsample.factor"),
        ({"type": "Upsample", "factor": 2, "method": "bicubic"}, "Upsample.method"),
        ({"type": "Upsample", "factor": 2, "method": "nearest", "align_corners": True}, "Upsample.align_corners"),
        ({"type": "AvgPool2D", "pool": 3, "padding": 1}, "AvgPool2D.count_include_pad"),
        ({"type": "AvgPool2D", "pool": 2, "padding": 2, "count_include_pad": True}, "AvgPool2D.padding"),
        ({"type": "AvgPool2D", "pool": 2, "padding": "full"}, "AvgPool2D.padding"),
        ({"type": "AvgPool2D", "pool": 2, "stride": 0}, "AvgPool2D.stride"),
        ({"type": "AvgPool2D", "pool": 2, "count_include_pad": 1}, "AvgPool2D.count_include_pad"),
    ],
)
def test_invalid_fields_are_named(data, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        layer_from_dict(data)


def test_same_padding_needs_count_include_pad_only_where_it_pads():
    # pool 2, stride 2 on 6 pixels: TF 'same' pads nothing; on 5 pixels one row/column at the end.
    assert AvgPool2D(pool=2, padding="same").output_shape((6, 6, 3)) == (3, 3, 3)
    with pytest.raises(SpecError, match=r"AvgPool2D\.count_include_pad"):
        AvgPool2D(pool=2, padding="same").output_shape((5, 6, 3))
    spec = dict(name="p", data_shape=(5, 6, 3), latent_dim=2, generator=(Dense(units=90), Reshape(shape=(5, 6, 3))))
    with pytest.raises(SpecError, match=r"discriminator layer 0.*count_include_pad"):
        GANSpec(
            **spec,
            discriminator=(AvgPool2D(pool=2, padding="same"), Flatten(), Dense(units=1)),
            g_optimizer=ADAM,
            d_optimizer=ADAM,
        )


def test_shapes_and_json_round_trip():
    up = Upsample(factor=3, method="bilinear", align_corners=True)
    pool = AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False)
    assert up.output_shape((2, 5, 4)) == (6, 15, 4)
    assert pool.output_shape((7, 8, 4)) == (4, 4, 4) and pool.pads((7, 8, 4)) == ((1, 1), (0, 1))
    assert AvgPool2D(pool=2).stride == 2 and AvgPool2D(pool=2).output_shape((5, 7, 1)) == (2, 3, 1)
    assert GlobalSumPool().output_shape((3, 4, 5)) == (5,)
    for layer in (up, pool, GlobalSumPool(), AvgPool2D(pool=2)):
        assert layer_from_dict(layer.to_dict()) == layer
        assert layer.param_shapes((6, 6, 4)) == {}
    with pytest.raises(SpecError, match="image"):
        GlobalSumPool().output_shape((12,))


# -- the meanings, by hand -------------------------------------------------------------------------


def test_upsample_taps_by_hand():
    """Two pixels a, b, factor 2. Half-pixel centres: sources -0.25 (clamped to 0), 0.25, 0.75,
    1.25 (clamped to 1): a, 3a/4 + b/4, a/4 + 3b/4, b. Aligned corners: sources 0, 1/3, 2/3, 1.
    Nearest: a, a, b, b."""
    a, b = 2.0, 10.0
    x = np.array([a, b]).reshape(1, 2, 1, 1)
    by_hand = {
        ("bilinear", False): [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b],
        ("bilinear", True): [a, 2 * a / 3 + b / 3, a / 3 + 2 * b / 3, b],
        ("nearest", False): [a, a, b, b],
    }
    for (method, corners), want in by_hand.items():
        layer = Upsample(factor=2, method=method, align_corners=corners)
        y = forward(layer, x)
        assert y.shape == (1, 4, 2, 1)
        np.testing.assert_allclose(y[0, :, 0, 0], want, rtol=1e-15)
        np.testing.assert_allclose(y[0, :, 1, 0], want, rtol=1e-15)  # one column: repeated


def test_bilinear_is_separable_and_nearest_repeats(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    np.testing.assert_array_equal(forward(Upsample(factor=3, method="nearest"), x), x.repeat(3, 1).repeat(3, 2))
    # Interior outputs of half-pixel bilinear k=2 (no clamping): weights 1/4, 3/4 per axis.
    y = forward(Upsample(factor=2, method="bilinear"), x)
    rows = 0.25 * x[:, 0] + 0.75 * x[:, 1]  # output row 2 (source 0.75)
    want = 0.75 * rows[:, 1] + 0.25 * rows[:, 2]  # output column 3 (source 1.25)
    np.testing.assert_allclose(y[:, 2, 3], want, rtol=1e-14)
    np.testing.assert_allclose(y[:, 0, 0], x[:, 0, 0], rtol=1e-15)  # corners clamped


def avg_pool_loop(x, pool, stride, pads, include):
    """Each window of the zero-padded input summed, divided by pool² or by its real pixels."""
    (top, bottom), (left, right) = pads
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    real = np.pad(np.ones((h, w)), ((top, bottom), (left, right)))
    ho, wo = (h + top + bottom - pool) // stride + 1, (w + left + right - pool) // stride + 1
    y = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            win = (slice(i * stride, i * stride + pool), slice(j * stride, j * stride + pool))
            count = pool * pool if include else real[win].sum()
            y[:, i, j] = xp[(slice(None), *win)].sum(axis=(1, 2)) / count
    return y


POOL_CASES = [
    (AvgPool2D(pool=2), (4, 6, 2), ((0, 0), (0, 0))),
    (AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False), (6, 7, 2), ((0, 1), (1, 1))),
    (AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=True), (6, 7, 2), ((0, 1), (1, 1))),
    (AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False), (4, 5, 2), ((1, 1), (1, 1))),
    (AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=True), (4, 5, 2), ((1, 1), (1, 1))),
    (AvgPool2D(pool=4, stride=2, padding=3, count_include_pad=False), (5, 5, 1), ((3, 3), (3, 3))),
    (AvgPool2D(pool=2, stride=3, padding="valid"), (7, 5, 2), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize(("layer", "in_shape", "pads"), POOL_CASES, ids=lambda v: getattr(v, "describe", str)())
def test_avg_pool_matches_the_loop(layer, in_shape, pads, rng):
    assert layer.pads(in_shape) == pads
    x = rng.standard_normal((2, *in_shape))
    want = avg_pool_loop(x, layer.pool, layer.stride, pads, bool(layer.count_include_pad))
    y = forward(layer, x)
    assert y.shape[1:] == layer.output_shape(in_shape)
    np.testing.assert_allclose(y, want, rtol=1e-14, atol=1e-15)


def test_count_include_pad_changes_only_the_border(rng):
    x = rng.uniform(1, 2, (1, 5, 5, 1))
    counted = forward(AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=True), x)
    real = forward(AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False), x)
    np.testing.assert_allclose(counted[:, 1:-1, 1:-1], real[:, 1:-1, 1:-1], rtol=1e-15)
    np.testing.assert_allclose(counted[0, 0, 0, 0], x[0, :2, :2, 0].sum() / 9, rtol=1e-15)
    np.testing.assert_allclose(real[0, 0, 0, 0], x[0, :2, :2, 0].sum() / 4, rtol=1e-15)


def test_global_sum_pool(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(forward(GlobalSumPool(), x), np.einsum("nhwc->nc", x), rtol=1e-14)


# -- backward and tangent, by linearity --------------------------------------------------------------

LINEAR = [
    (Upsample(factor=2, method="nearest"), (3, 4, 2)),
    (Upsample(factor=2, method="bilinear"), (3, 4, 2)),
    (Upsample(factor=3, method="bilinear", align_corners=True), (3, 2, 2)),
    (Upsample(factor=2, method="bilinear", align_corners=True), (1, 3, 1)),
    *[(layer, shape) for layer, shape, _ in POOL_CASES],
    (GlobalSumPool(), (3, 4, 2)),
]


@pytest.mark.parametrize(("layer", "in_shape"), LINEAR, ids=lambda v: getattr(v, "describe", str)())
def test_backward_and_tangent_by_linearity(layer, in_shape, rng):
    """f linear: <backward(dy), u> = <dy, f(u)> for every u, and f(x + u) = f(x) + f(u); the
    tangent (for the penalties) is f itself."""
    fwd, bwd = LAYER_MATH[type(layer)]
    x, u = rng.standard_normal((2, 2, *in_shape))
    y, cache = fwd(layer, {}, x)
    dy = rng.standard_normal(y.shape)
    dx, grads = bwd(layer, {}, cache, dy)
    assert grads == {} and dx.shape == x.shape
    fu = fwd(layer, {}, u)[0]
    assert np.sum(dx * u) == pytest.approx(np.sum(dy * fu), rel=1e-13)
    np.testing.assert_allclose(fwd(layer, {}, x + u)[0], y + fu, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(PIECEWISE_LINEAR[type(layer)](layer, {}, cache, u), fu, rtol=1e-15)


# -- a penalty through the layers, second order ------------------------------------------------------


def resnet_like_spec(penalty: str = "wgan_gp") -> GANSpec:
    """G: Dense -> (2, 3, 2) -> Upsample bilinear -> Conv; D: AvgPool (padded) -> Conv ->
    LeakyReLU -> AvgPool -> GlobalSumPool -> Dense, the SNGAN head; every layer of D is
    piecewise linear, so the penalty's parameter gradient is exact."""
    return GANSpec(
        name="resnet-like",
        data_shape=(4, 6, 2),
        latent_dim=3,
        generator=(
            Dense(units=12),
            Reshape(shape=(2, 3, 2)),
            Upsample(factor=2, method="bilinear"),
            Conv2D(filters=2, kernel=3, padding="same"),
        ),
        discriminator=(
            AvgPool2D(pool=3, stride=1, padding="same", count_include_pad=False),
            Conv2D(filters=3, kernel=3, padding=1),
            LeakyReLU(slope=0.2),
            Upsample(factor=2, method="nearest"),
            AvgPool2D(pool=2),
            AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=True),
            GlobalSumPool(),
            Dense(units=1),
        ),
        loss=LossSpec(name="wasserstein" if penalty == "wgan_gp" else "non_saturating", penalty=penalty),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        numerics=Numerics(dtype="float64"),
    )


@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_penalty_gradients_through_the_layers_match_finite_differences(penalty, rng):
    spec = resnet_like_spec(penalty)
    params = init_params(spec, 4)
    real, z = rng.uniform(-1, 1, (3, *spec.data_shape)), rng.standard_normal((3, 3))
    alpha = rng.uniform(0, 1, 3) if penalty == "wgan_gp" else None
    terms, grads = NumpyReference(spec, params).gradients(real, z, alpha)
    assert terms["d_penalty"] > 1e-3

    def term(which):
        return lambda p: NumpyReference(spec, p).loss_terms(real, z, alpha)[which]

    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        for flat in rng.choice(grad.size, size=min(3, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            fd = central_difference(term(which), params, name, index)
            assert grad[index] == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, index)
    assert math.isfinite(terms["d_loss"])
