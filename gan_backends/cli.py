"""The ``gan-backends`` command: ``info``, ``specs``, ``check``, ``bench``, ``train``, ``sample``, ``port``,
``losscheck``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from .backends import FRAMEWORKS, REFERENCE, REGISTRY, canonical_name, is_available
from .environment import backend_status, environment
from .presets import DEFAULT_PRESET, LOSS_PRESETS, PRESETS, get_preset, load_spec
from .spec import GANSpec, SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="One GAN spec, three frameworks, proven equal.")
console = Console()
err_console = Console(stderr=True)


def _installed_backend(name: str) -> str:
    """The registry name of ``name``, or a SpecError naming the extra that installs it."""
    key = canonical_name(name)
    if not is_available(key):
        raise SpecError(backend_status(key).detail)
    return key


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


@app.command()
def info() -> None:
    """List each backend with its framework version, default device and availability."""
    table = Table(title="gan-backends backends", title_justify="left")
    for col in ("backend", "available", "version", "default device", "modes"):
        table.add_column(col)
    hints = []
    for name in REGISTRY:
        s = backend_status(name)
        available = "[green]yes[/]" if s.available else "[red]no[/]"
        table.add_row(name, available, s.version, s.default_device, ", ".join(s.modes))
        if s.detail:
            hints.append(s.detail)
    console.print(table)
    for hint in hints:  # below the table: an install command must not be wrapped or cut
        console.print(escape(hint), soft_wrap=True)


@app.command()
def specs(name: Annotated[Optional[str], typer.Argument(help="Preset to print as JSON.")] = None) -> None:
    """List the presets, or print one as spec JSON (a starting point for your own spec file)."""
    if name is None:
        for preset, factory in PRESETS.items():
            doc = (factory.__doc__ or "").strip().splitlines()[0]
            console.print(f"[bold]{preset}[/]  {doc}")
        return
    try:
        print(get_preset(name).to_json())
    except SpecError as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A transient progress bar on stderr for the trajectories (silent when not a terminal)."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        yield advance


def _parse_modes(items: list[str]) -> dict[str, str]:
    modes = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"--mode takes BACKEND=MODE, got {item!r}")
        backend, mode = item.split("=", 1)
        modes[canonical_name(backend)] = mode.strip()
    return modes


@app.command()
def check(
    spec: Annotated[str, typer.Option(help="Preset name or spec JSON file.")] = DEFAULT_PRESET,
    backends: Annotated[
        Optional[str], typer.Option(help="Comma-separated backends; default: every installed framework + numpy.")
    ] = None,
    steps: Annotated[
        int, typer.Option(min=1, help="Training steps of the free-running and lock-step trajectories.")
    ] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the parameters and of every input.")] = 0,
    dtype: Annotated[Optional[str], typer.Option(help="Override the spec's dtype: float32 or float64.")] = None,
    loss: Annotated[
        Optional[str],
        typer.Option(
            help=f"Train with this loss ({', '.join(LOSS_PRESETS)}), with its paper's optimiser and n_critic."
        ),
    ] = None,
    precision: Annotated[
        Optional[str],
        typer.Option(help="Override matmul precision: highest, tf32 or bf16 (mixed, docs/check-report.md)."),
    ] = None,
    mode: Annotated[list[str], typer.Option(help="BACKEND=MODE, e.g. torch=compile, tensorflow=xla, jax=eager.")] = [],  # noqa: B006
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda/gpu; default: GPU when present.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here.")] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown", help="Also write it as Markdown here.")] = None,
    plot_path: Annotated[
        Optional[Path], typer.Option("--plot", help="Also plot divergence over the steps to this PNG.")
    ] = None,
    framework_defaults: Annotated[
        bool,
        typer.Option(
            "--framework-defaults",
            help="Instead: run each framework with its own defaults (LeakyReLU slope, Adam eps, init) "
            "and show how far that lands from the spec.",
        ),
    ] = False,
    lockstep: Annotated[
        bool, typer.Option("--lockstep/--no-lockstep", help="Also run the lock-step trajectory against numpy.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet", help="Every row, or only failures.")] = True,
) -> None:
    """Run every backend on the same parameters and inputs and compare each pair.

    Exit status: 0 when every pair agrees within tolerance, 1 when one does not, 2 on bad input.
    """
    from .check import run_check
    from .check.report import render, write_json, write_markdown

    try:
        gan = load_spec(spec, loss)
        numerics = gan.numerics
        if dtype or precision:
            from .spec import Numerics

            numerics = Numerics(dtype=dtype or numerics.dtype, matmul_precision=precision or numerics.matmul_precision)  # type: ignore[arg-type]
            gan = gan.replace(numerics=numerics)
        modes = _parse_modes(mode)
        if backends is None:
            names = [*[f for f in FRAMEWORKS if is_available(f)], REFERENCE]
            missing = [f for f in FRAMEWORKS if not is_available(f)]
            if missing:
                extras = ",".join(REGISTRY[f].extra or f for f in missing)
                err_console.print(
                    f"[yellow]not installed:[/] {', '.join(missing)} "
                    + escape(f"(pip install 'gan-backends[{extras}]')")
                )
        else:
            names = [canonical_name(b) for b in backends.split(",") if b.strip()]
            unavailable = [n for n in names if not is_available(n)]
            if unavailable:
                raise SpecError("; ".join(backend_status(n).detail for n in unavailable))
        if len(names) < 2:
            raise SpecError(f"a check needs at least two backends, got {names}")
    except (SpecError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None

    if framework_defaults:
        _framework_defaults(gan, [n for n in names if n in FRAMEWORKS], steps, batch_size, seed, json_path)
        raise typer.Exit(0)
    with _progress() as advance:
        report = run_check(
            gan,
            names,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            modes=modes,
            device=device,
            lockstep=lockstep,
            progress=advance,
        )
    render(report, console, verbose=verbose)
    env = environment(names) if json_path or markdown_path else {}
    if json_path is not None:
        write_json(report, json_path, env)
        console.print(f"report written to {json_path}")
    if markdown_path is not None:
        write_markdown(report, markdown_path, env)
        console.print(f"Markdown written to {markdown_path}")
    if plot_path is not None:
        from .check.plot import plot_divergence

        plot_divergence(report, plot_path)
        console.print(f"plot written to {plot_path}")
    raise typer.Exit(0 if report.passed else 1)


def _framework_defaults(
    gan: GANSpec, frameworks: list[str], steps: int, batch_size: int, seed: int, json_path: Optional[Path]
) -> None:
    import dataclasses
    import json

    from ._io import atomic_write_text
    from .check.framework_defaults import framework_defaults_report
    from .check.measures import finite

    rows = framework_defaults_report(gan, frameworks, steps=steps, batch_size=batch_size, seed=seed)
    table = Table(
        title=f"each framework with its own defaults vs the spec {gan.name!r} (float64 reference); "
        f"relative errors, params after {steps} steps",
        title_justify="left",
    )
    for col in (
        "framework",
        "default used",
        "spec says",
        "framework default",
        "G(z)",
        "D(x)",
        "params",
        "loss at l=30",
    ):
        table.add_column(col)
    for r in rows:
        values = (r.g_out, r.d_out, r.params, r.saturated)
        cells = [f"{x:.1e}" if x == x else f"[red]{escape(r.error)}[/]" for x in values]
        table.add_row(r.framework, r.setting, r.spec_value, r.default, *cells)
    console.print(table)
    console.print(
        "'as specified' is the measure's own floor: float32 rounding with every value set from the spec. "
        "'loss at l=30': the loss term softplus(30) of a confidently wrong D, where BCE on probabilities saturates."
    )
    if json_path is not None:
        data = [{k: finite(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(r).items()} for r in rows]
        atomic_write_text(
            json_path, json.dumps({"schema": "gan-backends/framework-defaults-v1", "rows": data}, indent=2)
        )


def _csv(value: Optional[str], cast: Callable[[str], object] = str) -> Optional[tuple]:
    return None if value is None else tuple(cast(v.strip()) for v in value.split(",") if v.strip())


@app.command()
def bench(
    sweep_file: Annotated[
        Optional[Path],
        typer.Option(
            "--sweep",
            help="Sweep TOML (benchmarks/sweeps/) or a built-in name (cpu, gpu, batch-cpu, batch-gpu); "
            "default: built-in, by device.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.jsonl, JSON, CSV, Markdown, PNG.")] = Path(
        "bench-results"
    ),
    spec: Annotated[Optional[str], typer.Option(help="Comma-separated presets or spec files.")] = None,
    backends: Annotated[
        Optional[str], typer.Option(help="Comma-separated backends (each in the sweep's modes).")
    ] = None,
    mode: Annotated[list[str], typer.Option(help="BACKEND=MODE, repeatable: only these modes of that backend.")] = [],  # noqa: B006
    batch_sizes: Annotated[Optional[str], typer.Option(help="Comma-separated, e.g. 64,256,1024.")] = None,
    precisions: Annotated[Optional[str], typer.Option(help="Comma-separated: float32, tf32, bf16.")] = None,
    loss: Annotated[Optional[str], typer.Option(help=f"Loss preset ({', '.join(LOSS_PRESETS)}).")] = None,
    inputs: Annotated[
        Optional[str], typer.Option(help="device (placed once), host (copied in every step), or device,host.")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu or cuda; default: cuda when nvidia-smi sees a GPU.")
    ] = None,
    devices: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated device counts, e.g. 1,2: data parallel on each framework's engine "
            "(DDP, MirroredStrategy, a jax Mesh); on a CPU, logical devices. Batch sizes are global."
        ),
    ] = None,
    scaling: Annotated[
        Optional[str],
        typer.Option(help="strong (same global batch), weak (same batch per device), or strong,weak."),
    ] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads (and cores) of every framework.")] = None,
    warmup: Annotated[Optional[int], typer.Option(min=1, help="Warm-up steps after the first.")] = None,
    repeats: Annotated[Optional[int], typer.Option(min=1, help="Timed blocks.")] = None,
    min_block: Annotated[Optional[float], typer.Option(help="Least seconds per timed block.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds before one run is stopped and recorded.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore the results already in --out.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run recorded failures again.")] = False,
) -> None:
    """Time the training step of every backend × mode × spec × batch × precision, each run in its
    own process; write a ranked table, JSON, CSV, Markdown and plots. Re-running resumes.

    Exit status: 0 when every run produced a timing, 1 when one failed (recorded), 2 on bad input.
    """
    import dataclasses
    import shlex
    import sys

    from .bench import Sweep, default_sweep, run_sweep
    from .bench.report import progress_line, render
    from .environment import nvidia_gpus

    try:
        if sweep_file is not None:
            sweep = Sweep.load(sweep_file)
        else:
            sweep = default_sweep("cpu" if (device or ("cuda" if nvidia_gpus() else "cpu")) == "cpu" else "gpu")
        modes = dict(sweep.modes)
        if backends is not None:
            names = [canonical_name(b) for b in backends.split(",") if b.strip()]
            modes = {n: modes.get(n, ()) for n in names}
        picked = _parse_modes(mode)  # BACKEND=MODE narrows (or adds) that backend's modes
        modes = {
            **{b: (picked[b],) if b in picked else m for b, m in modes.items()},
            **{b: (m,) for b, m in picked.items()},
        }
        plan = dataclasses.replace(
            sweep.plan,
            **{k: v for k, v in {"warmup": warmup, "repeats": repeats, "min_block_s": min_block}.items() if v},
        )
        sweep = Sweep.from_dict(
            {
                **dataclasses.asdict(sweep),
                "modes": modes,
                "plan": dataclasses.asdict(plan),
                **{
                    k: v
                    for k, v in {
                        "specs": _csv(spec),
                        "batch_sizes": _csv(batch_sizes, int),
                        "precisions": _csv(precisions),
                        "inputs": _csv(inputs),
                        "devices": _csv(devices, int),
                        "scaling": _csv(scaling),
                        "loss": loss,
                        "device": device,
                        "threads": threads,
                        "timeout_s": timeout,
                    }.items()
                    if v is not None
                },
            }
        )
        for name in sweep.specs:
            load_spec(name, sweep.loss)  # a bad spec fails here, not in every run
        runs = sweep.runs()
    except (SpecError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None

    console.print(f"{len(runs)} runs, each in its own process; results in {out}/ (re-run to resume)")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("bench", total=len(runs))

        def on_start(run) -> None:
            over = f" on {run.devices} devices" if run.devices > 1 else ""
            bar.update(task, description=f"{run.backend}/{run.mode} {run.spec} b{run.batch_size}{over} {run.precision}")

        def on_record(record: dict, skipped: bool) -> None:
            bar.console.print(progress_line(record, skipped))
            bar.advance(task)

        records = run_sweep(
            runs,
            out,
            timeout_s=sweep.timeout_s,
            resume=not fresh,
            retry_failed=retry_failed,
            on_start=on_start,
            on_record=on_record,
        )
    render(records, console)
    meta = {
        "schema": "gan-backends/bench-results-v1",
        "command": shlex.join(["gan-backends", *sys.argv[1:]]),
        "sweep": sweep.to_dict(),
        "plan": dataclasses.asdict(sweep.plan),
        "environment": environment(list(sweep.modes)),
    }
    from .bench.report import markdown, write_csv, write_json

    write_json(records, out / "results.json", meta)
    write_csv(records, out / "results.csv")
    from ._io import atomic_write_text

    atomic_write_text(out / "summary.md", markdown(records, meta))
    try:
        from .bench.plot import plot_first_step, plot_throughput

        plot_throughput(records, out / "throughput.png")
        plot_first_step(records, out / "first_step.png")
    except ValueError as exc:  # nothing timed: no plot to draw
        err_console.print(f"[yellow]no plots:[/] {escape(str(exc))}")
    written = "results.json, results.csv, summary.md, throughput.png, first_step.png"
    if any(r.get("config", {}).get("devices", 1) > 1 for r in records):
        from .bench.plot import plot_scaling

        try:
            plot_scaling(records, out / "scaling.png")
            written += ", scaling.png"
        except ValueError as exc:  # no one-device baseline timed
            err_console.print(f"[yellow]no scaling plot:[/] {escape(str(exc))}")
    console.print(f"written: {out}/{written}")
    failed = [r for r in records if r["status"] not in ("ok", "unavailable")]
    raise typer.Exit(1 if failed else 0)


@app.command()
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
) -> None:
    """Train a spec on real data with one backend: progress, sample grids, loss curves,
    checkpoints (resumable), a clear stop on a non-finite loss.

    Exit status: 0 trained, 1 stopped on a non-finite loss (the last good checkpoint kept), 2 bad input.
    """
    from .data import DataError
    from .train import TrainConfig, TrainingDiverged
    from .train import train as run_training

    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun: rank 0 reports, the others train quietly
        console.quiet = True

    try:
        gan = load_spec(spec, loss)
        config = TrainConfig(
            backend=_installed_backend(backend),
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
    except (SpecError, DataError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
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
            result = run_training(gan, config, out, resume=resume, progress=progress)
        except TrainingDiverged as exc:
            err_console.print(f"[red]stopped:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except (SpecError, DataError, ValueError, OSError) as exc:
            raise _fail(str(exc)) from None
    for m in result.metrics:
        console.print(
            f"step {m['step']}: modes covered {m['modes_covered']}/{m['total_modes']}, "
            f"high-quality samples {m['high_quality_fraction']:.1%}"
        )
    console.print(f"trained {result.steps_done} steps; checkpoint {result.checkpoint}; samples, losses in {out}/")


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint or a parameter file (safetensors).")],
    backend: Annotated[str, typer.Option(help="The backend that draws: torch, tensorflow, jax, numpy.")] = "torch",
    noise: Annotated[
        Optional[Path], typer.Option(help="Noise (count, latent_dim) as .npy: the same z for any backend.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise when no --noise file is given.")] = 0,
    count: Annotated[int, typer.Option(min=1, help="Samples to draw when no --noise file is given.")] = 64,
    out: Annotated[Path, typer.Option(help="The samples G(z) as .npy (canonical layout, NHWC images).")] = Path(
        "samples.npy"
    ),
    png: Annotated[Optional[Path], typer.Option(help="Also draw them as a grid (or a 2-D scatter) here.")] = None,
    save_noise: Annotated[Optional[Path], typer.Option(help="Also write the noise used as .npy here.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="The backend's execution mode.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default: GPU when present.")] = None,
) -> None:
    """Draw G(z) from a checkpoint with any backend, from noise in a file or from a seed, so that
    two backends can draw from the same noise."""
    import io

    import numpy as np

    from ._io import atomic_write_bytes
    from .train import sample as draw

    try:
        z = np.load(noise, allow_pickle=False) if noise is not None else None
        name = _installed_backend(backend)
        z, images = draw(checkpoint, name, noise=z, seed=seed, count=count, mode=mode, device=device)
    except (SpecError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    for path, array in ((out, images), (save_noise, z)):
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, array)
            atomic_write_bytes(path, buf.getvalue())
    if png is not None:
        from .train import save_sample_image

        save_sample_image(images, png, f"{checkpoint.name} on {name}")
    console.print(f"{len(images)} samples of shape {images.shape[1:]} from {name} written to {out}")


@app.command()
def port(
    src: Annotated[
        Path, typer.Argument(help="A torch state_dict (.pt/.pth), Keras .weights.h5, Flax .msgpack, or ours.")
    ],
    spec: Annotated[str, typer.Option(help="Preset name or spec JSON file the weights belong to.")],
    to: Annotated[str, typer.Option(help="torch, tensorflow (Keras .weights.h5), jax (Flax msgpack), safetensors.")],
    out: Annotated[Path, typer.Option(help="The converted file.")],
    kind: Annotated[Optional[str], typer.Option(help="The source's form when its name does not say it.")] = None,
    networks: Annotated[
        Optional[str], typer.Option(help="generator, discriminator, or both (default: what the file holds).")
    ] = None,
    map_: Annotated[
        list[str], typer.Option("--map", help="NATIVE_NAME=CANONICAL_NAME, repeatable, where the order does not match.")
    ] = [],  # noqa: B006
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run source and target on the same noise.")
    ] = True,
) -> None:
    """Convert a checkpoint between stacks with the layouts right, then run the source and the
    converted model on the same inputs and print how far apart they are.

    Exit status: 0 converted (and agreeing within 1e-4 of the outputs' scale), 1 converted but
    disagreeing, 2 bad input (every mismatch named with both names and shapes).
    """
    from .port import PortError
    from .port import port as convert

    try:
        gan = load_spec(spec)
        mapping = dict(item.split("=", 1) for item in map_)
        parts = tuple(n.strip() for n in networks.split(",")) if networks else None
        result = convert(src, gan, to, out, kind=kind, networks=parts, mapping=mapping or None, check=verify)
    except (PortError, SpecError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    console.print(escape(result.summary()))
    console.print(f"written: {out}")
    worst = max((a.max_abs_diff / max(a.max_abs_output, 1e-12) for a in result.agreement), default=0.0)
    raise typer.Exit(0 if worst <= 1e-4 else 1)


@app.command()
def losscheck(
    target: Annotated[str, typer.Argument(help="Your loss: MODULE:FUNCTION or path/to/file.py:FUNCTION.")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="torch, tensorflow or jax: where it runs.")],
    loss: Annotated[str, typer.Option(help="The zoo loss it should equal (hinge, least_squares, wgan_gp, r1, ...).")],
    role: Annotated[str, typer.Option(help="d: fn(real_logits, fake_logits); g: fn(fake_logits); penalty.")],
    convention: Annotated[
        list[str], typer.Option(help="KEY=VALUE you follow on purpose (scale=0.5, reduction=sum, ...); repeatable.")
    ] = [],  # noqa: B006
    loss_param: Annotated[
        list[str], typer.Option(help="The zoo loss's own parameters: a=, b=, c=, d_scale=, penalty_weight=.")
    ] = [],  # noqa: B006
    inputs: Annotated[str, typer.Option(help="logits, or probabilities (your D ends in a Sigmoid).")] = "logits",
    dtypes: Annotated[str, typer.Option(help="Reduced precisions to run the ordinary case in ('' for none).")] = (
        "bfloat16,float16"
    ),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    seed: int = 0,
) -> None:
    """Cross-check your own GAN loss: run it in its framework on a battery of logits (or, for a
    penalty, a critic and batches), compare value and gradient with the float64 reference, and
    name the convention it follows when it differs.

    Exit status: 0 it matches (with the conventions you declared), 1 it differs, 2 bad input.
    """
    from .backends import BackendUnavailable
    from .losscheck import ConventionError, check_loss, load_function, parse
    from .losscheck.report import render, write_json

    try:
        fn = load_function(target)
        params = {k: float(v) for k, v in parse(loss_param).items()}
        reduced = tuple(d.strip() for d in dtypes.split(",") if d.strip())
        unknown = set(reduced) - {"bfloat16", "float16"}
        if unknown:
            raise SpecError(f"--dtypes takes bfloat16 and float16, got {sorted(unknown)}")
        report = check_loss(
            fn, loss, role=role, framework=framework, conventions=parse(convention), inputs=inputs,
            loss_params=params, dtypes=reduced, seed=seed, name=target,
        )  # fmt: skip
    except (SpecError, ConventionError, BackendUnavailable, ValueError, ImportError, OSError) as exc:
        raise _fail(str(exc)) from None
    render(report, console)
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"written: {json_out}")
    raise typer.Exit(0 if report.passed else 1)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
