"""TensorFlow: a ``tf.GradientTape`` around the user's scalar; the critic is a ``tf.Module``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from ...losscheck.battery import Case
from ...losscheck.critic import Critic
from ...losscheck.runners import Evaluation, scalar_error

IMAGE_LAYOUT = "nhwc"


def _numpy(t: tf.Tensor | None) -> np.ndarray | None:
    return None if t is None else tf.cast(t, tf.float64).numpy()


def _cast(value: np.ndarray, dtype: str) -> tf.Tensor:
    return tf.cast(tf.constant(np.asarray(value, dtype=np.float64)), getattr(tf, dtype))


def _scalar(out: object) -> tf.Tensor:
    if not isinstance(out, (tf.Tensor, tf.Variable)):
        raise TypeError(f"the loss returned {type(out).__name__}, not a tf.Tensor: it is cut from the tape")
    if int(tf.size(out)) != 1:
        raise ValueError(scalar_error(tuple(out.shape)))
    return tf.reshape(out, ())


def _run(make_out: Callable[[], tf.Tensor], wrt: Sequence, names: Sequence[str]) -> Evaluation:
    try:
        with tf.GradientTape() as tape:
            for t in wrt:
                if not isinstance(t, tf.Variable):
                    tape.watch(t)
            out = _scalar(make_out())
        grads = tape.gradient(out, list(wrt))
    except Exception as exc:  # the user's code: report whatever it raised
        return Evaluation(error=f"{type(exc).__name__}: {exc}")
    return Evaluation(value=float(_numpy(out)), grads=dict(zip(names, map(_numpy, grads))))


def run_logits(
    fn: Callable, inputs: dict[str, np.ndarray], order: Sequence[str], dtype: str, probabilities: bool
) -> Evaluation:
    tensors = {k: _cast(inputs[k], dtype) for k in order}

    def call() -> tf.Tensor:
        return fn(*[tf.sigmoid(tensors[k]) if probabilities else tensors[k] for k in order])

    ev = _run(call, [tensors[k] for k in order], order)
    ev.inputs = {k: _numpy(v) for k, v in tensors.items()}
    return ev


class SquaredReLUCritic(tf.Module):
    """``D(x) = v · relu(x·W + b)² / 2 + c`` with Keras' Dense layout (kernel ``(in, out)``)."""

    def __init__(self, critic: Critic, dtype: str):
        super().__init__(name="critic")
        self.hidden_kernel = tf.Variable(_cast(critic.weight.T, dtype), name="hidden_kernel")
        self.hidden_bias = tf.Variable(_cast(critic.bias, dtype), name="hidden_bias")
        self.out_kernel = tf.Variable(_cast(critic.out_weight[:, None], dtype), name="out_kernel")
        self.out_bias = tf.Variable(_cast(np.reshape(critic.out_bias, (1,)), dtype), name="out_bias")

    def __call__(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        h = tf.nn.relu(tf.reshape(x, (tf.shape(x)[0], -1)) @ self.hidden_kernel + self.hidden_bias)
        return (0.5 * h * h) @ self.out_kernel + self.out_bias


def run_penalty(fn: Callable, case: Case, dtype: str, call: tuple[str, ...]) -> Evaluation:
    """``fn(critic, *batches)``, the batches named by ``call`` (e.g. ``("real", "fake", "alpha")``)."""
    critic = SquaredReLUCritic(case.critic, dtype)
    arrays = {k: _cast(v, dtype) for k, v in case.inputs.items()}
    real, fake, alpha = arrays["real"], arrays["fake"], arrays["alpha"]
    batches = {"real": real, "fake": fake, "alpha": alpha}
    args = (critic, *(batches[k] for k in call))
    variables = [critic.hidden_kernel, critic.hidden_bias, critic.out_kernel, critic.out_bias]
    names = ["hidden.weight", "hidden.bias", "out.weight", "out.bias", "real", "fake"]
    ev = _run(lambda: fn(*args), [*variables, real, fake], names)
    if ev.error is None:
        g = ev.grads
        g["hidden.weight"] = None if g["hidden.weight"] is None else g["hidden.weight"].T
        g["out.weight"] = None if g["out.weight"] is None else g["out.weight"].reshape(-1)
        g["out.bias"] = None if g["out.bias"] is None else g["out.bias"].reshape(())
    ev.inputs = {k: _numpy(v) for k, v in arrays.items()}
    return ev
