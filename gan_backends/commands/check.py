"""``gan-backends check``: parse, run the agreement job (:mod:`gan_backends.check`), print."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from .._io import check_output
from ..backends import FRAMEWORKS, canonical_name, get_backend
from ..presets import DEFAULT_PRESET, LOSS_PRESETS, load_spec
from ..sizing import check_fits, on_host
from ..spec import SpecError
from .common import console, err_console, fail, parse_device_option, parse_modes


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
    verbose: Annotated[
        Optional[bool],
        typer.Option(
            "--verbose/--quiet",
            help="--verbose: every per-tensor, layer and trajectory table before the summary. --quiet: the "
            "summary lists only the groups that fail (none when all pass). Either way the verdict lines print, "
            "and --json/--markdown hold every table.",
        ),
    ] = None,
) -> None:
    """Run every backend on the same parameters and inputs and compare each pair.

    Prints one compact table (per pair and quantity group: the worst error, its tolerance, the
    verdict, the first divergent layer), then a verdict line per pair ("torch vs numpy: PASS").

    Exit status: 0 when every pair agrees within tolerance, 1 when one does not, 2 on bad input.
    TensorFlow's start-up log lines are hidden; TF_CPP_MIN_LOG_LEVEL=0 shows them.
    """
    from ..check import run_check
    from ..check.agreement import choose_backends, install_hint
    from ..check.report import render, write_reports

    try:
        gan = load_spec(spec, loss)
        numerics = gan.numerics
        if dtype or precision:
            from ..spec import Numerics

            numerics = Numerics(dtype=dtype or numerics.dtype, matmul_precision=precision or numerics.matmul_precision)  # type: ignore[arg-type]
            gan = gan.replace(numerics=numerics)
        for option, path in (("--json", json_path), ("--markdown", markdown_path), ("--plot", plot_path)):
            if path is not None:
                check_output(path, what=option, inputs=(spec,))
        check_fits(gan, batch_size if on_host(device) else None)
        modes = parse_modes(mode)
        requested = None if backends is None else [canonical_name(b) for b in backends.split(",") if b.strip()]
        names, missing = choose_backends(requested)
        if parse_device_option(device) is not None:  # a device this machine lacks: named now, not as a crash
            for name in names:
                get_backend(name).select_device(device)
        if missing:
            err_console.print(f"[yellow]not installed:[/] {', '.join(missing)} " + escape(f"({install_hint(missing)})"))
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None

    if framework_defaults:
        from ..check import defaults_report
        from ..check.framework_defaults import framework_defaults_report

        frameworks = [n for n in names if n in FRAMEWORKS]
        rows = framework_defaults_report(gan, frameworks, steps=steps, batch_size=batch_size, seed=seed)
        defaults_report.render(rows, gan.name, steps, console)
        if json_path is not None:
            defaults_report.write_json(rows, json_path)
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
    render(report, console, detail={None: "summary", True: "full", False: "failures"}[verbose])
    for line in write_reports(report, json_path=json_path, markdown_path=markdown_path, plot_path=plot_path):
        console.print(line)
    raise typer.Exit(0 if report.passed else 1)
