"""Run a user's loss in its own framework and read its value and gradients back as float64.

Each framework package's ``losscheck`` module (``gan_backends/backends/<framework>/losscheck.py``),
imported on first use (the core never imports a framework), exposes::

    IMAGE_LAYOUT: str                                        # "nchw" (torch) or "nhwc"
    run_logits(fn, inputs, order, dtype, probabilities) -> Evaluation
    run_penalty(fn, case, dtype, call) -> Evaluation        # fn(critic, *batches named by call)

``inputs`` are float64 NumPy arrays; the runner casts them to ``dtype``, differentiates the
user's scalar with the framework's own autodiff (w.r.t. the logits; for a penalty w.r.t. the
critic's parameters and the real and fake batches) and returns what it actually fed in, so
the float64 reference is evaluated on exactly the cast values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ..backends import FRAMEWORKS, BackendUnavailable, canonical_name, load_part


@dataclass
class Evaluation:
    """What the user's function gave: its value, gradients (None where the graph does not reach
    that input) and the inputs as cast; or the error it raised."""

    value: float | None = None
    grads: dict[str, np.ndarray | None] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def get_runner(framework: str) -> ModuleType:
    """The runner module of ``framework`` (torch, tensorflow, jax; aliases accepted)."""
    name = canonical_name(framework)
    if name not in FRAMEWORKS:
        raise ValueError(f"losscheck runs a loss in one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    return load_part(name, "losscheck")  # a missing framework raises BackendUnavailable naming the extra


def scalar_error(shape: tuple[int, ...]) -> str:
    return (
        f"the loss returned an array of shape {shape}, not a scalar: reduce it (e.g. .mean()) "
        "inside the function; losscheck compares the scalar a trainer calls backward on"
    )


__all__ = ["BackendUnavailable", "Evaluation", "get_runner", "scalar_error"]
