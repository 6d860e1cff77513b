"""Figures: training curves, confusion matrix, ROC, reliability diagram, galleries.

Every function draws one figure with matplotlib's Agg backend (no display
needed), writes it as a PNG, and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .metrics import expected_calibration_error, reliability_curve, roc_auc, roc_curve

__all__ = ["confusion", "gallery", "labeled_gallery", "misclassified", "reliability", "roc", "training_curves"]

CLASS_NAMES = ("FRI", "FRII")
#: Colours of the labels in galleries: FRI, FRII, and rows that were not classified.
LABEL_COLORS = {"FRI": "#1f5fbf", "FRII": "#c8102e", "failed": "0.45"}


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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, frameon=False)  # below: never on a bar
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
    # constrained layout keeps the figure title above the panels' titles, however few panels there are
    fig, axes = _figure(nrows, ncols, figsize=(2.1 * ncols, 2.3 * nrows), squeeze=False, layout="constrained")
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


def labeled_gallery(
    panels: list[tuple[np.ndarray | None, str, str, str]],
    path: str | os.PathLike,
    ncols: int | None = None,
    suptitle: str | None = None,
) -> tuple[Path, int]:
    """Draw labeled cutouts in a grid, readable at a glance, and write a PNG.

    Parameters
    ----------
    panels : list of (image, title, label, kind)
        One per panel: the canonical uint8 image (None: an empty grey
        panel), a title (the source), a label drawn on the image (class and
        probability, or the status) and its kind, ``FRI``, ``FRII`` or
        ``failed``, which sets the colour of the label and of the frame.
    path : path
        The PNG to write.
    ncols : int, optional
        Panels per row (default: up to 6).
    suptitle : str, optional
        A heading.

    Returns
    -------
    (pathlib.Path, int)
        The PNG and the number of panels that show an image.
    """
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Patch

    stretch = PowerNorm(gamma=0.5, vmin=0, vmax=255)
    n = len(panels)
    ncols = max(1, min(ncols or 6, max(n, 1)))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = _figure(nrows, ncols, figsize=(2.3 * ncols, 2.5 * nrows + 0.7), squeeze=False, layout="constrained")
    drawn = 0
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            if n == 0 and k == 0:
                ax.text(0.5, 0.5, "no rows to show", ha="center", va="center", transform=ax.transAxes)
            continue
        image, title, label, kind = panels[k]
        color = LABEL_COLORS.get(kind, LABEL_COLORS["failed"])
        if image is not None:
            # the canonical pixels, shown with a square-root stretch so that faint emission can be seen
            ax.imshow(np.asarray(image), cmap="inferno", origin="lower", norm=stretch, interpolation="nearest")
            drawn += 1
        else:
            ax.set_facecolor("0.92")
            ax.set(xlim=(0, 150), ylim=(0, 150), aspect="equal")  # the size of an image panel
            ax.text(0.5, 0.42, "no image", ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=9)
        ax.text(
            0.04,
            0.96,
            label,
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8.5,
            fontweight="bold",
            color="white",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": color, "edgecolor": "none", "alpha": 0.9},
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)
        ax.set_title(title, fontsize=7.5)
    fig.legend(
        handles=[
            Patch(color=LABEL_COLORS[k], label=t)
            for k, t in (("FRI", "FRI"), ("FRII", "FRII"), ("failed", "not classified"))
        ],
        loc="outside lower center",
        ncol=3,
        frameon=False,
        fontsize=8,
    )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path), drawn


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
