"""Figures: training curves, confusion matrix, ROC, reliability diagram, galleries.

Every function draws one figure with matplotlib's Agg backend (no display
needed), writes it as a PNG, and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .metrics import reliability_curve, roc_auc, roc_curve

__all__ = ["confusion", "gallery", "misclassified", "reliability", "roc", "training_curves"]

CLASS_NAMES = ("FRI", "FRII")


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _save(fig, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curves(history: dict, path: str | os.PathLike) -> Path:
    """Plot training and validation loss and accuracy per epoch."""
    fig, (ax1, ax2) = _figure(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax1.plot(epochs, history["train_loss"], label="train")
    ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax2.plot(epochs, history["train_acc"], label="train")
    ax2.plot(epochs, history["val_acc"], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0.4, 1.0))
    best = history.get("best_epoch")
    for ax in (ax1, ax2):
        if best:
            ax.axvline(best, color="grey", ls=":", label=f"kept (epoch {best})")
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion(matrix: np.ndarray, path: str | os.PathLike) -> Path:
    """Draw a 2x2 confusion matrix with counts and row fractions."""
    matrix = np.asarray(matrix)
    fig, ax = _figure(figsize=(4.2, 3.8))
    frac = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{frac[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
                fontsize=12,
            )
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, path)


def roc(labels: np.ndarray, prob: np.ndarray, path: str | os.PathLike) -> Path:
    """Plot the ROC curve of P(FRII) with its area."""
    fpr, tpr, _ = roc_curve(labels, prob)
    fig, ax = _figure(figsize=(4.2, 4.0))
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {roc_auc(labels, prob):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.set(xlabel="false FRII rate", ylabel="true FRII rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reliability(labels: np.ndarray, prob: np.ndarray, path: str | os.PathLike, n_bins: int = 10) -> Path:
    """Draw the reliability diagram: accuracy against confidence per bin."""
    from .metrics import expected_calibration_error

    conf, acc, counts = reliability_curve(labels, prob, n_bins)
    fig, ax = _figure(figsize=(4.2, 4.0))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    keep = counts > 0
    ax.bar(centers[keep], acc[keep], width=edges[1] - edges[0], edgecolor="k", alpha=0.6, label="accuracy")
    ax.plot(conf[keep], acc[keep], "o-", color="C1", label="accuracy at mean confidence")
    ax.plot([0.5, 1], [0.5, 1], color="grey", ls=":", label="perfect calibration")
    for c, a, n in zip(centers[keep], acc[keep], counts[keep]):
        ax.text(c, min(a + 0.02, 1.0), str(n), ha="center", fontsize=7)
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0.5, 1),
        ylim=(0, 1.05),
        title=f"Reliability (ECE = {expected_calibration_error(labels, prob, n_bins):.3f})",
    )
    ax.legend(loc="upper left")
    return _save(fig, path)


def gallery(
    images: list[np.ndarray | None],
    titles: list[str],
    path: str | os.PathLike,
    ncols: int = 6,
    colors: list[str] | None = None,
    suptitle: str | None = None,
) -> Path:
    """Draw images in a grid with a title each; a missing image is an empty panel."""
    n = max(len(titles), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure(nrows, ncols, figsize=(2.1 * ncols, 2.3 * nrows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(titles):
            ax.axis("off")
            continue
        img = images[k]
        if img is not None:
            ax.imshow(np.asarray(img), cmap="inferno", origin="lower", vmin=0, vmax=255)
        else:
            ax.set_facecolor("0.85")
            ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes, color="0.3")
        ax.set_title(titles[k], fontsize=7, color=(colors[k] if colors else "black"))
    if suptitle:
        fig.suptitle(suptitle)
    return _save(fig, path)


def misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    prob: np.ndarray,
    which: np.ndarray,
    path: str | os.PathLike,
    names: list[str] | None = None,
    max_images: int = 48,
) -> Path:
    """Draw a gallery of the misclassified images with truth and P(FRII)."""
    which = list(which)[:max_images]
    titles = [
        (f"{names[i]}\n" if names else f"#{i} ") + f"true {CLASS_NAMES[int(labels[i])]}, P(FRII)={prob[i]:.2f}"
        for i in which
    ]
    if not which:
        titles = ["no misclassified images"]
        return gallery([None], titles, path, ncols=1)
    return gallery([images[i] for i in which], titles, path, suptitle=f"{len(which)} misclassified")
