"""The interface every backend implements, written once.

A backend is built from a :class:`~gan_backends.spec.GANSpec` and a canonical parameter tree,
and speaks NumPy at its boundary: arrays in, arrays out, canonical names and layouts. Inside, it
is idiomatic code of its framework. Shared code never asks which framework it is talking to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..losses import LossOps
from ..params import ParamTree, check_tree
from ..spec import GANSpec


class ModeUnavailable(ValueError):
    """A backend's mode that this device cannot run (CUDA graphs on a CPU). Raised by the
    constructor instead of running something else under the mode's name; a benchmark records
    the run as ``unavailable`` with this message."""


@dataclass(frozen=True)
class TrainBatch:
    """The inputs of one training step, drawn outside every framework.

    ``real``: ``(n_critic, batch, *data_shape)``, one real batch per D update;
    ``z_d``: ``(n_critic, batch, latent_dim)``, noise for each D update;
    ``z_g``: ``(batch, latent_dim)``, noise for the G update;
    ``alpha``: ``(n_critic, batch)``, WGAN-GP's interpolation coefficients ``α ~ U[0, 1]`` for
    each D update (``x̂ = α·real + (1 - α)·fake``); required by the ``wgan_gp`` penalty only.
    """

    real: np.ndarray
    z_d: np.ndarray
    z_g: np.ndarray
    alpha: np.ndarray | None = None

    def validate(self, spec: GANSpec) -> None:
        n, b = spec.n_critic, self.z_g.shape[0]
        expected = {
            "real": (n, b, *spec.data_shape),
            "z_d": (n, b, spec.latent_dim),
            "z_g": (b, spec.latent_dim),
        }
        if spec.loss.penalty == "wgan_gp":
            expected["alpha"] = (n, b)
            if self.alpha is None:
                raise ValueError(f"TrainBatch.alpha: spec {spec.name!r} uses WGAN-GP and needs alpha of shape {(n, b)}")
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"TrainBatch.{name}: expected shape {shape} for spec {spec.name!r}, got {got}")


@dataclass
class OptimizerState:
    """Both optimisers' state in canonical form, so it can move between backends.

    ``steps``: updates taken, per network (``generator``, ``discriminator``); ``slots``: each
    per-parameter buffer as a tree with canonical names and layouts, over the parameters of the
    networks whose optimiser has that slot (:func:`~gan_backends.spec.optimizer_slots`). Adam:
    ``m`` (first moment, torch's ``exp_avg``, optax's ``mu``) and ``v`` (second moment,
    ``exp_avg_sq``, ``nu``). RMSprop: ``v`` (``square_avg``), ``grad_avg`` when centered,
    ``momentum`` (``momentum_buffer``) with momentum. SGD: ``momentum`` (``momentum_buffer``)
    with momentum. At step 0 they are zeros.
    """

    steps: dict[str, int]
    slots: dict[str, ParamTree]

    def astype(self, dtype: np.dtype | str) -> OptimizerState:
        """A copy in ``dtype``, always a copy: a backend may keep the arrays it is given (torch's
        ``load_state_dict`` shares the memory of ``torch.from_numpy``) and update them in place,
        so one state handed to several backends must not share buffers."""
        cast = {k: {n: np.array(a, dtype=dtype) for n, a in tree.items()} for k, tree in self.slots.items()}
        return OptimizerState(dict(self.steps), cast)


@dataclass
class EmaState:
    """The moving average of G's weights (``spec.ema``) in canonical form: ``steps``, the G
    updates it has followed (the ``t`` of :class:`~gan_backends.spec.ema.EmaSpec`), and
    ``params``, the average itself under G's canonical names and layouts (``generator.0.kernel``),
    so that it loads wherever G's parameters do. A backend starts it as a copy of G's
    parameters at ``steps`` 0, and again whenever ``set_params`` loads new ones."""

    steps: int
    params: ParamTree

    def astype(self, dtype: np.dtype | str) -> EmaState:
        """A copy in ``dtype`` (always a copy, see :meth:`OptimizerState.astype`)."""
        return EmaState(int(self.steps), {n: np.array(a, dtype=dtype) for n, a in self.params.items()})


def check_ema(spec: GANSpec, state: EmaState) -> None:
    """Raise ``ValueError`` unless ``spec`` keeps an EMA and ``state`` holds exactly G's
    parameters, shaped as the spec says, with a step count >= 0: what every ``set_ema`` checks."""
    if spec.ema is None:
        raise ValueError(f"spec {spec.name!r} keeps no moving average of G (its 'ema' is null)")
    check_tree(spec, state.params, ("generator",))
    if isinstance(state.steps, bool) or int(state.steps) != state.steps or state.steps < 0:
        raise ValueError(f"EMA step count must be an integer >= 0, got {state.steps!r}")


class Backend(ABC):
    """One framework's implementation of a GAN spec.

    Class attributes describe the backend without building it: ``name`` (registry key),
    ``modes`` (execution modes, the first being the default), ``host_only``.
    """

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]
    loss_ops: ClassVar[LossOps]
    #: Computes on the host CPU whatever device the other backends use.
    host_only: ClassVar[bool] = False

    @staticmethod
    @abstractmethod
    def from_numpy(array: np.ndarray) -> Any:
        """A native tensor holding ``array`` (same dtype), on the framework's default device."""

    @classmethod
    def enable_float64(cls) -> None:
        """Make float64 computation possible in this process (only JAX needs a switch)."""
        return None

    @classmethod
    def configure_threads(cls, threads: int) -> dict[str, int]:
        """Set the framework's CPU thread pools to ``threads`` before its first computation;
        returns the settings now in force (recorded with benchmark results). JAX and NumPy
        have no such knob: their pools follow the process's CPU affinity."""
        return {}

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        check_tree(spec, params)
        self.spec = spec
        self.mode = self.modes[0] if mode is None else mode
        if self.mode not in self.modes:
            raise ValueError(f"backend {self.name!r} has no mode {self.mode!r}; modes: {', '.join(self.modes)}")

    # -- description ---------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def framework_version(cls) -> str:
        """Version string(s) of the framework this backend runs on."""

    # Each framework names its devices its own way; a backend sets ``_device`` to what its
    # ``select_device`` returns and the two descriptions below follow from the hooks.
    _device: Any = "cpu"

    @staticmethod
    def select_device(requested: str | None) -> Any:
        """The framework's device object for ``requested`` (``cpu``, ``cuda``, ``cuda:1``; None:
        the GPU when there is one)."""
        return "cpu"

    @staticmethod
    def describe_device(device: Any) -> str:
        """A device object as a person reads it, e.g. ``cuda:0 (NVIDIA H100)``."""
        return str(device)

    @classmethod
    def default_device(cls) -> str:
        """The device a new instance picks when none is requested (GPU when present)."""
        return cls.describe_device(cls.select_device(None))

    @property
    def device(self) -> str:
        """The device this instance computes on, e.g. ``cpu`` or ``cuda:0 (NVIDIA H100)``."""
        return self.describe_device(self._device)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.numerics.dtype)

    # -- parameters ----------------------------------------------------------------------
    @abstractmethod
    def set_params(self, params: ParamTree) -> None:
        """Load a canonical tree (and reset the optimiser state; buffers are left alone)."""

    @abstractmethod
    def get_buffers(self) -> ParamTree:
        """BatchNorm running statistics as a canonical tree (``generator.3.running_mean``,
        ``running_var``); empty when the spec has no BatchNorm. A new backend starts from
        :func:`~gan_backends.params.init_buffers` (mean 0, variance 1)."""

    @abstractmethod
    def set_buffers(self, buffers: ParamTree) -> None:
        """Load running statistics (e.g. another backend's, to continue its trajectory)."""

    @abstractmethod
    def get_params(self) -> ParamTree:
        """Export the current parameters as a canonical tree of NumPy arrays."""

    def get_ema(self) -> EmaState | None:
        """G's moving average (:class:`EmaState`), updated inside the training step after each
        G update; None when the spec keeps none (``spec.ema`` null)."""
        raise NotImplementedError(f"backend {self.name!r} keeps no moving average of G")

    def set_ema(self, state: EmaState) -> None:
        """Load G's moving average and its step count (checked by :func:`check_ema`), e.g. from
        a checkpoint or another backend, to continue its trajectory."""
        raise NotImplementedError(f"backend {self.name!r} keeps no moving average of G")

    @abstractmethod
    def get_optimizer_state(self) -> OptimizerState:
        """Export both optimisers' state (see :class:`OptimizerState`)."""

    @abstractmethod
    def set_optimizer_state(self, state: OptimizerState) -> None:
        """Load both optimisers' state, e.g. another backend's, to continue its trajectory."""

    # -- computation ---------------------------------------------------------------------
    @abstractmethod
    def activations(self, net: str, x: np.ndarray, training: bool = False) -> list[np.ndarray]:
        """The output of every layer of ``net`` (``generator`` or ``discriminator``) for input
        ``x``, in spec order and canonical layout: the per-layer view a porter compares.
        ``training``: BatchNorm on batch statistics (running statistics are NOT updated)."""

    @abstractmethod
    def generate(self, z: np.ndarray) -> np.ndarray:
        """``G(z)`` for ``z`` of shape ``(batch, latent_dim)``, in inference mode (BatchNorm on
        running statistics, as after ``G.eval()``)."""

    @abstractmethod
    def discriminate(self, x: np.ndarray) -> np.ndarray:
        """The logits ``D(x)``, shape ``(batch, 1)``, in inference mode."""

    @abstractmethod
    def loss_terms(self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None) -> dict[str, float]:
        """The :data:`~gan_backends.losses.LOSS_TERMS` at the current parameters, computed as a
        training step computes them (BatchNorm on batch statistics, running statistics left
        alone). ``alpha`` ``(batch,)``: WGAN-GP's interpolation coefficients."""

    @abstractmethod
    def gradients(
        self, real: np.ndarray, z: np.ndarray, alpha: np.ndarray | None = None
    ) -> tuple[dict[str, float], ParamTree]:
        """Loss terms, and the gradient tree: D's parameters w.r.t. ``d_loss`` (G fixed),
        G's parameters w.r.t. ``g_loss`` (D fixed). Running statistics are left alone."""

    @abstractmethod
    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """``n_critic`` D updates then one G update; returns the loss terms seen on the way
        (D's from its last update, ``g_loss`` from the G update). The order of network calls,
        each updating BatchNorm running statistics once, is fixed (``docs/conv-gans.md``):
        per D update ``G(z_d[i])``, ``D(real[i])``, ``D(fake)`` (then the penalty's calls),
        the D optimiser step, weight clipping; then ``G(z_g)``, ``D(G(z_g))``, the G step."""

    # -- benchmarking --------------------------------------------------------------------
    @abstractmethod
    def device_step(self, batch: TrainBatch) -> Callable[[], Any]:
        """Put ``batch`` on the device once and return ``step()``: one :meth:`train_step` on
        those device-resident inputs, returning the framework's outputs (loss terms, state)
        *unread*, so that a timed loop of steps has no host synchronisation in it."""

    @abstractmethod
    def synchronize(self, outputs: Any) -> None:
        """Block until the device has finished the work that produced ``outputs`` (a value
        returned by a ``device_step`` step); the clock of a benchmark is read only after it."""

    def read_losses(self, outputs: Any) -> dict[str, float]:
        """The loss terms held in a ``device_step`` step's outputs, read on the host."""
        return {k: float(v) for k, v in outputs.items()}

    def runtime_info(self) -> dict[str, Any]:
        """What a benchmark records beside the versions: the CUDA/cuDNN build where there is
        one, and the precision switches actually in force (TF32 flags, matmul precision)."""
        return {}

    def step_anatomy(self, batch: TrainBatch) -> dict[str, Any] | None:
        """What one training step on ``batch`` launches, counted by the framework's own tools
        (torch's profiler, the compiled XLA program, TensorFlow's graph): ``source`` says how,
        the other keys are counts. May run a step (it trains on). None: not counted here."""
        return None

    def peak_device_memory(self) -> int | None:
        """The framework's own counter of peak device memory in bytes in this process
        (``torch.cuda.max_memory_allocated``, TF's ``get_memory_info``, JAX's ``memory_stats``);
        None where the device keeps none (CPU)."""
        return None

    def checked_alpha(self, alpha: np.ndarray | None, batch: int) -> np.ndarray | None:
        """WGAN-GP's interpolation coefficients for one D update of ``batch`` rows, checked and
        cast to the spec dtype (None for the other losses, which ignore them)."""
        if self.spec.loss.penalty != "wgan_gp":
            return None
        if alpha is None:
            raise ValueError(f"spec {self.spec.name!r} uses WGAN-GP and needs alpha of shape ({batch},)")
        if tuple(np.shape(alpha)) != (batch,):
            raise ValueError(f"alpha: expected shape ({batch},), got {tuple(np.shape(alpha))}")
        return self._as_input(alpha)

    def _as_input(self, array: np.ndarray) -> np.ndarray:
        """Inputs cast to the spec dtype on the host, the same way for every backend."""
        return np.ascontiguousarray(array, dtype=self.dtype)
