"""How two tensors are compared: one error measure for every quantity the check reports."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..params import ParamTree
from ..spec import NETWORKS, GANSpec


def compare(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("the first backend", "the second backend")
) -> tuple[float, float, str]:
    """``(||a - b|| / ||b||, max|a - b|, note)`` in float64.

    ``b`` is the yardstick (the float64 reference when one is in the pair); where ``||b|| = 0``
    the error is absolute. NaN or Inf anywhere gives NaN and a note naming the side(s), and a
    shape mismatch gives NaN and both shapes: neither can pass a tolerance.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.nan, math.nan, f"shape {a.shape} vs {b.shape}"
    bad = [side for side, x in zip(names, (a, b)) if not np.all(np.isfinite(x))]
    if bad:
        return math.nan, math.nan, f"non-finite values in {' and '.join(bad)}"
    diff = a - b
    norm_b = float(np.linalg.norm(b))
    err = float(np.linalg.norm(diff))
    rel = err / norm_b if norm_b > 0 else err
    return rel, float(np.max(np.abs(diff))) if diff.size else 0.0, ""


def flatten_networks(tree: ParamTree) -> dict[str, np.ndarray]:
    """Each network's parameters as one float64 vector, tensors in sorted name order: the same
    whatever order a backend lists them in (torch lists a module's parameters in its registration
    order, ``gamma`` of a SelfAttention before or after its kernels)."""
    return {
        net: np.concatenate(
            [np.asarray(tree[k], dtype=np.float64).ravel() for k in sorted(tree) if k.startswith(net + ".")]
        )
        for net in NETWORKS
    }


#: The key under which the check tracks G's moving average (``spec.ema``) beside the networks.
EMA_KEY = "generator_ema"


def tracked(spec: GANSpec) -> tuple[str, ...]:
    """What a trajectory compares: each network's parameters, and G's moving average where the
    spec keeps one (judged like a network: the same tolerances, the same rounding rules)."""
    return NETWORKS + ((EMA_KEY,) if spec.ema is not None else ())


def flatten_state(backend: Any) -> dict[str, np.ndarray]:
    """:func:`flatten_networks` of the backend's parameters, with :data:`EMA_KEY`: its
    ``get_ema()`` as one float64 vector in the same order, where the spec keeps one."""
    out = flatten_networks(backend.get_params())
    if backend.spec.ema is not None:
        ema = backend.get_ema()
        out[EMA_KEY] = np.concatenate([np.asarray(ema.params[k], dtype=np.float64).ravel() for k in sorted(ema.params)])
    return out


def finite(x: float) -> float | None:
    """A float for strict JSON: NaN and Inf become ``None``."""
    return x if math.isfinite(x) else None
