"""One training run as ``frsurvey train`` makes it: train, score, and fill in the model card.

:func:`run_training` trains one network (:func:`frsurvey.training.train.train_model`)
or an ensemble (:func:`frsurvey.training.ensemble.train_ensemble`) on labeled data,
names the model and its training data in its card, scores it on FRDEEP-F's
test split, and says in its card when it did not learn::

    from frsurvey.model import save_model
    from frsurvey.training.train import training_config
    from frsurvey.training.data import load_labeled_data
    from frsurvey.training.pipeline import run_training

    data = load_labeled_data("frdeep-f", download=True)
    run = run_training(data, training_config("cnn", epochs=40), frdeep_test_root=...)
    save_model(run.model, "my-model.pt")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..model.classifier import FRClassifier
from .data import LabeledData, frdeep_data
from .ensemble import train_ensemble
from .evaluate import evaluate_model
from .train import TrainConfig, learning_failure, train_model

__all__ = ["TrainingRun", "record_learning_failure", "record_test_metrics", "run_training"]


@dataclass
class TrainingRun:
    """What :func:`run_training` gives back."""

    #: The trained model; its card holds the config, history, metrics and data cards.
    model: FRClassifier
    #: The training history (:func:`frsurvey.training.train.train_model`'s); an ensemble's first network's.
    history: dict[str, Any]
    #: Every network's history (one for a single network).
    histories: list[dict[str, Any]]
    #: Why the model did not learn (:func:`frsurvey.training.train.learning_failure`), or None.
    failure: str | None


def run_training(
    data: LabeledData,
    config: TrainConfig,
    *,
    members: int = 1,
    name: str | None = None,
    frdeep_test_root: str | os.PathLike | None = None,
    accept_chance: bool = False,
    progress: bool = False,
) -> TrainingRun:
    """Train a model on labeled data as ``frsurvey train`` does; return it with its history.

    Parameters
    ----------
    data : LabeledData
        The training data (:func:`frsurvey.training.data.load_labeled_data`);
        ``config.val_fraction`` of each class is held out for validation.
    config : TrainConfig
        The recipe (:func:`frsurvey.training.train.training_config`).
    members : int
        More than 1: an ensemble of this many networks (seeds ``seed``, ``seed + 1``, ...).
    name : str, optional
        The model's name in its card (default: the architecture).
    frdeep_test_root : str or path-like, optional
        Where FRDEEP-F is: the model is then scored on its test split, into
        the card's ``metrics["frdeep_f_test"]`` (:func:`record_test_metrics`).
    accept_chance : bool
        Do not check whether the model learned (:func:`record_learning_failure`).
    progress : bool
        A progress bar per epoch on stderr.

    Returns
    -------
    TrainingRun
        The model (card: ``name``, ``training_data`` (the data cards), the
        config, history and metrics; ``learning_failure`` when it did not
        learn), the histories, and the failure.
    """
    card = {"name": name or config.arch, "training_data": data.cards}
    if members > 1:
        model, histories = train_ensemble(
            data.images, data.labels, config, members=members, progress=progress, card=card
        )
        history = histories[0]  # the curves of the first network
    else:
        model, history = train_model(data.images, data.labels, config, progress=progress, card=card)
        histories = [history]
    if frdeep_test_root is not None:
        record_test_metrics(model, frdeep_data(frdeep_test_root, "test"), "frdeep_f_test")
    failure = None if accept_chance else record_learning_failure(model)
    return TrainingRun(model, history, histories, failure)


def record_test_metrics(model: FRClassifier, test: LabeledData, key: str) -> dict[str, Any]:
    """Score ``model`` on labeled test data; put the metrics in its card's ``metrics[key]`` and return them.

    The metrics are :func:`frsurvey.training.evaluate.evaluate_model`'s, without the
    per-image probabilities and spreads.
    """
    m = evaluate_model(model, test.images, test.labels)
    m.pop("prob")
    m.pop("spread")
    model.card["metrics"][key] = m
    return m


def record_learning_failure(model: FRClassifier) -> str | None:
    """Return why ``model`` did not learn (:func:`frsurvey.training.train.learning_failure` of its validation metrics).

    When it did not, the reason also goes into its card, as ``learning_failure``.
    """
    failure = learning_failure(model.card["metrics"]["validation"])
    if failure is not None:
        model.card["learning_failure"] = failure
    return failure
