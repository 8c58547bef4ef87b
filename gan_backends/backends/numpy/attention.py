"""The reference's SAGAN self-attention block (:class:`~gan_backends.spec.SelfAttention`): float64
forward and hand-written backward in :data:`ATTENTION_MATH`, which ``layers.py`` merges into
``LAYER_MATH``.

Per sample, ``X`` the ``(N, C)`` pixels (the spec's docstring gives the forward)::

    dγ  = Σ dy ⊙ o'                          (o' = o W_o + b_o, or o without the output conv)
    do' = γ dy;   do = do' W_oᵀ,  dW_o = oᵀ do',  db_o = Σ_i do'
    dβ  = do hᵀ;  dh = βᵀ do
    ds  = β ⊙ (dβ − rowsum(β ⊙ dβ))          the softmax's Jacobian, row by row
    df  = ds g;   dg = dsᵀ f
    dW_q = Xᵀ df, db_q = Σ_i df  (key and value alike)
    dX  = dy + df W_qᵀ + dg W_kᵀ + dh W_vᵀ

Not piecewise linear (the softmax, and ``s`` is quadratic in ``x``): absent from
``PIECEWISE_LINEAR``, so the reference refuses a gradient penalty through it
(:meth:`~.network.Network.not_piecewise_linear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...spec import SelfAttention

F64 = np.float64


def softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, the row maximum subtracted first (no overflow; same value)."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class _Cache:
    shape: tuple[int, ...]
    x: np.ndarray  # (B, N, C)
    f: np.ndarray  # (B, N, K)
    g: np.ndarray
    h: np.ndarray  # (B, N, V)
    beta: np.ndarray  # (B, N, N)
    o: np.ndarray  # (B, N, V), before the output conv
    branch: np.ndarray  # (B, N, C), what γ multiplies


def _project(layer: SelfAttention, p: dict[str, np.ndarray], part: str, x: np.ndarray) -> np.ndarray:
    kernel = p[f"{part}_kernel"]
    y = x @ kernel.reshape(kernel.shape[2], kernel.shape[3])
    return y + p[f"{part}_bias"] if layer.use_bias else y


def _attention_fwd(layer: SelfAttention, p, x, *, training: bool = False):
    b, hh, ww, c = x.shape
    xs = x.reshape(b, hh * ww, c)
    f, g, h = (_project(layer, p, part, xs) for part in ("query", "key", "value"))
    beta = softmax(np.einsum("bik,bjk->bij", f, g))
    o = beta @ h
    branch = _project(layer, p, "out", o) if layer.has_out(x.shape[1:]) else o
    y = xs + p["gamma"] * branch
    return y.reshape(x.shape), _Cache(x.shape, xs, f, g, h, beta, o, branch)


def _conv_grads(layer: SelfAttention, part: str, x: np.ndarray, dy: np.ndarray) -> dict[str, np.ndarray]:
    """The kernel (and bias) gradient of a 1×1 conv with input ``x`` ``(B, N, in)`` and output gradient ``dy``."""
    grads = {f"{part}_kernel": np.einsum("bni,bno->io", x, dy)[None, None]}
    if layer.use_bias:
        grads[f"{part}_bias"] = dy.sum(axis=(0, 1))
    return grads


def _matrix(p: dict[str, np.ndarray], part: str) -> np.ndarray:
    kernel = p[f"{part}_kernel"]
    return kernel.reshape(kernel.shape[2], kernel.shape[3])


def _attention_bwd(layer: SelfAttention, p, cache: _Cache, dy):
    dy = dy.reshape(cache.x.shape)
    grads: dict[str, np.ndarray] = {"gamma": np.array([(dy * cache.branch).sum()])}
    do = p["gamma"] * dy
    if layer.has_out(cache.shape[1:]):
        grads.update(_conv_grads(layer, "out", cache.o, do))
        do = do @ _matrix(p, "out").T
    dbeta = do @ cache.h.transpose(0, 2, 1)
    dh = cache.beta.transpose(0, 2, 1) @ do
    ds = cache.beta * (dbeta - (cache.beta * dbeta).sum(axis=-1, keepdims=True))
    df = ds @ cache.g
    dg = ds.transpose(0, 2, 1) @ cache.f
    dx = dy.copy()
    for part, d in (("query", df), ("key", dg), ("value", dh)):
        grads.update(_conv_grads(layer, part, cache.x, d))
        dx += d @ _matrix(p, part).T
    return dx.reshape(cache.shape), grads


#: ``(forward, backward)``, the ``LAYER_MATH`` convention.
ATTENTION_MATH: dict[type, tuple[Any, Any]] = {SelfAttention: (_attention_fwd, _attention_bwd)}
