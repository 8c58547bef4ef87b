"""What a job raises when it stops early on the user's side of the line, for the CLI's exit codes.

The bad-input errors live beside what they check (:class:`~gan_backends.spec.SpecError`,
``DataError``, ``PortError``, ...); these two belong to no single module:

- :class:`DeviceUnavailable`: a device name no framework knows (``tpu``), or one this machine
  lacks (``cuda`` on a CPU build) -- bad input, exit status 2;
- :class:`Interrupted`: SIGINT or SIGTERM arrived and the job stopped at a safe point, keeping
  its work; the message says what was kept and the command that continues -- exit status 130.
"""

from __future__ import annotations

from .spec import SpecError


class DeviceUnavailable(SpecError):
    """The requested device does not exist here (or is not a device name at all)."""


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal at a safe point; ``str(exc)`` says what was kept and how to go on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NonFiniteValues(ArithmeticError):
    """Weights, inputs or outputs hold NaN or Inf: a finding (exit status 1), the tensors named."""


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user's input is wrong" (each names what and why)."""
    from .backends import BackendUnavailable
    from .backends.base import ModeUnavailable
    from .data import DataError
    from .losscheck.conventions import ConventionError
    from .port.native import PortError

    return (SpecError, DataError, PortError, ConventionError, ModeUnavailable, BackendUnavailable)


#: The device names a command accepts: a kind, optionally ``:index``.
DEVICE_KINDS = ("cpu", "cuda", "gpu")


def parse_device(requested: str) -> tuple[str, int | None]:
    """``cpu`` / ``cuda`` / ``cuda:1`` / ``gpu:0`` as (kind, index); ``gpu`` means ``cuda``."""
    name = requested.strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()):
        raise DeviceUnavailable(f"unknown device {requested!r}; devices: cpu, cuda, cuda:N (gpu is cuda)")
    return ("cuda" if kind == "gpu" else kind), (int(index) if index else None)


class OutputRefused(SpecError):
    """An output path that cannot be written, or whose writing would destroy an input or a
    user's file; refused before any work is done."""
