"""The float64 NumPy reference: forward, backward and Adam written from the math.

It imports no framework and shares no code with the framework backends beyond the spec, the
loss formulas (evaluated here in float64) and the canonical tree. The backward pass is reverse
mode written by hand, layer by layer; ``tests/test_reference.py`` holds it against central
finite differences. It always computes in float64, whatever ``spec.numerics.dtype`` says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..losses import LossOps, discriminator_loss, generator_loss
from ..params import ParamTree, split_tree
from ..spec import AdamSpec, Dense, Flatten, GANSpec, Layer, LeakyReLU, LossSpec, ReLU, Reshape, Sigmoid, Tanh
from .base import Backend, OptimizerState, TrainBatch

F64 = np.float64


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


NUMPY_OPS = LossOps(softplus=softplus, mean=np.mean, relu=lambda x: np.maximum(x, 0.0))

# Each layer: forward(layer, params, x) -> (y, cache); backward(layer, params, cache, dy) -> (dx, grads)
Forward = Callable[[Any, dict[str, np.ndarray], np.ndarray], tuple[np.ndarray, Any]]
Backward = Callable[[Any, dict[str, np.ndarray], Any, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


def _dense_fwd(layer: Dense, p, x):
    y = x @ p["kernel"]
    if layer.use_bias:
        y = y + p["bias"]
    return y, x


def _dense_bwd(layer: Dense, p, x, dy):
    grads = {"kernel": x.T @ dy}
    if layer.use_bias:
        grads["bias"] = dy.sum(axis=0)
    return dy @ p["kernel"].T, grads


def _leaky_fwd(layer: LeakyReLU, p, x):
    return np.where(x > 0, x, layer.slope * x), x


def _leaky_bwd(layer: LeakyReLU, p, x, dy):
    return np.where(x > 0, dy, layer.slope * dy), {}


def _relu_fwd(layer, p, x):
    return np.maximum(x, 0.0), x


def _relu_bwd(layer, p, x, dy):
    return np.where(x > 0, dy, 0.0), {}


def _tanh_fwd(layer, p, x):
    y = np.tanh(x)
    return y, y


def _tanh_bwd(layer, p, y, dy):
    return dy * (1.0 - y * y), {}


def _sigmoid_fwd(layer, p, x):
    y = sigmoid(x)
    return y, y


def _sigmoid_bwd(layer, p, y, dy):
    return dy * y * (1.0 - y), {}


def _reshape_fwd(layer: Reshape | Flatten, p, x):
    out = layer.shape if isinstance(layer, Reshape) else (-1,)
    return x.reshape(x.shape[0], *out), x.shape


def _reshape_bwd(layer, p, in_shape, dy):
    return dy.reshape(in_shape), {}


LAYER_MATH: dict[type[Layer], tuple[Forward, Backward]] = {
    Dense: (_dense_fwd, _dense_bwd),
    LeakyReLU: (_leaky_fwd, _leaky_bwd),
    ReLU: (_relu_fwd, _relu_bwd),
    Tanh: (_tanh_fwd, _tanh_bwd),
    Sigmoid: (_sigmoid_fwd, _sigmoid_bwd),
    Reshape: (_reshape_fwd, _reshape_bwd),
    Flatten: (_reshape_fwd, _reshape_bwd),
}


class Network:
    """One network of the spec as a list of (layer, forward, backward), params by canonical name."""

    def __init__(self, spec: GANSpec, net: str):
        self.net = net
        self.layers = spec.layers(net)
        for layer in self.layers:
            if type(layer) not in LAYER_MATH:
                raise NotImplementedError(f"numpy reference has no math for {layer.describe()}")

    def _layer_params(self, tree: ParamTree, i: int) -> dict[str, np.ndarray]:
        prefix = f"{self.net}.{i}."
        return {k[len(prefix) :]: v for k, v in tree.items() if k.startswith(prefix)}

    def forward(self, tree: ParamTree, x: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        caches = []
        for i, layer in enumerate(self.layers):
            x, cache = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x)
            caches.append(cache)
        return x, caches

    def activations(self, tree: ParamTree, x: np.ndarray) -> list[np.ndarray]:
        outputs = []
        for i, layer in enumerate(self.layers):
            x, _ = LAYER_MATH[type(layer)][0](layer, self._layer_params(tree, i), x)
            outputs.append(x)
        return outputs

    def backward(self, tree: ParamTree, caches: list[Any], dy: np.ndarray) -> tuple[np.ndarray, ParamTree]:
        grads: ParamTree = {}
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            dy, g = LAYER_MATH[type(layer)][1](layer, self._layer_params(tree, i), caches[i], dy)
            for k, v in g.items():
                grads[f"{self.net}.{i}.{k}"] = v
        return dy, grads


def _step(x: np.ndarray) -> np.ndarray:
    """relu'(x): 0 at 0, as torch, TensorFlow and JAX define it."""
    return (x > 0).astype(F64)


