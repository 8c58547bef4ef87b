"""What a run draws and writes beside its checkpoint: loss histories, curves, sample grids."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text

# -- outputs ---------------------------------------------------------------------------------


def write_history(out: Path, history: list[dict[str, float]]) -> None:
    atomic_write_text(out / "losses.json", json.dumps(history))
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(out / "losses.csv", buf.getvalue())


def read_history(out: Path) -> list[dict[str, float]]:
    path = out / "losses.json"
    return json.loads(path.read_text()) if path.exists() else []


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def save_sample_image(samples: np.ndarray, path: str | Path, title: str, data: np.ndarray | None = None) -> None:
    """A scatter (over ``data``, when given) for 2-D samples; otherwise a grid of images
    (channels-last; flat samples of a square size are shown as square images)."""
    plt = _pyplot()
    flat = samples.reshape(len(samples), -1)
    if flat.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        if data is not None:
            real = data.reshape(len(data), -1)[:2000]
            ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="data")
        ax.scatter(flat[:, 0], flat[:, 1], s=6, c="tab:red", label="G(z)")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8)
    else:
        images = samples if samples.ndim == 4 else _as_images(samples)
        lo, hi = float(images.min()), float(images.max())
        images = (images - lo) / max(hi - lo, 1e-12)
        n = len(images)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        h, w, c = images.shape[1:]
        grid = np.ones((rows * (h + 1), cols * (w + 1), c), dtype=np.float32)
        for i, img in enumerate(images):
            r, k = divmod(i, cols)
            grid[r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = img
        fig, ax = plt.subplots(figsize=(6, 6 * rows / cols))
        ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, interpolation="nearest")
        ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_png(fig, Path(path))
    plt.close(fig)


def _as_images(samples: np.ndarray) -> np.ndarray:
    side = int(round(math.sqrt(samples.shape[1])))
    if side * side != samples.shape[1]:
        return samples.reshape(len(samples), 1, -1, 1)  # a strip per sample
    return samples.reshape(len(samples), side, side, 1)


def plot_losses(history: list[dict[str, float]], path: Path) -> None:
    if not history:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for term in ("d_loss", "g_loss"):
        ax.plot(steps, [h[term] for h in history], label=term, lw=1)
    ax.set(xlabel="step", ylabel="loss", title="losses")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)
