"""What an N-device step must compute, derived from a one-device backend and NumPy alone.

With synchronised BatchNorm (or none) the answer is the one-device ``train_step`` on the
concatenated batch. With per-device BatchNorm no one-device step computes it, so
:func:`per_device_step` assembles it here from pieces whose meaning does not depend on data
parallelism: per device ``k`` the one-device backend's :meth:`~Backend.gradients` on ``k``'s rows
(BatchNorm on those rows' statistics), the mean of those gradients over devices, a torch-form
Adam update written out in NumPy, and the running statistics folded in NumPy from the inputs of
each BatchNorm layer (:meth:`~Backend.activations` in training mode) for device 0's rows, call
by call in the documented order (``docs/conv-gans.md``). Nothing here runs on several devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.base import Backend, OptimizerState, TrainBatch
from ..params import ParamTree
from ..spec import AdamSpec, BatchNorm, GANSpec, OptimizerSpec
from . import local_rows


@dataclass
class StepResult:
    """A training step's outcome in canonical form: parameters, running statistics, loss terms."""

    params: ParamTree
    buffers: ParamTree
    losses: dict[str, float]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||`` in float64 (absolute where ``b`` is 0), the project's measure."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norm = float(np.linalg.norm(b))
    diff = float(np.linalg.norm(a - b))
    return diff / norm if norm > 0 else diff


def max_relative_error(a: ParamTree, b: ParamTree) -> tuple[float, str]:
    """The worst tensor of two trees with the same names: ``(error, name)``."""
    if set(a) != set(b):
        raise ValueError(f"trees differ in names: {sorted(set(a) ^ set(b))}")
    worst = max(((relative_error(a[n], b[n]), n) for n in b), default=(0.0, ""))
    return worst


def adam_update(
    spec: OptimizerSpec, params: ParamTree, grads: ParamTree, slots: dict[str, ParamTree], step: int
) -> ParamTree:
    """One ``torch.optim.Adam`` step (formula in :class:`~gan_backends.spec.AdamSpec`) in float64,
    cast back to each parameter's dtype; updates ``slots`` (``m``, ``v``) in place."""
    if not isinstance(spec, AdamSpec):
        raise NotImplementedError(f"the per-device reference writes out Adam only, not {spec.name}")
    out: ParamTree = {}
    bc1 = 1.0 - spec.beta1**step
    bc2_sqrt = np.sqrt(1.0 - spec.beta2**step)
    for name, p in params.items():
        g = np.asarray(grads[name], np.float64)
        p64 = np.asarray(p, np.float64)
        if spec.weight_decay:
            g = g + spec.weight_decay * p64
        m = slots["m"][name] = slots["m"][name] + (1.0 - spec.beta1) * (g - slots["m"][name])
        v = slots["v"][name] = slots["v"][name] + (1.0 - spec.beta2) * (g * g - slots["v"][name])
        out[name] = (p64 - spec.lr / bc1 * m / (np.sqrt(v) / bc2_sqrt + spec.eps)).astype(p.dtype)
    return out


def fold_running_stats(
    spec: GANSpec, backend: Backend, buffers: dict[str, np.ndarray], net: str, x: np.ndarray
) -> None:
    """Advance ``net``'s running statistics (float64, in place) by one training-mode call on
    ``x`` at the backend's current parameters, from the batch statistics of each BatchNorm's input."""
    outputs = backend.activations(net, x, training=True)
    for i, layer in enumerate(spec.layers(net)):
        if not isinstance(layer, BatchNorm):
            continue
        h = np.asarray(x if i == 0 else outputs[i - 1], np.float64)
        axes = tuple(range(h.ndim - 1))
        n = int(np.prod(h.shape[:-1]))
        mean = h.mean(axis=axes)
        var = np.square(h - mean).mean(axis=axes)
        key = f"{net}.{i}"
        buffers[f"{key}.running_mean"], buffers[f"{key}.running_var"] = layer.running_update(
            buffers[f"{key}.running_mean"], buffers[f"{key}.running_var"], mean, var, n
        )


