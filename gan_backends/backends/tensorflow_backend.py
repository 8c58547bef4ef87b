"""TensorFlow 2 backend: ``tf.Module`` networks, ``tf.GradientTape`` inside ``tf.function``.

Plain ``tf.Module`` + ``tf.Variable`` (TensorFlow's own low-level modules guide) rather than
Keras layers: no dtype policy casts float64 away, no Keras initialiser, momentum or
training-flag semantics to neutralise. Canonical layouts are TensorFlow's own (Dense kernel
``(in, out)``, channels-last NHWC images, Conv2D kernel HWIO, ConvTranspose2D kernel
``(kh, kw, out, in)`` as ``tf.nn.conv2d_transpose`` takes it), so nothing is transposed.

The optimisers are written here in PyTorch's form (:class:`TorchFormAdam`,
:class:`TorchFormRMSprop`, :class:`TorchFormSGD`): Keras' ``Adam`` uses the epsilon-hat form
``lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps_hat)``, which equals torch's update for no fixed
eps_hat, and Keras' RMSprop/SGD differ in defaults and in where lr enters the velocity.

BatchNorm is a module with its own running-statistics variables; every network call takes
``training`` (batch statistics) and ``update_stats`` (fold them into the running statistics),
and only ``train_step`` passes ``update_stats=True`` (docs/conv-gans.md).

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

from ..losses import LossOps, discriminator_loss, generator_loss, gradient_penalty
from ..params import ParamTree, buffer_shapes, init_buffers
from ..spec import (
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    GANSpec,
    Layer,
    LeakyReLU,
    OptimizerSpec,
    ReLU,
    Reshape,
    RMSpropSpec,
    SGDSpec,
    Shape,
    Sigmoid,
    Tanh,
    optimizer_slots,
)
from .base import Backend, OptimizerState, TrainBatch

TF_OPS = LossOps(softplus=tf.math.softplus, mean=tf.reduce_mean, relu=tf.nn.relu, sqrt=tf.sqrt)

# What a port written with Keras' default BCE gets: BinaryCrossentropy(from_logits=False) on
# sigmoid probabilities, clipped to [1e-7, 1 - 1e-7]. softplus(l) = -log(1 - sigmoid(l)).
KERAS_EPSILON = 1e-7
TF_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -tf.math.log(tf.clip_by_value(1 - tf.math.sigmoid(x), KERAS_EPSILON, 1 - KERAS_EPSILON)),
    mean=tf.reduce_mean,
    relu=tf.nn.relu,
    sqrt=tf.sqrt,
)


def _round_bf16(x: tf.Tensor) -> tf.Tensor:
    """Round to bfloat16 and back. The matmul then runs in float32 on bfloat16 values: products of
    two bfloat16 numbers are exact in float32, so this is a bf16 matmul with float32
    accumulation. TF's own bfloat16 MatMul on CPU accumulates in bfloat16 (3e-3 off at k=8),
    unlike torch, XLA and cuBLAS; see docs/framework-differences.md. The casts' gradients round
    the backward matmuls' inputs and outputs the same way. Convolutions use the same emulation."""
    return tf.cast(tf.cast(x, tf.bfloat16), x.dtype)


