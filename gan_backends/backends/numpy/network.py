"""One spec network (generator or discriminator) as the reference runs it: forward, reverse mode,
running statistics and the penalties' second-order parameter gradient, layer by layer.

:class:`Network` walks the spec's layers and looks each one's math up in
:data:`~.layers.LAYER_MATH` / :data:`~.layers.PIECEWISE_LINEAR`; it holds no per-layer math
itself, only the bookkeeping of canonical names (``{net}.{i}.{short name}``) and caches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...params import ParamTree
from ...spec import BatchNorm, Conv2D, ConvTranspose2D, Dense, GANSpec, Layer
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
        for layer in self.layers:
            if type(layer) not in LAYER_MATH:
                raise NotImplementedError(f"numpy reference has no math for {layer.describe()}")

    def _layer_params(self, tree: ParamTree, i: int) -> dict[str, np.ndarray]:
        prefix = f"{self.net}.{i}."
        return {k[len(prefix) :]: v for k, v in tree.items() if k.startswith(prefix)}

    def forward(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> tuple[np.ndarray, list[Any]]:
        caches = []
        for i, layer in enumerate(self.layers):
            x, cache = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x, training=training)
            caches.append(cache)
        return x, caches

    def activations(self, tree: ParamTree, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        outputs = []
        for i, layer in enumerate(self.layers):
            x, _ = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x, training=training)
            outputs.append(x)
        return outputs

    def backward(
        self, tree: ParamTree, caches: list[Any], dy: np.ndarray, deltas: list[Any] | None = None
    ) -> tuple[np.ndarray, ParamTree]:
        """Reverse mode from ``dy`` at the output; ``deltas[i]`` (when given) receives the
        gradient at layer ``i``'s output."""
        grads: ParamTree = {}
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if deltas is not None:
                deltas[i] = dy
            dy, g = LAYER_MATH[type(layer)][1](layer, self._layer_params(tree, i), caches[i], dy)
            for k, v in g.items():
                grads[f"{self.net}.{i}.{k}"] = v
        return dy, grads

    def update_buffers(self, buffers: ParamTree, caches: list[Any]) -> None:
        """One training-mode call's buffer update, in place, from its caches: BatchNorm's
        running statistics, spectral norm's power-iteration vectors."""
        for i, layer in enumerate(self.layers):
            prefix = f"{self.net}.{i}."
            if isinstance(layer, BatchNorm):
                current = {k: buffers[prefix + k] for k in ("running_mean", "running_var")}
                for k, v in bn_running_update(layer, current, caches[i]).items():
                    buffers[prefix + k] = v
            elif getattr(layer, "spectral_norm", None) is not None:  # the power iteration's u, v
                buffers.update({prefix + k: v for k, v in sn_buffer_update(caches[i]).items()})

    def not_piecewise_linear(self) -> tuple[int, Layer] | None:
        """The first layer that is not piecewise linear in its input, if any."""
        for i, layer in enumerate(self.layers):
            if type(layer) not in PIECEWISE_LINEAR:
                return i, layer
        return None

    def penalty_param_grads(self, tree: ParamTree, caches: list[Any], deltas: list[Any], v: np.ndarray) -> ParamTree:
        """Gradient w.r.t. the parameters of ``<v, g>`` with ``g = ∇_x Σ D(x)`` held at its
        masks: for a piecewise linear network ``g = W_1^T M_1 ... M_{L-1} W_L^T 1`` is
        multilinear in the kernels, and ``∂<v, g>/∂W_l`` is layer ``l``'s ordinary kernel
        gradient with input ``t_{l-1}`` (the tangent of ``v`` through layers ``1..l-1``, biases
        dropped, masks reused) and output gradient ``deltas[l]`` (from the backward that gave
        ``g``). Biases do not enter ``g``: their gradient is 0."""
        grads: ParamTree = {}
        t = v
        for i, layer in enumerate(self.layers):
            p = self._layer_params(tree, i)
            if isinstance(layer, (Dense, Conv2D, ConvTranspose2D)):
                # These layers' caches are their input, so t stands in for it.
                _, g = LAYER_MATH[type(layer)][1](layer, p, t, deltas[i])
                for k, value in g.items():
                    grads[f"{self.net}.{i}.{k}"] = np.zeros_like(value) if k == "bias" else value
            if i + 1 < len(self.layers):
                t = PIECEWISE_LINEAR[type(layer)](layer, p, caches[i], t)
        return grads
