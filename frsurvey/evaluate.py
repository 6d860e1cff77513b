"""Evaluation: metrics of a model on labeled images, cross-validation, reports.

:func:`evaluate_model` scores canonical images the way ``classify`` does
(calibrated, averaged over nothing but what the model itself averages) and
returns :func:`frsurvey.metrics.binary_metrics`; :func:`cross_validate`
trains and scores ``k`` models on ``k`` stratified folds; :func:`write_report`
writes the JSON and the figures.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .metrics import binary_metrics
from .models import FRClassifier
from .preprocess import to_model_input

__all__ = ["cross_validate", "evaluate_model", "json_safe", "predict", "write_report"]

log = logging.getLogger(__name__)


def predict(
    model: FRClassifier, images: np.ndarray, batch_size: int = 128, device="cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(P(FRII), spread)`` for uint8 canonical images, as ``classify`` computes them."""
    model = model.to(device).eval()
    probs, spreads = [], []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(to_model_input(images[i : i + batch_size])).to(device)
        p, s = model.predict(x)
        probs.append(p[:, 1].double().cpu().numpy())
        spreads.append(s.double().cpu().numpy())
    if not probs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(probs), np.concatenate(spreads)


def evaluate_model(model: FRClassifier, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Return the metrics of ``model`` on labeled canonical images.

    The result is :func:`~frsurvey.metrics.binary_metrics` plus ``prob``
    (P(FRII) per image) and ``spread`` (FR_UNCERTAINTY per image), as lists.
    """
    prob, spread = predict(model, images)
    out = binary_metrics(np.asarray(labels), prob)
    out["prob"] = prob.tolist()
    out["spread"] = spread.tolist()
    return out


def cross_validate(
    images: np.ndarray,
    labels: np.ndarray,
    config,
    folds: int = 5,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train and score one model per fold; return per-fold metrics and their mean and spread.

    Folds are stratified by ``strata`` (default: the labels). Each model is
    trained by :func:`frsurvey.train.train_model` on the other folds (which
    hold out their own validation split for early stopping and calibration)
    and scored on its fold.
    """
    from dataclasses import replace

    from .train import train_model

    labels = np.asarray(labels)
    strata = labels if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), dtype=int)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    per_fold = []
    for k in range(folds):
        test = fold_of == k
        model, _ = train_model(images[~test], labels[~test], replace(config, seed=config.seed + k))
        m = evaluate_model(model, images[test], labels[test])
        m.pop("prob")
        m.pop("spread")
        log.info("fold %d/%d: accuracy %.3f, AUC %.3f, ECE %.3f", k + 1, folds, m["accuracy"], m["roc_auc"], m["ece"])
        per_fold.append(m)
    summary = {}
    for key in ("accuracy", "roc_auc", "ece", "nll"):
        values = np.array([m[key] for m in per_fold], dtype=float)
        summary[key] = {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values, ddof=1)) if folds > 1 else 0.0,
        }
    return {"folds": folds, "seed": seed, "per_fold": per_fold, "summary": summary}


def json_safe(value: Any) -> Any:
    """Return ``value`` with numpy scalars and arrays as Python values and NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def write_report(
    out_dir: str | os.PathLike,
    metrics: dict[str, Any],
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    history: dict[str, Any] | None = None,
    names: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json`` and the figures into ``out_dir``; return the paths by kind.

    Figures: ``training.png`` (loss and accuracy per epoch, when ``history``
    is given), ``confusion.png``, ``roc.png``, ``reliability.png`` and
    ``misclassified.png`` (a gallery of the misclassified images, when
    ``images`` are given). NaN values become ``null`` in the JSON.
    """
    from . import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["json"] = out / "metrics.json"
    paths["json"].write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    if history:
        paths["training"] = plots.training_curves(history, out / "training.png")
    prob = metrics.get("prob")
    if prob is not None and labels is not None:
        prob = np.asarray(prob, dtype=float)
        labels = np.asarray(labels)
        paths["confusion"] = plots.confusion(np.asarray(metrics["confusion_matrix"]), out / "confusion.png")
        paths["roc"] = plots.roc(labels, prob, out / "roc.png")
        paths["reliability"] = plots.reliability(labels, prob, out / "reliability.png")
        if images is not None:
            wrong = np.flatnonzero((prob >= 0.5).astype(int) != labels)
            paths["misclassified"] = plots.misclassified(images, labels, prob, wrong, out / "misclassified.png", names)
    return paths
