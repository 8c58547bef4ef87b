"""The training job: any spec, any backend, real data, checkpoints that resume exactly.

One run is a :class:`TrainConfig`. Each step draws its inputs in NumPy, outside every framework:
the real batches from the data set's :class:`~gan_backends.data.BatchSampler` (by shuffled
epochs, from the seed), the noise (and WGAN-GP's α) from ``numpy.random.default_rng([seed,
step])``. So a run is repeatable within a backend, two backends can be fed the very same inputs,
and a resumed run draws what the uninterrupted one would have drawn.

A checkpoint (safetensors, written atomically) holds the parameters, the BatchNorm running
statistics and both optimisers' state in canonical form, with the spec, the step and the run's
settings in its metadata: :func:`save_checkpoint`, :func:`load_checkpoint`. A step whose losses
are not finite stops the run with :class:`TrainingDiverged`; the last checkpoint written before
it is kept (``last.safetensors`` is only replaced by a finite state).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from ..backends import get_backend
from ..backends.base import Backend, TrainBatch
from ..data import Dataset, generator_output_range, load_dataset
from ..errors import Interrupted, parse_device
from ..interrupts import StopRequest, stop_requests
from ..losses import LOSS_TERMS
from ..params import ParamTree, init_params
from ..sizing import check_fits, on_host
from ..spec import GANSpec, SpecError
from .checkpoint import CHECKPOINT_FORMAT, Checkpoint, load_checkpoint, save_checkpoint
from .outputs import plot_losses, read_history, save_sample_image, write_history
from .run_folder import RUN_FILES, check_same_run, claim_out_dir
from .sampling import IMAGE_LAYOUTS, discriminate, load_generator_state, sample


class TrainingDiverged(RuntimeError):
    """A step produced a non-finite loss; the message names the step and the terms."""


@dataclass(frozen=True)
class TrainConfig:
    """``data``: a name for :func:`~gan_backends.data.load_dataset` (``ring``, ``grid``,
    ``digits``, ``mnist:DIR``, a ``.npy``/``.npz`` file); the samples are scaled to the
    generator's output range (Tanh: [-1, 1]) and reshaped to the spec's data shape."""

    backend: str
    data: str
    steps: int
    batch_size: int = 64
    seed: int = 0
    mode: str | None = None
    device: str | None = None
    sample_every: int = 0  # 0: only at the end
    checkpoint_every: int = 0  # 0: only at the end
    samples: int = 64  # images in a grid / points in a scatter
    #: Data parallel over this many devices on the framework's own engine; ``batch_size`` is the
    #: global batch (each device trains on ``batch_size / devices`` rows of it).
    devices: int = 1

    def __post_init__(self) -> None:
        if self.device is not None:
            parse_device(self.device)
        if self.steps < 1 or self.batch_size < 1:
            raise SpecError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.devices < 1 or self.batch_size % self.devices:
            raise SpecError(
                f"the global batch {self.batch_size} must split evenly over {self.devices} devices "
                f"(each device trains on batch / devices rows)"
            )
        if self.devices > 1:
            from ..parallel import DATA_PARALLEL_MODES

            modes = DATA_PARALLEL_MODES.get(self.backend)
            if modes is None:
                raise SpecError(f"no data-parallel engine for backend {self.backend!r}: torch, tensorflow, jax")
            if self.mode is not None and self.mode not in modes:
                raise SpecError(
                    f"data parallel runs {self.backend} in mode {modes[0]!r} (the engine compiles the "
                    f"backend's step itself), not {self.mode!r}"
                )


@dataclass
class TrainResult:
    steps_done: int
    history: list[dict[str, float]] = field(default_factory=list)  # per step: step, the loss terms
    metrics: list[dict[str, Any]] = field(default_factory=list)  # mode metrics at sample points
    checkpoint: Path | None = None


# -- inputs ----------------------------------------------------------------------------------


def prepare_data(spec: GANSpec, name: str, seed: int) -> Dataset:
    """The data set, scaled to G's output range where G has one, shaped like the spec's data."""
    dataset = load_dataset(name, seed=seed)
    target = generator_output_range(spec)
    if target is not None:
        dataset = dataset.scaled(target)
    return dataset.reshaped(spec.data_shape)


def step_noise(spec: GANSpec, seed: int, step: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``z_d``, ``z_g`` (N(0, 1)) and α (U(0, 1), WGAN-GP only) of step ``step``."""
    rng = np.random.default_rng([seed, step])
    z_d = rng.standard_normal((spec.n_critic, batch, spec.latent_dim), dtype=np.float32)
    z_g = rng.standard_normal((batch, spec.latent_dim), dtype=np.float32)
    alpha = rng.uniform(0.0, 1.0, (spec.n_critic, batch)).astype(np.float32) if spec.loss.penalty == "wgan_gp" else None
    return z_d, z_g, alpha


