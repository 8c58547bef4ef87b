"""The ``gan-backends`` command: ``info``, ``specs``, ``check``."""

from __future__ import annotations

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
from .presets import DEFAULT_PRESET, LOSS_PRESETS, PRESETS, get_preset, with_loss
from .spec import GANSpec, SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="One GAN spec, three frameworks, proven equal.")
console = Console()
err_console = Console(stderr=True)


def load_spec(name_or_path: str, loss: str | None = None) -> GANSpec:
    """A preset name, or the path of a spec JSON file; ``loss`` a name of ``LOSS_PRESETS``
    (a preset is rebuilt for it, so e.g. dcgan's critic drops BatchNorm for a penalty)."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {name_or_path!r} does not exist")
        gan = GANSpec.load(path)
        return with_loss(gan, loss) if loss else gan
    return get_preset(name_or_path, **({"loss": loss} if loss else {}))


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


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
