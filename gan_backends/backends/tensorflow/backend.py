"""TensorFlow 2 backend: ``tf.Module`` networks, ``tf.GradientTape`` inside ``tf.function``.

The networks are :mod:`.layers`' ``tf.Module`` layers in TensorFlow's own canonical layouts
(nothing is transposed); the optimisers are :mod:`.optim`'s, in PyTorch's form. This module
holds what runs them: :class:`TensorFlowBackend` (parameters, buffers, optimiser state, loss
terms, gradients and the training step), the loss ops (:data:`TF_OPS`, and
:data:`TF_DEFAULT_BCE_OPS` for a port on Keras' default BCE), and the device and runtime setup.

BatchNorm's ``training``/``update_stats`` flags: only ``train_step`` passes
``update_stats=True`` (docs/conv-gans.md).

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

from ...errors import DeviceUnavailable, parse_device
from ...losses import PENALTY_SITES, LossOps, discriminator_loss, generator_loss, gradient_penalty
from ...params import ParamTree, check_buffers, init_buffers
from ...spec import GANSpec
from ..base import Backend, EmaState, OptimizerState, TrainBatch, check_ema
from . import MANIFEST
from .ema import TensorFlowEma
from .layers import Sequential
from .optim import TorchFormOptimizer, make_optimizer

TF_OPS = LossOps(softplus=tf.math.softplus, mean=tf.reduce_mean, relu=tf.nn.relu, sqrt=tf.sqrt, sum=tf.reduce_sum)

# What a port written with Keras' default BCE gets: BinaryCrossentropy(from_logits=False) on
# sigmoid probabilities, clipped to [1e-7, 1 - 1e-7]. softplus(l) = -log(1 - sigmoid(l)).
KERAS_EPSILON = 1e-7
TF_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -tf.math.log(tf.clip_by_value(1 - tf.math.sigmoid(x), KERAS_EPSILON, 1 - KERAS_EPSILON)),
    mean=tf.reduce_mean,
    relu=tf.nn.relu,
    sqrt=tf.sqrt,
    sum=tf.reduce_sum,
)


def select_device(requested: str | None) -> str:
    if requested is None:
        return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    kind, index = parse_device(requested)
    if kind == "cpu":
        return "/CPU:0"
    count = len(tf.config.list_physical_devices("GPU"))
    if (index or 0) >= count:
        raise DeviceUnavailable(f"device {requested!r}: tensorflow sees {count} GPU(s)")
    return f"/GPU:{index or 0}"


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
    select_device = staticmethod(select_device)
    describe_device = staticmethod(describe_device)

    @staticmethod
    def from_numpy(array: np.ndarray):
        return tf.constant(array)

    name = MANIFEST.name
    modes = ("function", "xla", "eager")  # what this class implements; the manifest must say the same

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
            g_named = self.G.named_variables("generator")
            self._ema = None if spec.ema is None else TensorFlowEma(spec.ema, g_named)
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

    # -- parameters ----------------------------------------------------------------------
    def set_params(self, params: ParamTree) -> None:
        for name, var in self._vars.items():
            var.assign(np.asarray(params[name], dtype=self.dtype))
        for opt in (self.g_opt, self.d_opt):
            opt.reset()
        if self._ema is not None:
            self._ema.reset()

    def get_ema(self) -> EmaState | None:
        return None if self._ema is None else self._ema.get()

    def set_ema(self, state: EmaState) -> None:
        check_ema(self.spec, state)
        self._ema.set(state, self.dtype)

    def get_params(self) -> ParamTree:
        return {name: var.numpy() for name, var in self._vars.items()}

    def get_buffers(self) -> ParamTree:
        return {name: var.numpy() for name, var in self._buffers.items()}

    def set_buffers(self, buffers: ParamTree) -> None:
        values = {name: np.asarray(value, dtype=self.dtype) for name, value in buffers.items()}
        check_buffers(self.spec, values)
        for name, var in self._buffers.items():
            var.assign(values[name])

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

    def _alpha(self, alpha: np.ndarray | None, batch: int) -> tf.Tensor | None:
        """WGAN-GP's coefficients for one D update of ``batch`` rows, checked by
        :meth:`~gan_backends.backends.base.Backend.checked_alpha`, as a device tensor (None for
        the other losses, which ignore them)."""
        checked = self.checked_alpha(alpha, batch)
        return None if checked is None else self._tensor(checked)

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
        sq_norms = []
        for site in PENALTY_SITES[loss.penalty]:
            if site == "interpolates":
                a = tf.reshape(alpha, [-1] + [1] * (real.shape.rank - 1))  # one α per sample
                x = a * real + (1.0 - a) * fake
            else:  # r1 at the real data, r2 at the fake batch
                x = real if site == "real" else fake
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                total = tf.reduce_sum(self.D(x, training=True, update_stats=update))
            g = tape.gradient(total, x)
            sq_norms.append(tf.reduce_sum(tf.square(g), axis=list(range(1, g.shape.rank))))
        return gradient_penalty(self.loss_ops, sq_norms[0], loss, *sq_norms[1:])

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

    def _real_logits(self, real: tf.Tensor | None, update: bool) -> tf.Tensor | None:
        """D on the real batch for a relativistic G loss (None otherwise), in training mode:
        a constant of G's update (no gradient reaches G through it)."""
        if not self.spec.loss.relativistic:
            return None
        return tf.stop_gradient(self.D(real, training=True, update_stats=update))

    def _g_terms(self, z: tf.Tensor, real: tf.Tensor | None, update: bool) -> tuple[tf.Tensor, list[tf.Tensor]]:
        # Only G's variables are watched: D is held fixed, no weight gradients computed for it.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.g_vars)
            fake = self.G(z, training=True, update_stats=update)
            real_logits = self._real_logits(real, update)  # after G(z), before D(fake): the documented order
            fake_logits = self.D(fake, training=True, update_stats=update)
            g_loss = generator_loss(self.loss_ops, fake_logits, self.spec.loss, real_logits)
        return g_loss, tape.gradient(g_loss, self.g_vars)

    def _loss_and_grads_impl(self, real: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor | None):
        # G(z) once: its output feeds D(G(z)) for G's gradient and, detached, D's update.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.g_vars)
            fake = self.G(z, training=True)
            real_logits = self._real_logits(real, update=False)
            g_loss = generator_loss(self.loss_ops, self.D(fake, training=True), self.spec.loss, real_logits)
        g_grads = tape.gradient(g_loss, self.g_vars)
        terms, d_grads = self._d_terms(real, tf.stop_gradient(fake), alpha, update=False)
        return {**terms, "g_loss": g_loss}, g_grads, d_grads

    def _loss_terms_impl(self, real: tf.Tensor, z: tf.Tensor, alpha: tf.Tensor | None) -> dict[str, tf.Tensor]:
        fake = self.G(z, training=True)
        real_logits = self.D(real, training=True)  # = D(real) of a relativistic G loss: no update
        fake_logits = self.D(fake, training=True)  # = D(G(z)) of the G loss: same batch, no update
        penalty = self._penalty(real, fake, alpha, update=False)
        terms = discriminator_loss(self.loss_ops, real_logits, fake_logits, self.spec.loss, penalty)
        g_real = real_logits if self.spec.loss.relativistic else None
        return {**terms, "g_loss": generator_loss(self.loss_ops, fake_logits, self.spec.loss, g_real)}

    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        a = self._alpha(alpha, np.shape(real)[0])
        with tf.device(self._device):
            terms = self._loss_terms(self._tensor(real), self._tensor(z), a)
        return {k: float(v) for k, v in terms.items()}

    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        a = self._alpha(alpha, np.shape(real)[0])
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
        ``tf.function``, and what ``strategy.run`` replicates (:mod:`gan_backends.backends.tensorflow.parallel`)."""
        for i in range(self.spec.n_critic):  # unrolled at trace time: n_critic is static
            fake = tf.stop_gradient(self.G(z_d[i], training=True, update_stats=True))
            terms, d_grads = self._d_terms(real[i], fake, None if alpha is None else alpha[i], update=True)
            self.d_opt.apply(d_grads)
            self._clip_d()
        # A relativistic G loss reads D on the last D update's real batch, through the updated D.
        g_loss, g_grads = self._g_terms(z_g, real[-1], update=True)
        self.g_opt.apply(g_grads)
        if self._ema is not None:
            self._ema.update()
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

    def step_anatomy(self, batch: TrainBatch) -> dict:
        from .anatomy import graph_counts

        return graph_counts(self, batch)

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
