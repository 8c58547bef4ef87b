"""JAX backend: ``flax.linen`` networks, ``optax.adam``, the whole step under ``jax.jit``.

Canonical layouts are Flax's own (Dense kernel ``(in, out)``, channels-last): only the tree
shape changes at the boundary, ``{"params": {"0": {"kernel": ...}}}`` <-> ``generator.0.kernel``.

The training step is a pure function ``(state, batch) -> (state, terms)``; under ``jit`` the
state buffers are donated, so XLA updates parameters and Adam moments in place.

Modes: ``jit`` (default) and ``eager`` (the same functions, op by op, no compilation).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..losses import LossOps, discriminator_loss, generator_loss
from ..params import ParamTree
from ..spec import AdamSpec, Dense, Flatten, GANSpec, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Tanh
from .base import Backend, OptimizerState, TrainBatch

JAX_OPS = LossOps(softplus=jax.nn.softplus, mean=jnp.mean, relu=jax.nn.relu)


class Sequential(nn.Module):
    """The spec's layers in order; Dense submodules are named by their spec index."""

    layers: tuple[Layer, ...]
    dtype: Any
    precision: Any

    @nn.compact
    def __call__(self, x: jax.Array, every_layer: bool = False) -> jax.Array | list[jax.Array]:
        outputs = []
        for i, layer in enumerate(self.layers):
            x = self._apply(i, layer, x)
            outputs.append(x)
        return outputs if every_layer else x

    def _apply(self, i: int, layer: Layer, x: jax.Array) -> jax.Array:
        if isinstance(layer, Dense) and self.precision == "bf16":
            return BF16Dense(layer.units, layer.use_bias, self.dtype, name=str(i))(x)
        if isinstance(layer, Dense):
            # Initialisers are never used: parameters always come from the canonical tree.
            return nn.Dense(
                layer.units,
                use_bias=layer.use_bias,
                dtype=self.dtype,
                param_dtype=self.dtype,
                precision=self.precision,
                name=str(i),
            )(x)
        if isinstance(layer, LeakyReLU):
            # x > 0 (not jax.nn.leaky_relu's x >= 0) so the gradient at 0 is the slope, as in torch.
            return jnp.where(x > 0, x, layer.slope * x)
        if isinstance(layer, ReLU):
            return nn.relu(x)
        if isinstance(layer, Tanh):
            return jnp.tanh(x)
        if isinstance(layer, Sigmoid):
            return nn.sigmoid(x)
        if isinstance(layer, Reshape):
            return x.reshape(x.shape[0], *layer.shape)
        if isinstance(layer, Flatten):
            return x.reshape(x.shape[0], -1)
        raise NotImplementedError(f"jax backend cannot build {layer.describe()}")


class BF16Dense(nn.Module):
    """The spec's bf16 matmul: operands and product bfloat16, bias float32 (``nn.Dense(dtype=
    bfloat16)`` would add the bias in bfloat16 too). Same parameter names as ``nn.Dense``."""

    units: int
    use_bias: bool
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.zeros, (x.shape[-1], self.units), self.dtype)
        y = jnp.dot(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)).astype(self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.units,), self.dtype)
        return y


def make_adam(spec: AdamSpec) -> optax.GradientTransformation:
    """torch.optim.Adam: optax's adam has the same form (eps outside the sqrt, eps_root=0);
    torch's L2 weight decay is adding ``wd * p`` to the gradient before it."""
    adam = optax.adam(spec.lr, b1=spec.beta1, b2=spec.beta2, eps=spec.eps, eps_root=0.0)
    if spec.weight_decay:
        return optax.chain(optax.add_decayed_weights(spec.weight_decay), adam)
    return adam


class TrainState(NamedTuple):
    g_params: Any
    d_params: Any
    g_opt: Any
    d_opt: Any


def select_device(requested: str | None) -> jax.Device:
    if requested is None:
        return jax.devices()[0]
    name = requested.lower().split(":")[0]
    platform = {"cuda": "gpu"}.get(name, name)
    index = int(requested.split(":")[1]) if ":" in requested else 0
    return jax.devices(platform)[index]


