"""TensorFlow 2 backend: ``tf.Module`` networks, ``tf.GradientTape`` inside ``tf.function``.

Plain ``tf.Module`` + ``tf.Variable`` (TensorFlow's own low-level modules guide) rather than
Keras layers: no dtype policy casts float64 away, no Keras initialiser or training-flag
semantics to neutralise. Canonical layouts are TensorFlow's own (Dense kernel ``(in, out)``,
channels-last), so nothing is transposed.

Adam is written here in PyTorch's form (:class:`TorchFormAdam`): Keras' ``Adam`` uses the
epsilon-hat form ``lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps_hat)``, which equals torch's update
for no fixed eps_hat.

Modes: ``function`` (default, ``tf.function``), ``xla`` (``tf.function(jit_compile=True)``),
``eager`` (plain Python, op by op).
"""

from __future__ import annotations

import os

# TensorFlow's C++ logging (oneDNN notices, grappler's "Not handling type DT_DOUBLE" per op)
# drowns the reports; keep warnings and errors unless the user set a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ..losses import LossOps, discriminator_loss, generator_loss
from ..params import ParamTree
from ..spec import AdamSpec, Dense, Flatten, GANSpec, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Tanh
from .base import Backend, OptimizerState, TrainBatch

TF_OPS = LossOps(softplus=tf.math.softplus, mean=tf.reduce_mean, relu=tf.nn.relu)

# What a port written with Keras' default BCE gets: BinaryCrossentropy(from_logits=False) on
# sigmoid probabilities, clipped to [1e-7, 1 - 1e-7]. softplus(l) = -log(1 - sigmoid(l)).
KERAS_EPSILON = 1e-7
TF_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -tf.math.log(tf.clip_by_value(1 - tf.math.sigmoid(x), KERAS_EPSILON, 1 - KERAS_EPSILON)),
    mean=tf.reduce_mean,
    relu=tf.nn.relu,
)


def _round_bf16(x: tf.Tensor) -> tf.Tensor:
    """Round to bfloat16 and back. The matmul then runs in float32 on bfloat16 values: products of
    two bfloat16 numbers are exact in float32, so this is a bf16 matmul with float32
    accumulation. TF's own bfloat16 MatMul on CPU accumulates in bfloat16 (3e-3 off at k=8),
    unlike torch, XLA and cuBLAS; see docs/framework-differences.md. The casts' gradients round
    the backward matmuls' inputs and outputs the same way."""
    return tf.cast(tf.cast(x, tf.bfloat16), x.dtype)


class DenseLayer(tf.Module):
    def __init__(self, in_features: int, units: int, use_bias: bool, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        self.kernel = tf.Variable(tf.zeros((in_features, units), dtype), name="kernel")
        self.bias = tf.Variable(tf.zeros((units,), dtype), name="bias") if use_bias else None
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.bf16:  # the spec's bf16 matmul: operands and product bfloat16, bias float32
            y = _round_bf16(tf.matmul(_round_bf16(x), _round_bf16(self.kernel)))
        else:
            y = tf.matmul(x, self.kernel)
        return y if self.bias is None else tf.nn.bias_add(y, self.bias)


class Activation(tf.Module):
    def __init__(self, fn, name: str):
        super().__init__(name=name)
        self.fn = fn

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.fn(x)


def build_layer(layer: Layer, in_shape: tuple[int, ...], dtype: tf.DType, name: str, bf16: bool = False) -> tf.Module:
    if isinstance(layer, Dense):
        return DenseLayer(in_shape[0], layer.units, layer.use_bias, dtype, name, bf16)
    if isinstance(layer, LeakyReLU):
        # Not tf.nn.leaky_relu: its `alpha` is a float32 op attribute, so in float64 the slope
        # 0.2 becomes 0.2f = 0.200000003 (3.5e-8 off). The slope is a Python float here.
        slope = layer.slope
        return Activation(lambda x: tf.where(x > 0, x, slope * x), name)
    if isinstance(layer, ReLU):
        return Activation(tf.nn.relu, name)
    if isinstance(layer, Tanh):
        return Activation(tf.math.tanh, name)
    if isinstance(layer, Sigmoid):
        return Activation(tf.math.sigmoid, name)
    if isinstance(layer, Reshape):
        shape = layer.shape
        return Activation(lambda x: tf.reshape(x, (-1, *shape)), name)
    if isinstance(layer, Flatten):
        return Activation(lambda x: tf.reshape(x, (tf.shape(x)[0], -1)), name)
    raise NotImplementedError(f"tensorflow backend cannot build {layer.describe()}")


class Sequential(tf.Module):
    def __init__(self, spec: GANSpec, net: str, dtype: tf.DType):
        super().__init__(name=net)
        with self.name_scope:
            self.layers = [
                build_layer(layer, shapes[0], dtype, f"layer{i}", spec.numerics.matmul_precision == "bf16")
                for i, (layer, shapes) in enumerate(zip(spec.layers(net), spec.layer_shapes(net)))
            ]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def named_variables(self, net: str) -> dict[str, tf.Variable]:
        out = {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, DenseLayer):
                out[f"{net}.{i}.kernel"] = layer.kernel
                if layer.bias is not None:
                    out[f"{net}.{i}.bias"] = layer.bias
        return out


class TorchFormAdam(tf.Module):
    """``torch.optim.Adam``'s update with TF ops; formula in :class:`~gan_backends.spec.AdamSpec`.

    Bias corrections are computed in float64 and cast, as torch computes them as Python floats.
    """

    def __init__(self, spec: AdamSpec, variables: list[tf.Variable], name: str):
        super().__init__(name=name)
        self.spec = spec
        self.variables_ = variables
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in variables]

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float64)
        bc1 = 1.0 - tf.pow(tf.constant(s.beta1, tf.float64), t)
        bc2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(s.beta2, tf.float64), t))
        for p, g, m, v in zip(self.variables_, grads, self.m, self.v):
            dtype = p.dtype
            if s.weight_decay:
                g = g + s.weight_decay * p
            m.assign(s.beta1 * m + (1.0 - s.beta1) * g)
            v.assign(s.beta2 * v + (1.0 - s.beta2) * tf.square(g))
            denom = tf.sqrt(v) / tf.cast(bc2_sqrt, dtype) + s.eps
            p.assign_sub(tf.cast(s.lr / bc1, dtype) * m / denom)


