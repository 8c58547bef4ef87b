"""Verification against the user's own model: their model with the source weights, and ours.

:func:`~gan_backends.port.verify.verify` proves the conversion (the spec's network holding the
source's arrays computes what the target computes), not the spec: a spec with Keras' BatchNorm
eps written as torch's passes it. Here the user's model itself runs, its weights loaded from
the source file by its own framework and its own keys, in inference mode, against the converted
model in the target on the same inputs. Where they part, each layer's output of the user's
model (its package's ``run_model``) is held against the float64 reference's activations of the
spec, and the first layer that differs is named with the error there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import load_part
from ..backends.numpy.network import Network
from ..params import ParamTree
from ..spec import GANSpec, Sigmoid, SpecError, layer_at
from .native import NativeCheckpoint, canonical_kind, state_layers
from .spec_from import framework_of, read_network
from .verify import Agreement, native_outputs


def _aligned(outputs: list[np.ndarray], layers: tuple, spec_layers: int) -> list[np.ndarray]:
    """The user's per-layer outputs as the spec's discriminator head has them (see
    :func:`~gan_backends.port.spec_from.spec_from_models`): a final Sigmoid left to the loss,
    a ``(1, 1, 1)`` map flattened."""
    if layers and isinstance(layers[-1], Sigmoid) and spec_layers < len(outputs):
        outputs = outputs[:-1]
    if outputs and outputs[-1].shape[1:] == (1, 1, 1):
        outputs = [*outputs, outputs[-1].reshape(len(outputs[-1]), 1)]
    return outputs


def first_divergence(
    spec: GANSpec, net: str, tree: ParamTree, x: np.ndarray, theirs: list[np.ndarray], tol: float
) -> str:
    """Where the spec's network (float64 reference, the converted weights) first departs from
    the user's model, layer by layer."""
    ours = Network(spec, net).activations({k: np.asarray(v, np.float64) for k, v in tree.items()}, np.float64(x))
    if len(ours) != len(theirs):
        return (
            f"{net}: the spec has {len(ours)} layers, your model {len(theirs)}: compare the spec with what "
            "`gan-backends spec-from` reads from the model"
        )
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.shape != b.shape:
            return f"{net} layer {i} {spec.layers(net)[i].describe()}: gives {a.shape[1:]}, your model {b.shape[1:]}"
        err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
        if err > tol:
            return (
                f"{net} layer {i} {spec.layers(net)[i].describe()} is the first to differ from your model: "
                f"{err:.3g} of its outputs' scale (the layers before agree)"
            )
    return f"{net}: every layer of the spec agrees with your model; the difference is in the conversion"


def verify_against_models(
    spec: GANSpec,
    params: ParamTree,
    buffers: ParamTree,
    models: Mapping[str, Any],
    source: str | Path,
    target_kind: str,
    target_path: str | Path,
    *,
    tolerance: float,
    batch: int = 8,
    seed: int = 0,
) -> tuple[list[Agreement], list[str], list[str]]:
    """``(agreement, divergences, notes)``: each network given in ``models`` (``{net: model}``) run as
    the user's model with the source's weights and as the converted model in the target, on
    the inputs :func:`~gan_backends.port.verify.verify` draws; for each that parts by more than
    ``tolerance`` of its outputs' scale, where it first parts."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.numerics.dtype)
    draws = {
        "generator": rng.standard_normal((batch, spec.latent_dim)).astype(dtype),
        "discriminator": rng.uniform(-1.0, 1.0, (batch, *spec.data_shape)).astype(dtype),
    }
    target_kind = canonical_kind(target_kind)
    agreement: list[Agreement] = []
    divergences: list[str] = []
    notes: list[str] = []
    for net, model in models.items():
        x = draws[net]
        framework = framework_of(model)
        part = load_part(framework, "introspect")
        if not hasattr(part, "run_model"):
            notes.append(f"{net}: your {framework} model is not run beside the port (torch models only, so far)")
            continue
        _, read = read_network(model, spec.input_shape(net))
        theirs = part.run_model(model, source, net, x)
        theirs = _aligned(theirs, read.layers, len(spec.layers(net)))
        target = native_outputs(target_kind, spec, {net: x}, path=target_path)[net]
        a, b = np.asarray(theirs[-1], np.float64), np.asarray(target, np.float64)
        if a.shape != b.shape:
            divergences.append(f"{net}: your model gives {a.shape[1:]} per sample, the spec {b.shape[1:]}")
            continue
        row = Agreement(
            net, f"your {framework} model", target_kind, float(np.max(np.abs(a - b))), float(np.max(np.abs(a)))
        )
        agreement.append(row)
        if row.max_abs_diff > tolerance * max(row.max_abs_output, 1e-12):
            divergences.append(first_divergence(spec, net, {**params, **buffers}, x, theirs, tolerance))
    return agreement, divergences, notes


def mapping_from_models(ckpt: NativeCheckpoint, spec: GANSpec, models: Mapping[str, Any]) -> dict[str, str]:
    """``{native name: canonical name}`` of the file's tensors by the module that holds each in
    the user's own model (its package's ``state_modules``: module path -> the spec layer read
    from it), so that a model whose modules are registered in another order than they are called
    (Mimicry's ``GBlock``: ``c1, c2, b1, b2``; called ``b1, c1, b2, c2``) is read by name. Only
    where the spec's layer at that place is the one read from the module, and for a file of one
    network (no key prefixes) only when exactly one of the models owns every module it names;
    everything else is left to the matching by order and shape."""
    owners: dict[str, dict[str, tuple[str, Any]]] = {}
    for net, model in models.items():
        part = load_part(framework_of(model), "introspect")
        if not hasattr(part, "state_modules"):
            continue
        try:
            found = part.state_modules(model, spec.input_shape(net))
        except SpecError:
            continue
        layers = spec.layers(net)
        owners[net] = {m: (p, layer) for m, (p, layer) in found.items() if _at(layers, p) == layer}
    slots = {name for net in owners for _, _, s in state_layers(spec, net) for name, _, _ in s}
    active = [t for t in ckpt.tensors if t.role != "skip"]

    def module_of(t: Any, net: str) -> str | None:
        # a file of both networks prefixes each module with its key: "generator/block2.c1", "netG.block2.c1"
        names = [t.layer] + [t.layer.split(sep, 1)[1] for sep in ("/", ".") if t.network and sep in t.layer]
        return next((n for n in names if n in owners[net]), None)

    out: dict[str, str] = {}
    for net in owners:
        mine = [t for t in active if t.network == net]
        untold = [t for t in active if t.network is None]
        if untold:
            others = [n for n in owners if all(module_of(t, n) for t in untold)]
            mine += untold if others == [net] else []
        for t in mine:
            module = module_of(t, net)
            name = f"{net}.{owners[net][module][0]}.{t.role}" if module else None
            if name in slots:
                out[t.name] = name
    return out


def _at(layers: Any, path: str) -> Any:
    try:
        return layer_at(layers, path)
    except (IndexError, AttributeError, ValueError):
        return None
