"""JAX: ``jax.value_and_grad`` of the user's scalar; the critic is a function closing over its
parameters (``lambda x: model.apply(params, x)`` in user code), so the gradient reaches them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ...losscheck.battery import Case
from ...losscheck.runners import Evaluation, scalar_error

IMAGE_LAYOUT = "nhwc"


def _numpy(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, dtype=jnp.float32) if x.dtype != jnp.float32 else x, dtype=np.float64)


def _cast(value: np.ndarray, dtype: str) -> jax.Array:
    return jnp.asarray(np.asarray(value, dtype=np.float32)).astype(getattr(jnp, dtype))


def _checked(out):
    if not hasattr(out, "shape"):
        raise TypeError(f"the loss returned {type(out).__name__}, not a jax array")
    if int(np.prod(out.shape)) != 1:
        raise ValueError(scalar_error(tuple(out.shape)))
    return out if isinstance(out, jax.ShapeDtypeStruct) else jnp.reshape(out, ())


#: jit-compiled value-and-grad functions by (user function, how it is called): op-by-op dispatch
#: compiles every primitive for every new shape (20x slower over the battery), and a new jit
#: per call would recompile each time.
_COMPILED: dict[tuple, Callable] = {}


def _run(key: tuple, loss: Callable, args: Sequence, n_diff: int, names: Sequence[str]) -> Evaluation:
    """``jax.jit(jax.value_and_grad(loss))`` w.r.t. the first ``n_diff`` arguments. A loss that
    cannot be traced (Python control flow on values) runs eagerly instead, as its user runs it."""
    grad_fn = jax.value_and_grad(lambda *a: _checked(loss(*a)), argnums=tuple(range(n_diff)))
    try:
        try:
            if key not in _COMPILED:
                _checked(jax.eval_shape(loss, *args))  # names a non-scalar before jax.grad refuses it
                _COMPILED[key] = jax.jit(grad_fn)
            value, grads = _COMPILED[key](*args)
        except jax.errors.ConcretizationTypeError:
            value, grads = grad_fn(*args)
    except Exception as exc:  # the user's code: report whatever it raised
        return Evaluation(error=f"{type(exc).__name__}: {exc}")
    flat: dict[str, np.ndarray] = {}
    for name, g in zip(names, grads):
        if isinstance(g, dict):
            flat.update({k: _numpy(v) for k, v in g.items()})
        else:
            flat[name] = _numpy(g)
    return Evaluation(value=float(_numpy(value)), grads=flat)


def run_logits(
    fn: Callable, inputs: dict[str, np.ndarray], order: Sequence[str], dtype: str, probabilities: bool
) -> Evaluation:
    arrays = [_cast(inputs[k], dtype) for k in order]

    def loss(*xs):
        return fn(*[jax.nn.sigmoid(x) if probabilities else x for x in xs])

    ev = _run((fn, "logits", probabilities, len(order)), loss, arrays, len(arrays), order)
    ev.inputs = {k: _numpy(v) for k, v in zip(order, arrays)}
    return ev


def critic_fn(params: dict, layout: str) -> Callable:
    """``D(x) = v · relu(W·vec(x) + b)² / 2 + c`` as a closure over ``params``."""

    def critic(x):
        if layout == "nchw":
            x = jnp.transpose(x, (0, 2, 3, 1))
        h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["hidden.weight"].T + params["hidden.bias"])
        return (0.5 * h * h) @ params["out.weight"][:, None] + params["out.bias"]

    return critic


def run_penalty(fn: Callable, case: Case, dtype: str, call: tuple[str, ...]) -> Evaluation:
    """``fn(critic, *batches)``, the batches named by ``call`` (e.g. ``("real", "fake", "alpha")``)."""
    params = {k: _cast(v, dtype) for k, v in case.critic.params.items()}
    arrays = {k: _cast(v, dtype) for k, v in case.inputs.items()}

    def loss(p, real, fake, alpha):
        critic = critic_fn(p, case.layout)
        batches = {"real": real, "fake": fake, "alpha": alpha}
        return fn(critic, *(batches[k] for k in call))

    args = [params, arrays["real"], arrays["fake"], arrays["alpha"]]
    ev = _run((fn, "penalty", case.layout, call), loss, args, 3, ["params", "real", "fake"])
    ev.inputs = {k: _numpy(v) for k, v in arrays.items()}
    return ev
