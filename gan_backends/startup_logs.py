"""Keep the frameworks' start-up log lines off the terminal, unless the user asks for them.

TensorFlow's C++ runtime writes log lines to the process's stderr as it loads: the oneDNN notice
(``oneDNN custom operations are on...``), absl's ``All log messages before absl::InitializeLog()
is called are written to STDERR``, CUDA-not-found and duplicate-factory warnings. They tell a user
running ``gan-backends check`` nothing about the check. ``TF_CPP_MIN_LOG_LEVEL`` (0 all, 1 no
INFO, 2 no WARNING either, 3 no ERROR either) silences TensorFlow's own logging, but the lines
absl writes before ``absl::InitializeLog()`` ignore it (TensorFlow 2.21 prints the oneDNN
notice at every level), so :func:`quiet_framework_logs` also passes what C code writes to stderr
through a small filter process that drops log lines below that level.

A user's own ``TF_CPP_MIN_LOG_LEVEL`` always wins: ``TF_CPP_MIN_LOG_LEVEL=0 gan-backends check``
shows every line again (no filter runs). Only lines in the C++ log format are ever dropped;
Python's own stderr (tracebacks, progress bars, warnings) does not pass through the filter.

This module imports the standard library only: the filter process runs it as a script.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys

#: The variable TensorFlow reads, and the level set where the user has set none.
LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"

#: absl's ``I0131 12:00:00.123456  9000 port.cc:153] ...`` (before ``absl::InitializeLog()`` the
#: time is ``00:00:<epoch seconds>``), and TensorFlow's own ``2024-01-31 12:00:00.123456: W
#: tensorflow/...cc:42] ...``; the letter is the severity.
_LOG_LINE = re.compile(
    r"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) [^\s\]]+:\d+\])"
)
_PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
#: ERROR lines that report no error in the user's computation, dropped like warnings (at level 2
#: and above): grappler's remapper (the pass that fuses Conv2D+BiasAdd+Add+Relu and the like) logs
#: ``meta_optimizer.cc:...] remapper failed: INVALID_ARGUMENT: Mutation::Apply error: fanout
#: 'Relu_7' exist for missing node 'add_3'`` on graphs where an add of two branches feeds a ReLU
#: (every residual block), and gives up its fusions for that graph; TensorFlow runs the graph
#: unfused, and its results are its own either way (``check`` compares them).
_HARMLESS_ERRORS = (re.compile(r"meta_optimizer\.cc:\d+\] remapper failed: "),)
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}

_filter: subprocess.Popen | None = None


def min_level() -> int:
    """The level in force (0 when unset or not a number: nothing is dropped)."""
    try:
        return int(os.environ.get(LEVEL_VAR, "0"))
    except ValueError:
        return 0


def is_dropped(line: str, level: int) -> bool:
    """Whether ``line`` is a C++ log line below ``level`` (or absl's pre-init notice above them)."""
    if level <= 0:
        return False
    if line.startswith(_PRE_INIT):
        return True
    match = _LOG_LINE.match(line)
    if match is None:
        return False
    severity = _SEVERITY[match.group(1) or match.group(2)]
    if severity == _SEVERITY["E"] and any(p.search(line) for p in _HARMLESS_ERRORS):
        severity = _SEVERITY["W"]
    return severity < level


def quiet_framework_logs() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` (unless the user has) and filter what C code writes to
    stderr, for this process and the processes it starts. Call before any framework is imported.

    File descriptor 2 becomes a pipe into the filter process, which writes what it keeps to the
    original stderr; ``sys.stderr`` is rebound to the original, so Python's output, and whether
    it is a terminal, are unchanged. At exit descriptor 2 is restored.
    """
    global _filter
    os.environ.setdefault(LEVEL_VAR, DEFAULT_LEVEL)
    level = min_level()
    if level <= 0 or _filter is not None or not sys.executable:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to keep clean
        return
    script = [sys.executable, "-I", "-S", os.path.abspath(__file__), str(level)]
    _filter = subprocess.Popen(script, stdin=subprocess.PIPE, stdout=original, stderr=original)
    assert _filter.stdin is not None
    os.dup2(_filter.stdin.fileno(), 2)
    _filter.stdin.close()  # descriptor 2 now holds this process's only write end
    encoding, errors = sys.stderr.encoding, sys.stderr.errors
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding=encoding, errors=errors)
    atexit.register(_restore, original)


def _restore(original: int) -> None:
    """Put the original stderr back (closing the pipe: the filter sees its end) and let the
    filter write what it still holds."""
    try:
        sys.stderr.flush()
        os.dup2(original, 2)
        if _filter is not None:
            _filter.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):  # a child still writing: it goes on alone
        pass


def _pump(level: int) -> None:
    """The filter process: stdin to stdout, line by line, without the dropped lines."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command, which exits and closes us
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    for raw in src:
        if is_dropped(raw.decode("utf-8", "replace"), level):
            continue
        try:
            dst.write(raw)
            dst.flush()
        except OSError:  # stderr gone: keep draining, so that no writer blocks
            pass


if __name__ == "__main__":
    _pump(int(sys.argv[1]))
