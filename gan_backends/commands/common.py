"""What every command shares: the two consoles, the error exit, and parsing of shared options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..backends import canonical_name, is_available, manifest
from ..environment import backend_status
from ..errors import parse_device
from ..spec import SpecError

console = Console()
err_console = Console(stderr=True)


def installed_backend(name: str) -> str:
    """The registry name of ``name``, or a SpecError naming the extra that installs it."""
    key = canonical_name(name)
    if not is_available(key):
        raise SpecError(backend_status(key).detail)
    return key


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr; the exit to raise (status 2: bad input)."""
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)  # paths stay whole: copyable
    return typer.Exit(code)


def parse_modes(items: list[str]) -> dict[str, str]:
    """``--mode BACKEND=MODE`` options as backend name -> mode."""
    modes = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"--mode takes BACKEND=MODE, got {item!r}")
        backend, mode = item.split("=", 1)
        name, mode = canonical_name(backend), mode.strip()
        known = manifest(name).modes
        if mode not in known:
            raise SpecError(f"--mode {item}: {name} has no mode {mode!r}; its modes: {', '.join(known)}")
        modes[name] = mode
    return modes


def parse_device_option(value: Optional[str]) -> Optional[str]:
    """``--device`` checked for its form (``cpu``, ``cuda``, ``cuda:N``) before any work."""
    if value is not None:
        parse_device(value)
    return value


def parse_csv(value: Optional[str], cast: Callable[[str], object] = str) -> Optional[tuple]:
    """A comma-separated option as a tuple (``None`` when not given)."""
    return None if value is None else tuple(cast(v.strip()) for v in value.split(",") if v.strip())