def loss_term_grads(spec: LossSpec) -> tuple[Callable, Callable, Callable]:
    """The derivatives ``r'``, ``f'``, ``g'`` of :mod:`gan_backends.losses`' per-logit terms,
    derived by hand (softplus' = sigmoid, relu' = step)."""
    if spec.name == "least_squares":
        return (lambda x: x - spec.b), (lambda x: x - spec.a), (lambda x: x - spec.c)
    if spec.name == "hinge":
        return (lambda x: -_step(1.0 - x)), (lambda x: _step(1.0 + x)), (lambda x: -np.ones_like(x))
    real, fake = (lambda x: -sigmoid(-x)), sigmoid
    if spec.name == "minimax":
        return real, fake, (lambda x: -sigmoid(x))
    return real, fake, (lambda x: -sigmoid(-x))  # non_saturating


class Adam:
    """torch.optim.Adam's update in float64 (see :class:`~gan_backends.spec.AdamSpec`)."""

    def __init__(self, spec: AdamSpec, names: list[str], shapes: dict[str, tuple[int, ...]]):
        self.spec = spec
        self.t = 0
        self.m = {n: np.zeros(shapes[n], F64) for n in names}
        self.v = {n: np.zeros(shapes[n], F64) for n in names}

    def update(self, params: ParamTree, grads: ParamTree) -> None:
        s = self.spec
        self.t += 1
        bc1 = 1.0 - s.beta1**self.t
        bc2 = 1.0 - s.beta2**self.t
        for name in self.m:
            g = grads[name] + s.weight_decay * params[name] if s.weight_decay else grads[name]
            self.m[name] = s.beta1 * self.m[name] + (1.0 - s.beta1) * g
            self.v[name] = s.beta2 * self.v[name] + (1.0 - s.beta2) * g * g
            denom = np.sqrt(self.v[name]) / np.sqrt(bc2) + s.eps
            params[name] = params[name] - (s.lr / bc1) * self.m[name] / denom


