"""``gan-backends train``: parse, run the training job (:mod:`gan_backends.train`), print."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..presets import DEFAULT_PRESET, LOSS_PRESETS, load_spec
from ..spec import SpecError
from .common import console, err_console, fail, installed_backend


def train(
    data: Annotated[str, typer.Option(help="ring, grid, digits, mnist:DIR (IDX files), or a .npy/.npz file.")],
    spec: Annotated[str, typer.Option(help="Preset name or spec JSON file.")] = DEFAULT_PRESET,
    backend: Annotated[str, typer.Option(help="torch, tensorflow, jax (or numpy, slowly).")] = "torch",
    steps: Annotated[int, typer.Option(min=1, help="Training steps (each: n_critic D updates, one G update).")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Parameters, noise and data order: a run repeats within a backend.")] = 0,
    loss: Annotated[Optional[str], typer.Option(help=f"Loss preset ({', '.join(LOSS_PRESETS)}).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="The backend's execution mode (default: its first).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default: GPU when present.")] = None,
    devices: Annotated[
        int,
        typer.Option(
            min=1,
            help="Data parallel over N devices on the framework's engine (DDP, MirroredStrategy, a jax Mesh; "
            "logical devices on a CPU); --batch-size is the global batch. BatchNorm: the spec's data_parallel.",
        ),
    ] = 1,
    out: Annotated[Path, typer.Option(help="Folder for checkpoints, sample grids, losses.")] = Path("train-out"),
    sample_every: Annotated[int, typer.Option(min=0, help="Steps between sample grids (0: start and end).")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Steps between checkpoints (0: at the end).")] = 0,
    samples: Annotated[int, typer.Option(min=1, help="Images in a grid (points in a 2-D scatter).")] = 64,
    resume: Annotated[Optional[Path], typer.Option(help="A checkpoint to continue from (its step onwards).")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Start again in an --out that holds a run (its run files are removed).")
    ] = False,
) -> None:
    """Train a spec on real data with one backend: progress, sample grids, loss curves,
    checkpoints (resumable), a clear stop on a non-finite loss.

    An --out holding files is refused unless --resume continues the run there or --overwrite
    starts again. Ctrl-C (or SIGTERM) stops after the step under way, with a checkpoint of it.

    Exit status: 0 trained, 1 stopped on a non-finite loss (the last good checkpoint kept), 2 bad
    input, 130 interrupted (the checkpoint kept and the way to resume printed).
    """
    from ..data import DataError
    from ..train import TrainConfig, TrainingDiverged, claim_out_dir
    from ..train import train as run_training

    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun: rank 0 reports, the others train quietly
        console.quiet = True

    try:
        gan = load_spec(spec, loss)
        config = TrainConfig(
            backend=installed_backend(backend),
            data=data,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            mode=mode,
            device=device,
            devices=devices,
            sample_every=sample_every,
            checkpoint_every=checkpoint_every,
            samples=samples,
        )
        claim_out_dir(out, resumes=resume is not None, overwrite=overwrite)  # before the progress bar
    except (SpecError, DataError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
    ) as bar:
        over = f" × {devices} devices" if devices > 1 else ""
        task = bar.add_task(f"{gan.name} on {config.backend}{over}", total=steps, losses="")

        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, losses=f"d_loss {losses['d_loss']:.4f}  g_loss {losses['g_loss']:.4f}")

        try:
            result = run_training(gan, config, out, resume=resume, progress=progress, overwrite=overwrite)
        except TrainingDiverged as exc:
            err_console.print(f"[red]stopped:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except (SpecError, DataError, ValueError, OSError) as exc:
            raise fail(str(exc)) from None
    for m in result.metrics:
        console.print(
            f"step {m['step']}: modes covered {m['modes_covered']}/{m['total_modes']}, "
            f"high-quality samples {m['high_quality_fraction']:.1%}"
        )
    console.print(f"trained {result.steps_done} steps; checkpoint {result.checkpoint}; samples, losses in {out}/")
