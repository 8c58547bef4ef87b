"""One spec network (generator or discriminator) as the reference runs it: forward, reverse mode,
running statistics and the penalties' second-order parameter gradient, layer by layer.

:class:`Network` walks the spec's layers and looks each one's math up in
:data:`~.layers.LAYER_MATH` / :data:`~.layers.PIECEWISE_LINEAR`; it holds no per-layer math
itself, only the bookkeeping of canonical names (``{net}.{i}.{short name}``, nested
``{net}.{i}.{branch}.{j}.{short name}`` inside a residual block) and caches. The walks over a
layer sequence are :mod:`.blocks`' (a block's branches are walked the same way).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...params import ParamTree
from ...spec import BatchNorm, Conv2D, ConvTranspose2D, Dense, GANSpec, Layer, Residual, describe_path
from .blocks import chain_backward, chain_forward, params_under
from .layers import LAYER_MATH, PIECEWISE_LINEAR, bn_running_update
from .spectral import buffer_update as sn_buffer_update


class Network:
    """One network of the spec as a list of (layer, forward, backward), params by canonical name.

    ``tree`` arguments hold the parameters and, for BatchNorm in inference mode, the buffers
    (``{**params, **buffers}``); layers pick theirs by the ``{net}.{i}.`` prefix.
    """

    def __init__(self, spec: GANSpec, net: str):
        self.net = net
        self.layers = spec.layers(net)
        for _, layer in _leaves(self.layers):
            if type(layer) not in LAYER_MATH:
                raise NotImplementedError(f"numpy reference has no math for {layer.describe()}")

    def _params(self, tree: ParamTree) -> dict[str, np.ndarray]:
        return params_under(tree, f"{self.net}.")

    def _named(self, grads: dict[str, np.ndarray]) -> ParamTree:
        return {f"{self.net}.{k}": v for k, v in grads.items()}

    def forward(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, list[Any]]:
        return chain_forward(LAYER_MATH, self.layers, self._params(tree), x, training)

    def activations(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        p, outputs = self._params(tree), []
        for i, layer in enumerate(self.layers):
            x, _ = LAYER_MATH[type(layer)][0](layer, params_under(p, f"{i}."), x, training=training)
            outputs.append(x)
        return outputs

    def backward(
        self, tree: ParamTree, caches: list[Any], dy: np.ndarray, deltas: list[Any] | None = None
    ) -> tuple[np.ndarray, ParamTree]:
        """Reverse mode from ``dy`` at the output; ``deltas[i]`` (when given) receives the
        gradient at layer ``i``'s output."""
        dx, grads = chain_backward(LAYER_MATH, self.layers, self._params(tree), caches, dy, deltas)
        return dx, self._named(grads)

    def update_buffers(self, buffers: ParamTree, caches: list[Any]) -> None:
        """One training-mode call's buffer update, in place, from its caches: BatchNorm's
        running statistics, spectral norm's power-iteration vectors, inside blocks too."""
        _update_buffers(self.layers, f"{self.net}.", buffers, caches)

    def not_piecewise_linear(self) -> tuple[str, Layer] | None:
        """Where the first layer that is not piecewise linear in its input is, in words
        (``discriminator layer 2 Residual main layer 0``), and the layer, if there is one."""
        for path, layer in _leaves(self.layers):
            if type(layer) not in PIECEWISE_LINEAR:
                return describe_path(f"{self.net}.{path}"), layer
        return None

    def penalty_param_grads(self, tree: ParamTree, caches: list[Any], deltas: list[Any], v: np.ndarray) -> ParamTree:
        """Gradient w.r.t. the parameters of ``<v, g>`` with ``g = ∇_x Σ D(x)`` held at its
        masks: for a piecewise linear network ``g = J(x)ᵀ 1`` with ``J`` linear in each kernel
        (a path through a residual network meets each kernel at most once), and ``∂<v, g>/∂W_l``
        is layer ``l``'s ordinary kernel gradient with input ``t_l`` (the tangent of ``v`` at the
        layer's input: biases dropped, masks reused, summed over a block's two branches) and
        output gradient ``δ_l`` (from the backward that gave ``g``; inside a block, that backward
        is run again per branch from the block's output gradient). Biases do not enter ``g``:
        their gradient is 0."""
        grads, _ = _penalty_grads(self.layers, self._params(tree), caches, deltas, v)
        return self._named(grads)


def _leaves(layers: Sequence[Layer]) -> Iterator[tuple[str, Layer]]:
    """``(path, layer)`` of every layer that is not a block (``"3"``, ``"2.main.0"``)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, Residual):
            for branch, sub in layer.branches():
                yield from ((f"{i}.{branch}.{path}", leaf) for path, leaf in _leaves(sub))
        else:
            yield str(i), layer


def _update_buffers(layers: Sequence[Layer], prefix: str, buffers: ParamTree, caches: list[Any]) -> None:
    for i, layer in enumerate(layers):
        at = f"{prefix}{i}."
        if isinstance(layer, Residual):  # its cache: one cache list per branch
            for branch, sub in layer.branches():
                _update_buffers(sub, f"{at}{branch}.", buffers, caches[i][branch])
        elif isinstance(layer, BatchNorm):
            current = {k: buffers[at + k] for k in ("running_mean", "running_var")}
            for k, v in bn_running_update(layer, current, caches[i]).items():
                buffers[at + k] = v
        elif getattr(layer, "spectral_norm", None) is not None:  # the power iteration's u, v
            buffers.update({at + k: v for k, v in sn_buffer_update(caches[i]).items()})


def _penalty_grads(
    layers: Sequence[Layer], p: dict[str, np.ndarray], caches: list[Any], deltas: list[Any], t: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:meth:`Network.penalty_param_grads` over ``layers`` from the input tangent ``t``: the
    gradients by ``{j}.{short name}`` and the tangent at the output."""
    grads: dict[str, np.ndarray] = {}
    for j, layer in enumerate(layers):
        pj = params_under(p, f"{j}.")
        if isinstance(layer, Residual):
            out = None
            for branch, sub in layer.branches():
                pb, sub_deltas = params_under(pj, f"{branch}."), [None] * len(sub)
                chain_backward(LAYER_MATH, sub, pb, caches[j][branch], deltas[j], sub_deltas)
                g, tb = _penalty_grads(sub, pb, caches[j][branch], sub_deltas, t)
                grads.update({f"{j}.{branch}.{k}": v for k, v in g.items()})
                out = tb if out is None else out + tb
            t = out
            continue
        if isinstance(layer, (Dense, Conv2D, ConvTranspose2D)):
            # These layers' caches are their input, so t stands in for it.
            _, g = LAYER_MATH[type(layer)][1](layer, pj, t, deltas[j])
            grads.update({f"{j}.{k}": (np.zeros_like(v) if k == "bias" else v) for k, v in g.items()})
        t = PIECEWISE_LINEAR[type(layer)](layer, pj, caches[j], t)
    return grads, t
