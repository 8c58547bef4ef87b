"""``gan-backends spec-from``: the spec JSON of the user's own model (:mod:`gan_backends.port.spec_from`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .._io import atomic_write_bytes, check_output
from ..presets import load_spec
from ..spec import SpecError
from .common import console, fail

ModelArgument = Annotated[
    str,
    typer.Argument(help="FILE.py:NAME (a model, a model class or a function building one) or a saved .keras model."),
]


def read_models(model: str, discriminator: Optional[str], latent_dim: Optional[int], base: Optional[str], name: str):
    """The :class:`~gan_backends.port.spec_from.ReadSpec` of the command line's models."""
    from ..port.spec_from import load_model, spec_from_models

    g = load_model(model)
    d = load_model(discriminator) if discriminator else None
    return spec_from_models(g, d, name=name, latent_dim=latent_dim, base=load_spec(base) if base else None)


def spec_from(
    model: ModelArgument,
    out: Annotated[Path, typer.Option(help="The spec JSON to write.")],
    discriminator: Annotated[Optional[str], typer.Option(help="The discriminator, given the same way.")] = None,
    latent_dim: Annotated[
        Optional[int], typer.Option(min=1, help="The noise size, where the generator does not tell it.")
    ] = None,
    base: Annotated[
        Optional[str], typer.Option(help="Preset or spec JSON giving what a model holds not: loss, optimisers.")
    ] = None,
    name: Annotated[str, typer.Option(help="The spec's name.")] = "ported",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Read the spec from your own model, in its own framework (a torch nn.Module, a Keras model,
    a Flax module), every framework default written out; what the spec cannot express is named
    with its position and class.

    The file FILE.py is run to build the model: it is your own code.
    """
    try:
        check_output(out, what="--out", overwrite=overwrite)
        read = read_models(model, discriminator, latent_dim, base, name)
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    atomic_write_bytes(out, (read.spec.to_json() + "\n").encode())
    for note in read.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    g, d = len(read.spec.generator), len(read.spec.discriminator)
    console.print(f"{read.framework} model read: generator {g} layers, discriminator {d} layers; spec written to {out}")
