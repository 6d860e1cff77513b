"""Ensembles of trained networks: members trained side by side, or a cross-validation's fold networks.

Both return one :class:`~frsurvey.model.classifier.FRClassifier` holding an
:class:`~frsurvey.model.networks.Ensemble` (the mean of its members'
probabilities), calibrated by one temperature; the members are trained by
:func:`frsurvey.training.train.train_model`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..metrics import binary_metrics
from ..model.classifier import FRClassifier
from ..model.networks import Ensemble
from .train import (
    TrainConfig,
    _finish,
    _recipe_card,
    _view_logits,
    fit_temperature,
    predict_logits,
    split_stratified,
    train_model,
    uncertainty_method,
)

__all__ = ["fold_ensemble", "train_ensemble"]


def train_ensemble(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    members: int = 3,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: bool = False,
    card: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[FRClassifier, list[dict[str, Any]]]:
    """Train ``members`` networks with seeds ``seed, seed+1, ...`` and return their ensemble.

    Every member is trained by :func:`train_model` on the same data and the
    same validation split (held out here when not given); the ensemble (mean
    of the members' probabilities, :class:`frsurvey.model.networks.Ensemble`) is then
    calibrated on that split. Returns the model and the members' histories.
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if val_images is None:
        tr, va = split_stratified(labels, config.val_fraction, config.seed)
        val_images, val_labels = images[va], labels[va]
        if val_images.ndim == 4:
            val_images = val_images[:, 0]
        images, labels = images[tr], labels[tr]
        weights = None if weights is None else np.asarray(weights)[tr]
    nets, histories = [], []
    for i in range(members):
        member_cfg = replace(config, seed=config.seed + i, calibrate=False)
        m, h = train_model(images, labels, member_cfg, val_images, val_labels, progress, None, weights)
        nets.append(m.net)
        histories.append(h)
    ensemble, spec = _ensemble_net(nets, config)
    model = _finish(ensemble, config, val_images, val_labels, card)
    model.card.update(
        {
            "arch": "ensemble",
            "arch_kwargs": {"members": spec},
            "n_train": len(labels),
            "history": histories[0],
            "member_best_epochs": [h["best_epoch"] for h in histories],
        }
    )
    return model, histories


def _ensemble_net(nets: list[torch.nn.Module], config: TrainConfig) -> tuple[Ensemble, list[dict[str, Any]]]:
    """Return an :class:`Ensemble` holding copies of ``nets`` (all of ``config``'s architecture) and its spec."""
    spec = [{"arch": config.arch, "kwargs": dict(config.arch_kwargs)} for _ in nets]
    ensemble = Ensemble(members=spec)
    for slot, net in zip(ensemble.members, nets):
        slot.load_state_dict(net.state_dict())
    return ensemble.eval(), spec


def fold_ensemble(
    cv: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    tta: bool = True,
    card: dict[str, Any] | None = None,
    subsets: dict[str, np.ndarray] | None = None,
) -> FRClassifier:
    """Return the ensemble of the fold models of a cross-validation, calibrated out of fold.

    Parameters
    ----------
    cv : dict
        :func:`frsurvey.training.evaluate.cross_validate` with
        ``keep_models=True`` of ``config`` on ``images`` and ``labels``.
    images, labels : numpy.ndarray
        What the cross-validation was given (version 0 of ``(N, V, ...)``
        images is scored).
    config : TrainConfig
        The recipe of the fold models.
    tta : bool
        The ensemble averages its probabilities over the 8 dihedral views.
    card : dict, optional
        Extra model-card entries.
    subsets : dict, optional
        Named boolean masks over the items (as for ``cross_validate``): the
        out-of-fold metrics are also given over each scored subset.

    Returns
    -------
    FRClassifier
        The mean of the fold networks' probabilities. Its temperature is fitted
        on the out-of-fold logits: every scored item seen (8 views with
        ``tta``) by the one fold network that never trained on it, so that no
        image the calibration sees trained the network that scores it (the
        ensemble's mean is a little less confident than one member, so this
        errs on the side of caution). ``card["metrics"]["out_of_fold"]``:
        the members' pooled out-of-fold metrics after calibration (the
        figure of the cross-validation seen as the ensemble sees an image:
        8 views with ``tta``), and ``out_of_fold_<name>`` per subset.
    """
    models = cv["models"]
    fold_of = np.asarray(cv["fold_of"])
    images = np.asarray(images)
    first = images[:, 0] if images.ndim == 4 else images
    per_fold = [np.flatnonzero(fold_of == k) for k in range(len(models))]
    if tta:
        views = torch.cat([_view_logits(m, first[idx]) for m, idx in zip(models, per_fold)], dim=1)
    else:  # the unturned image only: one pass, not 8
        views = torch.cat([predict_logits(m.net, first[idx], "cpu") for m, idx in zip(models, per_fold)])[None]
    oof_labels = np.asarray(labels)[np.concatenate(per_fold)]
    temperature = fit_temperature(views, torch.from_numpy(oof_labels.astype(np.int64)))
    oof_prob = torch.softmax(views / temperature, dim=-1).mean(dim=0)[:, 1].numpy()
    oof_metrics = {"out_of_fold": binary_metrics(oof_labels, oof_prob)}
    order = np.concatenate(per_fold)
    for name, mask in (subsets or {}).items():
        sel = np.asarray(mask, bool)[order]
        oof_metrics[f"out_of_fold_{name}"] = binary_metrics(oof_labels[sel], oof_prob[sel])
    ensemble, spec = _ensemble_net([m.net for m in models], config)
    model = FRClassifier(ensemble, {"tta": tta, "uncertainty": uncertainty_method(ensemble, tta)}).eval()
    model.temperature.fill_(temperature)
    model.card.update(card or {})
    model.card.update(
        {
            **_recipe_card(config, model, temperature),
            "arch": "ensemble",
            "arch_kwargs": {"members": spec},
            "n_train": int(min(m.card["n_train"] for m in models)),
            "calibration": "temperature fitted on the out-of-fold views of the cross-validation's fold networks",
            "metrics": oof_metrics,
            "history": models[0].card["history"],
            "member_best_epochs": [m.card["history"]["best_epoch"] for m in models],
        }
    )
    return model
