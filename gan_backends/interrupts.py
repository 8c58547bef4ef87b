"""Stop at a safe point on SIGINT/SIGTERM instead of dying mid-write.

A long job (a training loop) asks :func:`stop_requests` for a flag and looks at it between
steps: the first signal only sets it, so the job finishes its step, keeps its work and raises
:class:`~gan_backends.errors.Interrupted`; a second signal interrupts at once (the user means it).
Outside the main thread signals cannot be caught; the flag then never rises and the default
behaviour stays.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopRequest:
    """Set by the first SIGINT or SIGTERM; ``signal_name`` says which."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set the yielded flag while the block runs; the handlers before are
    restored after it."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.requested:  # the second one: stop now
            raise KeyboardInterrupt
        request.signal_name = signal.Signals(signum).name

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs, as SIGINT does: a job that keeps
    its work on Ctrl-C keeps it when a scheduler terminates it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