def select_device(requested: str | None) -> str:
    if requested is not None:
        name = requested.lower()
        return "/GPU:0" if name in ("cuda", "gpu") else ("/CPU:0" if name == "cpu" else requested)
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def describe_device(device: str) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if "GPU" in device.upper() and gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{device} ({details.get('device_name', 'GPU')})"
    return device


def configure_runtime(spec: GANSpec) -> None:
    """Claim GPU memory on demand (TF reserves nearly all of it by default) and set TF32 from
    the spec (TF enables TF32 by default on Ampere+)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # runtime already initialised: the setting is fixed for the process
            pass
    tf.config.experimental.enable_tensor_float_32_execution(spec.numerics.matmul_precision == "tf32")


class TensorFlowBackend(Backend):
    loss_ops = TF_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return tf.constant(array)

    name = "tensorflow"
    modes = ("function", "xla", "eager")

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        configure_runtime(spec)
        self._device = select_device(device)
        self._tf_dtype = tf.as_dtype(spec.numerics.dtype)
        with tf.device(self._device):
            self.G = Sequential(spec, "generator", self._tf_dtype)
            self.D = Sequential(spec, "discriminator", self._tf_dtype)
            self._vars = {**self.G.named_variables("generator"), **self.D.named_variables("discriminator")}
            self.g_vars = list(self.G.named_variables("generator").values())
            self.d_vars = list(self.D.named_variables("discriminator").values())
            self.g_opt = TorchFormAdam(spec.g_optimizer, self.g_vars, "g_adam")
            self.d_opt = TorchFormAdam(spec.d_optimizer, self.d_vars, "d_adam")
        if self.mode == "eager":
            wrap = lambda fn: fn  # noqa: E731
        else:
            wrap = lambda fn: tf.function(fn, jit_compile=self.mode == "xla")  # noqa: E731
        self._generate = wrap(self.G.__call__)
        self._discriminate = wrap(self.D.__call__)
        self._loss_terms = wrap(self._loss_terms_impl)
        self._loss_and_grads = wrap(self._loss_and_grads_impl)
        self._train_step = wrap(self._train_step_impl)
        self.set_params(params)

    @classmethod
    def framework_version(cls) -> str:
        return f"tensorflow {tf.__version__}"

    @classmethod
    def default_device(cls) -> str:
        return describe_device(select_device(None))

    @property
    def device(self) -> str:
        return describe_device(self._device)

    # -- parameters ----------------------------------------------------------------------
    def set_params(self, params: ParamTree) -> None:
        for name, var in self._vars.items():
            var.assign(np.asarray(params[name], dtype=self.dtype))
        for opt in (self.g_opt, self.d_opt):
            opt.step.assign(0)
            for slot in (*opt.m, *opt.v):
                slot.assign(tf.zeros_like(slot))

    def get_params(self) -> ParamTree:
        return {name: var.numpy() for name, var in self._vars.items()}

    def _optimizers(self) -> dict[str, tuple[TorchFormAdam, list[str]]]:
        return {
            "generator": (self.g_opt, list(self.G.named_variables("generator"))),
            "discriminator": (self.d_opt, list(self.D.named_variables("discriminator"))),
        }

    def get_optimizer_state(self) -> OptimizerState:
        steps, m, v = {}, {}, {}
        for net, (opt, names) in self._optimizers().items():
            steps[net] = int(opt.step.numpy())
            m.update({name: slot.numpy() for name, slot in zip(names, opt.m)})
            v.update({name: slot.numpy() for name, slot in zip(names, opt.v)})
        return OptimizerState(steps, {"m": m, "v": v})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        for net, (opt, names) in self._optimizers().items():
            opt.step.assign(state.steps[net])
            for name, m, v in zip(names, opt.m, opt.v):
                m.assign(np.asarray(state.slots["m"][name], dtype=self.dtype))
                v.assign(np.asarray(state.slots["v"][name], dtype=self.dtype))

    def activations(self, net: str, x: np.ndarray) -> list[np.ndarray]:
        outputs = []
        with tf.device(self._device):
            h = self._tensor(x)
            for layer in (self.G if net == "generator" else self.D).layers:
                h = layer(h)
                outputs.append(h.numpy())
        return outputs

    # -- computation ---------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> tf.Tensor:
        with tf.device(self._device):
            return tf.constant(self._as_input(array))

    def generate(self, z: np.ndarray) -> np.ndarray:
        with tf.device(self._device):
            return self._generate(self._tensor(z)).numpy()

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        with tf.device(self._device):
            return self._discriminate(self._tensor(x)).numpy()

    def _d_terms(self, real: tf.Tensor, z: tf.Tensor) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
        fake = tf.stop_gradient(self.G(z))
        with tf.GradientTape() as tape:
            terms = discriminator_loss(self.loss_ops, self.D(real), self.D(fake), self.spec.loss)
        return terms, tape.gradient(terms["d_loss"], self.d_vars)

    def _g_terms(self, z: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        # Only G's variables are watched: D is held fixed, no weight gradients computed for it.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.g_vars)
            g_loss = generator_loss(self.loss_ops, self.D(self.G(z)), self.spec.loss)
        return g_loss, tape.gradient(g_loss, self.g_vars)

    def _loss_and_grads_impl(self, real: tf.Tensor, z: tf.Tensor):
        terms, d_grads = self._d_terms(real, z)
        terms["g_loss"], g_grads = self._g_terms(z)
        return terms, g_grads, d_grads

    def _loss_terms_impl(self, real: tf.Tensor, z: tf.Tensor) -> dict[str, tf.Tensor]:
        fake = self.G(z)
        fake_logits = self.D(fake)
        terms = discriminator_loss(self.loss_ops, self.D(real), fake_logits, self.spec.loss)
        return {**terms, "g_loss": generator_loss(self.loss_ops, fake_logits, self.spec.loss)}

    def loss_terms(self, real: np.ndarray, z: np.ndarray) -> dict[str, float]:
        with tf.device(self._device):
            terms = self._loss_terms(self._tensor(real), self._tensor(z))
        return {k: float(v) for k, v in terms.items()}

    def gradients(self, real: np.ndarray, z: np.ndarray) -> tuple[dict[str, float], ParamTree]:
        with tf.device(self._device):
            terms, g_grads, d_grads = self._loss_and_grads(self._tensor(real), self._tensor(z))
        names = list(self._vars)
        grads = {name: g.numpy() for name, g in zip(names, [*g_grads, *d_grads])}
        return {k: float(v) for k, v in terms.items()}, grads

    def _train_step_impl(self, real: tf.Tensor, z_d: tf.Tensor, z_g: tf.Tensor) -> dict[str, tf.Tensor]:
        for i in range(self.spec.n_critic):  # unrolled at trace time: n_critic is static
            terms, d_grads = self._d_terms(real[i], z_d[i])
            self.d_opt.apply(d_grads)
        g_loss, g_grads = self._g_terms(z_g)
        self.g_opt.apply(g_grads)
        return {**terms, "g_loss": g_loss}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        batch.validate(self.spec)
        with tf.device(self._device):
            terms = self._train_step(self._tensor(batch.real), self._tensor(batch.z_d), self._tensor(batch.z_g))
        return {k: float(v) for k, v in terms.items()}
