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
from ..spec import GANSpec, Sigmoid
from .native import canonical_kind
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