class NumpyReference(Backend):
    """Float64 ground truth. Modes: ``float64`` only."""

    loss_ops = NUMPY_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return np.asarray(array)

    name = "numpy"
    modes = ("float64",)
    host_only = True

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy reference runs on the CPU only, not {device!r}")
        self.g_net = Network(spec, "generator")
        self.d_net = Network(spec, "discriminator")
        self.set_params(params)

    @classmethod
    def framework_version(cls) -> str:
        return f"numpy {np.__version__}"

    @classmethod
    def default_device(cls) -> str:
        return "cpu"

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(F64)

    def set_params(self, params: ParamTree) -> None:
        self.params = {k: np.array(v, dtype=F64) for k, v in params.items()}
        parts = split_tree(self.params)
        shapes = {k: v.shape for k, v in self.params.items()}
        self.g_opt = Adam(self.spec.g_optimizer, list(parts["generator"]), shapes)
        self.d_opt = Adam(self.spec.d_optimizer, list(parts["discriminator"]), shapes)

    def get_params(self) -> ParamTree:
        return {k: v.copy() for k, v in self.params.items()}

    def get_optimizer_state(self) -> OptimizerState:
        opts = {"generator": self.g_opt, "discriminator": self.d_opt}
        slots = {"m": {}, "v": {}}
        for opt in opts.values():
            slots["m"].update({k: v.copy() for k, v in opt.m.items()})
            slots["v"].update({k: v.copy() for k, v in opt.v.items()})
        return OptimizerState({net: opt.t for net, opt in opts.items()}, slots)

    def set_optimizer_state(self, state: OptimizerState) -> None:
        for net, opt in (("generator", self.g_opt), ("discriminator", self.d_opt)):
            opt.t = state.steps[net]
            opt.m = {k: np.array(state.slots["m"][k], dtype=F64) for k in opt.m}
            opt.v = {k: np.array(state.slots["v"][k], dtype=F64) for k in opt.v}

    def activations(self, net: str, x: np.ndarray) -> list[np.ndarray]:
        network = self.g_net if net == "generator" else self.d_net
        return network.activations(self.params, self._as_input(x))

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self.g_net.forward(self.params, self._as_input(z))[0]

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return self.d_net.forward(self.params, self._as_input(x))[0]

    def loss_terms(self, real: np.ndarray, z: np.ndarray) -> dict[str, float]:
        """Forward only: finite-difference tests of the backward pass rely on this."""
        real, z = self._as_input(real), self._as_input(z)
        fake_logits = self.d_net.forward(self.params, self.g_net.forward(self.params, z)[0])[0]
        real_logits = self.d_net.forward(self.params, real)[0]
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, self.spec.loss)
        terms["g_loss"] = generator_loss(NUMPY_OPS, fake_logits, self.spec.loss)
        return {k: float(v) for k, v in terms.items()}

    def gradients(self, real: np.ndarray, z: np.ndarray) -> tuple[dict[str, float], ParamTree]:
        terms, d_grads = self._d_grads(self.params, self._as_input(real), self._as_input(z))
        g_loss, g_grads = self._g_grads(self.params, self._as_input(z))
        terms["g_loss"] = g_loss
        grads = {**g_grads, **d_grads}
        return terms, {name: grads[name] for name in self.params}

    def _d_grads(self, params: ParamTree, real: np.ndarray, z: np.ndarray) -> tuple[dict[str, float], ParamTree]:
        fake, _ = self.g_net.forward(params, z)
        real_logits, real_cache = self.d_net.forward(params, real)
        fake_logits, fake_cache = self.d_net.forward(params, fake)
        terms = discriminator_loss(NUMPY_OPS, real_logits, fake_logits, self.spec.loss)
        scale = self.spec.loss.d_scale
        real_grad, fake_grad, _ = loss_term_grads(self.spec.loss)
        d_real_logits = scale * real_grad(real_logits) / real_logits.size
        d_fake_logits = scale * fake_grad(fake_logits) / fake_logits.size
        _, g_real = self.d_net.backward(params, real_cache, d_real_logits)
        _, g_fake = self.d_net.backward(params, fake_cache, d_fake_logits)
        grads = {k: g_real[k] + g_fake[k] for k in g_real}
        return {k: float(v) for k, v in terms.items()}, grads

    def _g_grads(self, params: ParamTree, z: np.ndarray) -> tuple[float, ParamTree]:
        fake, g_cache = self.g_net.forward(params, z)
        logits, d_cache = self.d_net.forward(params, fake)
        g_loss = generator_loss(NUMPY_OPS, logits, self.spec.loss)
        d_logits = loss_term_grads(self.spec.loss)[2](logits) / logits.size
        d_fake, _ = self.d_net.backward(params, d_cache, d_logits)
        _, grads = self.g_net.backward(params, g_cache, d_fake)
        return float(g_loss), grads

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        batch.validate(self.spec)
        terms: dict[str, float] = {}
        for i in range(self.spec.n_critic):
            terms, d_grads = self._d_grads(self.params, self._as_input(batch.real[i]), self._as_input(batch.z_d[i]))
            self.d_opt.update(self.params, d_grads)
        terms["g_loss"], g_grads = self._g_grads(self.params, self._as_input(batch.z_g))
        self.g_opt.update(self.params, g_grads)
        return terms
