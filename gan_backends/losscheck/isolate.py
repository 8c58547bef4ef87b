"""The user's loss at arm's length: ``gan-backends losscheck`` runs it in a child process.

The function comes from the user's file, and a file can do anything: ``raise SystemExit(0)`` (a
pass, by the exit codes, if it ended this process), ``os._exit(0)``, loop forever, crash the
interpreter. So the command imports and checks it in a spawned child, which announces each call
of the function over a pipe; the parent waits at most ``timeout`` seconds per call, kills a
child that overruns, and reports what happened as exactly that: a hang (in which case), an exit
(with its status), a crash (with its signal), a file that does not import (its error). The
child renders the report and writes ``--json`` itself; the parent prints what it sends.

The Python API (:func:`~gan_backends.losscheck.check_loss`) runs in the caller's process: a
caller who imports their own function takes responsibility for it.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import signal
import traceback
from dataclasses import dataclass
from typing import Any

#: Seconds one call of the user's function may take (the CLI's default ``--timeout``).
DEFAULT_TIMEOUT_S = 60.0
#: Seconds the child may take to import the user's file and the framework (TensorFlow's import
#: alone takes 8 s on a 2-core machine), whatever the per-call limit.
LOAD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Outcome:
    """What the child reported. ``kind``: ``done`` (``passed``, ``text``), ``bad_input`` (the
    options, or a file that does not load), ``user_code`` (the function raised while checked), ``hang``,
    ``exited``, ``crashed``."""

    kind: str
    message: str = ""
    passed: bool = False
    text: str = ""


def run_isolated(request: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S) -> Outcome:
    """Run :func:`_child` on ``request`` (the command's options) in a spawned process."""
    ctx = mp.get_context("spawn")
    parent, child_end = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child_end, request), daemon=True)
    process.start()
    child_end.close()
    case, limit = "loading the function and its framework", max(timeout, LOAD_TIMEOUT_S)
    try:
        while True:
            if not parent.poll(limit):
                process.kill()
                return Outcome("hang", f"your loss did not return within {limit:g} s ({case}); the check was stopped")
            try:
                message = parent.recv()
            except EOFError:  # the child is gone without a word
                return _vanished(process, case)
            if message[0] == "case":
                case, limit = f"case {message[1]}", timeout
                continue
            return Outcome(*message)
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
        parent.close()


def _vanished(process: Any, case: str) -> Outcome:
    process.join(5)
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return Outcome("crashed", f"the process running your loss died of {name} during {case}")
    return Outcome(
        "exited", f"your loss ended the process (exit status {code}) during {case}, before the check finished"
    )


def _child(conn: Any, request: dict[str, Any]) -> None:
    """In the spawned process: load, check, render; send one :class:`Outcome`'s fields."""
    from rich.console import Console

    from ..errors import input_errors
    from .check import check_loss, load_function
    from .report import render, write_json

    def announce(case: str) -> None:
        conn.send(("case", case))

    try:
        try:
            fn = load_function(request.pop("target_path"))
        except input_errors() as exc:
            conn.send(("bad_input", str(exc)))
            return
        except BaseException as exc:  # noqa: BLE001 - the user's file: a syntax error, an exit at import
            conn.send(("bad_input", f"your loss's file failed to load: {_describe(exc)}"))
            return
        json_out, width, colour = request.pop("json_out"), request.pop("width"), request.pop("colour")
        try:
            report = check_loss(fn, on_call=announce, **request)
        except input_errors() as exc:
            conn.send(("bad_input", str(exc)))
            return
        except BaseException as exc:  # noqa: BLE001 - SystemExit and the like from the user's code
            conn.send(("user_code", f"your loss raised {_describe(exc)} while it was checked"))
            return
        buffer = io.StringIO()
        render(
            report, Console(file=buffer, width=width, force_terminal=colour, color_system="auto" if colour else None)
        )
        if json_out is not None:
            write_json(report, json_out)
            buffer.write(f"written: {json_out}\n")
        conn.send(("done", "", report.passed, buffer.getvalue()))
    finally:
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}({', '.join(map(repr, exc.args))}){where}"
