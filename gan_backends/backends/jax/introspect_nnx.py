"""The trace of a Flax NNX module for :mod:`.introspect`: its leaf calls and jaxpr.

An NNX module is a Python object called directly (no ``init``/``apply``, so no
``nn.intercept_methods``). Its leaf calls are recorded by wrapping, for the length of one trace,
the ``__call__`` of every module class Flax's ``nnx`` namespace defines (``nnx.Sequential``
excepted: it is read through), so that ``nnx.Linear``, ``nnx.Conv``, ``nnx.ConvTranspose``,
``nnx.BatchNorm`` are read and any other (``nnx.Dropout``, ``nnx.LayerNorm``) is refused by its
name. The module is traced in inference mode through ``nnx.view(deterministic=True,
use_running_average=True)``, a view sharing its arrays: the user's module itself is not
switched to ``eval``. The classes are restored when the trace ends, an error included; the wrap
is process-wide while it lasts, so a module read in one thread should not be called in another.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ...port.native import PortError
from ...spec import Shape
from .introspect import BATCH
from .introspect_leaf import Call as _Call
from .introspect_leaf import record_leaf


def _leaf_classes() -> list[type]:
    """Every NNX module class with a ``__call__`` of its own, containers excepted."""
    return [
        cls
        for cls in vars(nnx).values()
        if isinstance(cls, type)
        and issubclass(cls, nnx.Module)
        and "__call__" in vars(cls)
        and not issubclass(cls, nnx.Sequential)
    ]


@contextlib.contextmanager
def _intercepted(calls: list[_Call]) -> Iterator[None]:
    depth = [0]  # a leaf's own call of its parent class's __call__ is part of that one leaf
    originals: dict[type, Callable[..., Any]] = {}

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def call(self: Any, *args: Any, **kw: Any) -> Any:
            if depth[0]:
                return original(self, *args, **kw)
            depth[0] += 1
            try:
                return record_leaf(calls, self, functools.partial(original, self), args, kw)
            finally:
                depth[0] -= 1

        return call

    try:
        for cls in _leaf_classes():
            originals[cls] = vars(cls)["__call__"]
            cls.__call__ = wrap(originals[cls])  # type: ignore[method-assign]
        yield
    finally:
        for cls, original in originals.items():
            cls.__call__ = original  # type: ignore[method-assign]


def trace(model: nnx.Module, shape: Shape) -> tuple[Any, list[_Call], Shape, list[str]]:
    """``(closed jaxpr, leaf calls, per-sample output shape, notes)`` of one inference call."""
    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    calls: list[_Call] = []
    x = jnp.zeros((BATCH, *shape), jnp.float32)
    try:
        with _intercepted(calls):
            closed = jax.make_jaxpr(view)(x)
    except Exception as exc:  # the user's own code: any error is theirs to see, with the shape tried
        raise PortError(
            f"{type(model).__name__} called on zeros of shape {x.shape}: {type(exc).__name__}: {exc}"
        ) from exc
    out = closed.jaxpr.outvars[0].aval.shape
    notes = ["an NNX module, traced through nnx.view(deterministic=True, use_running_average=True)"]
    return closed, calls, tuple(int(d) for d in out[1:]), notes
