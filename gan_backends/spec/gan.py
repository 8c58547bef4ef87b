"""The whole GAN: :class:`GANSpec` (shapes, the two networks, the loss, the optimisers, the
numerics), its cross-section checks, and its JSON round-trip (``to_json``/``from_json``/``load``).

It is the one module that knows every section (:mod:`~gan_backends.spec.layers`,
:mod:`~gan_backends.spec.training`), so loading and saving live here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Shape, SpecError, _require_positive_int
from .batchnorm import BatchNorm
from .blocks import chain_shapes, describe_path, walk
from .ema import EmaSpec
from .fields import did_you_mean, field_problems
from .layers import Flatten, Layer, Reshape, layer_from_dict
from .training import (
    OPTIMIZER_TYPES,
    DataParallelSpec,
    InitSpec,
    LossSpec,
    Numerics,
    OptimizerSpec,
)

NETWORKS: tuple[str, str] = ("generator", "discriminator")


#: How deep a spec file's JSON may nest (the presets: 5 levels); deeper is refused before
#: anything walks it.
MAX_SPEC_DEPTH = 32
_TOO_DEEP = f"spec JSON nests deeper than {MAX_SPEC_DEPTH} levels (a spec needs a few)"


def _listed(problems: list[str]) -> str:
    """One problem as a sentence, several as a list under a count."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the spec:\n" + "\n".join(f"- {p}" for p in problems)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_SPEC_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


