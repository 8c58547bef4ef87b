"""The recording of one leaf submodule call in a traced Flax module (for :mod:`.introspect` and
:mod:`.introspect_nnx`): the call runs in a ``jax.named_scope`` of its own and its output
passes a marker (a jitted identity), so the jaxpr's equations can be grouped by the leaf call
they belong to. A leaf's own submodule calls (``nn.SpectralNorm``'s wrapped layer) belong to it
and are not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax

from ...spec import Shape

SCOPE = "gan_backends_leaf"
MARK = "gan_backends_leaf_out"


def _mark_out(y: jax.Array) -> jax.Array:
    return y


_mark_out.__name__ = MARK
_marker = jax.jit(_mark_out)
_ACTIVE: list[Any] = []  # the leaf call being recorded (at most one)


@dataclass
class Call:
    """One leaf submodule call: the module (bound clone), its per-sample input shape, its
    keyword arguments (``use_running_average`` may come with the call)."""

    module: nn.Module
    in_shape: Shape
    kwargs: dict[str, Any]


def record_leaf(calls: list[Call], module: Any, call: Callable[..., Any], args: Any, kw: Any) -> Any:
    """One leaf call, in a named scope of its own, its output through the marker; a leaf's own
    submodule calls (``nn.SpectralNorm``'s wrapped layer) belong to it and are not recorded."""
    if _ACTIVE:
        return call(*args, **kw)
    with jax.named_scope(f"{SCOPE}{len(calls)}"):
        calls.append(Call(module, tuple(args[0].shape[1:]), dict(kw)))
        _ACTIVE.append(module)
        try:
            y = call(*args, **kw)
        finally:
            _ACTIVE.pop()
    return _marker(y) if isinstance(y, jax.Array) else y


def leaf_of(eqn: Any) -> int | None:
    """The index of the recorded leaf call an equation belongs to (its outermost leaf scope), or None."""
    stack = str(eqn.source_info.name_stack)
    for part in stack.split("/"):
        if part.startswith(SCOPE) and part[len(SCOPE) :].isdigit():
            return int(part[len(SCOPE) :])
    return None
