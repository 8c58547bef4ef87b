"""What a check feeds the backends: one parameter tree and every input, drawn once with NumPy.

The frameworks' random number generators differ, so nothing is drawn inside a backend: the same
arrays go to every one of them (and, upcast exactly, to their float64 twins).

The buffers start as a model's do, with one exception: spectral norm's ``u``, ``v`` are settled
(:func:`settled_buffers`) rather than the two random unit vectors a fresh torch
``spectral_norm`` holds. An inference call computes ``σ = uᵀ W v`` from the stored pair; of two
random vectors that is a sum that cancels to about ``‖W‖_F / √(out·fan_in)``, far below the
kernel's top singular value, so each normalised kernel is scaled up a hundredfold and sngan-32's
D(x) reaches 1e16, with float32's error in it set by that cancellation (measured: 3.9e-5 of
D(x) in every stack, the float64 runs agreeing to 1e-14) rather than by the code. A settled
pair makes σ the kernel's spectral norm, as in a model after its first training calls, and as
torch's ``parametrizations.spectral_norm`` holds from construction (it runs 15 iterations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import TrainBatch
from ..params import ParamTree, init_buffers, init_params
from ..spec import GANSpec, layer_at

#: Power iterations that settle the check's spectral-norm vectors: torch's
#: ``parametrizations.spectral_norm`` runs 15 when it is applied.
SETTLE_ITERATIONS = 15


@dataclass(frozen=True)
class CheckInputs:
    """Everything a check feeds the backends, drawn from one NumPy seed."""

    params: dict[str, np.ndarray]
    z: np.ndarray
    real: np.ndarray
    batches: tuple[TrainBatch, ...]
    #: WGAN-GP's interpolation coefficients for the start gradients, ``(batch,)``; else None.
    alpha: np.ndarray | None = None
    #: The start buffers (:func:`settled_buffers`), set on every backend before anything runs.
    buffers: dict[str, np.ndarray] | None = None

    def astype(self, dtype: str) -> CheckInputs:
        """The same numbers in another dtype (float32 values upcast exactly to float64)."""
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        return CheckInputs(
            params={k: cast(v) for k, v in self.params.items()},
            z=cast(self.z),
            real=cast(self.real),
            batches=tuple(TrainBatch(cast(b.real), cast(b.z_d), cast(b.z_g), cast(b.alpha)) for b in self.batches),
            alpha=cast(self.alpha),
            buffers=None if self.buffers is None else {k: cast(v) for k, v in self.buffers.items()},
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
    params = init_params(spec, seed)
    buffers = settled_buffers(spec, params, seed)
    return CheckInputs(params=params, z=z, real=real, batches=batches, alpha=start_alpha, buffers=buffers)


def settled_buffers(spec: GANSpec, params: ParamTree, seed: int = 0) -> ParamTree:
    """:func:`~gan_backends.params.init_buffers`, each spectral-norm pair replaced by
    :data:`SETTLE_ITERATIONS` power iterations on its layer's kernel in ``params``, from the
    drawn ``u`` (``v = normalize(Wᵀu)``, ``u = normalize(W v)``, in float64, then cast to the
    spec's dtype). BatchNorm statistics stay as every framework starts them."""
    from ..backends.numpy.spectral import power_iteration  # NumPy only: the reference's math

    buffers = init_buffers(spec, seed)
    dtype = np.dtype(spec.numerics.dtype)
    for name in [n for n in buffers if n.endswith(".sn_u")]:
        prefix = name[: -len("sn_u")]
        net, *path, _ = name.split(".")
        sn = layer_at(spec.layers(net), path).spectral_norm
        kernel = np.asarray(params[prefix + "kernel"], np.float64)
        w = kernel.reshape(-1, kernel.shape[-1]).T  # (out, fan_in), the spec's matrix view
        settle = type(sn)(n_power_iterations=SETTLE_ITERATIONS, eps=sn.eps)
        u, v = power_iteration(w, np.asarray(buffers[name], np.float64), buffers[prefix + "sn_v"], settle)
        buffers[name], buffers[prefix + "sn_v"] = u.astype(dtype), v.astype(dtype)
    return buffers
