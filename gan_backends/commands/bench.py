"""``gan-backends bench``: parse, run the sweep (:mod:`gan_backends.bench`), print and write."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..backends import canonical_name
from ..errors import Interrupted
from ..interrupts import sigterm_as_interrupt
from ..presets import LOSS_PRESETS, load_spec
from ..spec import SpecError
from .common import console, err_console, fail, parse_csv, parse_modes


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
    rerun_disturbed: Annotated[
        bool,
        typer.Option("--rerun-disturbed", help="Run recorded runs that another process competed with again."),
    ] = False,
) -> None:
    """Time the training step of every backend × mode × spec × batch × precision, each run in its
    own process; write a ranked table, JSON, CSV, Markdown and plots. Re-running resumes.

    Exit status: 0 when every run produced a timing, 1 when one failed (recorded), 2 on bad input,
    130 interrupted (the tables of what finished written; the same command resumes).
    """
    import sys

    from ..bench import Sweep, default_sweep, run_sweep
    from ..bench.outputs import results_meta, write_outputs
    from ..bench.report import progress_line, render
    from ..bench.sweep import RESULTS, read_records
    from ..environment import nvidia_gpus

    try:
        if sweep_file is not None:
            sweep = Sweep.load(sweep_file)
        else:
            sweep = default_sweep("cpu" if (device or ("cuda" if nvidia_gpus() else "cpu")) == "cpu" else "gpu")
        sweep = sweep.with_overrides(
            backends=None if backends is None else [canonical_name(b) for b in backends.split(",") if b.strip()],
            modes=parse_modes(mode),  # BACKEND=MODE narrows (or adds) that backend's modes
            warmup=warmup,
            repeats=repeats,
            min_block_s=min_block,
            specs=parse_csv(spec),
            batch_sizes=parse_csv(batch_sizes, int),
            precisions=parse_csv(precisions),
            inputs=parse_csv(inputs),
            devices=parse_csv(devices, int),
            scaling=parse_csv(scaling),
            loss=loss,
            device=device,
            threads=threads,
            timeout_s=timeout,
        )
        for name in sweep.specs:
            load_spec(name, sweep.loss)  # a bad spec fails here, not in every run
        runs = sweep.runs()
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None

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
            finished.append(record)

        finished: list[dict] = []
        try:
            with sigterm_as_interrupt():
                records = run_sweep(
                    runs,
                    out,
                    timeout_s=sweep.timeout_s,
                    resume=not fresh,
                    retry_failed=retry_failed,
                    rerun_disturbed=rerun_disturbed,
                    on_start=on_start,
                    on_record=on_record,
                )
        except KeyboardInterrupt:
            # The file is the truth: a record is appended before on_record sees it, and the
            # interrupt can land between the two (then `finished` lacks it).
            keys = {run.key for run in runs}
            recorded = [r for r in read_records(Path(out) / RESULTS) if r.get("key") in keys]
            seen = {r.get("key") for r in finished}
            finished += [r for r in recorded if r["key"] not in seen]
            kept = f"{len(finished)} of {len(runs)} runs are in {out}/results.jsonl"
            if finished:
                written = write_outputs(finished, out, results_meta(sweep, sys.argv[1:]))
                kept += f" and in the tables of what finished ({', '.join(written.files)})"
            raise Interrupted(f"{kept}; the same command resumes from there") from None
    render(records, console)
    written = write_outputs(records, out, results_meta(sweep, sys.argv[1:]))
    for what, why in written.warnings:
        err_console.print(f"[yellow]{what}:[/] {escape(why)}")
    console.print(f"written: {out}/{', '.join(written.files)}")
    failed = [r for r in records if r["status"] not in ("ok", "unavailable")]
    raise typer.Exit(1 if failed else 0)
