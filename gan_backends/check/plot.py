"""The divergence plot: free-running and lock-step errors over the training steps (PNG)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .._io import atomic_write_bytes
from ..spec import NETWORKS
from .model import CheckReport
from .tolerances import tolerance
from .verdicts import ROUNDING_FLIPS


def _clean(values: list[float]) -> list[float]:
    # Log axes cannot show 0 or NaN: both become gaps.
    return [v if math.isfinite(v) and v > 0 else math.nan for v in values]


def plot_divergence(report: CheckReport, path: str | Path) -> None:
    """Two rows (free-running, lock-step) by two columns (generator, discriminator), log scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True, squeeze=False)
    run, lock = report.free_run, report.lock
    for col, net in enumerate(NETWORKS):
        ax = axes[0][col]
        if run is not None:
            for (a, b), nets in run.cross.items():
                rel = nets[net].rel
                ax.plot(range(1, len(rel) + 1), _clean(rel), label=f"{a} vs {b}")
            for name, nets in run.drift.items():
                rel = nets[net].rel
                ax.plot(range(1, len(rel) + 1), _clean(rel), linestyle="--", label=f"{name} own drift (f32 vs f64)")
        ax.set_title(f"{net} parameters, free-running")
        ax.set_ylabel("relative divergence")
        ax = axes[1][col]
        if lock is not None:
            for name, nets in lock.update.items():
                rel = nets[net].rel
                ax.plot(range(1, len(rel) + 1), _clean(rel), marker=".", linestyle="none", label=name)
            if lock.floor.get(net):
                base = tolerance(report.spec.numerics.dtype, "float64", report.spec.numerics.matmul_precision).update
                tol = [base + ROUNDING_FLIPS * f for f in lock.floor[net]]
                ax.plot(range(1, len(tol) + 1), tol, color="black", linewidth=1, label="tolerance")
        ax.set_title(f"{net} update, lock-step vs {lock.reference if lock else 'reference'}")
        ax.set_ylabel("relative update error")
        ax.set_xlabel("step")
    for ax in axes.flat:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    n = report.spec.numerics
    fig.suptitle(
        f"gan-backends check: {report.spec.name}, {n.dtype}/{n.matmul_precision}, "
        f"batch {report.settings['batch_size']}, seed {report.settings['seed']}"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
