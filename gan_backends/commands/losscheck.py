"""``gan-backends losscheck``: parse, run the loss check (:mod:`gan_backends.losscheck`), print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .._io import check_output
from ..losscheck.isolate import DEFAULT_TIMEOUT_S
from ..spec import SpecError
from .common import console, err_console, fail


def losscheck(
    target: Annotated[str, typer.Argument(help="Your loss: MODULE:FUNCTION or path/to/file.py:FUNCTION.")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="torch, tensorflow or jax: where it runs.")],
    loss: Annotated[str, typer.Option(help="The zoo loss it should equal (hinge, least_squares, wgan_gp, r1, ...).")],
    role: Annotated[
        str,
        typer.Option(
            help="d: fn(real_logits, fake_logits); g: fn(fake_logits) (relativistic: fn(real_logits, fake_logits)); "
            "penalty: fn(critic, real, fake, alpha)."
        ),
    ],
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
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds one call of your loss may take before the check stops.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Cross-check your own GAN loss: run it in its framework on a battery of logits (or, for a
    penalty, a critic and batches), compare value and gradient with the float64 reference, and
    name the convention it follows when it differs.

    Your function runs in a child process: an exit, a hang (--timeout per call), a crash or a file
    that does not import is reported as exactly that.

    Exit status: 0 it matches (with the conventions you declared), 1 it differs (or exits, hangs,
    crashes while checked), 2 bad input (a file that does not load, a signature the role cannot
    call).
    """
    import sys

    from ..losscheck import parse
    from ..losscheck.isolate import run_isolated

    try:
        params = {k: float(v) for k, v in parse(loss_param).items()}
        reduced = tuple(d.strip() for d in dtypes.split(",") if d.strip())
        unknown = set(reduced) - {"bfloat16", "float16"}
        if unknown:
            raise SpecError(f"--dtypes takes bfloat16 and float16, got {sorted(unknown)}")
        if json_out is not None:
            check_output(json_out, what="--json", inputs=(target.rpartition(":")[0],))
        request = dict(
            target_path=target, loss=loss, role=role, framework=framework, conventions=parse(convention),
            inputs=inputs, loss_params=params, dtypes=reduced, seed=seed, name=target,
            json_out=json_out, width=console.width, colour=console.is_terminal,
        )  # fmt: skip
    except (SpecError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    outcome = run_isolated(request, timeout=timeout)
    if outcome.kind == "bad_input":
        raise fail(outcome.message)
    if outcome.kind != "done":
        err_console.print(f"[red]{outcome.kind}:[/] {escape(outcome.message)}", soft_wrap=True)
        raise typer.Exit(1)
    sys.stdout.write(outcome.text)
    sys.stdout.flush()
    raise typer.Exit(0 if outcome.passed else 1)
