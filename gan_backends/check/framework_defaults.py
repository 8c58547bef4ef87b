"""What porting without care costs: each framework run with its own defaults.

The spec states every value where the frameworks' defaults differ, and the backends set them
explicitly. A port written by hand often does not. ``gan-backends check --framework-defaults``
runs each framework with one of its own defaults in place of the spec's value (then all of them
at once), from the same seed and inputs, and reports how far that lands from the spec computed
exactly by the float64 reference: at the start (G(z), D(x)) and after the training steps.

The defaults (verified facts, see ``docs/framework-differences.md``): LeakyReLU slope (torch
``nn.LeakyReLU`` 0.01, Keras ``layers.LeakyReLU`` 0.3, Flax ``nn.leaky_relu`` 0.01); Adam eps
(torch 1e-8, Keras 1e-7, optax 1e-8); weight initialisation (torch U(±1/sqrt(fan_in)), Keras
glorot_uniform, Flax lecun_normal; biases 0 in Keras and Flax); BCE (torch's ``nn.BCELoss`` on
sigmoid probabilities, log clamped at -100, as in the PyTorch DCGAN tutorial; Keras'
``BinaryCrossentropy()``, ``from_logits=False``, probabilities clipped to [1e-7, 1 - 1e-7]; optax's
``sigmoid_binary_cross_entropy`` is on logits, as the spec). BCE only differs where D saturates,
so each row also gives the loss term ``softplus(l)`` at a confidently wrong logit ``l = 30``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..backends import FRAMEWORKS, Backend, get_backend, manifest
from ..losses import LossOps
from ..params import init_params
from ..spec import AdamSpec, BatchNorm, GANSpec, InitSpec, LeakyReLU
from .inputs import draw_inputs
from .measures import compare, flatten_networks

#: Each framework's own defaults for the values a spec states explicitly (its manifest's
#: ``framework_defaults``). BatchNorm as (momentum, eps) in torch's convention (momentum = weight
#: of the NEW statistic): Keras' BatchNormalization(momentum=0.99, epsilon=1e-3), Flax's
#: BatchNorm(momentum=0.99, epsilon=1e-5) keep 0.99 of the OLD value.
FRAMEWORK_DEFAULTS: dict[str, dict[str, object]] = {n: dict(manifest(n).framework_defaults) for n in FRAMEWORKS}

#: A confidently wrong discriminator logit, where probability-space BCE saturates.
SATURATED_LOGIT = 30.0


def _bce_ops(framework: str) -> LossOps:
    """The loss primitives of ``framework``'s default BCE (on probabilities; its manifest's
    ``default_bce_ops``)."""
    entry = manifest(framework)
    assert entry.default_bce_ops is not None, f"{framework} has a default BCE on probabilities but no ops for it"
    return entry.load(entry.default_bce_ops)


def _with_slope(spec: GANSpec, slope: float) -> GANSpec:
    swap = lambda layers: tuple(LeakyReLU(slope=slope) if isinstance(x, LeakyReLU) else x for x in layers)  # noqa: E731
    return spec.replace(generator=swap(spec.generator), discriminator=swap(spec.discriminator))


def _with_eps(spec: GANSpec, eps: float) -> GANSpec:
    def set_eps(opt):
        return dataclasses.replace(opt, eps=eps) if isinstance(opt, AdamSpec) else opt

    return spec.replace(g_optimizer=set_eps(spec.g_optimizer), d_optimizer=set_eps(spec.d_optimizer))


def _with_batchnorm(spec: GANSpec, momentum_eps: tuple[float, float]) -> GANSpec:
    momentum, eps = momentum_eps

    def swap(layers):
        return tuple(
            dataclasses.replace(x, momentum=momentum, eps=eps) if isinstance(x, BatchNorm) else x for x in layers
        )

    return spec.replace(generator=swap(spec.generator), discriminator=swap(spec.discriminator))


def _with_init(spec: GANSpec, scheme: str) -> GANSpec:
    return spec.replace(init=InitSpec(scheme=scheme))


APPLY: dict[str, Callable[[GANSpec, object], GANSpec]] = {
    "leaky_relu_slope": _with_slope,  # type: ignore[dict-item]
    "adam_eps": _with_eps,  # type: ignore[dict-item]
    "batchnorm": _with_batchnorm,  # type: ignore[dict-item]
    "init": _with_init,  # type: ignore[dict-item]
}


def spec_value(spec: GANSpec, key: str) -> object | None:
    """The spec's own value for ``key`` (``None`` where the spec has no such layer)."""
    if key == "leaky_relu_slope":
        slopes = {x.slope for x in (*spec.generator, *spec.discriminator) if isinstance(x, LeakyReLU)}
        return slopes.pop() if len(slopes) == 1 else (sorted(slopes) if slopes else None)
    if key == "adam_eps":
        adams = {o.eps for o in (spec.g_optimizer, spec.d_optimizer) if isinstance(o, AdamSpec)}
        return adams.pop() if len(adams) == 1 else (sorted(adams) if adams else None)
    if key == "batchnorm":
        norms = {(x.momentum, x.eps) for x in (*spec.generator, *spec.discriminator) if isinstance(x, BatchNorm)}
        return norms.pop() if len(norms) == 1 else (sorted(norms) if norms else None)
    if key == "bce":  # only the cross-entropy losses have a BCE to get wrong
        return "logits" if spec.loss.name in ("minimax", "non_saturating") else None
    return spec.init.scheme


