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

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, atomic_write_text
from .backends import get_backend
from .backends.base import Backend, OptimizerState, TrainBatch
from .data import Dataset, generator_output_range, load_dataset
from .losses import LOSS_TERMS
from .params import ParamTree, buffer_shapes, check_tree, init_params, param_shapes
from .spec import GANSpec, SpecError

CHECKPOINT_FORMAT = "gan-backends/checkpoint-v1"


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
        if self.steps < 1 or self.batch_size < 1:
            raise SpecError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.devices < 1 or self.batch_size % self.devices:
            raise SpecError(
                f"the global batch {self.batch_size} must split evenly over {self.devices} devices "
                f"(each device trains on batch / devices rows)"
            )
        if self.devices > 1:
            from .parallel import DATA_PARALLEL_MODES

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


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(
    path: str | Path,
    spec: GANSpec,
    params: ParamTree,
    buffers: ParamTree,
    optimizer: OptimizerState,
    meta: dict[str, Any],
) -> None:
    """One safetensors file: ``params/<name>``, ``buffers/<name>``, ``optimizer/<slot>/<name>``,
    and in the metadata the spec, the optimiser step counts and ``meta`` (JSON)."""
    from safetensors.numpy import save

    tensors = {f"params/{k}": v for k, v in params.items()}
    tensors.update({f"buffers/{k}": v for k, v in buffers.items()})
    for slot, tree in optimizer.slots.items():
        tensors.update({f"optimizer/{slot}/{k}": v for k, v in tree.items()})
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec.to_json(indent=None),
        "optimizer_steps": json.dumps(optimizer.steps),
        "meta": json.dumps(meta),
    }
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


@dataclass
class Checkpoint:
    spec: GANSpec
    params: ParamTree
    buffers: ParamTree
    optimizer: OptimizerState
    meta: dict[str, Any]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a :func:`save_checkpoint` file, checking every tensor against its spec."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"checkpoint {path} does not exist")
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise SpecError(f"{path}: not a gan-backends training checkpoint (format {metadata.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    spec = GANSpec.from_dict(json.loads(metadata["spec"]))
    params = {n: tensors[f"params/{n}"] for n in param_shapes(spec) if f"params/{n}" in tensors}
    check_tree(spec, params)
    buffers = {n: tensors[f"buffers/{n}"] for n in buffer_shapes(spec)}
    slots: dict[str, ParamTree] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, slot, name = key.split("/", 2)
            slots.setdefault(slot, {})[name] = value
    order = list(param_shapes(spec))
    slots = {s: {n: tree[n] for n in order if n in tree} for s, tree in slots.items()}
    optimizer = OptimizerState(json.loads(metadata["optimizer_steps"]), slots)
    return Checkpoint(spec, params, buffers, optimizer, json.loads(metadata["meta"]))


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
) -> TrainResult:
    """Train ``spec`` by ``config``, writing into ``out_dir``: ``last.safetensors`` (the latest
    finite state), ``losses.csv``/``losses.json``/``losses.png``, ``samples-<step>.png`` and,
    for Gaussian mixtures, ``metrics.json`` (modes covered, high-quality fraction).

    With ``config.devices > 1`` the step is data parallel on the framework's engine
    (:func:`gan_backends.parallel.launch.launch`: torch ranks beside this process, which is rank
    0; XLA host devices or TF logical CPUs on a CPU); every process runs the loop on the same
    inputs and this one writes. Call it before this process has imported jax or TensorFlow."""
    if config.devices == 1:
        build = get_backend(config.backend)

        def make(spec: GANSpec, params: ParamTree) -> Backend:
            return build(spec, params, mode=config.mode, device=config.device)

        return _train_on(spec, config, out_dir, resume, progress, make)
    from .parallel.launch import launch

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
    out.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data(spec, config.data, config.seed)
    start, history, metrics = 0, [], []
    params, buffers, optimizer = init_params(spec, config.seed), None, None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.spec.to_dict() != spec.to_dict():
            raise SpecError(f"checkpoint {resume} was trained with another spec ({ckpt.spec.name!r})")
        params, buffers, optimizer = ckpt.params, ckpt.buffers, ckpt.optimizer
        start = int(ckpt.meta["step"])
        history, metrics = _read_history(out), ckpt.meta.get("metrics", [])
        history = [h for h in history if h["step"] <= start]
    backend = make(spec, params)
    writes = getattr(backend, "is_main", True)
    if buffers is not None:
        backend.set_buffers(buffers)
    if optimizer is not None:
        backend.set_optimizer_state(optimizer)
    sampler = dataset.sampler(config.seed, start=start * spec.n_critic * config.batch_size)
    z_fixed = fixed_noise(spec, config.seed, config.samples)
    result = TrainResult(start, history, metrics)

    def checkpoint(step: int) -> None:
        if not writes:
            return
        meta = {"step": step, "config": asdict(config), "data": dataset.name, "metrics": result.metrics}
        path = out / "last.safetensors"
        save_checkpoint(path, spec, backend.get_params(), backend.get_buffers(), backend.get_optimizer_state(), meta)
        result.checkpoint = path

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

    def write_history() -> None:
        if writes:
            _write_history(out, result.history)

    if start == 0:
        sample_point(0)
        checkpoint(0)  # a good state to fall back on, whatever happens in the first steps
    for step in range(start + 1, config.steps + 1):
        z_d, z_g, alpha = step_noise(spec, config.seed, step, config.batch_size)
        real = sampler.draw(spec.n_critic, config.batch_size)
        losses = backend.train_step(TrainBatch(real=real, z_d=z_d, z_g=z_g, alpha=alpha))
        if not _finite(losses):
            write_history()
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
            write_history()
    if result.steps_done > start or start == config.steps:
        sample_point(result.steps_done)
    checkpoint(result.steps_done)
    write_history()
    if writes:
        _plot_losses(result.history, out / "losses.png")
    return result


