"""How much memory a spec needs, known before anything is allocated.

A spec can be valid and still not fit this machine: a 10⁹-unit Dense passes validation and then
fails allocating 60 GiB deep inside NumPy or a framework. :func:`check_fits` refuses it first,
naming the layer that takes the most, against the memory available (``MemAvailable`` of
``/proc/meminfo`` where there is one) or a limit the user sets (``GAN_BACKENDS_MEMORY_LIMIT``, a
number of bytes with an optional ``K``/``M``/``G``/``T`` suffix).

The estimate is a floor, never a guess from above: the parameters drawn in float64 and cast
(:func:`~gan_backends.params.init_params`), and for a step their gradients and every layer's
output for the batch once. Every backend holds at least that, so a spec refused here could not
have run; one that passes may still need several times more (optimiser slots, the framework's
own copies, saved activations).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spec import NETWORKS, GANSpec, SpecError

LIMIT_VARIABLE = "GAN_BACKENDS_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class LayerSize:
    """One layer's share of the floor: its parameters and its output for one sample."""

    label: str  # e.g. "generator layer 3 Dense(units=1000000000)"
    parameters: int
    output_values: int


def layer_sizes(spec: GANSpec) -> list[LayerSize]:
    """Parameters and per-sample output values of every layer, from the shapes alone."""
    sizes = []
    for net in NETWORKS:
        for i, (layer, (in_shape, out_shape)) in enumerate(zip(spec.layers(net), spec.layer_shapes(net))):
            count = sum(math.prod(shape) for shape in layer.param_shapes(in_shape).values())
            sizes.append(LayerSize(f"{net} layer {i} {layer.describe()}", count, math.prod(out_shape)))
    return sizes


def floor_bytes(spec: GANSpec, batch: int | None = None) -> tuple[int, LayerSize]:
    """The floor of the module docstring, and the layer that contributes the most to it."""
    itemsize = np.dtype(spec.numerics.dtype).itemsize
    sizes = layer_sizes(spec)
    per_layer = [
        s.parameters * (8 + itemsize + (itemsize if batch else 0)) + (batch or 0) * s.output_values * itemsize
        for s in sizes
    ]
    heaviest = sizes[int(np.argmax(per_layer))]
    return int(sum(per_layer)), heaviest


def memory_limit() -> int | None:
    """The user's limit (:data:`LIMIT_VARIABLE`), else the host memory available, else None."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if text:
        found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text, re.IGNORECASE)
        if not found:
            raise SpecError(f"{LIMIT_VARIABLE}={text!r}: a number of bytes with an optional K, M, G or T")
        return int(float(found.group(1)) * _UNITS[found.group(2).upper()])
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def on_host(device: str | None) -> bool:
    """Whether a run on ``device`` keeps its activations in host memory: a CPU, or the default
    device on a machine where ``nvidia-smi`` sees no GPU."""
    if device is not None:
        return device.strip().lower().startswith("cpu")
    from .environment import nvidia_gpus

    return not nvidia_gpus()


def check_fits(spec: GANSpec, batch: int | None = None) -> None:
    """Refuse ``spec`` (and a step on ``batch`` samples) when its floor exceeds the limit,
    naming the heaviest layer; a :class:`SpecError`, before anything is allocated."""
    limit = memory_limit()
    if limit is None:
        return
    need, heaviest = floor_bytes(spec, batch)
    if need > limit:
        source = LIMIT_VARIABLE if os.environ.get(LIMIT_VARIABLE, "").strip() else "available memory"
        step = f" and a step on {batch} samples" if batch else ""
        raise SpecError(
            f"spec {spec.name!r}{step} needs at least {_gib(need)}, more than the {_gib(limit)} of {source}; "
            f"the largest share is {heaviest.label} ({heaviest.parameters:,} parameters, "
            f"{heaviest.output_values:,} output values per sample)"
        )
