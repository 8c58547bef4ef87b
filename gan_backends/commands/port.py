"""``gan-backends port``: parse, run the port job (:mod:`gan_backends.port`), print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..presets import load_spec
from ..spec import SpecError
from .common import console, fail


def port(
    src: Annotated[
        Path, typer.Argument(help="A torch state_dict (.pt/.pth), Keras .weights.h5, Flax .msgpack, or ours.")
    ],
    to: Annotated[
        str,
        typer.Option(
            help="torch, tensorflow (Keras .weights.h5), jax (Flax msgpack), safetensors, or checkpoint: a training "
            "checkpoint with both optimisers' state, which train --resume continues in any backend."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The converted file.")],
    spec: Annotated[
        Optional[str], typer.Option(help="Preset name or spec JSON the weights belong to (default: read from --model).")
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="Your generator as FILE.py:NAME or .keras: the spec is read from it and it verifies the port."
        ),
    ] = None,
    discriminator_model: Annotated[Optional[str], typer.Option(help="Your discriminator, given the same way.")] = None,
    latent_dim: Annotated[
        Optional[int], typer.Option(min=1, help="The noise size, where --model does not tell it (a Flax module).")
    ] = None,
    kind: Annotated[Optional[str], typer.Option(help="The source's form when its name does not say it.")] = None,
    networks: Annotated[
        Optional[str], typer.Option(help="generator, discriminator, or both (default: what the file holds).")
    ] = None,
    map_: Annotated[
        list[str], typer.Option("--map", help="NATIVE_NAME=CANONICAL_NAME, repeatable, where the order does not match.")
    ] = [],  # noqa: B006
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run source and target on the same noise.")
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out (never the source).")] = False,
    step: Annotated[
        Optional[int],
        typer.Option(min=0, help="--to checkpoint: the G step the run stands at, where its optimisers keep no count."),
    ] = None,
) -> None:
    """Convert a checkpoint between stacks with the layouts right, then run the source and the
    converted model on the same inputs and print how far apart they are.

    --out is checked first: never the source, named for --to's form, not an existing file unless
    --overwrite. --to checkpoint reads the optimiser states a training script saved beside the
    networks (torch: {"netG": ..., "optimizerG": optimizerG.state_dict(), ...}), checks them
    against the spec's optimisers and writes a checkpoint for train --resume.

    With --model (your own model) the spec is read from it, or, with --spec too, checked against
    it: your model runs with the source's weights beside the converted one, and where they part
    the first layer that differs is named.

    Exit status: 0 converted (and agreeing within 1e-4 of the outputs' scale), 1 converted but
    disagreeing, 2 bad input (every mismatch named with both names and shapes).
    """
    from ..port import PortError
    from ..port import port as convert
    from ..port.spec_from import load_model, spec_from_models

    try:
        if spec is None and model is None and discriminator_model is None:
            raise SpecError("give --spec (a preset or spec JSON) or --model (your own model, the spec read from it)")
        models = {
            net: load_model(target)
            for net, target in (("generator", model), ("discriminator", discriminator_model))
            if target is not None
        }
        if spec is not None:
            gan = load_spec(spec)
        else:
            if "generator" not in models:
                raise SpecError("--discriminator-model alone does not say the generator: give --spec or --model too")
            gan = spec_from_models(models["generator"], models.get("discriminator"), latent_dim=latent_dim).spec
        mapping = dict(item.split("=", 1) for item in map_)
        parts = tuple(n.strip() for n in networks.split(",")) if networks else None
        result = convert(
            src, gan, to, out, kind=kind, networks=parts, mapping=mapping or None, check=verify, overwrite=overwrite,
            models=models, step=step,
        )  # fmt: skip
    except (PortError, SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(escape(result.summary()))
    console.print(f"written: {out}")
    raise typer.Exit(0 if result.passed else 1)
