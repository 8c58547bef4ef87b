"""TensorFlow data parallelism: the backend's training step replicated by ``tf.distribute.MirroredStrategy``.

The :class:`~gan_backends.backends.tensorflow.backend.TensorFlowBackend` is built inside
``strategy.scope()``, so its ``tf.Variable``s (parameters, optimiser slots, running statistics)
are ``MirroredVariable``s, one copy per device; ``strategy.run`` executes its unchanged
``train_step_fn`` once per replica on that replica's rows of the global batch, inside one
``tf.function``. What data parallelism adds, as ``tf.distribute``'s custom-training-loop guide
prescribes: each replica's loss is its share of the global mean (batch means divided by the
replica count, as ``tf.nn.compute_average_loss`` divides by the global batch), and the gradients
are summed over replicas (``ReplicaContext.all_reduce(SUM)``, what Keras optimisers do) before the
backend's torch-form optimiser applies them. Every variable is created with
``aggregation=ONLY_FIRST_REPLICA``: replicas write identical values (the summed gradient is the
same everywhere), and where they do not (per-device running statistics) replica 0's are kept,
as DDP keeps rank 0's.

BatchNorm (the spec's ``data_parallel.batchnorm``): ``per_device`` is the backend's layer as it
is (statistics of the replica's rows). ``sync`` swaps each layer for
:class:`CrossReplicaBatchNorm` (same variables), which takes the mean and the two-pass variance
from sums all-reduced over replicas, as Keras' ``BatchNormalization(synchronized=True)`` does
(the backend does not use Keras' layer: its momentum, eps and variance conventions are not the
spec's).

CPU devices: :func:`make_strategy` splits the CPU into N logical devices, which must happen
before TensorFlow initialises its runtime. Several hosts: ``MultiWorkerMirroredStrategy`` with
``TF_CONFIG`` in each worker's environment (see ``docs/data-parallel.md``); the step is the same.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from ...parallel import WrapsBackend, batchnorm_mode, local_rows, refuse_unsupported
from ...params import ParamTree
from ...spec import GANSpec
from ..base import TrainBatch
from .backend import TF_OPS, TensorFlowBackend
from .blocks import ResidualLayer
from .layers import BatchNormLayer
from .optim import TorchFormOptimizer

SUM = tf.distribute.ReduceOp.SUM


def make_strategy(devices: int, platform: str | None = None) -> tf.distribute.Strategy:
    """A MirroredStrategy over ``devices`` GPUs, or over the CPU split into ``devices`` logical
    devices (when there is no GPU or ``platform == "cpu"``). Call before TensorFlow's first op.
    With ``TF_CONFIG`` in the environment (several hosts): ``MultiWorkerMirroredStrategy`` over
    the cluster it names, whose replica count must be ``devices``."""
    if os.environ.get("TF_CONFIG"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if strategy.num_replicas_in_sync != devices:
            raise ValueError(f"TF_CONFIG's cluster has {strategy.num_replicas_in_sync} replicas, not {devices}")
        return strategy
    gpus = tf.config.list_logical_devices("GPU") if platform != "cpu" else []
    if gpus:
        names = [d.name for d in gpus[:devices]]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        names = [d.name for d in tf.config.list_logical_devices("CPU")[:devices]]
    if len(names) < devices:
        raise ValueError(f"{devices} devices requested, TensorFlow has {names}")
    return tf.distribute.MirroredStrategy(devices=names)


def _first_replica_writes(next_creator: Any, **kwargs: Any) -> tf.Variable:
    """Variable creator: updates in a replica context take replica 0's value."""
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)


class ReplicaSummedGradients:
    """The backend's torch-form optimiser, applied to the sum over replicas of the gradients
    (each replica's gradient being that of its share of the global mean). Everything else, its
    step counter and slots included, is the wrapped optimiser's."""

    def __init__(self, optimizer: TorchFormOptimizer):
        self.optimizer = optimizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)

    def apply(self, grads: list[tf.Tensor]) -> None:
        self.optimizer.apply(tf.distribute.get_replica_context().all_reduce(SUM, grads))


class CrossReplicaBatchNorm(BatchNormLayer):
    """The backend's BatchNorm on global-batch statistics: mean, then the two-pass variance, each
    from a sum all-reduced over replicas (differentiable: the all-reduce's gradient is the
    all-reduce of the incoming gradients). Shares the replaced layer's variables; only
    :meth:`batch_moments` differs."""

    def __init__(self, layer: BatchNormLayer):
        tf.Module.__init__(self, name=layer.name)
        self.scale, self.bias = layer.scale, layer.bias
        self.running_mean, self.running_var = layer.running_mean, layer.running_var
        self.spec, self.eps = layer.spec, layer.eps

    def batch_moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, int]:
        ctx = tf.distribute.get_replica_context()
        axes = list(range(x.shape.rank - 1))
        n = int(np.prod(x.shape[:-1])) * ctx.num_replicas_in_sync
        mean = ctx.all_reduce(SUM, tf.reduce_sum(x, axes)) / n
        return mean, ctx.all_reduce(SUM, tf.reduce_sum(tf.square(x - mean), axes)) / n, n