def _mean_trees(trees: list[ParamTree], names: list[str]) -> ParamTree:
    return {n: np.mean([np.asarray(t[n], np.float64) for t in trees], axis=0) for n in names}


def per_device_step(backend: Backend, batch: TrainBatch, devices: int) -> StepResult:
    """The N-device step with per-device BatchNorm: each device's loss is the mean over its rows
    (BatchNorm on its rows' statistics), the gradient is the mean of the device gradients, and
    the running statistics are device 0's. Uses ``backend`` from its current parameters, running
    statistics and a fresh optimiser (step 0), and leaves it at the new parameters."""
    spec = backend.spec
    batch.validate(spec)
    params = backend.get_params()
    buffers = {n: np.asarray(v, np.float64) for n, v in backend.get_buffers().items()}
    start: OptimizerState = backend.get_optimizer_state()
    if any(start.steps.values()):
        raise ValueError("per_device_step starts from a fresh optimiser (step 0)")
    slots = {net: {s: {n: np.zeros(v.shape) for n, v in params.items()} for s in ("m", "v")} for net in ("g", "d")}
    g_names = [n for n in params if n.startswith("generator.")]
    d_names = [n for n in params if n.startswith("discriminator.")]
    rows = [local_rows(batch.z_g.shape[0], k, devices) for k in range(devices)]
    clip = spec.loss.clip_value
    for i in range(spec.n_critic):
        alpha = [None if batch.alpha is None else batch.alpha[i][r] for r in rows]
        results = [backend.gradients(batch.real[i][r], batch.z_d[i][r], a) for r, a in zip(rows, alpha)]
        terms = {k: float(np.mean([t[k] for t, _ in results])) for k in ("d_real", "d_fake", "d_penalty", "d_loss")}
        # Device 0's running statistics: G(z_d), D(real), D(fake), as train_step calls them.
        fake0 = backend.activations("generator", batch.z_d[i][rows[0]], training=True)[-1]
        fold_running_stats(spec, backend, buffers, "generator", batch.z_d[i][rows[0]])
        fold_running_stats(spec, backend, buffers, "discriminator", batch.real[i][rows[0]])
        fold_running_stats(spec, backend, buffers, "discriminator", fake0)
        grads = _mean_trees([g for _, g in results], d_names)
        d_params = {n: params[n] for n in d_names}
        new_d = adam_update(spec.d_optimizer, d_params, grads, slots["d"], step=i + 1)
        if clip is not None:
            new_d = {n: np.clip(v, -clip, clip) for n, v in new_d.items()}
        params = {**params, **new_d}
        backend.set_params(params)
    results = [backend.gradients(batch.real[-1][r], batch.z_g[r]) for r in rows]
    terms["g_loss"] = float(np.mean([t["g_loss"] for t, _ in results]))
    z0 = batch.z_g[rows[0]]
    fold_running_stats(spec, backend, buffers, "generator", z0)
    if spec.loss.relativistic:  # G's step calls D(real[-1]) before D(G(z_g)) for these losses
        fold_running_stats(spec, backend, buffers, "discriminator", batch.real[-1][rows[0]])
    fold_running_stats(spec, backend, buffers, "discriminator", backend.activations("generator", z0, training=True)[-1])
    grads = _mean_trees([g for _, g in results], g_names)
    new_g = adam_update(spec.g_optimizer, {n: params[n] for n in g_names}, grads, slots["g"], step=1)
    params = {**params, **new_g}
    backend.set_params(params)
    dtype = np.dtype(spec.numerics.dtype)
    return StepResult(params, {n: v.astype(dtype) for n, v in buffers.items()}, terms)


def global_step(backend: Backend, batch: TrainBatch) -> StepResult:
    """The one-device ``train_step`` on the whole batch: what synchronised BatchNorm must give."""
    losses = backend.train_step(batch)
    return StepResult(backend.get_params(), backend.get_buffers(), losses)


__all__ = [
    "StepResult",
    "adam_update",
    "fold_running_stats",
    "global_step",
    "max_relative_error",
    "per_device_step",
    "relative_error",
]