def fixed_noise(spec: GANSpec, seed: int, count: int) -> np.ndarray:
    """The noise of the sample grids: the same at every sample point, so they show progress."""
    return np.random.default_rng([seed, 2**31]).standard_normal((count, spec.latent_dim), dtype=np.float32)


# -- the loop --------------------------------------------------------------------------------


def _finite(losses: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in losses.values())


def train(
    spec: GANSpec,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``spec`` by ``config``, writing into ``out_dir``: ``last.safetensors`` (the latest
    finite state), ``losses.csv``/``losses.json``/``losses.png``, ``samples-<step>.png`` and,
    for Gaussian mixtures, ``metrics.json`` (modes covered, high-quality fraction).

    With ``config.devices > 1`` the step is data parallel on the framework's engine
    (:func:`gan_backends.parallel.launch.launch`: torch ranks beside this process, which is rank
    0; XLA host devices or TF logical CPUs on a CPU); every process runs the loop on the same
    inputs and this one writes. Call it before this process has imported jax or TensorFlow.

    ``out_dir`` must be empty or new unless ``resume`` continues a run (from a checkpoint whose
    seed, batch size and data are this config's) or ``overwrite`` clears the run files there.
    SIGINT/SIGTERM stop the loop after its step, with a checkpoint at that step, and raise
    :class:`~gan_backends.errors.Interrupted` (a data-parallel group over several processes
    keeps its last periodic checkpoint)."""
    check_fits(spec, config.batch_size if on_host(config.device) else None)
    if config.devices > 1:
        from ..parallel import refuse_unsupported

        refuse_unsupported(spec)
    claim_out_dir(Path(out_dir), resumes=resume is not None, overwrite=overwrite)
    if config.devices == 1:
        build = get_backend(config.backend)

        def make(spec: GANSpec, params: ParamTree) -> Backend:
            return build(spec, params, mode=config.mode, device=config.device)

        return _train_on(spec, config, out_dir, resume, progress, make)
    from ..parallel.launch import launch

    platform = "cpu" if (config.device or "").startswith("cpu") else None
    job = partial(_train_on, spec, config, out_dir, resume, progress)
    others = partial(_train_on, spec, config, out_dir, resume, None)  # the other torch ranks: no progress
    return launch(config.backend, config.devices, job, platform=platform, child_job=others)


def _train_on(
    spec: GANSpec,
    config: TrainConfig,
    out_dir: str | Path,
    resume: str | Path | None,
    progress: Callable[[int, int, dict[str, float]], None] | None,
    make: Callable[[GANSpec, ParamTree], Any],
) -> TrainResult:
    """The loop of :func:`train` on the step ``make(spec, params)`` builds (a backend, or a
    data-parallel step; only where its ``is_main`` does it write)."""
    out = Path(out_dir)
    dataset = prepare_data(spec, config.data, config.seed)
    start, history, metrics = 0, [], []
    params, buffers, optimizer, ema = init_params(spec, config.seed), None, None, None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.spec.to_dict() != spec.to_dict():
            raise SpecError(f"checkpoint {resume} was trained with another spec ({ckpt.spec.name!r})")
        params, buffers, optimizer, ema = ckpt.params, ckpt.buffers, ckpt.optimizer, ckpt.ema
        start = int(ckpt.meta["step"])
        check_same_run(ckpt, config, dataset.name, resume)
        history, metrics = read_history(out), ckpt.meta.get("metrics", [])
        history = [h for h in history if h["step"] <= start]
    out.mkdir(parents=True, exist_ok=True)  # the inputs are good: the run's folder now
    backend = make(spec, params)
    writes = getattr(backend, "is_main", True)
    if buffers is not None:
        backend.set_buffers(buffers)
    if optimizer is not None:
        backend.set_optimizer_state(optimizer)
    if ema is not None:
        backend.set_ema(ema)
    sampler = dataset.sampler(config.seed, start=start * spec.n_critic * config.batch_size)
    z_fixed = fixed_noise(spec, config.seed, config.samples)
    result = TrainResult(start, history, metrics)
    saved = [start]  # the step the checkpoint holds

    def checkpoint(step: int) -> None:
        if not writes:
            return
        meta = {"step": step, "config": asdict(config), "data": dataset.name, "metrics": result.metrics}
        path = out / "last.safetensors"
        state = backend.get_params(), backend.get_buffers(), backend.get_optimizer_state()
        save_checkpoint(path, spec, *state, meta, ema=backend.get_ema() if spec.ema is not None else None)
        result.checkpoint, saved[0] = path, step

    def sample_point(step: int) -> None:
        if not writes:
            return
        images = backend.generate(z_fixed)
        if dataset.centers is not None:
            m = dataset.mode_metrics(images).to_dict()
            result.metrics.append(
                {"step": step, **{k: m[k] for k in ("modes_covered", "total_modes", "high_quality_fraction")}}
            )
            atomic_write_text(out / "metrics.json", json.dumps(result.metrics, indent=1))
        over = f" × {config.devices} devices" if config.devices > 1 else ""
        title = f"{spec.name} on {config.backend}{over}, step {step}"
        save_sample_image(images, out / f"samples-{step:06d}.png", title, dataset.data)

    def keep_history() -> None:
        if writes:
            write_history(out, result.history)

    if start == 0:
        sample_point(0)
        checkpoint(0)  # a good state to fall back on, whatever happens in the first steps
    # Several processes must stop at the same step, which a signal cannot promise: there the
    # first Ctrl-C interrupts at once, and the last periodic checkpoint is what is kept.
    one_process = getattr(backend, "processes", 1) == 1
    try:
        with stop_requests() if one_process else nullcontext(StopRequest()) as stop:
            for step in range(start + 1, config.steps + 1):
                z_d, z_g, alpha = step_noise(spec, config.seed, step, config.batch_size)
                real = sampler.draw(spec.n_critic, config.batch_size)
                losses = backend.train_step(TrainBatch(real=real, z_d=z_d, z_g=z_g, alpha=alpha))
                if not _finite(losses):
                    keep_history()
                    bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
                    kept = f"; the last good checkpoint is {result.checkpoint}" if result.checkpoint else ""
                    raise TrainingDiverged(f"step {step}: non-finite loss ({bad}){kept}")
                result.history.append({"step": step, **{k: losses[k] for k in LOSS_TERMS if k in losses}})
                result.steps_done = step
                if progress:
                    progress(step, config.steps, losses)
                if config.sample_every and step % config.sample_every == 0 and step != config.steps:
                    sample_point(step)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
                    checkpoint(step)
                    keep_history()
                if stop.requested and one_process and step < config.steps:
                    checkpoint(step)
                    keep_history()
                    raise Interrupted(
                        f"{stop.signal_name} after step {step} of {config.steps}; checkpoint {result.checkpoint} "
                        f"holds it: run the same command with --resume {result.checkpoint} to go on"
                    )
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted) or not writes:
            raise
        kept = (
            f"the last checkpoint, {result.checkpoint}, holds step {saved[0]}: run the same command with "
            f"--resume {result.checkpoint} to go on"
            if result.checkpoint
            else "no checkpoint was written"
        )
        raise Interrupted(f"during step {result.steps_done + 1}; {kept}") from None
    if result.steps_done > start or start == config.steps:
        sample_point(result.steps_done)
    checkpoint(result.steps_done)
    keep_history()
    if writes:
        plot_losses(result.history, out / "losses.png")
    return result


__all__ = [
    "CHECKPOINT_FORMAT",
    "IMAGE_LAYOUTS",
    "RUN_FILES",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "check_same_run",
    "claim_out_dir",
    "discriminate",
    "fixed_noise",
    "load_checkpoint",
    "load_generator_state",
    "prepare_data",
    "sample",
    "save_checkpoint",
    "save_sample_image",
    "step_noise",
    "train",
]
