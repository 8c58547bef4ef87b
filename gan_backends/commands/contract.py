"""The exit-code contract of every command, kept in one place: :func:`keeps_contract` wraps each.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      done (and, for ``check``/``port``/``losscheck``, agreeing)
1      the measured answer is "no": a pair disagrees, training went non-finite, a loss differs
2      bad input or usage: the path, field or option named with the reason, no traceback
3      an internal error: a bug of ours; the traceback goes to a log file whose path is printed
130    interrupted (SIGINT/SIGTERM), with what was kept and the command that continues
=====  ==========================================================================================

A command exits 0 or 1 itself (``typer.Exit``); everything else that escapes it is sorted here.
``GAN_BACKENDS_TRACEBACK=1`` also prints an internal error's traceback on stderr.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from ..errors import Interrupted, NonFiniteValues, input_errors
from .common import err_console, fail

EXIT_DONE, EXIT_NO, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` of an OSError on a user's path (both paths of a rename)."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {exc.strerror or exc}"


def crash_log(command: str, exc: BaseException) -> str:
    """Write ``exc``'s traceback to a fresh log file; its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"gan-backends-{command}-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write("".join(traceback.format_exception(exc)))
    return path


def keeps_contract(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with every escaping exception turned into its exit status (module docstring)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Interrupted as exc:
            err_console.print(f"[yellow]interrupted:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; nothing of this run was written")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except NonFiniteValues as exc:  # a finding: the measured answer is "no"
            err_console.print(f"[red]non-finite:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_NO) from None
        except input_errors() as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path: ours, not the user's
                raise _internal(command.__name__, exc) from None
            raise fail(describe_os_error(exc), EXIT_BAD_INPUT) from None
        except Exception as exc:  # noqa: BLE001 - the contract's last line
            raise _internal(command.__name__, exc) from None

    return run


def _internal(command: str, exc: BaseException) -> typer.Exit:
    path = crash_log(command, exc)
    if os.environ.get("GAN_BACKENDS_TRACEBACK") == "1":
        err_console.print(escape("".join(traceback.format_exception(exc))), highlight=False)
    err_console.print(
        f"[red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')}\n"
        f"This is a bug in gan-backends, not in your input. The traceback is in {escape(path)}; "
        "please attach it to a report.",
        soft_wrap=True,
    )
    return typer.Exit(EXIT_INTERNAL)
