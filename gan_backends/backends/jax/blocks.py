"""The residual block in Flax: a module whose two branches are :class:`~.layers.Sequential`
submodules named ``main`` and ``shortcut``, ``main(x) + shortcut(x)`` (semantics:
:mod:`gan_backends.spec.blocks`).

The variables nest as the canonical names do: ``{"params": {"2": {"main": {"0": {"kernel"}}}}}``
is ``discriminator.2.main.0.kernel``, BatchNorm's statistics under ``batch_stats`` the same way.
An empty shortcut is a ``Sequential`` of no layers (the identity, no variables).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from ...spec import Residual


class ResidualModule(nn.Module):
    """``main(x) + shortcut(x)``, each branch run with the network's ``training`` flag."""

    layer: Residual
    dtype: Any
    precision: Any

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        from .layers import Sequential  # layers.py's table holds this module's builder

        main = Sequential(self.layer.main, self.dtype, self.precision, name="main")
        shortcut = Sequential(self.layer.shortcut, self.dtype, self.precision, name="shortcut")
        return main(x, training) + shortcut(x, training)


def build_residual(layer: Residual, net: Any, name: str) -> Any:
    return ResidualModule(layer, net.dtype, net.precision, name=name)
