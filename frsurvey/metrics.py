"""Classification metrics for two classes: accuracy, precision/recall, ROC AUC, calibration.

Plain numpy, so that they can be checked by hand on tiny cases.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "binary_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "reliability_curve",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the fraction of predictions equal to the truth (NaN for none)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Return ``C`` with ``C[i, j]`` the number of class-``i`` items predicted as ``j``."""
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return c


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return false-positive rates, true-positive rates and thresholds (class 1 positive)."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], y_true[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    p, n = max(y.sum(), 1), max((~y).sum(), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, s[distinct]]


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Return the area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=float)
    pos, neg = score[y_true], score[~y_true]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # rank-based (Mann-Whitney U) with average ranks for ties
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def reliability_curve(
    y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per confidence bin: mean confidence, accuracy, and count.

    ``prob`` is the probability of class 1; the confidence of a prediction is
    ``max(prob, 1 - prob)`` and it is correct when the more probable class is
    the true one. Bins are equal-width over [0.5, 1].
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    conf = np.maximum(prob, 1 - prob)
    correct = (prob >= 0.5).astype(int) == y_true
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, conf, minlength=n_bins) / counts
        acc = np.bincount(which, correct.astype(float), minlength=n_bins) / counts
    return mean_conf, acc, counts


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """Return the ECE: the count-weighted mean of |accuracy - confidence| over bins."""
    mean_conf, acc, counts = reliability_curve(y_true, prob, n_bins)
    total = counts.sum()
    if total == 0:
        return float("nan")
    keep = counts > 0
    return float(np.sum(counts[keep] * np.abs(acc[keep] - mean_conf[keep])) / total)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the Wilson score interval of a proportion ``successes / n`` (95% for the default ``z``).

    Unlike the normal approximation it stays inside [0, 1] and is honest
    near 0 and 1, where classification accuracies live; ``(nan, nan)`` for ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, class_names: tuple[str, str] = ("FRI", "FRII")) -> dict:
    """Return accuracy, per-class precision/recall/F1, ROC AUC, confusion matrix, ECE and NLL.

    ``prob`` is the probability of class 1 (FRII); the prediction is class 1
    when ``prob >= 0.5``.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= 0.5).astype(int)
    cm = confusion_matrix(y_true, pred)
    per_class = {}
    for k, name in enumerate(class_names):
        tp = cm[k, k]
        precision = tp / cm[:, k].sum() if cm[:, k].sum() else float("nan")
        recall = tp / cm[k, :].sum() if cm[k, :].sum() else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(cm[k, :].sum()),
        }
    eps = 1e-7
    p = np.clip(prob, eps, 1 - eps)
    nll = float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))) if len(p) else float("nan")
    return {
        "n": len(y_true),
        "accuracy": accuracy(y_true, pred),
        "accuracy_ci95": list(wilson_interval(int((pred == y_true).sum()), len(y_true))),
        "roc_auc": roc_auc(y_true, prob),
        "ece": expected_calibration_error(y_true, prob),
        "nll": nll,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
    }
