"""``gan-backends losscheck``: parse, run the loss check (:mod:`gan_backends.losscheck`), print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..spec import SpecError
from .common import console, fail


def losscheck(
    target: Annotated[str, typer.Argument(help="Your loss: MODULE:FUNCTION or path/to/file.py:FUNCTION.")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="torch, tensorflow or jax: where it runs.")],
    loss: Annotated[str, typer.Option(help="The zoo loss it should equal (hinge, least_squares, wgan_gp, r1, ...).")],
    role: Annotated[str, typer.Option(help="d: fn(real_logits, fake_logits); g: fn(fake_logits); penalty.")],
    convention: Annotated[
        list[str], typer.Option(help="KEY=VALUE you follow on purpose (scale=0.5, reduction=sum, ...); repeatable.")
    ] = [],  # noqa: B006
    loss_param: Annotated[
        list[str], typer.Option(help="The zoo loss's own parameters: a=, b=, c=, d_scale=, penalty_weight=.")
    ] = [],  # noqa: B006
    inputs: Annotated[str, typer.Option(help="logits, or probabilities (your D ends in a Sigmoid).")] = "logits",
    dtypes: Annotated[str, typer.Option(help="Reduced precisions to run the ordinary case in ('' for none).")] = (
        "bfloat16,float16"
    ),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    seed: int = 0,
) -> None:
    """Cross-check your own GAN loss: run it in its framework on a battery of logits (or, for a
    penalty, a critic and batches), compare value and gradient with the float64 reference, and
    name the convention it follows when it differs.

    Exit status: 0 it matches (with the conventions you declared), 1 it differs, 2 bad input.
    """
    from ..backends import BackendUnavailable
    from ..losscheck import ConventionError, check_loss, load_function, parse
    from ..losscheck.report import render, write_json

    try:
        fn = load_function(target)
        params = {k: float(v) for k, v in parse(loss_param).items()}
        reduced = tuple(d.strip() for d in dtypes.split(",") if d.strip())
        unknown = set(reduced) - {"bfloat16", "float16"}
        if unknown:
            raise SpecError(f"--dtypes takes bfloat16 and float16, got {sorted(unknown)}")
        report = check_loss(
            fn, loss, role=role, framework=framework, conventions=parse(convention), inputs=inputs,
            loss_params=params, dtypes=reduced, seed=seed, name=target,
        )  # fmt: skip
    except (SpecError, ConventionError, BackendUnavailable, ValueError, ImportError, OSError) as exc:
        raise fail(str(exc)) from None
    render(report, console)
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"written: {json_out}")
    raise typer.Exit(0 if report.passed else 1)
