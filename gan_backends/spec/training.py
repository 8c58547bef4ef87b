"""The spec's training sections: the loss, the optimisers, the numerics, the initialisation and
data parallelism.

Each is a frozen dataclass that :class:`~gan_backends.spec.gan.GANSpec` holds as one field
(``loss``, ``g_optimizer``/``d_optimizer``, ``numerics``, ``init``, ``data_parallel``); every
hyper-parameter whose framework default differs is written out here, with the formula the
backends implement in the docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .base import SpecError, _require_bool

LossName = Literal[
    "minimax", "non_saturating", "least_squares", "hinge", "wasserstein", "rasgan", "ralsgan", "rahinge", "rpgan"
]
#: The losses whose every term is a function of one logit (G's of ``D(G(z))`` alone): what
#: losscheck judges a user's ``d(real, fake)`` / ``g(fake)`` against.
LOSS_NAMES: tuple[str, ...] = ("minimax", "non_saturating", "least_squares", "hinge", "wasserstein")
#: The relativistic losses (Jolicoeur-Martineau 2018): D and G compare real and fake logits, so
#: G's loss needs ``D(x_real)`` too (``generator_loss(..., real_logits=...)``).
RELATIVISTIC_LOSSES: tuple[str, ...] = ("rasgan", "ralsgan", "rahinge", "rpgan")
ALL_LOSS_NAMES: tuple[str, ...] = LOSS_NAMES + RELATIVISTIC_LOSSES
PenaltyName = Literal["none", "wgan_gp", "r1", "r2", "r1_r2"]
PENALTIES: tuple[str, ...] = ("none", "wgan_gp", "r1", "r2", "r1_r2")


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """Which GAN loss, on discriminator logits; formulas in :mod:`gan_backends.losses`.

    ``d_scale`` multiplies the discriminator loss: 1.0 in the original paper and most code,
    0.5 in the pix2pix/CycleGAN-style tutorials. It changes the D gradients, so it is explicit.
    ``a``, ``b``, ``c`` are least squares' targets (Mao et al. 2017, eq. 2): D pushes fakes to
    ``a`` and reals to ``b``, G pushes fakes to ``c``; the default ``(0, 1, 1)`` is the paper's
    eq. 9 (``(-1, 1, 0)`` is its eq. 8). Other losses ignore them.

    ``g_scale`` multiplies the generator loss the same way (1.0 in the papers; 0.5 with
    ``d_scale`` 0.5 is the RaLSGAN author's code, which halves both of the paper's losses).

    The relativistic losses ``rasgan``, ``ralsgan``, ``rahinge`` (relativistic average GAN in
    its cross-entropy, least-squares and hinge forms) and ``rpgan`` (relativistic pairing GAN)
    are Jolicoeur-Martineau 2018's; their G loss also reads D's logits on the real batch.

    ``penalty`` adds a gradient penalty to D's loss, weighted by ``penalty_weight`` (λ of
    WGAN-GP, γ of R1/R2), not by ``d_scale``: ``wgan_gp`` (Gulrajani et al. 2017) on interpolates
    whose coefficients are drawn in NumPy, with the norm ``sqrt(sum g^2 + norm_eps)`` so its
    gradient is finite at 0; ``r1`` (Mescheder et al. 2018, eq. 9) on real data; ``r2`` (the
    same paper's eq. 10) on the generated batch of the D update; ``r1_r2`` both, ``γ/2·(R1 +
    R2)``, the R3GAN baseline's (Huang et al. 2025). ``clip_value`` clips every D parameter to
    ``[-c, c]`` after each D update (the original WGAN, Arjovsky et al. 2017, c = 0.01).

    Label smoothing of D's real target ``t`` (``minimax`` and ``non_saturating``; D's real term
    becomes the cross-entropy ``t·softplus(-l) + (1 - t)·softplus(l)``, fakes keep target 0, G's
    loss is unchanged), in its two published meanings, at most one of them non-zero:
    ``one_sided_label_smoothing`` s: ``t = 1 - s`` (Salimans et al. 2016, section 3.4: s = 0.1
    gives 0.9); ``label_smoothing`` s: toward ½, ``t = 1 - s/2``, which is what TF-GAN's
    ``label_smoothing`` and ``tf.losses.sigmoid_cross_entropy`` do (labels·(1 - s) + s/2; note
    TF-GAN's D losses default to s = 0.25).

    ``fake_label_smoothing`` s smooths D's fake target toward ½, ``s/2`` (the same cross-entropy
    on the fake term); with ``label_smoothing`` s as well it is Keras'
    ``BinaryCrossentropy(label_smoothing=s)`` used for both of D's terms (Keras ``label_smoothing``
    maps every label y to ``y·(1 - s) + s/2``).

    ``hinge_margin`` m (``hinge`` only): D's terms ``relu(m - l)`` and ``relu(m + l)`` (TF-GAN's
    ``wasserstein_hinge_discriminator_loss(real_hinge=m, generated_hinge=m)``; 1 in Lim & Ye 2017).

    ``reduction``: ``"mean"`` (every paper, and the default of torch, Keras and TF-GAN losses)
    averages each term over every logit and the penalty over the samples; ``"sum"`` sums them
    (torch ``reduction="sum"``, TF-GAN ``Reduction.SUM``), so the loss and its gradients grow with
    the batch. The averages inside the relativistic losses' ``C_r - mean C_f`` stay means.

    WGAN-GP's norm target and one-sided form (``wgan_gp`` only): ``penalty_target`` γ makes the
    penalty ``λ·mean((‖g‖ - γ)²)/γ²`` (Karras et al. 2017, progressive GAN, γ = 750 on CIFAR-10;
    γ = 1 is Gulrajani et al.'s); ``penalty_one_sided`` penalises only norms above the target,
    ``λ·mean(max(0, ‖g‖ - γ)²)/γ²`` (Gulrajani et al. 2017's appendix; Petzka et al. 2018,
    WGAN-LP).
    """

    name: LossName = "non_saturating"
    d_scale: float = 1.0
    g_scale: float = 1.0
    a: float = 0.0
    b: float = 1.0
    c: float = 1.0
    penalty: PenaltyName = "none"
    penalty_weight: float = 10.0
    norm_eps: float = 1e-12
    clip_value: float | None = None
    label_smoothing: float = 0.0
    one_sided_label_smoothing: float = 0.0
    penalty_target: float = 1.0
    penalty_one_sided: bool = False
    fake_label_smoothing: float = 0.0
    hinge_margin: float = 1.0
    reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.name not in ALL_LOSS_NAMES:
            raise SpecError(f"unknown loss {self.name!r}; known: {', '.join(ALL_LOSS_NAMES)}")
        if self.penalty not in PENALTIES:
            raise SpecError(f"unknown gradient penalty {self.penalty!r}; known: {', '.join(PENALTIES)}")
        for fname in ("d_scale", "g_scale", "penalty_weight"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SpecError(f"loss.{fname} must be a positive number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or self.norm_eps < 0:
            raise SpecError(f"loss.norm_eps must be a number >= 0, got {self.norm_eps!r}")
        object.__setattr__(self, "norm_eps", float(self.norm_eps))
        for target in ("a", "b", "c"):
            value = getattr(self, target)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"loss.{target} must be a finite number, got {value!r}")
            object.__setattr__(self, target, float(value))
        if self.clip_value is not None:
            value = self.clip_value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SpecError(f"loss.clip_value must be a positive number or null, got {value!r}")
            object.__setattr__(self, "clip_value", float(value))

        self._check_options()

    def _check_options(self) -> None:
        """The label-smoothing and penalty-shape options: ranges, and the losses they apply to."""
        for fname in ("label_smoothing", "one_sided_label_smoothing", "fake_label_smoothing"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise SpecError(f"loss.{fname} must be a number in [0, 1), got {value!r}")
            object.__setattr__(self, fname, float(value))
            if value and self.name not in ("minimax", "non_saturating"):
                raise SpecError(
                    f"loss.{fname} smooths a cross-entropy target: minimax or non_saturating, not {self.name!r}"
                )
        if self.label_smoothing and self.one_sided_label_smoothing:
            raise SpecError(
                "loss.label_smoothing (TF-GAN's, target 1 - s/2) and loss.one_sided_label_smoothing "
                "(Salimans et al.'s, target 1 - s) are two meanings of one option: set one"
            )
        if self.reduction not in ("mean", "sum"):
            raise SpecError(f"loss.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        value = self.hinge_margin
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise SpecError(f"loss.hinge_margin must be a positive number, got {value!r}")
        object.__setattr__(self, "hinge_margin", float(value))
        if self.hinge_margin != 1.0 and self.name != "hinge":
            raise SpecError(f"loss.hinge_margin is the hinge D loss's margin, not {self.name!r}'s")
        value = self.penalty_target
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise SpecError(f"loss.penalty_target must be a positive number, got {value!r}")
        object.__setattr__(self, "penalty_target", float(value))
        _require_bool("loss.penalty_one_sided", self.penalty_one_sided)
        for fname, default in (("penalty_target", 1.0), ("penalty_one_sided", False)):
            if getattr(self, fname) != default and self.penalty != "wgan_gp":
                raise SpecError(f"loss.{fname} shapes the wgan_gp penalty, not penalty {self.penalty!r}")

    @property
    def real_target(self) -> float:
        """D's cross-entropy target for real data: 1, or 1 - s (one-sided), or 1 - s/2 (TF-GAN)."""
        return 1.0 - self.one_sided_label_smoothing - 0.5 * self.label_smoothing

    @property
    def fake_target(self) -> float:
        """D's cross-entropy target for generated data: 0, or s/2 (``fake_label_smoothing``)."""
        return 0.5 * self.fake_label_smoothing

    @property
    def relativistic(self) -> bool:
        """Whether G's loss reads D's logits on real data (so G's step calls ``D(real)``)."""
        return self.name in RELATIVISTIC_LOSSES


@dataclass(frozen=True, kw_only=True)
class AdamSpec:
    """Adam in PyTorch's form (Kingma & Ba, Algorithm 1, eps outside the square root)::

        g  <- g + weight_decay * p                (L2, as torch.optim.Adam; not decoupled)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g**2
        p  <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Keras' Adam uses the "epsilon-hat" form (``keras.optimizers.Adam``; Kingma & Ba, the formula
    before section 2.1), which no eps makes equal to this: ``form="keras"`` trains it, in every
    stack::

        p  <- p - lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)

    (the moments as above; Keras' default eps is 1e-7). Keras' ``weight_decay`` is decoupled
    (``p -= lr * wd * p``), so ``form="keras"`` refuses a weight decay.
    """

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float = 0.0
    form: Literal["torch", "keras"] = "torch"
    name: Literal["adam"] = "adam"

    def __post_init__(self) -> None:
        if self.name != "adam":
            raise SpecError(f"AdamSpec.name must be 'adam', got {self.name!r}")
        for fname in ("lr", "beta1", "beta2", "eps", "weight_decay"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"adam.{fname} must be a finite number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise SpecError(f"adam needs lr > 0, eps > 0, weight_decay >= 0; got {self}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SpecError(f"adam betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        _check_form(self)


@dataclass(frozen=True, kw_only=True)
class RMSpropSpec:
    """RMSprop in PyTorch's form (``torch.optim.RMSprop``; the original WGAN's optimiser)::

        g  <- g + weight_decay * p
        v  <- alpha * v + (1 - alpha) * g**2                        (slot ``v``, torch ``square_avg``)
        gc <- alpha * gc + (1 - alpha) * g    if centered           (slot ``grad_avg``)
        d  <- sqrt(v - gc**2) if centered else sqrt(v);  d <- d + eps   (eps OUTSIDE the root)
        b  <- momentum * b + g / d;  p <- p - lr * b   if momentum  (slot ``momentum``)
        p  <- p - lr * g / d                            otherwise

    Keras' RMSprop defaults to rho 0.9, eps 1e-7; optax's puts eps inside the root
    (``eps_in_sqrt=True``) and starts ``v`` at ``initial_scale``: all set from here.
    ``form="keras"`` is ``keras.optimizers.RMSprop``'s update (``alpha`` is Keras' ``rho``)::

        d  <- sqrt(v - gc**2 + eps) if centered else sqrt(v + eps)   (eps INSIDE the root)
        b  <- momentum * b + lr * g / d;  p <- p - b      if momentum (lr inside the buffer)
        p  <- p - lr * g / d                              otherwise

    so with ``form="keras"`` the ``momentum`` slot holds Keras' buffer (``lr`` included).
    """

    lr: float
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0
    form: Literal["torch", "keras"] = "torch"
    name: Literal["rmsprop"] = "rmsprop"

    def __post_init__(self) -> None:
        _check_numbers(self, ("lr", "alpha", "eps", "momentum", "weight_decay"))
        _require_bool("rmsprop.centered", self.centered)
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.momentum < 0:
            raise SpecError(f"rmsprop needs lr > 0, eps > 0, momentum >= 0, weight_decay >= 0; got {self}")
        if not (0 <= self.alpha < 1):
            raise SpecError(f"rmsprop.alpha must lie in [0, 1), got {self.alpha}")
        _check_form(self)


@dataclass(frozen=True, kw_only=True)
class SGDSpec:
    """SGD with momentum in PyTorch's form (``torch.optim.SGD``, dampening 0)::

        g <- g + weight_decay * p
        b <- g at the first step, then momentum * b + g              (slot ``momentum``)
        g <- g + momentum * b  if nesterov  else  b                  (when momentum > 0)
        p <- p - lr * g

    Since ``b`` starts at 0 this equals ``optax.sgd``'s trace; Keras' SGD folds lr into its
    velocity (``v <- m v - lr g``), the same update only while lr is constant.
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name: Literal["sgd"] = "sgd"

    def __post_init__(self) -> None:
        _check_numbers(self, ("lr", "momentum", "weight_decay"))
        _require_bool("sgd.nesterov", self.nesterov)
        if self.lr <= 0 or self.momentum < 0 or self.weight_decay < 0:
            raise SpecError(f"sgd needs lr > 0, momentum >= 0, weight_decay >= 0; got {self}")
        if self.nesterov and self.momentum == 0:
            raise SpecError("sgd.nesterov needs momentum > 0 (as in torch.optim.SGD)")


OptimizerSpec = AdamSpec | RMSpropSpec | SGDSpec
OPTIMIZER_TYPES: dict[str, type] = {"adam": AdamSpec, "rmsprop": RMSpropSpec, "sgd": SGDSpec}


def optimizer_slots(opt: OptimizerSpec) -> tuple[str, ...]:
    """The per-parameter buffers of ``opt`` in canonical form (see ``OptimizerState``)."""
    if isinstance(opt, AdamSpec):
        return ("m", "v")
    if isinstance(opt, RMSpropSpec):
        return ("v", *(("grad_avg",) if opt.centered else ()), *(("momentum",) if opt.momentum else ()))
    return ("momentum",) if opt.momentum else ()


def optimizer_from_dict(data: dict[str, Any]) -> OptimizerSpec:
    kwargs = dict(data)
    name = kwargs.get("name", "adam")
    cls = OPTIMIZER_TYPES.get(name)
    if cls is None:
        raise SpecError(f"unknown optimiser {name!r}; known: {', '.join(OPTIMIZER_TYPES)}")
    return cls(**kwargs)


def _check_form(opt: Any) -> None:
    """``form`` is torch's or Keras'; Keras' weight decay is decoupled, which the spec has no form for."""
    if opt.form not in ("torch", "keras"):
        raise SpecError(f"{opt.name}.form must be 'torch' or 'keras', got {opt.form!r}")
    if opt.form == "keras" and opt.weight_decay:
        raise SpecError(
            f"{opt.name}.form 'keras' with weight_decay {opt.weight_decay}: Keras' weight decay is decoupled "
            "(p -= lr·wd·p), not torch's L2 on the gradient; the spec has no decoupled form: set weight_decay 0"
        )


def _check_numbers(obj: Any, names: tuple[str, ...]) -> None:
    for fname in names:
        value = getattr(obj, fname)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{obj.name}.{fname} must be a finite number, got {value!r}")
        object.__setattr__(obj, fname, float(value))


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


CROSS_DEVICE_BATCHNORM: tuple[str, ...] = ("sync", "per_device")


@dataclass(frozen=True, kw_only=True)
class DataParallelSpec:
    """What changes when a step's batch is split over devices (``--devices N``).

    ``batchnorm``: where BatchNorm takes its batch statistics. ``"sync"``: over the global batch
    (torch ``SyncBatchNorm``, Keras ``BatchNormalization(synchronized=True)``, a mean over the
    mesh's batch axis in JAX), so the N-device step is the one-device step on the concatenated
    batch. ``"per_device"``: over each device's rows (the default of DDP, of Keras under
    ``MirroredStrategy`` and of a Flax BatchNorm without ``axis_name``), so an N-device step
    differs from the one-device step; running statistics are device 0's. Stated here once and
    converted per framework (``docs/data-parallel.md``); no effect without BatchNorm.
    """

    batchnorm: str = "sync"

    def __post_init__(self) -> None:
        if self.batchnorm not in CROSS_DEVICE_BATCHNORM:
            raise SpecError(
                f"data_parallel.batchnorm must be one of {', '.join(CROSS_DEVICE_BATCHNORM)}, got {self.batchnorm!r}"
            )