def _bias_add(y: tf.Tensor, bias: tf.Variable | None) -> tf.Tensor:
    return y if bias is None else tf.nn.bias_add(y, bias)


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
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class Conv2DLayer(tf.Module):
    """Zero padding ``layer.pads(in_shape)`` (never TF's own 'SAME' string: the spec resolves it
    once for every backend), a VALID stride-``s`` cross-correlation, then the bias."""

    def __init__(self, layer: Conv2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        self.kernel = tf.Variable(
            tf.zeros((layer.kernel, layer.kernel, in_shape[2], layer.filters), dtype), name="kernel"
        )
        self.bias = tf.Variable(tf.zeros((layer.filters,), dtype), name="bias") if layer.use_bias else None
        (top, bottom), (left, right) = layer.pads(in_shape)
        self.paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
        self.stride = layer.stride
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.bf16:  # as Dense: bf16 operands, float32 accumulation, bf16 product
            y = _round_bf16(tf.nn.conv2d(_round_bf16(x), _round_bf16(self.kernel), self.stride, self.paddings))
        else:
            y = tf.nn.conv2d(x, self.kernel, self.stride, self.paddings)
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class ConvTranspose2DLayer(tf.Module):
    """The full transposed convolution (``tf.nn.conv2d_transpose``, 'VALID', ``(H - 1)·s + k``
    rows: consistent with the forward VALID conv also when ``k < s``), then the spec's crops:
    rows ``[top, full - bottom)``, a negative ``bottom`` appending zero rows. Explicit slicing
    rather than TF's 'SAME' string keeps torch's ``padding``/``output_padding`` expressible."""

    def __init__(self, layer: ConvTranspose2D, in_shape: Shape, dtype: tf.DType, name: str, bf16: bool = False):
        super().__init__(name=name)
        k, s = layer.kernel, layer.stride
        self.kernel = tf.Variable(tf.zeros((k, k, layer.filters, in_shape[2]), dtype), name="kernel")
        self.bias = tf.Variable(tf.zeros((layer.filters,), dtype), name="bias") if layer.use_bias else None
        self.stride = s
        self.full = ((in_shape[0] - 1) * s + k, (in_shape[1] - 1) * s + k)
        self.filters = layer.filters
        self.crops = layer.crops(in_shape)
        self.bf16 = bf16

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        # A static batch size when the trace knows it, so XLA sees a constant output shape.
        batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        output_shape = [batch, self.full[0], self.full[1], self.filters]
        kernel = _round_bf16(self.kernel) if self.bf16 else self.kernel
        y = tf.nn.conv2d_transpose(_round_bf16(x) if self.bf16 else x, kernel, output_shape, self.stride, "VALID")
        if self.bf16:
            y = _round_bf16(y)
        (top, bottom), (left, right) = self.crops
        y = y[:, top : self.full[0] - max(bottom, 0), left : self.full[1] - max(right, 0), :]
        if bottom < 0 or right < 0:  # torch's output_padding: rows/columns no input reaches
            y = tf.pad(y, [[0, 0], [0, max(-bottom, 0)], [0, max(-right, 0)], [0, 0]])
        return _bias_add(y, self.bias)

    def params(self) -> dict[str, tf.Variable]:
        return {"kernel": self.kernel} | ({} if self.bias is None else {"bias": self.bias})


class BatchNormLayer(tf.Module):
    """The spec's BatchNorm (torch conventions, see :class:`~gan_backends.spec.BatchNorm`) with
    TF ops, not ``keras.layers.BatchNormalization``: Keras' momentum is the weight of the OLD
    value, its eps 1e-3, its running variance biased, and its mode follows ``trainable``."""

    def __init__(self, layer: BatchNorm, channels: int, dtype: tf.DType, name: str):
        super().__init__(name=name)
        self.scale = tf.Variable(tf.ones((channels,), dtype), name="scale")
        self.bias = tf.Variable(tf.zeros((channels,), dtype), name="bias")
        self.running_mean = tf.Variable(tf.zeros((channels,), dtype), trainable=False, name="running_mean")
        self.running_var = tf.Variable(tf.ones((channels,), dtype), trainable=False, name="running_var")
        self.momentum, self.eps, self.unbiased = layer.momentum, layer.eps, layer.running_var == "unbiased"

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        if training:
            mean, var, n = self.batch_moments(x)
            if update_stats:
                self._update(tf.stop_gradient(mean), tf.stop_gradient(var), n)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / tf.sqrt(var + self.eps) * self.scale + self.bias

    def batch_moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, int]:
        """The batch's mean and two-pass biased (1/n) variance over every axis but the channels,
        and the count n they are taken over (a data-parallel layer takes them over all replicas)."""
        axes = list(range(x.shape.rank - 1))
        mean = tf.reduce_mean(x, axes)
        return mean, tf.reduce_mean(tf.square(x - mean), axes), int(np.prod(x.shape[:-1]))

    def _update(self, mean: tf.Tensor, var: tf.Tensor, n: int) -> None:
        m = self.momentum  # weight of the NEW statistic (torch); Keras' momentum is 1 - m
        if self.unbiased:
            if n < 2:
                raise ValueError(
                    f"BatchNorm: an unbiased running variance needs more than 1 value per channel, got {n}"
                )
            var = var * (n / (n - 1))
        self.running_mean.assign((1.0 - m) * self.running_mean + m * mean)
        self.running_var.assign((1.0 - m) * self.running_var + m * var)

    def params(self) -> dict[str, tf.Variable]:
        return {"scale": self.scale, "bias": self.bias}

    def buffers(self) -> dict[str, tf.Variable]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}


class Activation(tf.Module):
    def __init__(self, fn, name: str):
        super().__init__(name=name)
        self.fn = fn

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.fn(x)


