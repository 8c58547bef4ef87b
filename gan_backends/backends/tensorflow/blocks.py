"""The residual block in TensorFlow: a ``tf.Module`` holding the modules of its two branches,
``main(x) + shortcut(x)`` (semantics: :mod:`gan_backends.spec.blocks`).

Each branch's layers are built as a network's are (:func:`~.layers.build_layer`, from each
sublayer's canonical input shape) and called as the network calls them, ``training`` and
``update_stats`` passed to the layers with buffers (BatchNorm, spectral norm, nested blocks).
Its parameters and buffers are its sublayers', named ``{branch}.{index}.{short name}`` as the
canonical tree nests them under the block.
"""

from __future__ import annotations

import tensorflow as tf

from ...spec import Residual, Shape


class ResidualLayer(tf.Module):
    """``main(x) + shortcut(x)``; an empty shortcut is the identity."""

    def __init__(self, layer: Residual, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False):
        from .layers import build_layer  # layers.py's table holds this builder

        super().__init__(name=name)
        with self.name_scope:
            self.branches = {
                branch: [
                    build_layer(sub, shapes[0], dtype, f"{branch}{j}", bf16)
                    for j, (sub, shapes) in enumerate(zip(sublayers, layer.branch_shapes(in_shape, branch)))
                ]
                for branch, sublayers in layer.branches()
            }

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        from .layers import call_layer

        outputs = []
        for layers in self.branches.values():
            h = x
            for module in layers:
                h = call_layer(module, h, training, update_stats)
            outputs.append(h)
        return outputs[0] + outputs[1]

    def _named(self, kind: str) -> dict[str, tf.Variable]:
        return {
            f"{branch}.{j}.{name}": var
            for branch, layers in self.branches.items()
            for j, module in enumerate(layers)
            if hasattr(module, kind)
            for name, var in getattr(module, kind)().items()
        }

    def params(self) -> dict[str, tf.Variable]:
        return self._named("params")

    def buffers(self) -> dict[str, tf.Variable]:
        return self._named("buffers")


def build_residual(layer: Residual, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool) -> tf.Module:
    return ResidualLayer(layer, in_shape, dtype, name, bf16)
