"""An out-of-distribution score from the network's logits: the energy score.

``FR_OOD`` is the free energy of the logits ``z`` of the unrotated image,
``E = -log(sum_k exp(z_k))`` (Liu et al. 2020, "Energy-based
out-of-distribution detection"), averaged over an ensemble's members. It
needs nothing stored with the model and works with any network: images like
the training images get large logits and a low (more negative) energy;
images unlike them get logits near zero and a higher energy. Only its order
means something: compare it with the values of in-domain images of the same
model (the README gives them for the shipped model).
"""

from __future__ import annotations

import torch

from .classifier import FRClassifier

__all__ = ["energy"]


def energy(model: FRClassifier, x: torch.Tensor) -> torch.Tensor:
    """Return the energy score ``(N,)`` (float32) of model input ``x`` ``(N, 1, 150, 150)``.

    Computed on the raw (uncalibrated) logits of the unrotated view (for a
    :class:`~frsurvey.model.networks.D4Average`, of its backbone); for an
    :class:`~frsurvey.model.networks.Ensemble`, the mean of its members' energies.
    The same number ``classify`` writes as ``FR_OOD``, from the same passes
    that give the probabilities (:meth:`~frsurvey.model.classifier.FRClassifier.scores`).
    """
    return model.scores(x)[2].float()
