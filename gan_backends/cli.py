"""The ``gan-backends`` command: ``info``, ``specs``, ``check``, ``bench``, ``train``, ``sample``,
``discriminate``, ``spec-from``, ``port``, ``losscheck``.

Each command parses its options, calls its job and prints: what a job computes or writes lives in
the job (:mod:`.check`, :mod:`.bench`, :mod:`.train`, :mod:`.port`, :mod:`.losscheck`).

Every command keeps one exit-code contract (:mod:`.commands.contract`): 0 done, 1 the measured
answer is "no", 2 bad input, 3 internal error (traceback in a log file), 130 interrupted.

TensorFlow's start-up log lines (oneDNN, absl, CUDA-not-found) are kept off the terminal
(:mod:`.startup_logs`); ``TF_CPP_MIN_LOG_LEVEL=0 gan-backends ...`` shows them.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .backends import REGISTRY
from .commands.bench import bench
from .commands.check import check
from .commands.common import console
from .commands.common import fail as _fail
from .commands.contract import keeps_contract
from .commands.losscheck import losscheck
from .commands.port import port
from .commands.sample import discriminate, sample
from .commands.spec_from import spec_from
from .commands.train import train
from .environment import backend_status
from .presets import PRESETS, get_preset
from .spec import SpecError
from .startup_logs import quiet_framework_logs

app = typer.Typer(add_completion=False, no_args_is_help=True, help="One GAN spec, three frameworks, proven equal.")


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


# Registered here, in this order, so that --help lists the commands as the README does; each
# keeps the exit-code contract.
for command in (info, specs, check, bench, train, sample, discriminate, spec_from, port, losscheck):
    app.command(name=command.__name__.replace("_", "-"))(keeps_contract(command))


def main() -> None:  # console-script entry point
    quiet_framework_logs()  # before any framework is imported
    app()


if __name__ == "__main__":
    main()
