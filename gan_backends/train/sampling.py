"""``sample``: G(z) from a checkpoint or parameter file, with any backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..errors import NonFiniteValues
from ..params import ParamTree, nonfinite_tensors
from ..spec import GANSpec, SpecError
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint

# -- sampling --------------------------------------------------------------------------------


def load_generator_state(path: str | Path) -> tuple[GANSpec, ParamTree, ParamTree]:
    """Spec, parameters and BatchNorm statistics from a training checkpoint or a parameter file
    (:func:`~gan_backends.params.save_params`, spec in its metadata; no statistics: the initial
    ones)."""
    from ..params import init_buffers, load_params, read_safetensors

    if read_safetensors(path)[0].get("format") == CHECKPOINT_FORMAT:
        ckpt = load_checkpoint(path)
        return ckpt.spec, ckpt.params, ckpt.buffers
    params, spec = load_params(path)
    if spec is None:
        raise SpecError(f"{path}: a parameter file without its spec; convert it with `gan-backends port`")
    return spec, params, init_buffers(spec)


def sample(
    path: str | Path,
    backend: str,
    *,
    noise: np.ndarray | None = None,
    seed: int = 0,
    count: int = 64,
    mode: str | None = None,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z, G(z))`` with the checkpoint's generator in inference mode (BatchNorm on its running
    statistics); ``z`` from ``noise`` (``(count, latent_dim)``) or N(0, 1) from ``seed``."""
    spec, params, buffers = load_generator_state(path)
    bad = nonfinite_tensors({**params, **buffers})
    if bad:
        raise NonFiniteValues(f"{path}: {', '.join(bad)}: G(z) would not be finite; nothing drawn")
    if noise is None:
        noise = np.random.default_rng(seed).standard_normal((count, spec.latent_dim), dtype=np.float32)
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] != spec.latent_dim:
        raise SpecError(f"noise: expected shape (count, {spec.latent_dim}) for spec {spec.name!r}, got {noise.shape}")
    if not np.isfinite(noise).all():
        raise SpecError(f"noise: {nonfinite_tensors({'noise': noise})[0]}; the noise must be finite")
    model = get_backend(backend)(spec, params, mode=mode, device=device)
    model.set_buffers(buffers)
    images = model.generate(noise)
    bad = nonfinite_tensors({f"G(z) on {backend}": images})
    if bad:
        raise NonFiniteValues(f"{path}: {bad[0]} from finite weights and noise (an overflow); nothing written")
    return noise, images
