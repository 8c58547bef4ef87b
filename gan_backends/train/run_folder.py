"""The run's folder: claimed before a run starts (never a finished run overwritten unasked),
and a resumed run held to the checkpoint's (same seed, batch size, data)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._io import check_output
from ..errors import OutputRefused
from ..spec import SpecError
from .checkpoint import Checkpoint

if TYPE_CHECKING:
    from . import TrainConfig


# -- the run's folder and its continuation ----------------------------------------------------

#: What a run writes in its folder (and ``--overwrite`` clears): nothing else there is touched.
RUN_FILES = ("last.safetensors", "losses.csv", "losses.json", "losses.png", "metrics.json")


def _run_files(out: Path) -> list[Path]:
    return [out / name for name in RUN_FILES if (out / name).exists()] + sorted(out.glob("samples-*.png"))


def claim_out_dir(out: Path, *, resumes: bool, overwrite: bool) -> None:
    """Refuse a run folder that is a file, cannot be written, or holds files of its own when
    this run neither resumes nor may overwrite (a finished run would lose its checkpoint);
    with ``overwrite``, remove the earlier run's files (:data:`RUN_FILES`, sample grids)."""
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"--out {out} is a file; training writes a folder")
    check_output(out / "last.safetensors", what="--out", overwrite=True)
    if resumes or not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        held = out / "last.safetensors"
        what = f"a run's checkpoint ({held})" if held.exists() else "files"
        raise OutputRefused(
            f"--out {out} already holds {what}; continue it with --resume {held}, start again there "
            "with --overwrite, or choose another --out"
        )
    for path in _run_files(out):
        path.unlink()


#: What a resumed run must share with the checkpoint's run to be its continuation.
SAME_RUN_FIELDS = ("seed", "batch_size")


def check_same_run(ckpt: Checkpoint, config: TrainConfig, data: str, path: str | Path) -> None:
    """A resumed run continues the checkpoint's: the same seed, batch size and data (each
    draws the noise and batches of the steps to come), and more steps than it has done."""
    recorded = ckpt.meta.get("config", {})
    for name in SAME_RUN_FIELDS:
        if name in recorded and recorded[name] != getattr(config, name):
            raise SpecError(
                f"--resume {path}: its run has {name} {recorded[name]}, this one {getattr(config, name)}; "
                f"pass --{name.replace('_', '-')} {recorded[name]} to continue it"
            )
    if ckpt.meta.get("data", data) != data:
        raise SpecError(f"--resume {path}: its run trained on {ckpt.meta['data']!r}, this one on {data!r}")
    done = int(ckpt.meta["step"])
    if config.steps < done:
        raise SpecError(f"--resume {path}: it holds step {done}; --steps is the total to reach, give more than {done}")
