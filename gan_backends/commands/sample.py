"""``gan-backends sample`` and ``discriminate``: G(z) and D(x) from any file ``port`` reads or
writes, with any backend (:mod:`gan_backends.train.sampling`), written as ``.npy``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from .._io import atomic_write_bytes, check_output
from ..presets import load_spec
from ..spec import SpecError
from .common import console, fail, installed_backend

CheckpointArg = Annotated[
    Path,
    typer.Argument(
        help="A training checkpoint, a parameter file (safetensors), or a native file (torch .pt/.pth, "
        "Keras .weights.h5, Flax .msgpack or orbax folder) with --spec."
    ),
]
SpecOption = Annotated[
    Optional[str], typer.Option(help="Preset name or spec JSON: needed for a native file (it holds weights only).")
]
KindOption = Annotated[Optional[str], typer.Option(help="The file's form when its name does not say it.")]
BackendOption = Annotated[str, typer.Option(help="The backend that runs it: torch, tensorflow, jax, numpy.")]
ModeOption = Annotated[Optional[str], typer.Option(help="The backend's execution mode.")]
DeviceOption = Annotated[Optional[str], typer.Option(help="cpu or cuda; default: GPU when present.")]


def _write_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # a pickled object array, or not .npy at all
        raise SpecError(f"{what} {path}: not a NumPy array file ({exc})") from None


def sample(
    checkpoint: CheckpointArg,
    backend: BackendOption = "torch",
    spec: SpecOption = None,
    kind: KindOption = None,
    noise: Annotated[
        Optional[Path],
        typer.Option(
            help="Noise (count, latent_dim) or (count, latent_dim, 1, 1) as .npy: the same z for any backend."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise when no --noise file is given.")] = 0,
    count: Annotated[int, typer.Option(min=1, help="Samples to draw when no --noise file is given.")] = 64,
    out: Annotated[Path, typer.Option(help="The samples G(z) as .npy.")] = Path("samples.npy"),
    layout: Annotated[str, typer.Option(help="Images in --out as NHWC (canonical) or NCHW (torch's).")] = "NHWC",
    png: Annotated[Optional[Path], typer.Option(help="Also draw them as a grid (or a 2-D scatter) here.")] = None,
    save_noise: Annotated[Optional[Path], typer.Option(help="Also write the noise used as .npy here.")] = None,
    mode: ModeOption = None,
    device: DeviceOption = None,
    weights: Annotated[
        Optional[str],
        typer.Option(
            help="ema: G's moving average (the default when the checkpoint holds one, spec 'ema'); raw: G's "
            "trained weights."
        ),
    ] = None,
) -> None:
    """Draw G(z) with any backend from a checkpoint, a parameter file or another framework's file
    (generator only is enough), from noise in a file or from a seed, so that two backends, or
    your own model and ours, draw from the same noise."""
    from ..train import sample as draw
    from ..train.sampling import resolve_weights

    try:
        for option, path in (("--out", out), ("--png", png), ("--save-noise", save_noise)):
            if path is not None:
                check_output(path, what=option, inputs=(checkpoint, noise))
        z = _load_npy(noise, "--noise") if noise is not None else None
        name = installed_backend(backend)
        gan = load_spec(spec) if spec is not None else None
        weights = resolve_weights(checkpoint, weights, kind)
        z, images = draw(
            checkpoint,
            name,
            noise=z,
            seed=seed,
            count=count,
            spec=gan,
            kind=kind,
            layout=layout,
            mode=mode,
            device=device,
            weights=weights,
        )
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    for path, array in ((out, images), (save_noise, z)):
        if path is not None:
            _write_npy(path, array)
    if png is not None:
        from ..train import save_sample_image

        grid = images.transpose(0, 2, 3, 1) if images.ndim == 4 and layout.upper() == "NCHW" else images
        save_sample_image(grid, png, f"{checkpoint.name} on {name}")
    drawn = "G's moving average (--weights ema)" if weights == "ema" else "G's trained weights (--weights raw)"
    console.print(f"{len(images)} samples of shape {images.shape[1:]} from {name}, {drawn}, written to {out}")


def discriminate(
    checkpoint: CheckpointArg,
    images: Annotated[
        Path, typer.Option(help="The images D judges, as .npy (N, H, W, C), or (N, C, H, W) with --layout NCHW.")
    ],
    backend: BackendOption = "torch",
    spec: SpecOption = None,
    kind: KindOption = None,
    out: Annotated[Path, typer.Option(help="D's logits (N, 1) as .npy.")] = Path("logits.npy"),
    layout: Annotated[str, typer.Option(help="--images as NHWC (canonical) or NCHW (torch's).")] = "NHWC",
    mode: ModeOption = None,
    device: DeviceOption = None,
) -> None:
    """D's logits on images with any backend, from a checkpoint, a parameter file or another
    framework's file (discriminator only is enough), in inference mode: a ported critic is
    checked like a ported generator."""
    from ..train import discriminate as judge

    try:
        check_output(out, what="--out", inputs=(checkpoint, images))
        x = _load_npy(images, "--images")
        name = installed_backend(backend)
        gan = load_spec(spec) if spec is not None else None
        logits = judge(checkpoint, name, x, spec=gan, kind=kind, layout=layout, mode=mode, device=device)
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    _write_npy(out, logits)
    console.print(f"{len(logits)} logits from {name} written to {out}")