@dataclass(frozen=True, kw_only=True)
class GANSpec:
    """A whole GAN: shapes, the two networks, the loss, the optimisers and the numerics.

    ``data_shape`` is one sample (e.g. ``(784,)`` or ``(28, 28, 1)``); the generator maps
    ``(latent_dim,)`` to it, the discriminator maps it to one logit ``(1,)`` or to a PatchGAN
    map of logits ``(H, W, 1)`` (Isola et al. 2017), every loss a mean over all of a batch's
    logits and a penalty's ∇ₓ that of their sum per sample. One training step is ``n_critic``
    discriminator updates followed by one generator update.
    """

    name: str
    data_shape: Shape
    latent_dim: int
    generator: tuple[Layer, ...]
    discriminator: tuple[Layer, ...]
    loss: LossSpec = field(default_factory=LossSpec)
    g_optimizer: OptimizerSpec
    d_optimizer: OptimizerSpec
    n_critic: int = 1
    numerics: Numerics = field(default_factory=Numerics)
    init: InitSpec = field(default_factory=InitSpec)
    data_parallel: DataParallelSpec = field(default_factory=DataParallelSpec)
    #: A moving average of G's weights (:class:`~gan_backends.spec.ema.EmaSpec`); None: none.
    ema: EmaSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_shape", tuple(self.data_shape))
        object.__setattr__(self, "generator", tuple(self.generator))
        object.__setattr__(self, "discriminator", tuple(self.discriminator))
        if not self.data_shape:
            raise SpecError("data_shape must have at least one axis")
        for dim in self.data_shape:
            _require_positive_int("data_shape", dim)
        _require_positive_int("latent_dim", self.latent_dim)
        _require_positive_int("n_critic", self.n_critic)
        for net in NETWORKS:
            layers = getattr(self, net)
            if not layers:
                raise SpecError(f"{net} has no layers")
            for i, layer in enumerate(layers):
                if not isinstance(layer, Layer):
                    raise SpecError(f"{net} layer {i} is not a layer spec: {layer!r}")
        g_out = self.layer_shapes("generator")[-1][1]
        if g_out != self.data_shape:
            raise SpecError(f"generator output shape {g_out} does not match data_shape {self.data_shape}")
        d_out = self.layer_shapes("discriminator")[-1][1]
        if d_out != (1,) and not (len(d_out) == 3 and d_out[2] == 1):
            raise SpecError(
                "discriminator must end in one logit per sample, shape (1,), or a PatchGAN map of one logit "
                f"per patch, (H, W, 1); got {d_out}"
            )
        for key in ("g_optimizer", "d_optimizer"):
            if not isinstance(getattr(self, key), tuple(OPTIMIZER_TYPES.values())):
                raise SpecError(
                    f"{key} must be an optimiser spec ({', '.join(OPTIMIZER_TYPES)}), got {getattr(self, key)!r}"
                )
        if self.ema is not None and not isinstance(self.ema, EmaSpec):
            raise SpecError(f"ema must be an EMA spec (decay, start_step, debias) or null, got {self.ema!r}")
        if self.loss.penalty != "none":
            for path, layer, _ in walk(self.discriminator, self.data_shape, "discriminator"):  # blocks' layers too
                if isinstance(layer, BatchNorm):
                    raise SpecError(
                        f"{describe_path(path)} {layer.describe()}: a gradient penalty ({self.loss.penalty}) is "
                        "per sample, and BatchNorm mixes the batch; drop it from the critic (Gulrajani et al. "
                        "2017, section 4) or use no penalty"
                    )
                if getattr(layer, "spectral_norm", None) is not None:
                    # Not yet defined: which penalty calls advance u, v, and the reference's
                    # second-order gradient through W/σ(W) is not written.
                    raise SpecError(
                        f"{describe_path(path)} {layer.describe()}: a gradient penalty ({self.loss.penalty}) "
                        "through a spectrally normalised layer is not supported; drop the penalty (SNGAN uses "
                        "none) or the layer's spectral_norm"
                    )

        if self.loss.relativistic:
            self._check_no_output_bias()

    def _check_no_output_bias(self) -> None:
        """A relativistic loss sees D only through differences of logits (``C_r - C_f``, or a
        logit minus the other batch's mean), and ∇ₓD does not see a constant: a bias added at
        D's output cancels from every term. Its gradient is then rounding noise, which Adam
        turns into ±lr steps (the bias-before-BatchNorm trap), so the spec refuses it."""
        for i in range(len(self.discriminator) - 1, -1, -1):
            layer = self.discriminator[i]
            if isinstance(layer, (Flatten, Reshape)):
                continue  # shape only: the layer before it is D's output layer
            if getattr(layer, "use_bias", False):
                raise SpecError(
                    f"discriminator layer {i} {layer.describe()}: with the relativistic loss {self.loss.name!r} "
                    "the bias of D's output layer cancels from every loss term (only logit differences count), "
                    "so its gradient is rounding noise that Adam turns into ±lr steps; set use_bias=false"
                )
            return

    def input_shape(self, net: str) -> Shape:
        return (self.latent_dim,) if net == "generator" else self.data_shape

    def layers(self, net: str) -> tuple[Layer, ...]:
        if net not in NETWORKS:
            raise ValueError(f"unknown network {net!r}; known: {', '.join(NETWORKS)}")
        return getattr(self, net)

    def has_buffers(self) -> bool:
        """Whether any layer keeps running state (BatchNorm)."""
        return any(
            isinstance(layer, BatchNorm)
            for net in NETWORKS
            for _, layer, _ in walk(self.layers(net), self.input_shape(net), net)
        )

    def layer_shapes(self, net: str) -> list[tuple[Shape, Shape]]:
        """``(input_shape, output_shape)`` of every layer of ``net``, inferred in order."""
        return chain_shapes(self.layers(net), self.input_shape(net), f"{net} layer ")

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_shape": list(self.data_shape),
            "latent_dim": self.latent_dim,
            "generator": [layer.to_dict() for layer in self.generator],
            "discriminator": [layer.to_dict() for layer in self.discriminator],
            "loss": dataclasses.asdict(self.loss),
            "g_optimizer": dataclasses.asdict(self.g_optimizer),
            "d_optimizer": dataclasses.asdict(self.d_optimizer),
            "n_critic": self.n_critic,
            "numerics": dataclasses.asdict(self.numerics),
            "init": dataclasses.asdict(self.init),
            "data_parallel": dataclasses.asdict(self.data_parallel),
            # Written only when set, so that every spec without one reads as before.
            **({"ema": self.ema.to_dict()} if self.ema is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANSpec:
        """The spec described by ``data``; a :class:`SpecError` lists every problem of its layers
        and sections at once, each with where it is (``discriminator layer 2 BatchNorm``)."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
        problems = [f"spec: {p}" for p in field_problems(cls, data)]
        kwargs = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        for net in NETWORKS:
            if net not in kwargs:
                continue
            if not isinstance(kwargs[net], (list, tuple)):
                problems.append(f"{net}: a list of layers, got {type(kwargs[net]).__name__}")
                continue
            layers = []
            for i, item in enumerate(kwargs[net]):
                try:
                    layers.append(layer_from_dict(item, f"{net} layer {i}"))
                except SpecError as exc:
                    problems.append(str(exc))
            kwargs[net] = tuple(layers)
        sections = [("loss", LossSpec), ("numerics", Numerics), ("init", InitSpec), ("data_parallel", DataParallelSpec)]
        if kwargs.get("ema") is not None:  # null or absent: no average
            sections.append(("ema", EmaSpec))
        for key in ("g_optimizer", "d_optimizer"):
            if isinstance(kwargs.get(key), dict):
                name = kwargs[key].get("name", "adam")
                if name not in OPTIMIZER_TYPES:
                    problems.append(f"{key}: unknown optimiser {name!r}{did_you_mean(str(name), OPTIMIZER_TYPES)}")
                    continue
                sections.append((key, OPTIMIZER_TYPES[name]))
        for key, sub in sections:
            if key not in kwargs:
                continue
            if not isinstance(kwargs[key], dict):
                problems.append(f"{key}: an object, got {type(kwargs[key]).__name__}")
                continue
            found = field_problems(sub, kwargs[key])
            if found:
                problems.append(f"{key}: {'; '.join(found)}")
                continue
            try:
                kwargs[key] = sub(**kwargs[key])
            except (SpecError, TypeError) as exc:  # TypeError: a value of the wrong kind (a list for a number)
                problems.append(f"{key}: {exc}")
        if problems:
            raise SpecError(_listed(problems))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise SpecError(f"bad spec: {exc}") from None

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> GANSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        except RecursionError:  # the C decoder recurses once per level
            raise SpecError(_TOO_DEEP) from None
        if _depth(data) > MAX_SPEC_DEPTH:
            raise SpecError(_TOO_DEEP)
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> GANSpec:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"spec file {path}: not UTF-8 text (a spec is JSON)") from None
        return cls.from_json(text)

    def to_fields(self) -> dict[str, Any]:
        """The constructor's keyword arguments (the inverse of ``GANSpec(**fields)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> GANSpec:
        return dataclasses.replace(self, **changes)
