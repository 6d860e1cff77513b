"""Evaluation: metrics of a model on labeled images, cross-validation, reports.

:func:`evaluate_model` scores canonical images the way ``classify`` does
(calibrated, averaged over nothing but what the model itself averages) and
returns :func:`frsurvey.metrics.binary_metrics`; :func:`cross_validate`
trains and scores ``k`` models on ``k`` stratified folds; :func:`write_report`
writes the JSON and the figures. :func:`evaluate_data` and
:func:`cross_validate_data` do what ``frsurvey evaluate`` does (without and
with ``--cv``) with :class:`~frsurvey.training.data.LabeledData`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import plots
from ..image.preprocess import to_model_input
from ..metrics import binary_metrics
from ..model.classifier import FRClassifier
from .data import LabeledData, seen_in_training
from .train import TrainConfig, split_stratified, train_model

__all__ = [
    "cross_validate",
    "cross_validate_data",
    "evaluate_data",
    "evaluate_model",
    "json_safe",
    "predict",
    "write_report",
]

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


def evaluate_data(model: FRClassifier, data: LabeledData) -> dict[str, Any]:
    """Return the metrics of ``model`` on labeled data, as ``frsurvey evaluate`` writes them.

    :func:`evaluate_model`'s metrics, with ``data`` (the data cards) and
    ``model`` (its path, sha256 and name). When the model was trained on
    some of the data (:func:`frsurvey.training.data.seen_in_training`), a
    warning is logged and kept as ``warning``: those scores are no measure
    of how it does on new sources.
    """
    seen = seen_in_training(model.card, data.cards)
    if seen:
        log.warning(
            "the model was trained on %s: these scores are on its own training data, not a measure of how it "
            "does on new sources (evaluate on data it has not seen, e.g. --dataset frdeep-f --split test)",
            " and ".join(seen),
        )
    result = evaluate_model(model, data.images, data.labels)
    result["data"] = data.cards
    if seen:
        result["warning"] = f"trained on {' and '.join(seen)}: scores on training data"
    result["model"] = {
        "path": getattr(model, "path", None),
        "sha256": getattr(model, "sha256", None),
        "name": model.card.get("name"),
    }
    return result


def cross_validate_data(data: LabeledData, config: TrainConfig, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Return :func:`cross_validate` of a recipe on labeled data, as ``frsurvey evaluate --cv`` writes it.

    With ``data`` (the data cards) and ``confusion_matrix``: that of the
    pooled out-of-fold predictions (every image scored by the fold's model
    that did not train on it), for :func:`write_report`'s figures.
    """
    result = cross_validate(data.images, data.labels, config, folds=folds, seed=seed)
    result["data"] = data.cards
    result["confusion_matrix"] = result["pooled"]["all"]["confusion_matrix"]
    return result


def cross_validate(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    folds: int = 5,
    seed: int = 0,
    strata: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    always_train: np.ndarray | None = None,
    subsets: dict[str, np.ndarray] | None = None,
    keep_models: bool = False,
    smoothing: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train and score one model per fold; return per-fold metrics and their mean and spread.

    Parameters
    ----------
    images, labels : numpy.ndarray
        As for :func:`frsurvey.training.train.train_model` (``(N, 150, 150)`` or
        ``(N, V, 150, 150)`` uint8, version 0 being the image itself).
    config : TrainConfig
        The recipe; each fold's model is trained with ``seed + fold``, holding
        out ``config.val_fraction`` of its training items (stratified like the
        folds) for early stopping and calibration.
    folds : int
        Number of folds.
    seed : int
        Seed of the fold assignment.
    strata : numpy.ndarray, optional
        Folds are stratified by these values (default: the labels).
    weights : numpy.ndarray, optional
        Sampling weights, passed to ``train_model``.
    always_train : numpy.ndarray, optional
        Boolean mask of items that are never scored, only ever trained on
        (e.g. a second dataset).
    subsets : dict, optional
        Named boolean masks: the metrics are also given over each subset of
        the scored items (e.g. ``{"confident": ...}``).
    keep_models : bool
        Also return the fold models (``models``, fold ``k`` never trained on
        the items with ``fold_of == k``), e.g. as the members of an ensemble
        whose out-of-fold scores are known.
    smoothing : numpy.ndarray, optional
        Per-item label smoothing, passed to ``train_model`` (soft targets).

    Returns
    -------
    dict
        ``per_fold`` metrics, ``summary`` (mean and standard deviation over
        folds of accuracy, ROC AUC, ECE and NLL), ``pooled`` metrics over all
        scored items (and per subset), ``prob`` (P(FRII) per item, NaN for
        items never scored), ``fold_of`` (each item's fold, -1 for
        ``always_train``) and, with ``keep_models``, ``models``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    strata = labels if strata is None else np.asarray(strata)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    fixed = np.zeros(n, bool) if always_train is None else np.asarray(always_train, bool)
    rng = np.random.default_rng(seed)
    fold_of = np.full(n, -1)
    for s in np.unique(strata[~fixed]):
        idx = np.flatnonzero((strata == s) & ~fixed)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    prob = np.full(n, np.nan)
    per_fold, models = [], []
    for k in range(folds):
        test = fold_of == k
        train_idx = np.flatnonzero(~test)
        fit, val = split_stratified(strata[train_idx], config.val_fraction, config.seed + k)
        val_images = images[train_idx[val]]
        if val_images.ndim == 4:
            val_images = val_images[:, 0]
        model, _ = train_model(
            images[train_idx[fit]],
            labels[train_idx[fit]],
            replace(config, seed=config.seed + k),
            val_images=val_images,
            val_labels=labels[train_idx[val]],
            weights=weights[train_idx[fit]],
            smoothing=None if smoothing is None else np.asarray(smoothing)[train_idx[fit]],
        )
        test_images = images[test] if images.ndim == 3 else images[test][:, 0]
        prob[test], _ = predict(model, test_images)
        m = binary_metrics(labels[test], prob[test])
        log.info("fold %d/%d: accuracy %.3f, AUC %.3f, ECE %.3f", k + 1, folds, m["accuracy"], m["roc_auc"], m["ece"])
        per_fold.append(m)
        if keep_models:
            models.append(model)
    summary = {}
    for key in ("accuracy", "roc_auc", "ece", "nll"):
        values = np.array([m[key] for m in per_fold], dtype=float)
        summary[key] = {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values, ddof=1)) if folds > 1 else 0.0,
        }
    scored = fold_of >= 0
    pooled = {"all": binary_metrics(labels[scored], prob[scored])}
    for name, mask in (subsets or {}).items():
        sel = scored & np.asarray(mask, bool)
        pooled[name] = binary_metrics(labels[sel], prob[sel])
    out = {"folds": folds, "seed": seed, "per_fold": per_fold, "summary": summary, "pooled": pooled, "prob": prob}
    out["fold_of"] = fold_of  # the folds themselves: which model never trained on which item
    if keep_models:
        out["models"] = models
    return out


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