@dataclass
class DefaultRow:
    framework: str
    setting: str
    spec_value: str
    default: str
    g_out: float  # rel error of G(z) at the start
    d_out: float  # rel error of D(x) at the start
    params: float  # rel error of all parameters after the steps
    saturated: float  # rel error of the loss term softplus(SATURATED_LOGIT)
    error: str = ""


def framework_defaults_report(
    spec: GANSpec, frameworks: list[str], *, steps: int = 10, batch_size: int = 64, seed: int = 0
) -> list[DefaultRow]:
    """One row per (framework, differing default), then one with all of them, plus a control row
    ("as specified") that shows the measure's own floor."""
    inputs = draw_inputs(spec, batch_size=batch_size, steps=steps, seed=seed)
    truth = _run(get_backend("numpy"), spec, init_params(spec, seed), inputs)
    rows = []
    for framework in frameworks:
        defaults = FRAMEWORK_DEFAULTS[framework]
        differing = {k: v for k, v in defaults.items() if spec_value(spec, k) not in (None, v)}
        bce = _bce_ops(framework) if "bce" in differing else None
        variants: list[tuple[str, str, str, GANSpec, LossOps | None]] = [("as specified", "-", "-", spec, None)]
        every = spec
        for key, value in differing.items():
            ours = str(spec_value(spec, key))
            if key == "bce":
                variants.append((key, ours, f"{value} (probabilities)", spec, bce))
            else:
                variants.append((key, ours, str(value), APPLY[key](spec, value), None))
                every = APPLY[key](every, value)
        if len(differing) > 1:
            variants.append(("all of them", "", "", every, bce))
        for setting, ours, theirs, variant, ops in variants:
            try:
                cls = _with_loss_ops(get_backend(framework), ops)
                got = _run(cls, variant, init_params(variant, seed), inputs)
                errors = [compare(got[k], truth[k])[0] for k in ("G(z)", "D(x)", "params")]
                rows.append(DefaultRow(framework, setting, ours, theirs, *errors, _saturated_error(cls)))
            except Exception as exc:  # reported in the row; the other variants go on
                nan = math.nan
                rows.append(
                    DefaultRow(framework, setting, ours, theirs, nan, nan, nan, nan, f"{type(exc).__name__}: {exc}")
                )
    return rows


def _with_loss_ops(cls: type[Backend], ops: LossOps | None) -> type[Backend]:
    """The backend class, computing its losses with ``ops`` instead of its exact primitives."""
    return cls if ops is None else type(f"{cls.__name__}WithDefaultBCE", (cls,), {"loss_ops": ops})


def _saturated_error(cls: type[Backend]) -> float:
    logit = np.array([SATURATED_LOGIT], dtype=np.float32)
    got = float(np.asarray(cls.loss_ops.softplus(cls.from_numpy(logit)))[0])
    exact = float(np.logaddexp(SATURATED_LOGIT, 0.0))
    return abs(got - exact) / exact


def _run(cls: type[Backend], spec: GANSpec, params, inputs) -> dict[str, np.ndarray]:
    cast = inputs.astype(spec.numerics.dtype)
    backend = cls(spec, {k: np.asarray(v, dtype=spec.numerics.dtype) for k, v in params.items()})
    out = {"G(z)": backend.generate(cast.z), "D(x)": backend.discriminate(cast.real)}
    for batch in cast.batches:
        backend.train_step(batch)
    flat = flatten_networks(backend.get_params())
    out["params"] = np.concatenate([flat["generator"], flat["discriminator"]])
    return out
