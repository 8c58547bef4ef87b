"""JAX backend: ``flax.linen`` networks, ``optax`` optimisers, the whole step under ``jax.jit``.

This module is :class:`JaxBackend` (the boundary, the losses and the training step) and what it
needs to place arrays (:func:`select_device`); the networks are :mod:`.layers`, the optimisers
:mod:`.optim`, so each can be read (and reused by checkpoint and data-parallel code) alone.

Canonical layouts are Flax's own (Dense kernel ``(in, out)``, Conv2D HWIO, ConvTranspose2D
``(kh, kw, out, in)`` as ``lax.conv_transpose(transpose_kernel=True)`` takes it, channels-last
images): only the tree shape changes at the boundary, ``{"params": {"0": {"kernel": ...}}}`` <->
``generator.0.kernel``; BatchNorm's running statistics live in the ``batch_stats`` collection
(``{"3": {"mean", "var"}}`` <-> ``generator.3.running_mean`` / ``running_var``).

The training step is a pure function ``(state, batch) -> (state, terms)``; the state holds the
parameters, the running statistics and both optimiser states. Under ``jit`` the state buffers
are donated (on accelerators), so XLA updates them in place.

Modes: ``jit`` (default) and ``eager`` (the same functions, op by op, no compilation).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...errors import DeviceUnavailable, parse_device
from ...losses import PENALTY_SITES, LossOps, discriminator_loss, generator_loss, gradient_penalty
from ...params import ParamTree, buffer_shapes, check_buffers, init_buffers
from ...spec import NETWORKS, GANSpec, OptimizerSpec
from ..base import Backend, EmaState, OptimizerState, TrainBatch, check_ema
from . import MANIFEST
from .ema import EmaArrays, ema_update
from .layers import BUFFER_NAMES, Sequential
from .optim import make_optimizer, optax_slot_fields

JAX_OPS = LossOps(softplus=jax.nn.softplus, mean=jnp.mean, relu=jax.nn.relu, sqrt=jnp.sqrt, sum=jnp.sum)


class TrainState(NamedTuple):
    """Everything a training step reads and writes, as one pytree: what ``jit`` donates and a
    data-parallel engine lays out over its mesh (Flax trees keyed by spec index)."""

    g_params: Any
    d_params: Any
    g_opt: Any
    d_opt: Any
    g_stats: Any
    d_stats: Any
    #: G's moving average (:class:`.ema.EmaArrays`), None when the spec keeps none.
    ema: Any = None


def select_device(requested: str | None) -> jax.Device:
    if requested is None:
        return jax.devices()[0]
    kind, index = parse_device(requested)
    platform = "gpu" if kind == "cuda" else "cpu"
    try:
        devices = jax.devices(platform)
    except RuntimeError:  # no backend for the platform (a CPU-only jaxlib)
        devices = []
    if (index or 0) >= len(devices):
        raise DeviceUnavailable(f"device {requested!r}: jax sees {len(devices)} {platform} device(s)")
    return devices[index or 0]


def describe_device(device: jax.Device) -> str:
    return f"{device.platform}:{device.id} ({device.device_kind})"


def sq_norms(g: jax.Array) -> jax.Array:
    """Per-sample squared norm over every axis but the batch."""
    return jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))


class JaxBackend(Backend):
    loss_ops = JAX_OPS
    select_device = staticmethod(select_device)
    describe_device = staticmethod(describe_device)

    @staticmethod
    def from_numpy(array: np.ndarray):
        # device_put, not jnp.asarray: outside a trace JAX 0.10 stages a NumPy array through a
        # compiled program per shape and dtype (jit(stage), ~50 ms each on CPU).
        return jax.device_put(np.asarray(array))

    name = MANIFEST.name
    modes = ("jit", "eager")  # what this class implements; the manifest must say the same

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        if spec.numerics.dtype == "float64":
            self.enable_float64()
        self._device = select_device(device)
        self._jnp_dtype = jnp.dtype(spec.numerics.dtype)
        precision = {
            "highest": jax.lax.Precision.HIGHEST,
            "tf32": jax.lax.Precision.DEFAULT,
            "bf16": "bf16",  # marker: Dense and convolutions round to bfloat16
        }[spec.numerics.matmul_precision]
        self.G = Sequential(spec.generator, self._jnp_dtype, precision)
        self.D = Sequential(spec.discriminator, self._jnp_dtype, precision)
        self.g_tx = make_optimizer(spec.g_optimizer)
        self.d_tx = make_optimizer(spec.d_optimizer)
        wrap = (lambda fn, **kw: jax.jit(fn, **kw)) if self.mode == "jit" else (lambda fn, **kw: fn)
        # State donation lets XLA update in place; the CPU runtime cannot reuse donated
        # buffers and would only warn, so donate on accelerators alone.
        donate = (0,) if self._device.platform != "cpu" else ()
        self._generate = wrap(lambda p, s, z: self.G.apply({"params": p, "batch_stats": s}, z))
        self._discriminate = wrap(lambda p, s, x: self.D.apply({"params": p, "batch_stats": s}, x))
        # The per-layer view is diagnostic and called once per input: op by op, as compiling one
        # more program per network and mode costs seconds (values agree with jit to rounding).
        self._activations = {net: functools.partial(self._activations_impl, net) for net in NETWORKS}
        self._loss_terms = wrap(self._loss_terms_impl)
        self._loss_and_grads = wrap(self._loss_and_grads_impl)
        self._train_step = wrap(self.train_step_fn, donate_argnums=donate)
        buffers = init_buffers(spec)
        self.state = self._fresh_state(
            params, self._stats_to_flax(buffers, "generator"), self._stats_to_flax(buffers, "discriminator")
        )

    @classmethod
    def enable_float64(cls) -> None:
        # Without x64, JAX silently computes float64 inputs in float32. Process-wide; every
        # array this backend makes has an explicit dtype, so float32 runs are unaffected.
        jax.config.update("jax_enable_x64", True)

    @classmethod
    def framework_version(cls) -> str:
        return f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"

    # -- parameters and buffers ----------------------------------------------------------
    def _put(self, value: np.ndarray) -> jax.Array:
        return jax.device_put(np.asarray(value, dtype=self.dtype), self._device)  # see from_numpy

    def _to_flax(self, params: ParamTree, net: str) -> dict:
        """``{"0": {"kernel": ...}}``; a residual block's layers nest (``2.main.0.kernel`` ->
        ``{"2": {"main": {"0": {"kernel"}}}}``, :mod:`.blocks`)."""
        tree: dict[str, Any] = {}
        for name, value in params.items():
            owner, *path, short = name.split(".")
            if owner == net:
                node = tree
                for part in path:
                    node = node.setdefault(part, {})
                node[short] = self._put(value)
        return tree

    def _stats_to_flax(self, buffers: ParamTree, net: str) -> dict:
        renamed = {f"{name.rsplit('.', 1)[0]}.{BUFFER_NAMES[name.rsplit('.', 1)[1]]}": v for name, v in buffers.items()}
        return self._to_flax(renamed, net)

    def _fresh_state(self, params: ParamTree, g_stats: dict, d_stats: dict) -> TrainState:
        g, d = self._to_flax(params, "generator"), self._to_flax(params, "discriminator")
        self._names = list(params)
        # Committed to the device, as every step's output is: jit would otherwise compile the
        # step twice (uncommitted optimiser zeros first, committed arrays from then on).
        # The average gets buffers of its own (a second transfer): donated state must not alias.
        ema = None if self.spec.ema is None else self._ema_arrays(0, params)
        state = TrainState(g, d, self.g_tx.init(g), self.d_tx.init(d), g_stats, d_stats, ema)
        return jax.device_put(state, self._device)

    def _ema_arrays(self, steps: int, params: ParamTree) -> EmaArrays:
        return EmaArrays(jax.device_put(np.asarray(steps, np.int32), self._device), self._to_flax(params, "generator"))

    def get_ema(self) -> EmaState | None:
        if self.state.ema is None:
            return None
        tree = self._from_flax(self.state.ema.average, "generator")
        return EmaState(int(self.state.ema.count), {n: tree[n] for n in self._names if n in tree})

    def set_ema(self, state: EmaState) -> None:
        check_ema(self.spec, state)
        self.state = self.state._replace(ema=self._ema_arrays(int(state.steps), state.params))

    def set_params(self, params: ParamTree) -> None:
        self.state = self._fresh_state(params, self.state.g_stats, self.state.d_stats)

    @staticmethod
    def _from_flax(tree: dict, net: str) -> ParamTree:
        """The inverse of :meth:`_to_flax`: nested dicts to dotted canonical names."""
        out: ParamTree = {}
        for key, value in tree.items():
            if isinstance(value, dict) or hasattr(value, "items"):  # a (Frozen)dict: a layer or a block
                out.update(JaxBackend._from_flax(value, f"{net}.{key}"))
            else:
                out[f"{net}.{key}"] = np.asarray(value)
        return out

    def _canonical(self, g_tree: dict, d_tree: dict) -> ParamTree:
        flat = {**self._from_flax(g_tree, "generator"), **self._from_flax(d_tree, "discriminator")}
        return {name: flat[name] for name in self._names if name in flat}

    def get_params(self) -> ParamTree:
        return self._canonical(self.state.g_params, self.state.d_params)

    def get_buffers(self) -> ParamTree:
        canonical = {flax_name: name for name, flax_name in BUFFER_NAMES.items()}
        flat = {
            f"{name.rsplit('.', 1)[0]}.{canonical[name.rsplit('.', 1)[1]]}": v
            for net, stats in (("generator", self.state.g_stats), ("discriminator", self.state.d_stats))
            for name, v in self._from_flax(stats, net).items()
        }
        return {name: flat[name] for name in buffer_shapes(self.spec)}

    def set_buffers(self, buffers: ParamTree) -> None:
        check_buffers(self.spec, buffers)
        self.state = self.state._replace(
            g_stats=self._stats_to_flax(buffers, "generator"), d_stats=self._stats_to_flax(buffers, "discriminator")
        )

    def _optimizers(self) -> tuple[tuple[str, OptimizerSpec, Any], ...]:
        return (
            ("generator", self.spec.g_optimizer, self.state.g_opt),
            ("discriminator", self.spec.d_optimizer, self.state.d_opt),
        )

    def get_optimizer_state(self) -> OptimizerState:
        # Slots are found by optax field name (tree_get), so chains (weight decay first, the
        # step counter last) are handled the same way.
        get = optax.tree_utils.tree_get
        steps, slots = {}, {}
        for net, spec, opt in self._optimizers():
            steps[net] = int(get(opt, "steps"))
            for slot, field in optax_slot_fields(spec).items():
                slots.setdefault(slot, {}).update(self._from_flax(get(opt, field), net))
        ordered = {slot: {n: tree[n] for n in self._names if n in tree} for slot, tree in slots.items()}
        return OptimizerState(steps, ordered)

    def set_optimizer_state(self, state: OptimizerState) -> None:
        new = {}
        for net, spec, opt in self._optimizers():
            values: dict[str, Any] = {"steps": self._count(opt, "steps", state.steps[net])}
            if optax.tree_utils.tree_get(opt, "count") is not None:  # Adam's bias-correction count
                values["count"] = self._count(opt, "count", state.steps[net])
            for slot, field in optax_slot_fields(spec).items():
                tree = {n: v for n, v in state.slots.get(slot, {}).items() if n.split(".")[0] == net}
                names = [n for n in self._names if n.split(".")[0] == net]
                if sorted(tree) != sorted(names):
                    raise ValueError(
                        f"optimizer state: slot {slot!r} of the {net} ({spec.name}) must hold {len(names)} "
                        f"parameters, got {sorted(tree)[:4]}{'...' if len(tree) > 4 else ''}"
                    )
                values[field] = self._to_flax(tree, net)
            new[net] = jax.device_put(optax.tree_utils.tree_set(opt, **values), self._device)
        self.state = self.state._replace(g_opt=new["generator"], d_opt=new["discriminator"])

    def _count(self, opt: Any, field: str, value: int) -> jax.Array:
        dtype = optax.tree_utils.tree_get(opt, field).dtype
        return jax.device_put(np.asarray(value, dtype=dtype), self._device)

    # -- network calls -------------------------------------------------------------------
    def _call(
        self, net: str, params: dict, stats: dict, x: jax.Array, training: bool, update: bool = False
    ) -> tuple[jax.Array, dict]:
        """One network call; with ``update`` (training only) its BatchNorm running statistics
        advance once and the new ones are returned, otherwise ``stats`` comes back unchanged."""
        module = self.G if net == "generator" else self.D
        variables = {"params": params, "batch_stats": stats}
        if update:
            y, mutated = module.apply(variables, x, True, mutable=["batch_stats"])
            return y, mutated.get("batch_stats", stats)
        return module.apply(variables, x, training), stats

    def _activations_impl(self, net: str, params: dict, stats: dict, x: jax.Array, training: bool) -> list:
        module = self.G if net == "generator" else self.D
        return module.apply({"params": params, "batch_stats": stats}, x, training, True)

    def activations(self, net: str, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        params, stats = (
            (self.state.g_params, self.state.g_stats)
            if net == "generator"
            else (self.state.d_params, self.state.d_stats)
        )
        return [np.asarray(h) for h in self._activations[net](params, stats, self._array(x), bool(training))]

    def _array(self, array: np.ndarray) -> jax.Array:
        """``array`` where the state lives: this backend's device, or replicated over the mesh a
        data-parallel engine put the state on (a jitted call takes all its arguments on one
        set of devices)."""
        placement = jax.tree.leaves(self.state.g_params)[0].sharding if hasattr(self, "state") else self._device
        return jax.device_put(self._as_input(array), placement)

    def generate(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self._generate(self.state.g_params, self.state.g_stats, self._array(z)))

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._discriminate(self.state.d_params, self.state.d_stats, self._array(x)))

    # -- losses --------------------------------------------------------------------------
    def _penalty(self, d_params: dict, d_stats: dict, real: jax.Array, fake: jax.Array, alpha: Any) -> jax.Array:
        """The gradient penalty; the input gradient comes from ``jax.grad`` inside the loss, so
        differentiating the loss w.r.t. D's parameters is the true second-order gradient. The
        penalty's D calls are in training mode and update nothing (the spec keeps BatchNorm out
        of a penalised critic)."""
        loss = self.spec.loss
        if loss.penalty == "none":
            return jnp.zeros((), self._jnp_dtype)

        def d_sum(inputs: jax.Array) -> jax.Array:
            return jnp.sum(self._call("discriminator", d_params, d_stats, inputs, True)[0])

        norms = []
        for site in PENALTY_SITES[loss.penalty]:
            if site == "interpolates":
                a = alpha.reshape(-1, *([1] * (real.ndim - 1)))
                x = a * real + (1.0 - a) * fake
            else:  # r1 at the real data, r2 at the fake batch
                x = real if site == "real" else fake
            norms.append(sq_norms(jax.grad(d_sum)(x)))
        return gradient_penalty(self.loss_ops, norms[0], loss, *norms[1:])

    def _d_loss(self, d_params, d_stats, real, fake, alpha, update: bool):
        """D's loss on a fixed fake batch: ``D(real)`` then ``D(fake)``, then the penalty."""
        l_real, d_stats = self._call("discriminator", d_params, d_stats, real, True, update)
        l_fake, d_stats = self._call("discriminator", d_params, d_stats, fake, True, update)
        penalty = self._penalty(d_params, d_stats, real, fake, alpha)
        terms = discriminator_loss(self.loss_ops, l_real, l_fake, self.spec.loss, penalty)
        return terms["d_loss"], (terms, d_stats)

    def _g_loss(self, g_params, g_stats, d_params, d_stats, z, update: bool, real=None):
        """G's loss: ``G(z)``, for a relativistic loss ``D(real)`` (a constant of G's update:
        it does not depend on ``g_params``), then ``D(G(z))``."""
        fake, g_stats = self._call("generator", g_params, g_stats, z, True, update)
        real_logits = None
        if self.spec.loss.relativistic:
            real_logits, d_stats = self._call("discriminator", d_params, d_stats, real, True, update)
        logits, d_stats = self._call("discriminator", d_params, d_stats, fake, True, update)
        return generator_loss(self.loss_ops, logits, self.spec.loss, real_logits), (g_stats, d_stats)

    def _fake(self, g_params, g_stats, z, update: bool):
        fake, g_stats = self._call("generator", g_params, g_stats, z, True, update)
        return jax.lax.stop_gradient(fake), g_stats

    def _loss_and_grads_impl(self, state: TrainState, real, z, alpha):
        fake, _ = self._fake(state.g_params, state.g_stats, z, False)
        d_grad = jax.value_and_grad(self._d_loss, has_aux=True)
        (_, (terms, _)), d_grads = d_grad(state.d_params, state.d_stats, real, fake, alpha, False)
        g_grad = jax.value_and_grad(self._g_loss, has_aux=True)
        (g_loss, _), g_grads = g_grad(state.g_params, state.g_stats, state.d_params, state.d_stats, z, False, real)
        return {**terms, "g_loss": g_loss}, g_grads, d_grads

    def _loss_terms_impl(self, state: TrainState, real, z, alpha):
        fake, _ = self._fake(state.g_params, state.g_stats, z, False)
        _, (terms, _) = self._d_loss(state.d_params, state.d_stats, real, fake, alpha, False)
        g_loss, _ = self._g_loss(state.g_params, state.g_stats, state.d_params, state.d_stats, z, False, real)
        return {**terms, "g_loss": g_loss}

    def _alpha(self, alpha: np.ndarray | None, batch: int) -> jax.Array | None:
        checked = self.checked_alpha(alpha, batch)
        return None if checked is None else self._array(checked)

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        terms = self._loss_terms(self.state, self._array(real), self._array(z), self._alpha(alpha, len(real)))
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        terms, g_grads, d_grads = self._loss_and_grads(
            self.state, self._array(real), self._array(z), self._alpha(alpha, len(real))
        )
        return {k: float(v) for k, v in terms.items()}, self._canonical(g_grads, d_grads)

    # -- training ------------------------------------------------------------------------
    def _clip(self, d_params: dict) -> dict:
        c = self.spec.loss.clip_value
        return d_params if c is None else jax.tree.map(lambda p: jnp.clip(p, -c, c), d_params)

    def train_step_fn(self, state: TrainState, real, z_d, z_g, alpha) -> tuple[TrainState, dict]:
        """One training step as a pure function of the state and the batch: what this backend
        jits, and what a data-parallel engine compiles over a device mesh
        (:mod:`gan_backends.backends.jax.parallel`). The documented call order (docs/conv-gans.md):
        per D update G(z_d[i]), D(real[i]), D(fake), penalty, D step, clipping; then G(z_g),
        (relativistic losses) D(real[-1]), D(G(z_g)), G step. Every call but the penalty's
        updates its running statistics once."""
        g_stats, d_params, d_stats, d_opt = state.g_stats, state.d_params, state.d_stats, state.d_opt
        d_grad = jax.value_and_grad(self._d_loss, has_aux=True)
        for i in range(self.spec.n_critic):  # unrolled: n_critic is static
            fake, g_stats = self._fake(state.g_params, g_stats, z_d[i], True)
            a = None if alpha is None else alpha[i]
            (_, (terms, d_stats)), grads = d_grad(d_params, d_stats, real[i], fake, a, True)
            updates, d_opt = self.d_tx.update(grads, d_opt, d_params)
            d_params = self._clip(optax.apply_updates(d_params, updates))
        g_grad = jax.value_and_grad(self._g_loss, has_aux=True)
        # A relativistic G loss reads D on the last D update's real batch, through the updated D.
        (g_loss, (g_stats, d_stats)), grads = g_grad(state.g_params, g_stats, d_params, d_stats, z_g, True, real[-1])
        updates, g_opt = self.g_tx.update(grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        ema = None if state.ema is None else ema_update(self.spec.ema, state.ema, g_params)
        return TrainState(g_params, d_params, g_opt, d_opt, g_stats, d_stats, ema), {**terms, "g_loss": g_loss}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        return self.read_losses(self.device_step(batch)())

    def device_step(self, batch: TrainBatch):
        batch.validate(self.spec)
        alpha = self._array(batch.alpha) if self.spec.loss.penalty == "wgan_gp" else None
        real, z_d, z_g = self._array(batch.real), self._array(batch.z_d), self._array(batch.z_g)

        def step() -> tuple[TrainState, dict]:
            self.state, terms = self._train_step(self.state, real, z_d, z_g, alpha)
            return self.state, terms

        return step

    def step_anatomy(self, batch: TrainBatch) -> dict:
        from .anatomy import compiled_step_counts

        return compiled_step_counts(self, batch)

    def synchronize(self, outputs) -> None:
        jax.block_until_ready(outputs)  # the new state and the loss terms: the whole step

    def read_losses(self, outputs) -> dict[str, float]:
        return {k: float(v) for k, v in outputs[1].items()}

    def runtime_info(self) -> dict:
        return {
            "platform": self._device.platform,
            "platform_version": getattr(self._device.client, "platform_version", None),
            "dot_precision": self.spec.numerics.matmul_precision,
            "state_donated": self._device.platform != "cpu",
        }

    def peak_device_memory(self) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
