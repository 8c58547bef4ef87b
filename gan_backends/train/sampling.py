"""``sample`` and ``discriminate``: G(z) and D(x) from any file ``port`` reads or writes, with any backend.

The networks run in inference mode (BatchNorm on its running statistics, as after
``model.eval()`` in torch, ``training=False`` in Keras, ``use_running_average=True`` in Flax).
Arrays cross the boundary in the canonical layout, channels last; ``layout="NCHW"`` takes and
gives torch's channels-first images instead. ``sample`` draws from G's moving average where a
training checkpoint holds one (``spec.ema``), with G's own BatchNorm statistics, as BigGAN and
StyleGAN sample; ``weights="raw"`` draws from G's trained weights instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..errors import NonFiniteValues
from ..params import ParamTree, nonfinite_tensors
from ..spec import GANSpec, SpecError

#: The image layouts the commands read and write: the canonical one and torch's.
IMAGE_LAYOUTS = ("NHWC", "NCHW")
#: Which generator weights ``sample`` runs: G's moving average, or G's trained weights.
WEIGHTS = ("ema", "raw")


def _checkpoint_ema(path: str | Path, kind: str | None) -> ParamTree | None:
    """G's moving average held in ``path`` (a training checkpoint of a spec with ``ema``), or None."""
    from ..params import read_safetensors
    from ..port.native import SAFETENSORS, canonical_kind, detect_kind
    from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    path = Path(path)
    if (canonical_kind(kind) if kind else detect_kind(path)) != SAFETENSORS.name:
        return None
    if read_safetensors(path)[0].get("format") != CHECKPOINT_FORMAT:
        return None
    ema = load_checkpoint(path).ema
    return None if ema is None else ema.params


def resolve_weights(path: str | Path, weights: str | None = None, kind: str | None = None) -> str:
    """``ema`` or ``raw``: ``weights`` checked against what ``path`` holds; None picks ``ema``
    where the file holds G's moving average and ``raw`` otherwise."""
    held = _checkpoint_ema(path, kind) is not None
    if weights is None:
        return "ema" if held else "raw"
    key = weights.strip().lower()
    if key not in WEIGHTS:
        raise SpecError(f"--weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")
    if key == "ema" and not held:
        raise SpecError(
            f"--weights ema: {path} holds no moving average of G (only a training checkpoint of a spec "
            "with 'ema' does); use --weights raw"
        )
    return key


def load_generator_state(
    path: str | Path, *, spec: GANSpec | None = None, kind: str | None = None
) -> tuple[GANSpec, ParamTree, ParamTree]:
    """Spec, parameters and BatchNorm statistics to run the generator from ``path``: a training
    checkpoint, a parameter file (one network or both), or a native file with ``spec`` (see
    :func:`gan_backends.port.load.load_network`)."""
    from ..port.load import load_network

    state = load_network(path, "generator", spec=spec, kind=kind)
    return state.spec, state.params, state.buffers


def _checked_layout(layout: str) -> str:
    key = layout.strip().upper()
    if key not in IMAGE_LAYOUTS:
        raise SpecError(f"--layout: expected one of {', '.join(IMAGE_LAYOUTS)}, got {layout!r}")
    return key


def _noise(noise: np.ndarray | None, spec: GANSpec, seed: int, count: int) -> np.ndarray:
    """``(count, latent_dim)`` noise; ``(N, latent_dim, 1, 1)`` as the DCGAN tutorials draw it
    is the same noise (trailing axes of size 1 are dropped)."""
    if noise is None:
        return np.random.default_rng(seed).standard_normal((count, spec.latent_dim), dtype=np.float32)
    noise = np.asarray(noise)
    if noise.ndim > 2 and all(n == 1 for n in noise.shape[2:]):
        noise = noise.reshape(noise.shape[:2])
    if noise.ndim != 2 or noise.shape[1] != spec.latent_dim or noise.dtype.kind != "f":
        raise SpecError(
            f"noise: expected floats shaped (count, {spec.latent_dim}) or (count, {spec.latent_dim}, 1, 1) "
            f"for spec {spec.name!r}, got {noise.dtype} {noise.shape}"
        )
    if not np.isfinite(noise).all():
        raise SpecError(f"noise: {nonfinite_tensors({'noise': noise})[0]}; the noise must be finite")
    return noise


