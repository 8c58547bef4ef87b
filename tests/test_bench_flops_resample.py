"""The FLOP rules of Upsample, AvgPool2D and GlobalSumPool against brute-force loops that compute
each layer (forward and the input gradient) and count every multiply and add they make; the loops'
values are checked against the float64 reference, so the counted computation is the layer."""

from __future__ import annotations

import numpy as np
import pytest

from gan_backends.backends.numpy.layers import LAYER_MATH
from gan_backends.bench.flops import FLOP_RULES
from gan_backends.spec import AvgPool2D, GlobalSumPool, Upsample


class Counter:
    def __init__(self) -> None:
        self.flops = 0

    def mul(self, a, b):
        self.flops += 1
        return a * b

    def add(self, a, b):
        self.flops += 1
        return a + b


def upsample_loop(layer: Upsample, x: np.ndarray, dy: np.ndarray, c: Counter, backward: bool) -> np.ndarray:
    """Separable: rows then columns, each output of a pass ``w0·x[i0] + w1·x[i1]`` (bilinear) or a
    copy (nearest); backward the transpose, every weighted output accumulated into its sources."""
    h, w, ch = x.shape
    rows, cols = layer.taps(h), layer.taps(w)
    nearest = layer.method == "nearest"
    if not backward:
        mid = np.zeros((len(rows), w, ch))
        for o, (i0, i1, lam) in enumerate(rows):
            for j in range(w):
                for k in range(ch):
                    a, b = x[i0, j, k], x[i1, j, k]
                    mid[o, j, k] = a if nearest else c.add(c.mul(1 - lam, a), c.mul(lam, b))
        out = np.zeros((len(rows), len(cols), ch))
        for i in range(len(rows)):
            for o, (j0, j1, lam) in enumerate(cols):
                for k in range(ch):
                    a, b = mid[i, j0, k], mid[i, j1, k]
                    out[i, o, k] = a if nearest else c.add(c.mul(1 - lam, a), c.mul(lam, b))
        return out
    if nearest:  # each input pixel: the sum of its k² outputs
        kk = layer.factor
        dx = np.zeros_like(x)
        for i in range(h):
            for j in range(w):
                for k in range(ch):
                    block = dy[i * kk : (i + 1) * kk, j * kk : (j + 1) * kk, k].ravel()
                    total = block[0]
                    for v in block[1:]:
                        total = c.add(total, v)
                    dx[i, j, k] = total
        return dx
    dmid = np.zeros((len(rows), w, ch))
    for i in range(len(rows)):
        for o, (j0, j1, lam) in enumerate(cols):
            for k in range(ch):
                dmid[i, j0, k] = c.add(dmid[i, j0, k], c.mul(1 - lam, dy[i, o, k]))
                dmid[i, j1, k] = c.add(dmid[i, j1, k], c.mul(lam, dy[i, o, k]))
    dx = np.zeros_like(x)
    for o, (i0, i1, lam) in enumerate(rows):
        for j in range(w):
            for k in range(ch):
                dx[i0, j, k] = c.add(dx[i0, j, k], c.mul(1 - lam, dmid[o, j, k]))
                dx[i1, j, k] = c.add(dx[i1, j, k], c.mul(lam, dmid[o, j, k]))
    return dx


def avg_pool_loop(layer: AvgPool2D, x: np.ndarray, dy: np.ndarray, c: Counter, backward: bool) -> np.ndarray:
    """Every pool² tap of the padded window summed (padding included, as conv counts it), times
    1/divisor; backward: dy/divisor accumulated into the window's pool² taps."""
    (top, bottom), (left, right) = layer.pads(x.shape)
    xp = np.pad(x, ((top, bottom), (left, right), (0, 0)))
    div = np.asarray(layer.divisors(x.shape), float)
    k, s = layer.pool, layer.stride
    ho, wo = div.shape
    out = np.zeros((ho, wo, x.shape[2]))
    dxp = np.zeros_like(xp)
    for i in range(ho):
        for j in range(wo):
            for ch in range(x.shape[2]):
                taps = [(i * s + a, j * s + b) for a in range(k) for b in range(k)]
                if backward:
                    share = c.mul(dy[i, j, ch], 1 / div[i, j])
                    for r, q in taps:
                        dxp[r, q, ch] = c.add(dxp[r, q, ch], share)
                else:
                    total = xp[taps[0][0], taps[0][1], ch]
                    for r, q in taps[1:]:
                        total = c.add(total, xp[r, q, ch])
                    out[i, j, ch] = c.mul(total, 1 / div[i, j])
    return dxp[top : top + x.shape[0], left : left + x.shape[1]] if backward else out


def global_sum_loop(layer, x, dy, c: Counter, backward: bool) -> np.ndarray:
    if backward:
        return np.broadcast_to(dy, x.shape).copy()  # a broadcast: no arithmetic
    flat = x.reshape(-1, x.shape[2])
    total = flat[0].copy()
    for row in flat[1:]:
        total = np.array([c.add(a, b) for a, b in zip(total, row)])
    return total


CASES = [
    (Upsample(factor=2, method="nearest"), (3, 4, 2), upsample_loop),
    (Upsample(factor=3, method="bilinear"), (2, 3, 2), upsample_loop),
    (Upsample(factor=2, method="bilinear", align_corners=True), (3, 2, 1), upsample_loop),
    (AvgPool2D(pool=2), (4, 6, 2), avg_pool_loop),
    (AvgPool2D(pool=3, stride=2, padding="same", count_include_pad=False), (5, 6, 2), avg_pool_loop),
    (AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=True), (3, 4, 1), avg_pool_loop),
    (GlobalSumPool(), (3, 4, 2), global_sum_loop),
]


@pytest.mark.parametrize(("layer", "shape", "loop"), CASES, ids=lambda v: getattr(v, "describe", lambda: None)())
def test_flop_rule_counts_the_brute_force_loop(layer, shape, loop, rng):
    x = rng.standard_normal(shape)
    out_shape = layer.output_shape(shape)
    dy = rng.standard_normal(out_shape)
    fwd_count, bwd_count = Counter(), Counter()
    y = loop(layer, x, dy, fwd_count, backward=False)
    dx = loop(layer, x, dy, bwd_count, backward=True)
    forward, backward = LAYER_MATH[type(layer)]
    want_y, cache = forward(layer, {}, x[None])
    np.testing.assert_allclose(y, want_y[0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, backward(layer, {}, cache, dy[None])[0][0], rtol=1e-13, atol=1e-14)
    cost = FLOP_RULES[type(layer)](layer, shape, out_shape)
    assert (cost.m, cost.b, cost.trainable) == (0, 0, False)  # elementwise, nothing to train
    assert (cost.ew_forward, cost.ew_backward) == (fwd_count.flops, bwd_count.flops)