# -- outputs ---------------------------------------------------------------------------------


def _write_history(out: Path, history: list[dict[str, float]]) -> None:
    atomic_write_text(out / "losses.json", json.dumps(history))
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(out / "losses.csv", buf.getvalue())


def _read_history(out: Path) -> list[dict[str, float]]:
    path = out / "losses.json"
    return json.loads(path.read_text()) if path.exists() else []


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def save_sample_image(samples: np.ndarray, path: str | Path, title: str, data: np.ndarray | None = None) -> None:
    """A scatter (over ``data``, when given) for 2-D samples; otherwise a grid of images
    (channels-last; flat samples of a square size are shown as square images)."""
    plt = _pyplot()
    flat = samples.reshape(len(samples), -1)
    if flat.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        if data is not None:
            real = data.reshape(len(data), -1)[:2000]
            ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="data")
        ax.scatter(flat[:, 0], flat[:, 1], s=6, c="tab:red", label="G(z)")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8)
    else:
        images = samples if samples.ndim == 4 else _as_images(samples)
        lo, hi = float(images.min()), float(images.max())
        images = (images - lo) / max(hi - lo, 1e-12)
        n = len(images)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        h, w, c = images.shape[1:]
        grid = np.ones((rows * (h + 1), cols * (w + 1), c), dtype=np.float32)
        for i, img in enumerate(images):
            r, k = divmod(i, cols)
            grid[r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = img
        fig, ax = plt.subplots(figsize=(6, 6 * rows / cols))
        ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, interpolation="nearest")
        ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_png(fig, Path(path))
    plt.close(fig)


def _as_images(samples: np.ndarray) -> np.ndarray:
    side = int(round(math.sqrt(samples.shape[1])))
    if side * side != samples.shape[1]:
        return samples.reshape(len(samples), 1, -1, 1)  # a strip per sample
    return samples.reshape(len(samples), side, side, 1)


def _plot_losses(history: list[dict[str, float]], path: Path) -> None:
    if not history:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for term in ("d_loss", "g_loss"):
        ax.plot(steps, [h[term] for h in history], label=term, lw=1)
    ax.set(xlabel="step", ylabel="loss", title="losses")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


# -- sampling --------------------------------------------------------------------------------


def load_generator_state(path: str | Path) -> tuple[GANSpec, ParamTree, ParamTree]:
    """Spec, parameters and BatchNorm statistics from a training checkpoint or a parameter file
    (:func:`~gan_backends.params.save_params`, spec in its metadata; no statistics: the initial
    ones)."""
    from safetensors import safe_open

    from .params import init_buffers, load_params

    with safe_open(str(path), framework="numpy") as f:
        fmt = (f.metadata() or {}).get("format")
    if fmt == CHECKPOINT_FORMAT:
        ckpt = load_checkpoint(path)
        return ckpt.spec, ckpt.params, ckpt.buffers
    params, spec = load_params(path)
    if spec is None:
        raise SpecError(f"{path}: a parameter file without its spec; convert it with `gan-backends port`")
    return spec, params, init_buffers(spec)


def sample(
    path: str | Path,
    backend: str,
    *,
    noise: np.ndarray | None = None,
    seed: int = 0,
    count: int = 64,
    mode: str | None = None,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z, G(z))`` with the checkpoint's generator in inference mode (BatchNorm on its running
    statistics); ``z`` from ``noise`` (``(count, latent_dim)``) or N(0, 1) from ``seed``."""
    spec, params, buffers = load_generator_state(path)
    if noise is None:
        noise = np.random.default_rng(seed).standard_normal((count, spec.latent_dim), dtype=np.float32)
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] != spec.latent_dim:
        raise SpecError(f"noise: expected shape (count, {spec.latent_dim}) for spec {spec.name!r}, got {noise.shape}")
    model = get_backend(backend)(spec, params, mode=mode, device=device)
    model.set_buffers(buffers)
    return noise, model.generate(noise)
