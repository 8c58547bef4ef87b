"""What a check feeds the backends: one parameter tree and every input, drawn once with NumPy.

The frameworks' random number generators differ, so nothing is drawn inside a backend: the same
arrays go to every one of them (and, upcast exactly, to their float64 twins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import TrainBatch
from ..params import init_params
from ..spec import GANSpec


@dataclass(frozen=True)
class CheckInputs:
    """Everything a check feeds the backends, drawn from one NumPy seed."""

    params: dict[str, np.ndarray]
    z: np.ndarray
    real: np.ndarray
    batches: tuple[TrainBatch, ...]
    #: WGAN-GP's interpolation coefficients for the start gradients, ``(batch,)``; else None.
    alpha: np.ndarray | None = None

    def astype(self, dtype: str) -> CheckInputs:
        """The same numbers in another dtype (float32 values upcast exactly to float64)."""
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        return CheckInputs(
            params={k: cast(v) for k, v in self.params.items()},
            z=cast(self.z),
            real=cast(self.real),
            batches=tuple(TrainBatch(cast(b.real), cast(b.z_d), cast(b.z_g), cast(b.alpha)) for b in self.batches),
            alpha=cast(self.alpha),
        )


def draw_inputs(spec: GANSpec, *, batch_size: int, steps: int, seed: int) -> CheckInputs:
    """Parameters from ``seed``; noise ~ N(0, 1); "real" data ~ U(-1, 1), the tanh range;
    WGAN-GP's interpolation coefficients ~ U(0, 1) (drawn only for that penalty)."""
    rng = np.random.default_rng([seed, 1])
    dtype = np.dtype(spec.numerics.dtype)
    gp = spec.loss.penalty == "wgan_gp"

    def noise(*lead: int) -> np.ndarray:
        return rng.standard_normal((*lead, batch_size, spec.latent_dim)).astype(dtype)

    def data(*lead: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (*lead, batch_size, *spec.data_shape)).astype(dtype)

    def alpha(*lead: int) -> np.ndarray | None:
        return rng.uniform(0.0, 1.0, (*lead, batch_size)).astype(dtype) if gp else None

    # The start inputs are drawn before the batches: they must not depend on the step count.
    z, real, start_alpha = noise(), data(), alpha()
    batches = tuple(
        TrainBatch(real=data(spec.n_critic), z_d=noise(spec.n_critic), z_g=noise(), alpha=alpha(spec.n_critic))
        for _ in range(steps)
    )
    return CheckInputs(params=init_params(spec, seed), z=z, real=real, batches=batches, alpha=start_alpha)