def describe_device(device: jax.Device) -> str:
    return f"{device.platform}:{device.id} ({device.device_kind})"


class JaxBackend(Backend):
    loss_ops = JAX_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return jnp.asarray(array)

    name = "jax"
    modes = ("jit", "eager")

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        if spec.numerics.dtype == "float64":
            self.enable_float64()
        self._device = select_device(device)
        self._jnp_dtype = jnp.dtype(spec.numerics.dtype)
        precision = {
            "highest": jax.lax.Precision.HIGHEST,
            "tf32": jax.lax.Precision.DEFAULT,
            "bf16": "bf16",  # marker: Sequential builds BF16Dense
        }[spec.numerics.matmul_precision]
        self.G = Sequential(spec.generator, self._jnp_dtype, precision)
        self.D = Sequential(spec.discriminator, self._jnp_dtype, precision)
        self.g_tx = make_adam(spec.g_optimizer)
        self.d_tx = make_adam(spec.d_optimizer)
        wrap = (lambda fn, **kw: jax.jit(fn, **kw)) if self.mode == "jit" else (lambda fn, **kw: fn)
        # State donation lets XLA update in place; the CPU runtime cannot reuse donated
        # buffers and would only warn, so donate on accelerators alone.
        donate = (0,) if self._device.platform != "cpu" else ()
        self._generate = wrap(lambda p, z: self.G.apply({"params": p}, z))
        self._discriminate = wrap(lambda p, x: self.D.apply({"params": p}, x))
        self._loss_terms = wrap(self._loss_terms_impl)
        self._loss_and_grads = wrap(self._loss_and_grads_impl)
        self._train_step = wrap(self._train_step_impl, donate_argnums=donate)
        self.set_params(params)

    @classmethod
    def enable_float64(cls) -> None:
        # Without x64, JAX silently computes float64 inputs in float32. Process-wide; every
        # array this backend makes has an explicit dtype, so float32 runs are unaffected.
        jax.config.update("jax_enable_x64", True)

    @classmethod
    def framework_version(cls) -> str:
        return f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"

    @classmethod
    def default_device(cls) -> str:
        return describe_device(select_device(None))

    @property
    def device(self) -> str:
        return describe_device(self._device)

    # -- parameters ----------------------------------------------------------------------
    def _to_flax(self, params: ParamTree, net: str) -> dict:
        tree: dict[str, dict[str, jax.Array]] = {}
        for name, value in params.items():
            owner, idx, short = name.split(".")
            if owner == net:
                array = jnp.asarray(np.asarray(value, dtype=self.dtype))
                tree.setdefault(idx, {})[short] = jax.device_put(array, self._device)
        return tree

    def set_params(self, params: ParamTree) -> None:
        g, d = self._to_flax(params, "generator"), self._to_flax(params, "discriminator")
        self.state = TrainState(g, d, self.g_tx.init(g), self.d_tx.init(d))
        self._names = list(params)

    @staticmethod
    def _from_flax(tree: dict, net: str) -> ParamTree:
        return {f"{net}.{idx}.{short}": np.asarray(v) for idx, sub in tree.items() for short, v in sub.items()}

    def _canonical(self, g_tree: dict, d_tree: dict) -> ParamTree:
        flat = {**self._from_flax(g_tree, "generator"), **self._from_flax(d_tree, "discriminator")}
        return {name: flat[name] for name in self._names}

    def get_params(self) -> ParamTree:
        return self._canonical(self.state.g_params, self.state.d_params)

    def get_optimizer_state(self) -> OptimizerState:
        # optax.adam's state is ScaleByAdamState(count, mu, nu), found by field name so that a
        # chain (weight decay first) is handled the same way.
        get = optax.tree_utils.tree_get
        g, d = self.state.g_opt, self.state.d_opt
        return OptimizerState(
            {"generator": int(get(g, "count")), "discriminator": int(get(d, "count"))},
            {"m": self._canonical(get(g, "mu"), get(d, "mu")), "v": self._canonical(get(g, "nu"), get(d, "nu"))},
        )

    def set_optimizer_state(self, state: OptimizerState) -> None:
        put = optax.tree_utils.tree_set
        g_opt, d_opt = self.state.g_opt, self.state.d_opt
        for net in ("generator", "discriminator"):
            opt = g_opt if net == "generator" else d_opt
            count = optax.tree_utils.tree_get(opt, "count")
            new = put(
                opt,
                count=jax.device_put(jnp.asarray(state.steps[net], dtype=count.dtype), self._device),
                mu=self._to_flax(state.slots["m"], net),
                nu=self._to_flax(state.slots["v"], net),
            )
            g_opt, d_opt = (new, d_opt) if net == "generator" else (g_opt, new)
        self.state = self.state._replace(g_opt=g_opt, d_opt=d_opt)

    def activations(self, net: str, x: np.ndarray) -> list[np.ndarray]:
        module, params = (self.G, self.state.g_params) if net == "generator" else (self.D, self.state.d_params)
        return [np.asarray(h) for h in module.apply({"params": params}, self._array(x), True)]

    # -- computation ---------------------------------------------------------------------
    def _array(self, array: np.ndarray) -> jax.Array:
        return jax.device_put(self._as_input(array), self._device)

    def generate(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self._generate(self.state.g_params, self._array(z)))

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._discriminate(self.state.d_params, self._array(x)))

    def _d_loss(self, d_params, g_params, real, z):
        fake = jax.lax.stop_gradient(self.G.apply({"params": g_params}, z))
        terms = discriminator_loss(
            self.loss_ops,
            self.D.apply({"params": d_params}, real),
            self.D.apply({"params": d_params}, fake),
            self.spec.loss,
        )
        return terms["d_loss"], terms

    def _g_loss(self, g_params, d_params, z):
        return generator_loss(
            self.loss_ops, self.D.apply({"params": d_params}, self.G.apply({"params": g_params}, z)), self.spec.loss
        )

    def _loss_and_grads_impl(self, state: TrainState, real, z):
        (_, terms), d_grads = jax.value_and_grad(self._d_loss, has_aux=True)(state.d_params, state.g_params, real, z)
        g_loss, g_grads = jax.value_and_grad(self._g_loss)(state.g_params, state.d_params, z)
        return {**terms, "g_loss": g_loss}, g_grads, d_grads

    def _loss_terms_impl(self, state: TrainState, real, z):
        _, terms = self._d_loss(state.d_params, state.g_params, real, z)
        return {**terms, "g_loss": self._g_loss(state.g_params, state.d_params, z)}

    def loss_terms(self, real: np.ndarray, z: np.ndarray) -> dict[str, float]:
        terms = self._loss_terms(self.state, self._array(real), self._array(z))
        return {k: float(v) for k, v in terms.items()}

    def gradients(self, real: np.ndarray, z: np.ndarray) -> tuple[dict[str, float], ParamTree]:
        terms, g_grads, d_grads = self._loss_and_grads(self.state, self._array(real), self._array(z))
        return {k: float(v) for k, v in terms.items()}, self._canonical(g_grads, d_grads)

    def _train_step_impl(self, state: TrainState, real, z_d, z_g) -> tuple[TrainState, dict]:
        d_params, d_opt = state.d_params, state.d_opt
        for i in range(self.spec.n_critic):  # unrolled: n_critic is static
            (_, terms), grads = jax.value_and_grad(self._d_loss, has_aux=True)(
                d_params, state.g_params, real[i], z_d[i]
            )
            updates, d_opt = self.d_tx.update(grads, d_opt, d_params)
            d_params = optax.apply_updates(d_params, updates)
        g_loss, grads = jax.value_and_grad(self._g_loss)(state.g_params, d_params, z_g)
        updates, g_opt = self.g_tx.update(grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        return TrainState(g_params, d_params, g_opt, d_opt), {**terms, "g_loss": g_loss}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        batch.validate(self.spec)
        self.state, terms = self._train_step(
            self.state, self._array(batch.real), self._array(batch.z_d), self._array(batch.z_g)
        )
        return {k: float(v) for k, v in terms.items()}