def build_layer(layer: Layer, in_shape: tuple[int, ...], dtype: tf.DType, name: str, bf16: bool = False) -> tf.Module:
    if isinstance(layer, Dense):
        return DenseLayer(in_shape[0], layer.units, layer.use_bias, dtype, name, bf16)
    if isinstance(layer, Conv2D):
        return Conv2DLayer(layer, in_shape, dtype, name, bf16)
    if isinstance(layer, ConvTranspose2D):
        return ConvTranspose2DLayer(layer, in_shape, dtype, name, bf16)
    if isinstance(layer, BatchNorm):  # always in the spec dtype, also under bf16
        return BatchNormLayer(layer, in_shape[-1], dtype, name)
    if isinstance(layer, LeakyReLU):
        slope = layer.slope
        if dtype == tf.float64:
            # tf.nn.leaky_relu's `alpha` is a float32 op attribute: in float64 the slope 0.2
            # would become 0.2f = 0.200000003 (3.5e-8 off). Here the slope is a Python float.
            return Activation(lambda x: tf.where(x > 0, x, slope * x), name)
        # One fused op and one gradient op (tf.where costs three forward, more backward: 14% of
        # the MLP step in tf.function mode); same values: x > 0 ? x : 0.2f·x, slope at 0.
        return Activation(lambda x: tf.nn.leaky_relu(x, alpha=slope), name)
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

    def call_layer(self, layer: tf.Module, x: tf.Tensor, training: bool, update_stats: bool) -> tf.Tensor:
        if isinstance(layer, BatchNormLayer):
            return layer(x, training=training, update_stats=update_stats)
        return layer(x)

    def __call__(self, x: tf.Tensor, training: bool = False, update_stats: bool = False) -> tf.Tensor:
        """``training``: BatchNorm on batch statistics; ``update_stats``: and fold them into the
        running statistics (train_step only)."""
        for layer in self.layers:
            x = self.call_layer(layer, x, training, update_stats)
        return x

    def named_variables(self, net: str) -> dict[str, tf.Variable]:
        return {
            f"{net}.{i}.{pname}": var
            for i, layer in enumerate(self.layers)
            if hasattr(layer, "params")
            for pname, var in layer.params().items()
        }

    def named_buffers(self, net: str) -> dict[str, tf.Variable]:
        return {
            f"{net}.{i}.{bname}": var
            for i, layer in enumerate(self.layers)
            if isinstance(layer, BatchNormLayer)
            for bname, var in layer.buffers().items()
        }


class TorchFormOptimizer(tf.Module):
    """Shared state of the torch-form optimisers: a step counter and one slot variable per
    parameter for each canonical slot (:func:`~gan_backends.spec.optimizer_slots`)."""

    def __init__(self, spec: OptimizerSpec, variables: list[tf.Variable], name: str):
        super().__init__(name=name)
        self.spec = spec
        self.variables_ = variables
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.slots = {
            slot: [tf.Variable(tf.zeros_like(v), trainable=False, name=slot) for v in variables]
            for slot in optimizer_slots(spec)
        }

    def reset(self) -> None:
        self.step.assign(0)
        for slot_vars in self.slots.values():
            for slot in slot_vars:
                slot.assign(tf.zeros_like(slot))

    def apply(self, grads: list[tf.Tensor]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TorchFormAdam(TorchFormOptimizer):
    """``torch.optim.Adam``'s update with TF ops; formula in :class:`~gan_backends.spec.AdamSpec`.

    Bias corrections are computed in float64 and cast, as torch computes them as Python floats.
    """

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float64)
        bc1 = 1.0 - tf.pow(tf.constant(s.beta1, tf.float64), t)
        bc2_sqrt = tf.sqrt(1.0 - tf.pow(tf.constant(s.beta2, tf.float64), t))
        dtype = self.variables_[0].dtype  # one spec dtype: cast the scalars once, not per variable
        step_size, bc2_sqrt = tf.cast(s.lr / bc1, dtype), tf.cast(bc2_sqrt, dtype)
        for p, g, m, v in zip(self.variables_, grads, self.slots["m"], self.slots["v"]):
            if s.weight_decay:
                g = g + s.weight_decay * p
            # m ← m + (1 − β₁)(g − m): torch's `exp_avg.lerp_(grad, 1 − β₁)`; in-place adds.
            m.assign_add((1.0 - s.beta1) * (g - m))
            v.assign_add((1.0 - s.beta2) * (tf.square(g) - v))
            p.assign_sub(step_size * m / (tf.sqrt(v) / bc2_sqrt + s.eps))


