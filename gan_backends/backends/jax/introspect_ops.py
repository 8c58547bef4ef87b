"""The jax ops :mod:`.introspect` reads between a Flax module's leaf calls: activations by name.

Activations are functions, not submodules: an equation of the traced jaxpr that is a jit or
custom_jvp named ``relu``, ``leaky_relu``, ``tanh``, ``sigmoid`` (or the ``tanh``/``logistic``
primitive) is read as that spec layer, its slope read off a probe at -1, and then checked on a
probe over -3..3 against the spec's own formula, so a function that only shares the name is
not mistaken for it. The equation is evaluated on its own (a one-equation jaxpr), literal
operands (``nn.leaky_relu(x, 0.2)``'s slope) included.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.extend
import numpy as np

from ...spec import Layer, LeakyReLU, ReLU, Sigmoid, Tanh


def op_name(eqn: Any) -> str:
    """The function an equation is: a jit's or a custom_jvp's name (``relu``), else the primitive."""
    if eqn.primitive.name in ("jit", "pjit") and "name" in eqn.params:
        return str(eqn.params["name"])
    if eqn.primitive.name == "custom_jvp_call":
        inner = eqn.params["call_jaxpr"].jaxpr.eqns
        if len(inner) == 1:
            return op_name(inner[0])
    return eqn.primitive.name


def _float32(value: float) -> float:
    """A float32 number as the decimal it was written as (0.2, not 0.20000000298)."""
    return float(str(np.float32(value)))


def _slope(eqn: Any) -> LeakyReLU:
    probe = _evaluate(eqn, -1.0)
    return LeakyReLU(slope=_float32(-float(probe.ravel()[0])))


ACTIVATIONS: dict[str, Callable[[Any], Layer]] = {
    "relu": lambda eqn: ReLU(),
    "leaky_relu": _slope,
    "tanh": lambda eqn: Tanh(),
    "logistic": lambda eqn: Sigmoid(),
    "sigmoid": lambda eqn: Sigmoid(),
}
_REFERENCE: dict[type[Layer], Callable[[Any, np.ndarray], np.ndarray]] = {
    ReLU: lambda layer, x: np.maximum(x, 0.0),
    LeakyReLU: lambda layer, x: np.where(x > 0, x, layer.slope * x),
    Tanh: lambda layer, x: np.tanh(x),
    Sigmoid: lambda layer, x: 1.0 / (1.0 + np.exp(-x)),
}


@functools.cache
def _debug_info() -> Any:
    """The debug info of a one-argument, one-result jaxpr (jax deprecates a jaxpr without one)."""
    return jax.make_jaxpr(lambda x: x)(0.0).jaxpr.debug_info


def _evaluate(eqn: Any, fill: float | np.ndarray) -> np.ndarray:
    """The equation applied to a probe of its input's shape (literal operands as they are)."""
    aval = eqn.invars[0].aval
    probe = np.broadcast_to(np.asarray(fill, aval.dtype), aval.shape)
    # the one equation as a jaxpr of its own (binding a custom_jvp_call by hand needs its
    # internal function arguments); literal operands stay inside it
    single = jax.extend.core.Jaxpr([], [eqn.invars[0]], list(eqn.outvars), [eqn], eqn.effects, _debug_info())
    return np.asarray(jax.core.eval_jaxpr(single, [], probe)[0])


def computes(eqn: Any, layer: Layer) -> bool:
    """Whether a function read by its name computes what the spec layer does, on -3..3."""
    aval = eqn.invars[0].aval
    x = np.linspace(-3.0, 3.0, int(np.prod(aval.shape))).reshape(aval.shape).astype(aval.dtype)
    got, want = _evaluate(eqn, x), _REFERENCE[type(layer)](layer, x.astype(np.float64))
    return bool(np.allclose(got, want, rtol=1e-5, atol=1e-6))