class TensorFlowDataParallel(WrapsBackend):
    """One :class:`TensorFlowBackend` training step replicated over ``strategy``'s devices."""

    def __init__(
        self,
        spec: GANSpec,
        params: ParamTree,
        *,
        strategy: tf.distribute.Strategy,
    ):
        refuse_unsupported(spec)
        self.batchnorm = batchnorm_mode(spec)
        self.spec = spec
        self.strategy = strategy
        self.count = strategy.num_replicas_in_sync
        with strategy.scope(), tf.variable_creator_scope(_first_replica_writes):
            # "eager": the backend wraps nothing in tf.function; the replicated step is one here.
            self.backend = b = TensorFlowBackend(spec, params, mode="eager")
        b.loss_ops = TF_OPS._replace(mean=lambda x: tf.reduce_mean(x) / self.count)
        b.g_opt, b.d_opt = ReplicaSummedGradients(b.g_opt), ReplicaSummedGradients(b.d_opt)
        if self.batchnorm == "sync":
            for net in (b.G, b.D):
                _synchronise_batchnorm(net.layers)
        self._step = tf.function(self._replicated_step)
        resolver = getattr(strategy, "cluster_resolver", None)
        self.is_main = resolver is None or not resolver.task_type or resolver.task_id == 0  # worker 0 writes

    def _replicated_step(self, real: Any, z_d: Any, z_g: Any, alpha: Any) -> dict[str, tf.Tensor]:
        terms = self.strategy.run(self.backend.train_step_fn, args=(real, z_d, z_g, alpha))
        return {k: self.strategy.reduce(SUM, v, axis=None) for k, v in terms.items()}  # shares -> global means

    def _distribute(self, array: np.ndarray | None, axis: int) -> Any:
        """Replica ``k`` gets rows ``local_rows(k)`` of the batch ``axis``."""
        if array is None:
            return None
        array = np.ascontiguousarray(array, dtype=self.backend.dtype)

        def rows(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
            index = [slice(None)] * array.ndim
            index[axis] = local_rows(array.shape[axis], ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)
            return tf.constant(array[tuple(index)])

        return self.strategy.experimental_distribute_values_from_function(rows)

    def device_step(self, batch: TrainBatch):
        """Each replica's rows of the global ``batch`` on its device once; ``step()`` runs one
        replicated training step and returns the global loss terms (tensors, unread)."""
        batch.validate(self.spec)
        alpha = batch.alpha if self.spec.loss.penalty == "wgan_gp" else None
        inputs = (self._distribute(batch.real, 1), self._distribute(batch.z_d, 1), self._distribute(batch.z_g, 0))
        inputs += (self._distribute(alpha, 1),)
        return lambda: self._step(*inputs)

    def synchronize(self, outputs: Any) -> None:
        self.backend.synchronize(outputs)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """``n_critic`` D updates then one G update on the global ``batch``, split over replicas."""
        return self.read_losses(self.device_step(batch)())

    def describe(self) -> dict[str, Any]:
        return {
            "engine": type(self.strategy).__name__,
            "devices": list(self.strategy.extended.worker_devices),
            "batchnorm": self.batchnorm,
        }


def launch(devices: int, job: Any, *, platform: str | None = None, threads: int | None = None, child_job: Any = None):
    """``job(make)`` with ``make(spec, params)`` the mirrored step over ``devices`` devices; the CPU
    is split into logical devices before TensorFlow's runtime starts (:func:`make_strategy`)."""
    try:
        strategy = make_strategy(devices, platform)
    except RuntimeError as exc:  # "Virtual devices cannot be modified after being initialized"
        raise RuntimeError(
            f"TensorFlow started before its {devices} logical CPU devices could be set up ({exc}); "
            "run the data-parallel job in a fresh process"
        ) from None
    return job(lambda spec, params: TensorFlowDataParallel(spec, params, strategy=strategy))


def _synchronise_batchnorm(layers: list) -> None:
    """Each BatchNorm layer of ``layers`` replaced by its :class:`CrossReplicaBatchNorm`, in the
    branches of residual blocks too (a block's BatchNorm is not one of the network's layers)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, BatchNormLayer):
            layers[i] = CrossReplicaBatchNorm(layer)
        elif isinstance(layer, ResidualLayer):
            for branch in layer.branches.values():
                _synchronise_batchnorm(branch)


__all__ = ["launch", "CrossReplicaBatchNorm", "ReplicaSummedGradients", "TensorFlowDataParallel", "make_strategy"]