class TorchFormRMSprop(TorchFormOptimizer):
    """``torch.optim.RMSprop``'s update with TF ops; formula in :class:`~gan_backends.spec.RMSpropSpec`
    (eps outside the root, ``v`` from 0; Keras' RMSprop defaults to rho 0.9, eps 1e-7)."""

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        self.step.assign_add(1)
        for k, (p, g) in enumerate(zip(self.variables_, grads)):
            if s.weight_decay:
                g = g + s.weight_decay * p
            v = s.alpha * self.slots["v"][k] + (1.0 - s.alpha) * tf.square(g)
            self.slots["v"][k].assign(v)
            if s.centered:
                grad_avg = s.alpha * self.slots["grad_avg"][k] + (1.0 - s.alpha) * g
                self.slots["grad_avg"][k].assign(grad_avg)
                avg = tf.sqrt(v - tf.square(grad_avg)) + s.eps
            else:
                avg = tf.sqrt(v) + s.eps
            if s.momentum:
                buf = s.momentum * self.slots["momentum"][k] + g / avg
                self.slots["momentum"][k].assign(buf)
                p.assign_sub(s.lr * buf)
            else:
                p.assign_sub(s.lr * (g / avg))


class TorchFormSGD(TorchFormOptimizer):
    """``torch.optim.SGD`` (dampening 0); formula in :class:`~gan_backends.spec.SGDSpec`. torch
    creates the momentum buffer as a copy of the first gradient: ``momentum·0 + g`` is that
    exactly, so the buffer starts at 0 here and imports/exports like the other slots."""

    def apply(self, grads: list[tf.Tensor]) -> None:
        s = self.spec
        self.step.assign_add(1)
        for k, (p, g) in enumerate(zip(self.variables_, grads)):
            if s.weight_decay:
                g = g + s.weight_decay * p
            if s.momentum:
                buf = s.momentum * self.slots["momentum"][k] + g
                self.slots["momentum"][k].assign(buf)
                g = g + s.momentum * buf if s.nesterov else buf
            p.assign_sub(s.lr * g)


