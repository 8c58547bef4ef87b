"""Per-layer comparison: where, inside a network, two backends part.

When a ported model "gives different images", the output error says only that something is
wrong. Comparing every layer's output for the same input finds the first layer beyond tolerance:
everything before it agrees, so that layer (its weights' layout, its slope, its padding) is
where to look. Later layers inherit the error and say nothing new.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backends import Backend
from ..spec import GANSpec
from .measures import compare


@dataclass
class LayerRow:
    network: str
    index: int
    layer: str
    rel: float
    max_abs: float
    tol: float
    passed: bool
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.network} layer {self.index}: {self.layer}"


def layer_inputs(z: np.ndarray, real: np.ndarray) -> dict[str, np.ndarray]:
    """G sees the noise, D the real batch."""
    return {"generator": z, "discriminator": real}


def collect_activations(
    backend: Backend, inputs: dict[str, np.ndarray], training: bool = True
) -> dict[str, list[np.ndarray]]:
    """Every layer's output. In training mode by default: BatchNorm then normalises with the
    batch statistics that training uses (fresh running statistics would make it ~identity)."""
    return {net: backend.activations(net, x, training=training) for net, x in inputs.items()}


def compare_layers(
    spec: GANSpec,
    a: dict[str, list[np.ndarray]],
    b: dict[str, list[np.ndarray]],
    tol: float,
    names: tuple[str, str] = ("the first backend", "the second backend"),
) -> list[LayerRow]:
    """One row per layer of each network: the relative error of that layer's output."""
    rows = []
    for net, acts_a in a.items():
        for i, (layer, out_a, out_b) in enumerate(zip(spec.layers(net), acts_a, b[net])):
            rel, max_abs, note = compare(out_a, out_b, names)
            rows.append(
                LayerRow(net, i, layer.describe(), rel, max_abs, tol, bool(math.isfinite(rel) and rel <= tol), note)
            )
    return rows


def first_divergence(rows: list[LayerRow]) -> dict[str, LayerRow | None]:
    """Per network, the first layer whose output misses the tolerance (``None``: all agree)."""
    out: dict[str, LayerRow | None] = {}
    for row in rows:
        out.setdefault(row.network, None)
        if out[row.network] is None and not row.passed:
            out[row.network] = row
    return out


def layer_report(
    spec: GANSpec, a: Backend, b: Backend, z: np.ndarray, real: np.ndarray, tol: float
) -> tuple[list[LayerRow], dict[str, LayerRow | None]]:
    """Compare two live backends layer by layer on the same inputs (e.g. after a port)."""
    inputs = layer_inputs(z, real)
    rows = compare_layers(spec, collect_activations(a, inputs), collect_activations(b, inputs), tol, (a.name, b.name))
    return rows, first_divergence(rows)
