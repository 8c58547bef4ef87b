"""BatchNorm, the one layer with running statistics: PyTorch's conventions, the momentum's two
meanings made explicit, and the one running-statistics rule every backend applies
(:meth:`BatchNorm.running_update`). Registered in :data:`~gan_backends.spec.layers.LAYER_TYPES`
on import, as the other layer modules are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .base import Shape, SpecError
from .layers import LAYER_TYPES, Layer

RunningVariance = Literal["unbiased", "biased"]


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels), PyTorch's conventions::

        train: y = (x - mean_B) / sqrt(var_B + eps) * scale + bias      (var_B biased, 1/n)
               running_mean <- (1 - momentum) * running_mean + momentum * mean_B
               running_var  <- (1 - momentum) * running_var  + momentum * var_B * n / (n - 1)
        eval:  y = (x - running_mean) / sqrt(running_var + eps) * scale + bias

    ``momentum`` is the weight of the NEW batch statistic (torch 0.1); Keras and Flax call
    ``1 - momentum`` their momentum (0.99). A momentum above 0.5 is almost surely Keras' or
    Flax's number written where torch's is meant (their 0.99 is torch's 0.01: running statistics
    that hardly move), so it is refused unless ``momentum_convention`` says which is meant:
    ``"keras"`` (also Flax's: the weight of the running value; stored as ``1 - momentum``) or
    ``"torch"`` (the number as given). ``running_var='unbiased'`` stores var_B·n/(n−1) as
    torch does; ``'biased'`` stores var_B as Keras and Flax do. Parameters ``scale`` (gamma) and
    ``bias`` (beta), shape ``(C,)``; buffers ``running_mean`` (starts 0) and ``running_var``
    (starts 1). Every network call in training updates the running statistics once.
    """

    type_name: ClassVar[str] = "BatchNorm"
    momentum: float = 0.1
    eps: float = 1e-5
    running_var: RunningVariance = "unbiased"
    momentum_convention: Literal["torch", "keras"] | None = None

    def __post_init__(self) -> None:
        for fname in ("momentum", "eps"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"BatchNorm.{fname} must be a number, got {value!r}")
            object.__setattr__(self, fname, float(value))
        if not (0.0 <= self.momentum <= 1.0):
            raise SpecError(
                f"BatchNorm.momentum (weight of the new batch statistic) must lie in [0, 1], got {self.momentum}"
            )
        if self.momentum_convention not in (None, "torch", "keras"):
            raise SpecError(
                f"BatchNorm.momentum_convention must be 'torch' or 'keras', got {self.momentum_convention!r}"
            )
        if self.momentum_convention == "keras":  # stored in torch's form, said so explicitly
            object.__setattr__(self, "momentum", 1.0 - self.momentum)
            object.__setattr__(self, "momentum_convention", "torch")
        elif self.momentum > 0.5 and self.momentum_convention is None:
            raise SpecError(
                f"BatchNorm.momentum {self.momentum:g} is the weight of the new batch statistic here (torch's "
                f"convention, default 0.1); {self.momentum:g} looks like Keras'/Flax's momentum, the weight of the "
                f"running value, which is {1.0 - self.momentum:.6g} here. Write {1.0 - self.momentum:.6g}, or add "
                '"momentum_convention": "keras" to keep Keras\' number, or "momentum_convention": "torch" if '
                f"{self.momentum:g} is meant"
            )
        if self.eps <= 0:
            raise SpecError(f"BatchNorm.eps must be positive, got {self.eps}")
        if self.running_var not in ("unbiased", "biased"):
            raise SpecError(f"BatchNorm.running_var must be 'unbiased' or 'biased', got {self.running_var!r}")

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"scale": (input_shape[-1],), "bias": (input_shape[-1],)}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"running_mean": (input_shape[-1],), "running_var": (input_shape[-1],)}

    def variance_factor(self, n: int) -> float:
        """What the biased batch variance over ``n`` values per channel is multiplied by before it
        enters the running variance: ``n / (n - 1)`` for ``running_var='unbiased'`` (torch's
        Bessel correction, which needs ``n ≥ 2``), 1 for ``'biased'`` (Keras, Flax)."""
        if self.running_var == "biased":
            return 1.0
        if n < 2:
            raise ValueError(f"BatchNorm with running_var='unbiased' needs more than 1 value per channel, got {n}")
        return n / (n - 1)

    def running_update(self, running_mean: Any, running_var: Any, mean: Any, var: Any, n: int) -> tuple[Any, Any]:
        """The running statistics after one training call whose batch mean is ``mean`` and whose
        biased variance is ``var`` over ``n`` values per channel (arrays of any framework)::

            running_mean <- (1 - momentum) * running_mean + momentum * mean
            running_var  <- (1 - momentum) * running_var  + momentum * var * variance_factor(n)
        """
        m, factor = self.momentum, self.variance_factor(n)
        return (1.0 - m) * running_mean + m * mean, (1.0 - m) * running_var + m * (var * factor)


LAYER_TYPES[BatchNorm.type_name] = BatchNorm
