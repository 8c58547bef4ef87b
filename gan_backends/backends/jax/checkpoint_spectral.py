"""``flax.linen.SpectralNorm``'s variables in a Flax file, for :func:`.checkpoint.read`.

Flax 0.12 (flax/linen/normalization.py, ``SpectralNorm._spectral_normalize``) keeps the wrapped
layer's ``kernel`` and ``bias`` in ``params`` where the wrapped module lives, and puts two
variables per normalised kernel in the wrapper's ``batch_stats``, under one key each with
slashes in it: ``"<layer name>/kernel/u"`` ``(1, out)`` and ``"<layer name>/kernel/sigma"``
``()``. Built inside a compact ``__call__`` (``nn.SpectralNorm(nn.Conv(...))``) the wrapped
module is the caller's ``Conv_0`` (``params/Conv_0/kernel``, ``batch_stats/SpectralNorm_0/
Conv_0/kernel/u``); built outside any module it is the wrapper's ``layer_instance``
(``params/layer_instance/kernel``). ``sigma`` is the σ of the last update, which inference does
not read (it iterates again from ``u``), so it is left out. The spec's ``sn_u``, ``sn_v`` are
derived from ``u`` and the kernel once the spec layer gives ``n_power_iterations`` and ``eps``
(:func:`gan_backends.port.spectral_vectors.flax_vectors`): the tensors carry ``derive="flax"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...port.native import PortError

_VARIABLE = re.compile(r"(?P<layer>.+)/(?P<var>[^/]+)/(?P<kind>u|sigma)")


#: ``(wrapper path, layer name parts) -> (file name of u, u)``.
Found = dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, np.ndarray]]


def split_stats(batch_stats: Mapping) -> tuple[dict, Found]:
    """``(batch_stats without SpectralNorm's variables, the u found)``. A normalised variable
    other than a kernel is refused."""
    found: Found = {}

    def walk(tree: Mapping, path: tuple[str, ...]) -> dict:
        kept: dict[str, Any] = {}
        for key, value in tree.items():
            key = str(key)
            match = _VARIABLE.fullmatch(key) if not isinstance(value, Mapping) else None
            if match is None:
                kept[key] = walk(value, (*path, key)) if isinstance(value, Mapping) else value
                continue
            name = "/".join(("batch_stats", *path, key))
            if match["var"] != "kernel":
                raise PortError(f"flax variable {name}: SpectralNorm of {match['var']!r}; the spec normalises kernels")
            if match["kind"] == "u":
                found[(path, tuple(match["layer"].split("/")))] = (name, np.asarray(value))
        return kept

    return walk(batch_stats, ()), found


def place(found: Found, params: Mapping) -> dict[tuple[str, ...], tuple[str, np.ndarray]]:
    """Each ``u`` keyed by the ``params`` module that holds its kernel: the wrapped module under
    the wrapper (``layer_instance``) or beside it (the caller's ``Conv_0``)."""

    def has_kernel(module: tuple[str, ...]) -> bool:
        node: Any = params
        for part in module:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return isinstance(node, Mapping) and "kernel" in node

    placed: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
    for (wrapper, layer), (name, u) in found.items():
        module = next((m for m in [(*wrapper, *layer), (*wrapper[:-1], *layer)] if has_kernel(m)), None)
        if module is None:
            raise PortError(f"flax variable {name}: no params kernel of the layer it normalises")
        if module in placed:
            raise PortError(f"flax variable {name}: a second u for params {'/'.join(module)}")
        placed[module] = (name, u.reshape(-1))
    return placed


__all__ = ["place", "split_stats"]
