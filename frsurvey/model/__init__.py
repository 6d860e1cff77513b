"""The model: networks, the classifier a run uses, and checkpoints.

- :mod:`~frsurvey.model.networks`: architectures by name;
- :mod:`~frsurvey.model.classifier`: :class:`FRClassifier`, probabilities,
  uncertainty and ``FR_OOD`` in one pass;
- :mod:`~frsurvey.model.checkpoint`: save and load, model cards, the
  shipped models (:func:`load_model`);
- :mod:`~frsurvey.model.ood`: the energy score.
"""

from __future__ import annotations

from .checkpoint import SHIPPED_MODELS, CheckpointError, default_model_path, load_model, save_model
from .classifier import FRClassifier
from .networks import ARCHITECTURES, CLASSES, build_model

__all__ = [
    "ARCHITECTURES",
    "CLASSES",
    "SHIPPED_MODELS",
    "CheckpointError",
    "FRClassifier",
    "build_model",
    "default_model_path",
    "load_model",
    "save_model",
]
