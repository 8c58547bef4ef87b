"""The GAN spec: one framework-free description that every backend builds from.

A spec is data: frozen, keyword-only dataclasses validated on construction, with a JSON
round-trip (:meth:`GANSpec.to_json` / :meth:`GANSpec.from_json`). Nothing here imports a
framework. Shapes are per sample (no batch axis); image shapes are channels-last ``(H, W, C)``,
the project's canonical layout (see ``docs/layouts.md``).

Every hyper-parameter whose framework default differs (Adam eps, LeakyReLU slope, the
discriminator-loss scale, the initialisation scheme) is a required or explicitly defaulted field
here, so each backend sets it from the spec and never inherits its framework's default.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

Shape = tuple[int, ...]


class SpecError(ValueError):
    """A spec that cannot describe a working GAN; the message names the layer and shapes."""


# --------------------------------------------------------------------------------------------
# Layers. Each layer knows its output shape and its parameter shapes; nothing else.
# Conv layers (issue: convolutional GANs) slot in beside these by subclassing ``Layer`` and
# adding themselves to ``LAYER_TYPES``.


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Base class of every layer spec."""

    type_name: ClassVar[str] = ""

    def output_shape(self, input_shape: Shape) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """Canonical parameter shapes, by short name (``kernel``, ``bias``)."""
        return {}

    def describe(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.type_name}({fields})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """Fully connected layer ``y = x @ kernel + bias``; canonical kernel shape ``(in, out)``."""

    type_name: ClassVar[str] = "Dense"
    units: int
    use_bias: bool = True

    def __post_init__(self) -> None:
        _require_positive_int("Dense.units", self.units)
        _require_bool("Dense.use_bias", self.use_bias)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise SpecError(f"expects a flat input (features,), got {input_shape}; add a Flatten first")
        return (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"kernel": (input_shape[0], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes


@dataclass(frozen=True, kw_only=True)
class _Elementwise(Layer):
    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


@dataclass(frozen=True, kw_only=True)
class ReLU(_Elementwise):
    """``max(x, 0)``."""

    type_name: ClassVar[str] = "ReLU"


@dataclass(frozen=True, kw_only=True)
class LeakyReLU(_Elementwise):
    """``x if x > 0 else slope * x``. The slope is required: the frameworks' defaults are
    0.01 (torch, Flax), 0.3 (Keras layer) and 0.2 (``tf.nn``)."""

    type_name: ClassVar[str] = "LeakyReLU"
    slope: float

    def __post_init__(self) -> None:
        if isinstance(self.slope, bool) or not isinstance(self.slope, (int, float)):
            raise SpecError(f"LeakyReLU.slope must be a number, got {self.slope!r}")
        if not (0.0 <= self.slope < 1.0):
            raise SpecError(f"LeakyReLU.slope must lie in [0, 1), got {self.slope}")
        object.__setattr__(self, "slope", float(self.slope))


@dataclass(frozen=True, kw_only=True)
class Tanh(_Elementwise):
    """``tanh(x)``."""

    type_name: ClassVar[str] = "Tanh"


@dataclass(frozen=True, kw_only=True)
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``."""

    type_name: ClassVar[str] = "Sigmoid"


@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    """Reshape each sample to ``shape`` (row-major, canonical channels-last order)."""

    type_name: ClassVar[str] = "Reshape"
    shape: Shape

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not shape:
            raise SpecError(f"Reshape.shape must be a non-empty tuple of ints, got {self.shape!r}")
        for dim in shape:
            _require_positive_int("Reshape.shape", dim)
        object.__setattr__(self, "shape", shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        if math.prod(input_shape) != math.prod(self.shape):
            raise SpecError(
                f"cannot reshape {input_shape} ({math.prod(input_shape)} values) "
                f"to {self.shape} ({math.prod(self.shape)} values)"
            )
        return self.shape


@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Flatten each sample to one axis (row-major, canonical channels-last order)."""

    type_name: ClassVar[str] = "Flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, Reshape, Flatten)
}


def layer_from_dict(data: dict[str, Any]) -> Layer:
    if not isinstance(data, dict) or "type" not in data:
        raise SpecError(f"a layer must be an object with a 'type' field, got {data!r}")
    kwargs = dict(data)
    type_name = kwargs.pop("type")
    cls = LAYER_TYPES.get(type_name)
    if cls is None:
        raise SpecError(f"unknown layer type {type_name!r}; known: {', '.join(LAYER_TYPES)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SpecError(f"bad fields for layer {type_name}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Loss, optimiser, numerics, initialisation.

LossName = Literal["minimax", "non_saturating", "least_squares", "hinge"]
LOSS_NAMES: tuple[str, ...] = ("minimax", "non_saturating", "least_squares", "hinge")


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """Which GAN loss, on discriminator logits; formulas in :mod:`gan_backends.losses`.

    ``d_scale`` multiplies the discriminator loss: 1.0 in the original paper and most code,
    0.5 in the pix2pix/CycleGAN-style tutorials. It changes the D gradients, so it is explicit.
    ``a``, ``b``, ``c`` are least squares' targets (Mao et al. 2017, eq. 2): D pushes fakes to
    ``a`` and reals to ``b``, G pushes fakes to ``c``; the default ``(0, 1, 1)`` is the paper's
    eq. 9 (``(-1, 1, 0)`` is its eq. 8). Other losses ignore them.
    """

    name: LossName = "non_saturating"
    d_scale: float = 1.0
    a: float = 0.0
    b: float = 1.0
    c: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise SpecError(f"unknown loss {self.name!r}; known: {', '.join(LOSS_NAMES)}")
        if isinstance(self.d_scale, bool) or not isinstance(self.d_scale, (int, float)) or self.d_scale <= 0:
            raise SpecError(f"loss.d_scale must be a positive number, got {self.d_scale!r}")
        object.__setattr__(self, "d_scale", float(self.d_scale))
        for target in ("a", "b", "c"):
            value = getattr(self, target)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"loss.{target} must be a finite number, got {value!r}")
            object.__setattr__(self, target, float(value))


@dataclass(frozen=True, kw_only=True)
class AdamSpec:
    """Adam in PyTorch's form (Kingma & Ba, Algorithm 1, eps outside the square root)::

        g  <- g + weight_decay * p                (L2, as torch.optim.Adam; not decoupled)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g**2
        p  <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Keras' Adam uses the "epsilon-hat" form, which no eps makes equal to this; the TensorFlow
    backend therefore writes this update with TF ops.
    """

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float = 0.0
    name: Literal["adam"] = "adam"

    def __post_init__(self) -> None:
        if self.name != "adam":
            raise SpecError(f"unknown optimiser {self.name!r}; known: adam")
        for fname in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"adam.{fname} must be a finite number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise SpecError(f"adam needs lr > 0, eps > 0, weight_decay >= 0; got {self}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SpecError(f"adam betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")


DType = Literal["float32", "float64"]
MatmulPrecision = Literal["highest", "tf32", "bf16"]


@dataclass(frozen=True, kw_only=True)
class Numerics:
    """Precision policy, applied identically by every backend.

    ``matmul_precision="highest"`` is IEEE float32 everywhere: it switches TF32 off where a
    framework would use it by default (TensorFlow and JAX on Ampere+ GPUs, cuDNN convs in
    torch). ``"tf32"`` switches it on in all three; on a CPU there is no TF32 and both agree.

    ``"bf16"`` is bfloat16 mixed precision, defined once and written out the same way in every
    backend (rather than each framework's autocast, whose op lists differ): every Dense matmul
    rounds both operands to bfloat16, multiplies (float32 accumulation) and rounds the product
    to bfloat16, as autocast and Keras' ``mixed_bfloat16`` do; the bias add, activations,
    losses, gradients' accumulation and Adam stay float32, as do the master weights. The
    backward matmuls follow from differentiating the casts, so they run in bfloat16 too. It
    works on CPUs (slowly) and GPUs; it needs ``dtype="float32"``.
    """

    dtype: DType = "float32"
    matmul_precision: MatmulPrecision = "highest"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise SpecError(f"numerics.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.matmul_precision not in ("highest", "tf32", "bf16"):
            raise SpecError(
                f"numerics.matmul_precision must be 'highest', 'tf32' or 'bf16', got {self.matmul_precision!r}"
            )
        if self.matmul_precision == "bf16" and self.dtype != "float32":
            raise SpecError("numerics.matmul_precision 'bf16' is mixed precision over float32: set dtype 'float32'")


INIT_SCHEMES: tuple[str, ...] = ("torch_default", "normal", "glorot_uniform", "lecun_normal")


@dataclass(frozen=True, kw_only=True)
class InitSpec:
    """How :func:`gan_backends.params.init_params` draws the weights, in NumPy.

    ``torch_default``: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's
    ``nn.Linear`` default (kaiming_uniform with a=sqrt(5)). ``normal``: kernel ~ N(0, std^2),
    bias 0 (the DCGAN scheme with std=0.02). ``glorot_uniform`` (Keras' default): kernel ~
    U(±sqrt(6/(fan_in+fan_out))), bias 0. ``lecun_normal`` (Flax's default): kernel ~ N(0,
    1/fan_in) truncated at ±2 std (std corrected for the truncation, as in
    ``jax.nn.initializers.variance_scaling``), bias 0.
    """

    scheme: str = "torch_default"
    std: float = 0.02

    def __post_init__(self) -> None:
        if self.scheme not in INIT_SCHEMES:
            raise SpecError(f"unknown init scheme {self.scheme!r}; known: {', '.join(INIT_SCHEMES)}")
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise SpecError(f"init.std must be positive, got {self.std!r}")


# --------------------------------------------------------------------------------------------
# The GAN.

NETWORKS: tuple[str, str] = ("generator", "discriminator")


@dataclass(frozen=True, kw_only=True)
class GANSpec:
    """A whole GAN: shapes, the two networks, the loss, the optimisers and the numerics.

    ``data_shape`` is one sample (e.g. ``(784,)`` or ``(28, 28, 1)``); the generator maps
    ``(latent_dim,)`` to it, the discriminator maps it to one logit ``(1,)``. One training step
    is ``n_critic`` discriminator updates followed by one generator update.
    """

    name: str
    data_shape: Shape
    latent_dim: int
    generator: tuple[Layer, ...]
    discriminator: tuple[Layer, ...]
    loss: LossSpec = field(default_factory=LossSpec)
    g_optimizer: AdamSpec
    d_optimizer: AdamSpec
    n_critic: int = 1
    numerics: Numerics = field(default_factory=Numerics)
    init: InitSpec = field(default_factory=InitSpec)

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
        if d_out != (1,):
            raise SpecError(f"discriminator must end in one logit per sample, shape (1,), got {d_out}")

    def input_shape(self, net: str) -> Shape:
        return (self.latent_dim,) if net == "generator" else self.data_shape

    def layers(self, net: str) -> tuple[Layer, ...]:
        if net not in NETWORKS:
            raise ValueError(f"unknown network {net!r}; known: {', '.join(NETWORKS)}")
        return getattr(self, net)

    def layer_shapes(self, net: str) -> list[tuple[Shape, Shape]]:
        """``(input_shape, output_shape)`` of every layer of ``net``, inferred in order."""
        shape = self.input_shape(net)
        shapes = []
        for i, layer in enumerate(self.layers(net)):
            try:
                out = layer.output_shape(shape)
            except SpecError as exc:
                raise SpecError(f"{net} layer {i} {layer.describe()}: input shape {shape}: {exc}") from None
            shapes.append((shape, out))
            shape = out
        return shapes

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        try:
            for net in NETWORKS:
                if net in kwargs:
                    kwargs[net] = tuple(layer_from_dict(item) for item in kwargs[net])
            for key, sub in (("loss", LossSpec), ("numerics", Numerics), ("init", InitSpec)):
                if key in kwargs:
                    kwargs[key] = sub(**kwargs[key])
            for key in ("g_optimizer", "d_optimizer"):
                if key in kwargs:
                    kwargs[key] = AdamSpec(**kwargs[key])
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
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> GANSpec:
        return cls.from_json(Path(path).read_text())

    def replace(self, **changes: Any) -> GANSpec:
        return dataclasses.replace(self, **changes)


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def _require_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{name} must be true or false, got {value!r}")
