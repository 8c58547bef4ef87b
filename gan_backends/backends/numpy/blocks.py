"""The float64 reference's residual block, and the walks over a layer sequence that the block
and :class:`~.network.Network` share (semantics: :mod:`gan_backends.spec.blocks`).

A branch is a layer sequence run like a network: :func:`chain_forward` keeps one cache per
layer, :func:`chain_backward` runs them in reverse, :func:`chain_tangent` pushes a tangent
through them. The block (:func:`residual_math`) is::

    forward   y = main(x) + shortcut(x)               (an empty shortcut: shortcut(x) = x)
    backward  dx = main'(x)ᵀ dy + shortcut'(x)ᵀ dy     (the output gradient reaches both branches;
                                                       their input gradients add)
    tangent   J t = J_main t + J_shortcut t           (biases dropped, masks held, as every layer's)

Parameters arrive by short name under the block (``main.0.kernel``), so each branch reads its
own by the prefix ``{branch}.`` and a layer of it by ``{index}.``, exactly as the network reads
its layers by ``{net}.{index}.``. The walks take the per-layer tables (``LAYER_MATH``,
``PIECEWISE_LINEAR``) as arguments: the block's own entries in those tables are made from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...spec import Layer, Residual

Params = dict[str, np.ndarray]
#: ``{branch: [one cache per layer of the branch]}``: what a block's forward keeps.
ResidualCache = dict[str, list[Any]]


def params_under(p: Params, prefix: str) -> Params:
    """The entries of ``p`` under ``prefix`` (``"2."``, ``"main."``), by their name after it."""
    return {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}


def chain_forward(
    math: dict, layers: Sequence[Layer], p: Params, x: np.ndarray, training: bool
) -> tuple[np.ndarray, list[Any]]:
    """``layers`` applied in order (layer ``j`` reads the entries ``{j}.*`` of ``p``); one cache per layer."""
    caches = []
    for j, layer in enumerate(layers):
        x, cache = math[type(layer)][0](layer, params_under(p, f"{j}."), x, training=training)
        caches.append(cache)
    return x, caches


def chain_backward(
    math: dict, layers: Sequence[Layer], p: Params, caches: list[Any], dy: np.ndarray, deltas: list[Any] | None = None
) -> tuple[np.ndarray, Params]:
    """Reverse mode from ``dy`` through ``layers``: the input gradient and the parameter gradients
    by ``{j}.{short name}``; ``deltas[j]`` (when given) receives the gradient at layer ``j``'s output."""
    grads: Params = {}
    for j in reversed(range(len(layers))):
        if deltas is not None:
            deltas[j] = dy
        dy, g = math[type(layers[j])][1](layers[j], params_under(p, f"{j}."), caches[j], dy)
        grads.update({f"{j}.{k}": v for k, v in g.items()})
    return dy, grads


def chain_tangent(tangents: dict, layers: Sequence[Layer], p: Params, caches: list[Any], t: np.ndarray) -> np.ndarray:
    """The tangent ``t`` of the input pushed through ``layers`` (each layer's ``PIECEWISE_LINEAR`` entry)."""
    for j, layer in enumerate(layers):
        t = tangents[type(layer)](layer, params_under(p, f"{j}."), caches[j], t)
    return t


def residual_math(math: dict, tangents: dict) -> tuple[Callable, Callable, Callable]:
    """The block's ``(forward, backward, tangent)``, walking its branches through ``math`` (the
    ``LAYER_MATH`` table) and ``tangents`` (``PIECEWISE_LINEAR``)."""

    def forward(
        layer: Residual, p: Params, x: np.ndarray, *, training: bool = False
    ) -> tuple[np.ndarray, ResidualCache]:
        caches: ResidualCache = {}
        y = None
        for branch, layers in layer.branches():
            out, caches[branch] = chain_forward(math, layers, params_under(p, f"{branch}."), x, training)
            y = out if y is None else y + out
        return y, caches

    def backward(layer: Residual, p: Params, caches: ResidualCache, dy: np.ndarray) -> tuple[np.ndarray, Params]:
        dx, grads = None, {}
        for branch, layers in layer.branches():
            d, g = chain_backward(math, layers, params_under(p, f"{branch}."), caches[branch], dy)
            dx = d if dx is None else dx + d
            grads.update({f"{branch}.{k}": v for k, v in g.items()})
        return dx, grads

    def tangent(layer: Residual, p: Params, caches: ResidualCache, t: np.ndarray) -> np.ndarray:
        out = None
        for branch, layers in layer.branches():
            tb = chain_tangent(tangents, layers, params_under(p, f"{branch}."), caches[branch], t)
            out = tb if out is None else out + tb
        return out

    return forward, backward, tangent
