"""The classifier a run uses: a network with its calibration and the way it makes its uncertainty.

:class:`FRClassifier` turns model input into calibrated probabilities, the
``FR_UNCERTAINTY`` spread and the ``FR_OOD`` energy, from the same forward
passes (:meth:`FRClassifier.scores`); :func:`fused_for_inference` is the
copy a run actually runs (batch norms folded into the convolutions).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .networks import D4Average, Ensemble, dihedral

__all__ = ["UNCERTAINTY_METHODS", "UNCERTAINTY_SHORT", "FRClassifier", "fused_for_inference"]


#: What ``FR_UNCERTAINTY`` is, by the model card's ``uncertainty``.
UNCERTAINTY_METHODS = {
    "views": "standard deviation of P(FRII) over the 8 rotations by 90 degrees and mirror images of the cutout",
    "members": "standard deviation of P(FRII) over the ensemble's networks",
    "distilled": (
        "the network's own estimate (a second output, trained by distillation) of the standard deviation of "
        "P(FRII) over the networks of the ensemble it was distilled from"
    ),
    "none": "not estimated (NaN): one aligned network, which gives the same answer for all 8 views",
}


#: The same, short enough for a FITS header card (``FRS_UNC``).
UNCERTAINTY_SHORT = {
    "views": "std of P_FRII over the 8 rotations/flips of the image",
    "members": "std of P_FRII over the ensemble's networks",
    "distilled": "predicted std of P_FRII over a teacher ensemble's networks",
    "none": "not estimated: one aligned network",
}


class FRClassifier(nn.Module):
    """A network with what it takes to turn its logits into honest scores.

    The card's ``temperature`` divides the logits (calibration); when the
    card's ``tta`` is true, the probabilities are averaged over the 8 dihedral
    transforms of the input (test-time augmentation: a radio galaxy's class
    does not depend on its orientation). The card's ``uncertainty`` says how
    the spread that :meth:`predict` returns is made (one of
    :data:`UNCERTAINTY_METHODS`; ``views`` when not given): over the 8 views,
    over an ensemble's members, or by the network itself (``distilled``).
    ``forward`` returns log-probabilities, :meth:`predict` probabilities and
    their spread. ``card`` is the model card.
    """

    def __init__(self, net: nn.Module, card: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.card: dict[str, Any] = dict(card or {})
        self.tta = bool(self.card.get("tta", False))
        self.uncertainty = str(self.card.get("uncertainty", "views"))
        if self.uncertainty not in UNCERTAINTY_METHODS:
            raise ValueError(f"unknown uncertainty {self.uncertainty!r}; one of {sorted(UNCERTAINTY_METHODS)}")
        self.register_buffer("temperature", torch.tensor(float(self.card.get("temperature", 1.0))))

    @property
    def views(self) -> int:
        """Forward passes of the network per source for :meth:`predict`: 8 (dihedral views) or 1."""
        if self.uncertainty == "none" and not self.tta:
            return 1
        return 8 if self.tta or self.uncertainty == "views" or isinstance(self.net, D4Average) else 1

    def view_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the uncalibrated logits ``(8, N, classes)`` of each dihedral view of ``x``."""
        n = x.shape[0]
        per_view = self.net.backbone if isinstance(self.net, D4Average) else self.net
        views = torch.cat([dihedral(x, k) for k in range(8)], dim=0)
        return per_view(views).float().view(8, n, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tta and not isinstance(self.net, D4Average):
            probs = torch.softmax(self.view_logits(x) / self.temperature, dim=-1).mean(dim=0)
            return torch.log(probs.clamp_min(1e-12))
        return torch.log_softmax(self.net(x).float() / self.temperature, dim=-1)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(probabilities (N, classes), spread (N,))`` for a batch.

        The probabilities are the calibrated model's (averaged over the 8
        dihedral views when the model uses test-time augmentation); the
        spread is made as the card's ``uncertainty`` says
        (:data:`UNCERTAINTY_METHODS`). Models with ``views == 1`` run the
        network once per source.
        """
        if self.uncertainty == "distilled":
            logits, spread = self.net.forward_spread(x)
            return torch.softmax(logits.float() / self.temperature, dim=-1), spread
        if self.uncertainty == "none":
            probs = torch.softmax(self.net(x).float() / self.temperature, dim=-1)
            return probs, torch.full_like(probs[:, 0], float("nan"))
        if self.uncertainty == "members" and self.views == 1:
            log_mean = self.net(x).float()  # Ensemble: log of the members' mean probability
            spread = self.net.member_probs(x)[..., -1].std(dim=0)
            return torch.softmax(log_mean / self.temperature, dim=-1), spread
        return self._from_views(self.view_logits(x))

    def _from_views(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (probabilities, spread) from the logits ``(8, N, classes)`` of the 8 dihedral views."""
        per_view = torch.softmax(logits / self.temperature, dim=-1)
        spread = per_view[..., -1].std(dim=0)
        if isinstance(self.net, D4Average):  # exactly the invariant network's output
            probs = torch.softmax(logits.mean(dim=0) / self.temperature, dim=-1)
        elif self.tta:
            probs = per_view.mean(dim=0)
        else:
            probs = per_view[0]
        return probs, spread

    @torch.inference_mode()
    def scores(self, x: torch.Tensor, one_view: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(probabilities, spread, energy)`` for a batch, from the same forward passes.

        ``probabilities`` and ``spread`` are :meth:`predict`'s; ``energy`` is
        the free energy ``-log(sum_k exp(z_k))`` of the uncalibrated logits
        ``z`` of the unrotated image (the mean of the members' for an
        ensemble), an out-of-distribution score that costs no extra pass for
        the shipped models. ``one_view=True`` runs the network(s) on the
        unrotated image only (``--no-tta``): the spread is then NaN unless the
        model makes it in that pass (``distilled`` and ``members``).
        """
        net = self.net
        t = self.temperature
        if self.uncertainty == "distilled":
            logits, spread = net.forward_spread(x)
            logits = logits.float()
            return torch.softmax(logits / t, dim=-1), spread, -torch.logsumexp(logits, dim=-1)
        if isinstance(net, Ensemble) and (one_view or self.views == 1):
            member = net.member_logits(x)
            member_probs = torch.softmax(member, dim=-1)
            probs = torch.softmax(torch.log(member_probs.mean(dim=0).clamp_min(1e-12)) / t, dim=-1)
            spread = member_probs[..., -1].std(dim=0)
            if one_view and self.uncertainty != "members":
                spread = torch.full_like(spread, float("nan"))
            return probs, spread, (-torch.logsumexp(member, dim=-1)).mean(dim=0)
        if (one_view or self.uncertainty == "none") and not isinstance(net, D4Average):
            logits = net(x).float()
            probs = torch.softmax(logits / t, dim=-1)
            return probs, torch.full_like(probs[:, 0], float("nan")), -torch.logsumexp(logits, dim=-1)
        logits = self.view_logits(x)
        probs, spread = self._from_views(logits)
        if isinstance(net, Ensemble):  # a test-time-augmented ensemble: its members on the unrotated image
            return probs, spread, (-torch.logsumexp(net.member_logits(x), dim=-1)).mean(dim=0)
        return probs, spread, -torch.logsumexp(logits[0], dim=-1)


def fused_for_inference(model: FRClassifier) -> FRClassifier:
    """Return a copy of ``model`` for inference, each convolution followed by batch norm folded into one.

    In evaluation mode a batch norm is an affine map per channel, which the
    convolution before it can apply itself: the copy computes the same
    function (to float32 rounding, ~1e-7) with one layer less per stage.
    ``model`` is not changed; the copy is in evaluation mode.
    """
    fused = copy.deepcopy(model).eval()
    for seq in fused.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return fused
