"""The lessons' pictures, as PNG files (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, works without a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> Path:
    """The figure as a file, written under a temporary name and renamed: never half a picture (a full disk)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def loss_curve(history: list[dict], path, title: str = "") -> Path:
    """Training and validation loss per epoch; ``history`` holds dicts with ``epoch``, ``train_loss``
    and (optionally) ``val_loss``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="training", marker=".")
    if any("val_loss" in h for h in history):
        ax.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="validation", marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (normalized y)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "loss per epoch")
    fig.tight_layout()
    return _save(plt, fig, path)


def predicted_vs_actual(y_true, y_pred, path, title: str = "", max_points: int = 20000) -> Path:
    """Scatter of predicted against actual target values (original units), with the diagonal."""
    plt = _pyplot()
    y_true, y_pred = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
    if y_true.size > max_points:  # a readable plot, not a blob
        pick = np.random.default_rng(0).choice(y_true.size, max_points, replace=False)
        y_true, y_pred = y_true[pick], y_pred[pick]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(y_true, y_pred, s=4, alpha=0.4)
    lo = float(min(y_true.min(), y_pred.min())) if y_true.size else 0.0
    hi = float(max(y_true.max(), y_pred.max())) if y_true.size else 1.0
    ax.plot([lo, hi], [lo, hi], color="k", linewidth=1, label="perfect prediction")
    ax.set_xlabel("actual y")
    ax.set_ylabel("predicted y")
    ax.set_title(title or "test set: predicted vs actual")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)