def _run_model(spec: GANSpec, params: ParamTree, buffers: ParamTree, path: Path, backend: str, **options):
    bad = nonfinite_tensors({**params, **buffers})
    if bad:
        raise NonFiniteValues(f"{path}: {', '.join(bad)}: the outputs would not be finite; nothing computed")
    model = get_backend(backend)(spec, params, **options)
    model.set_buffers(buffers)
    return model


def sample(
    path: str | Path,
    backend: str,
    *,
    noise: np.ndarray | None = None,
    seed: int = 0,
    count: int = 64,
    spec: GANSpec | None = None,
    kind: str | None = None,
    layout: str = "NHWC",
    mode: str | None = None,
    device: str | None = None,
    weights: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z, G(z))`` with the file's generator in inference mode; ``z`` from ``noise``
    (``(count, latent_dim)`` or ``(count, latent_dim, 1, 1)``) or N(0, 1) from ``seed``; images
    in ``layout`` (``NHWC``, or ``NCHW`` as torch gives them). ``weights``: ``ema`` (G's moving
    average, the default where the file holds one) or ``raw`` (:func:`resolve_weights`)."""
    layout = _checked_layout(layout)
    use = resolve_weights(path, weights, kind)
    spec, params, buffers = load_generator_state(path, spec=spec, kind=kind)
    if use == "ema":  # the averaged weights, run with G's own BatchNorm statistics
        average = _checkpoint_ema(path, kind) or {}
        params = {**params, **{k: np.asarray(v, spec.numerics.dtype) for k, v in average.items()}}
    noise = _noise(noise, spec, seed, count)
    images = _run_model(spec, params, buffers, Path(path), backend, mode=mode, device=device).generate(noise)
    bad = nonfinite_tensors({f"G(z) on {backend}": images})
    if bad:
        raise NonFiniteValues(f"{path}: {bad[0]} from finite weights and noise (an overflow); nothing written")
    if layout == "NCHW" and images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    return noise, images


def discriminate(
    path: str | Path,
    backend: str,
    images: np.ndarray,
    *,
    spec: GANSpec | None = None,
    kind: str | None = None,
    layout: str = "NHWC",
    mode: str | None = None,
    device: str | None = None,
) -> np.ndarray:
    """D's logits ``(N, 1)`` on ``images`` (``layout`` ``NHWC`` or ``NCHW``) with the file's
    discriminator in inference mode: a ported critic is checked like a ported generator."""
    from ..port.load import load_network

    layout = _checked_layout(layout)
    state = load_network(path, "discriminator", spec=spec, kind=kind)
    x = np.asarray(images)
    if layout == "NCHW" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    want = tuple(state.spec.data_shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or x.dtype.kind != "f":
        shown = want if layout == "NHWC" or len(want) != 3 else (want[2], want[0], want[1])
        expected = ", ".join(map(str, shown))
        raise SpecError(f"--images: expected floats (N, {expected}) ({layout}), got {x.dtype} {np.shape(images)}")
    if not np.isfinite(x).all():
        raise SpecError(f"--images: {nonfinite_tensors({'images': x})[0]}; the images must be finite")
    model = _run_model(state.spec, state.params, state.buffers, Path(path), backend, mode=mode, device=device)
    logits = model.discriminate(x.astype(state.spec.numerics.dtype, copy=False))
    bad = nonfinite_tensors({f"D(x) on {backend}": logits})
    if bad:
        raise NonFiniteValues(f"{path}: {bad[0]} from finite weights and images (an overflow); nothing written")
    return logits