def make_optimizer(spec: OptimizerSpec, variables: list[tf.Variable], name: str) -> TorchFormOptimizer:
    if isinstance(spec, AdamSpec):
        return TorchFormAdam(spec, variables, name)
    if isinstance(spec, RMSpropSpec):
        return TorchFormRMSprop(spec, variables, name)
    if isinstance(spec, SGDSpec):
        return TorchFormSGD(spec, variables, name)
    raise NotImplementedError(f"tensorflow backend has no optimiser {spec!r}")


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
    the spec (TF enables TF32 by default on Ampere+, for matmuls and convolutions alike)."""
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
            self._buffers = {**self.G.named_buffers("generator"), **self.D.named_buffers("discriminator")}
            self.g_vars = list(self.G.named_variables("generator").values())
            self.d_vars = list(self.D.named_variables("discriminator").values())
            self.g_opt = make_optimizer(spec.g_optimizer, self.g_vars, "g_opt")
            self.d_opt = make_optimizer(spec.d_optimizer, self.d_vars, "d_opt")
        if self.mode == "eager":
            wrap = lambda fn: fn  # noqa: E731
        else:
            wrap = lambda fn: tf.function(fn, jit_compile=self.mode == "xla")  # noqa: E731
        self._generate = wrap(lambda z: self.G(z))  # inference mode: running statistics
        self._discriminate = wrap(lambda x: self.D(x))
        self._loss_terms = wrap(self._loss_terms_impl)
        self._loss_and_grads = wrap(self._loss_and_grads_impl)
        self._train_step = wrap(self.train_step_fn)
        self.set_params(params)
        self.set_buffers(init_buffers(spec))

    @classmethod
    def configure_threads(cls, threads: int) -> dict[str, int]:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime is initialised: the pools are fixed for the process
            pass
        return {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        }

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
            opt.reset()

    def get_params(self) -> ParamTree:
        return {name: var.numpy() for name, var in self._vars.items()}

    def get_buffers(self) -> ParamTree:
        return {name: var.numpy() for name, var in self._buffers.items()}

    def set_buffers(self, buffers: ParamTree) -> None:
        expected = buffer_shapes(self.spec)
        missing, extra = sorted(set(expected) - set(buffers)), sorted(set(buffers) - set(expected))
        if missing or extra:
            raise ValueError(f"buffers do not fit spec {self.spec.name!r}: missing {missing}, unexpected {extra}")
        for name, var in self._buffers.items():
            value = np.asarray(buffers[name], dtype=self.dtype)
            if value.shape != expected[name]:
                raise ValueError(f"buffer {name}: expected shape {expected[name]}, got {value.shape}")
            var.assign(value)

    def _optimizers(self) -> dict[str, tuple[TorchFormOptimizer, list[str]]]:
        return {
            "generator": (self.g_opt, list(self.G.named_variables("generator"))),
            "discriminator": (self.d_opt, list(self.D.named_variables("discriminator"))),
        }

    def get_optimizer_state(self) -> OptimizerState:
        steps: dict[str, int] = {}
        slots: dict[str, ParamTree] = {}
        for net, (opt, names) in self._optimizers().items():
            steps[net] = int(opt.step.numpy())
            for slot, slot_vars in opt.slots.items():
                slots.setdefault(slot, {}).update({name: var.numpy() for name, var in zip(names, slot_vars)})
        return OptimizerState(steps, slots)

    def set_optimizer_state(self, state: OptimizerState) -> None:
        for net, (opt, names) in self._optimizers().items():
            missing = [slot for slot in opt.slots if slot not in state.slots]
            if missing:
                raise ValueError(f"optimizer state for {net} lacks slot(s) {missing} of {type(opt.spec).__name__}")
            opt.step.assign(state.steps[net])
            for slot, slot_vars in opt.slots.items():
                for name, var in zip(names, slot_vars):
                    var.assign(np.asarray(state.slots[slot][name], dtype=self.dtype))

    def activations(self, net: str, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        outputs = []
        model = self.G if net == "generator" else self.D
        with tf.device(self._device):
            h = self._tensor(x)
            for layer in model.layers:
                h = model.call_layer(layer, h, training, update_stats=False)
                outputs.append(h.numpy())
        return outputs

    # -- computation ---------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> tf.Tensor:
        with tf.device(self._device):
            return tf.constant(self._as_input(array))

    def _alpha(self, alpha: np.ndarray | None, shape: tuple[int, ...]) -> tf.Tensor | None:
        """WGAN-GP's coefficients as a tensor (None for the other losses, which ignore them)."""
        if self.spec.loss.penalty != "wgan_gp":
            return None
        if alpha is None:
            raise ValueError(f"spec {self.spec.name!r} uses WGAN-GP: pass alpha of shape {shape}")
        if tuple(np.shape(alpha)) != shape:
            raise ValueError(f"alpha: expected shape {shape}, got {tuple(np.shape(alpha))}")
        return self._tensor(alpha)

    def generate(self, z: np.ndarray) -> np.ndarray:
        with tf.device(self._device):
            return self._generate(self._tensor(z)).numpy()

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        with tf.device(self._device):
            return self._discriminate(self._tensor(x)).numpy()

    def _penalty(self, real: tf.Tensor, fake: tf.Tensor, alpha: tf.Tensor | None, update: bool) -> tf.Tensor:
        """The gradient penalty, differentiable w.r.t. D's variables: the inner tape's gradient
        is computed while the caller's tape records, so the caller gets true second-order terms."""
        loss = self.spec.loss
        if loss.penalty == "none":
            return tf.zeros((), self._tf_dtype)
        if loss.penalty == "wgan_gp":
            a = tf.reshape(alpha, [-1] + [1] * (real.shape.rank - 1))  # one α per sample
            x = a * real + (1.0 - a) * fake
        else:  # r1: at the real data
            x = real
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            total = tf.reduce_sum(self.D(x, training=True, update_stats=update))
        g = tape.gradient(total, x)
        sq_norms = tf.reduce_sum(tf.square(g), axis=list(range(1, g.shape.rank)))
        return gradient_penalty(self.loss_ops, sq_norms, loss)

    def _d_terms(
        self, real: tf.Tensor, fake: tf.Tensor, alpha: tf.Tensor | None, update: bool
    ) -> tuple[dict[str, tf.Tensor], list[tf.Tensor]]:
        """D's loss terms and gradient; ``fake`` is already detached from G. D(real), then
        D(fake), then the penalty's call: the documented order of running-statistics updates."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.d_vars)
            real_logits = self.D(real, training=True, update_stats=update)
            fake_logits = self.D(fake, training=True, update_stats=update)
            penalty = self._penalty(real, fake, alpha, update)
            terms = discriminator_loss(self.loss_ops, real_logits, fake_logits, self.spec.loss, penalty)
        return terms, tape.gradient(terms["d_loss"], self.d_vars)

    def _g_terms(self, z: tf.Tensor, update: bool) -> tuple[tf.Tensor, list[tf.Tensor]]:
        # Only G's variables are watched: D is held fixed, no weight gradients computed for it.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.g_vars)
            fake = self.G(z, training=True, update_stats=update)
            g_loss = generator_loss(self.loss_ops, self.D(fake, training=True, update_stats=update), self.spec.loss)
        return g_loss, tape.gradient(g_loss, self.g_vars)

    def _loss_and_grads_impl(self, real: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor | None):
        # G(z) once: its output feeds D(G(z)) for G's gradient and, detached, D's update.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.g_vars)
            fake = self.G(z, training=True)
            g_loss = generator_loss(self.loss_ops, self.D(fake, training=True), self.spec.loss)
        g_grads = tape.gradient(g_loss, self.g_vars)
        terms, d_grads = self._d_terms(real, tf.stop_gradient(fake), alpha, update=False)
        return {**terms, "g_loss": g_loss}, g_grads, d_grads

    def _loss_terms_impl(self, real: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor | None) -> dict[str, tf.Tensor]:
        fake = self.G(z, training=True)
        real_logits = self.D(real, training=True)
        fake_logits = self.D(fake, training=True)  # = D(G(z)) of the G loss: same batch, no update
        penalty = self._penalty(real, fake, alpha, update=False)
        terms = discriminator_loss(self.loss_ops, real_logits, fake_logits, self.spec.loss, penalty)
        return {**terms, "g_loss": generator_loss(self.loss_ops, fake_logits, self.spec.loss)}

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        a = self._alpha(alpha, (np.shape(real)[0],))
        with tf.device(self._device):
            terms = self._loss_terms(self._tensor(real), self._tensor(z), a)
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        a = self._alpha(alpha, (np.shape(real)[0],))
        with tf.device(self._device):
            terms, g_grads, d_grads = self._loss_and_grads(self._tensor(real), self._tensor(z), a)
        names = list(self._vars)
        grads = {name: g.numpy() for name, g in zip(names, [*g_grads, *d_grads])}
        return {k: float(v) for k, v in terms.items()}, grads

    def _clip_d(self) -> None:
        """WGAN's weight clipping: every trainable D parameter (BatchNorm's too) to [-c, c]."""
        c = self.spec.loss.clip_value
        if c is not None:
            for var in self.d_vars:
                var.assign(tf.clip_by_value(var, -c, c))

    def train_step_fn(
        self, real: tf.Tensor, z_d: tf.Tensor, z_g: tf.Tensor, alpha: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        """One training step on device tensors, untraced: what this backend wraps in its mode's
        ``tf.function``, and what ``strategy.run`` replicates (:mod:`gan_backends.parallel.tf_mirrored`)."""
        for i in range(self.spec.n_critic):  # unrolled at trace time: n_critic is static
            fake = tf.stop_gradient(self.G(z_d[i], training=True, update_stats=True))
            terms, d_grads = self._d_terms(real[i], fake, None if alpha is None else alpha[i], update=True)
            self.d_opt.apply(d_grads)
            self._clip_d()
        g_loss, g_grads = self._g_terms(z_g, update=True)
        self.g_opt.apply(g_grads)
        return {**terms, "g_loss": g_loss}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        return self.read_losses(self.device_step(batch)())

    def device_step(self, batch: TrainBatch):
        batch.validate(self.spec)
        alpha = self._tensor(batch.alpha) if self.spec.loss.penalty == "wgan_gp" else None
        real, z_d, z_g = self._tensor(batch.real), self._tensor(batch.z_d), self._tensor(batch.z_g)

        def step() -> dict[str, tf.Tensor]:
            with tf.device(self._device):
                return self._train_step(real, z_d, z_g, alpha)

        return step

    def synchronize(self, outputs) -> None:
        # Waits for the GPU stream and for async eager queues alike, with no device-to-host
        # copy (``.numpy()`` as the sync adds a transfer and its jitter to every block).
        tf.test.experimental.sync_devices()

    def runtime_info(self) -> dict:
        build = tf.sysconfig.get_build_info()
        return {
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled(),
            "jit_compile": self.mode == "xla",
        }

    def peak_device_memory(self) -> int | None:
        if "GPU" not in self._device.upper():
            return None
        return int(tf.config.experimental.get_memory_info(self._device.strip("/"))["peak"])
