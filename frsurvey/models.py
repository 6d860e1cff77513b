"""Network architectures by name, and checkpoints with their model card.

A checkpoint is a plain ``torch.save`` of ``{"format": ..., "card": dict,
"state_dict": dict}`` holding only tensors, strings and numbers, so that it
loads with ``torch.load(weights_only=True)``: no pickled code is ever run.
The card says what the model is (architecture, classes, the preprocessing it
expects, the data it was trained on, its metrics, calibration, seeds and
package versions) and carries the sha256 of the weights, checked on load.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ._utils import __version__, file_digest
from .augment import dihedral
from .preprocess import CROP_SIZE, PREPROCESSING, PREPROCESSING_VERSION, circle_mask

__all__ = [
    "ARCHITECTURES",
    "CLASSES",
    "UNCERTAINTY_METHODS",
    "CheckpointError",
    "FRClassifier",
    "align_orientation",
    "build_model",
    "card_sha256",
    "default_model_path",
    "dihedral",
    "file_sha256",
    "fused_for_inference",
    "load_model",
    "save_model",
]

#: Class names, in the order of the network's outputs (FRDEEP-F's labels).
CLASSES = ("FRI", "FRII")
#: Version of the checkpoint layout.
CHECKPOINT_FORMAT = "frsurvey-checkpoint-1"
#: File name of the shipped model.
DEFAULT_MODEL_NAME = "frsurvey-default.pt"


class CheckpointError(ValueError):
    """Raised when a checkpoint is missing, corrupt, tampered or made for other inputs."""


class LeNet(nn.Module):
    """The seed tutorial's network: conv 5x5 (6, then 16 filters), each with
    ReLU and 2x2 max-pooling, then fully connected 120, 84, and the classes."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        side = ((CROP_SIZE - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def _block(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def orientation_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the angle of the major axis and the signs that fix a standard orientation.

    For model input ``x`` (``N, C, H, W``, background at -1), the brightness
    ``u = (x + 1) / 2`` of channel 0 weighs the pixel positions measured from
    the image centre (where the catalog puts the host). Returns ``angle``
    (``N``, radians, float64): the direction of the major axis of the
    second moments, in (-pi/2, pi/2]; and ``flip_x``, ``flip_y`` (``N``,
    booleans): whether the brightness-weighted mean position, in the frame
    turned by ``-angle``, lies on the negative side of each axis. A source
    with no emission gets angle 0 and no flips.
    """
    u = ((x[:, 0].float() + 1) / 2).clamp(0, 1)
    h, w = u.shape[-2:]
    ys = torch.arange(h, dtype=torch.float64, device=u.device) - (h - 1) / 2.0
    xs = torch.arange(w, dtype=torch.float64, device=u.device) - (w - 1) / 2.0
    # sums along one axis in float32 (150 terms), the rest in float64
    row, col = u.sum(dim=2).double(), u.sum(dim=1).double()  # (N, H), (N, W)
    m_x, m_y = col @ xs, row @ ys
    m_xx, m_yy = col @ (xs * xs), row @ (ys * ys)
    m_xy = (u @ xs.float()).double() @ ys  # (N, H) first moments of each row, then weighted by y
    angle = 0.5 * torch.atan2(2 * m_xy, m_xx - m_yy)
    cos, sin = torch.cos(angle), torch.sin(angle)
    along = cos * m_x + sin * m_y  # mean position along the major axis (times the total brightness)
    across = -sin * m_x + cos * m_y
    tiny = 1e-9 * row.sum(dim=1).clamp_min(1.0)
    return angle, along < -tiny, across < -tiny


def align_orientation(x: torch.Tensor) -> torch.Tensor:
    """Return model input turned into a standard orientation: the same for all 8 dihedral transforms of an image.

    Each image is rotated about its centre so that the major axis of its
    brightness (second moments about the centre) lies along the x axis, then
    mirrored so that its brightness-weighted mean position lies at x >= 0 and
    y >= 0 (:func:`orientation_moments`). Any rotation by a multiple of 90
    degrees or mirror image of the input gives the same output up to
    floating-point rounding (bilinear resampling at positions that agree to
    ~1e-12 pixel), and any rotation at all gives nearly the same: a network
    that sees aligned images needs no test-time augmentation. Pixels outside
    the inscribed circle stay background. Sources whose orientation is not
    defined (round, or with a symmetric mean position) are where the
    alignment is arbitrary, and where orientation matters least.
    """
    angle, flip_x, flip_y = orientation_moments(x)
    n, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.where(flip_x, -1.0, 1.0).to(angle)
    sy = torch.where(flip_y, -1.0, 1.0).to(angle)
    # output position (a, b) in the aligned frame comes from input position a*sx*e_major + b*sy*e_minor
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin * sy
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos * sy
    if h != w:
        raise ValueError(f"align_orientation needs square images, not {h}x{w}")
    grid = nn.functional.affine_grid(theta.to(x.dtype), [n, 1, h, w], align_corners=False)
    out = nn.functional.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    mask = _circle(h, x.device)
    return torch.where(mask, out, torch.full_like(out, -1.0))


_CIRCLES: dict[tuple[int, str], torch.Tensor] = {}


def _circle(size: int, device: torch.device) -> torch.Tensor:
    key = (size, str(device))
    if key not in _CIRCLES:
        _CIRCLES[key] = torch.from_numpy(circle_mask(size)).to(device)
    return _CIRCLES[key]


class InputView(nn.Module):
    """Turn model input into what the convolutions see: a brightness stretch and
    an optional magnified centre.

    The canonical images are linear 0..255; FRI jets and lobes are often a few
    counts against a core at 255. ``stretch='sqrt'`` or ``'log'`` brings faint
    emission up (fixed, monotonic, no parameters). ``center_zoom=k`` adds a
    second channel: the central ``150/k`` pixels magnified ``k`` times, so that
    compact doubles of a few beams keep their two peaks through the pooling.
    ``radial=True`` adds the distance from the cutout centre (the host
    galaxy's position) as a channel: convolutions and global pooling cannot
    otherwise tell whether the brightest emission is at the centre (FRI) or
    far out at the ends of the lobes (FRII), Fanaroff & Riley's own criterion.
    All commute with the 8 dihedral transforms and with any rotation.

    ``align=True`` first turns every image into a standard orientation (see
    :func:`align_orientation`), which makes the network that follows
    invariant to the 8 dihedral transforms by construction, in one forward
    pass. ``pool=k`` averages ``k x k`` pixels of every channel at the end
    (after the zoom, so the magnified centre keeps its detail), making the
    convolutions that follow ``k**2`` times cheaper.
    """

    def __init__(
        self,
        stretch: str = "linear",
        center_zoom: int = 0,
        radial: bool = False,
        align: bool = False,
        pool: int = 1,
    ) -> None:
        super().__init__()
        if stretch not in ("linear", "sqrt", "log"):
            raise ValueError(f"unknown stretch {stretch!r}; use linear, sqrt or log")
        if int(pool) < 1:
            raise ValueError(f"pool must be 1 or more, not {pool}")
        self.stretch = stretch
        self.center_zoom = int(center_zoom)
        self.radial = bool(radial)
        self.align = bool(align)
        self.pool = int(pool)

    @property
    def channels(self) -> int:
        return 1 + (self.center_zoom > 1) + self.radial

    def forward(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        """Return the channels the convolutions see; ``aligned``: ``x`` is already :func:`align_orientation`'s output."""
        if self.align and not aligned:
            x = align_orientation(x)
        if self.stretch != "linear":
            u = ((x + 1) / 2).clamp(0, 1)  # back to 0..1
            u = torch.sqrt(u) if self.stretch == "sqrt" else torch.log1p(100 * u) / math.log(101.0)
            x = u * 2 - 1
        if self.center_zoom > 1:
            size = x.shape[-1]
            half = size // (2 * self.center_zoom)
            c = size // 2
            center = x[..., c - half : c + half, c - half : c + half]
            zoomed = nn.functional.interpolate(center, size=(size, size), mode="bilinear", align_corners=False)
            x = torch.cat([x, zoomed], dim=1)
        if self.radial:
            size = x.shape[-1]
            c = (size - 1) / 2.0
            t = torch.arange(size, dtype=x.dtype, device=x.device) - c
            r = torch.sqrt(t[None, :] ** 2 + t[:, None] ** 2) / (size / 2.0)
            x = torch.cat([x, r.expand(x.shape[0], 1, size, size)], dim=1)
        if self.pool > 1:
            x = nn.functional.avg_pool2d(x, self.pool)
        return x


class SmallCNN(nn.Module):
    """A small modern CNN: five conv-BN-ReLU stages, max-pooling, global
    average pooling, dropout and a linear head.

    ``width`` scales the channels; ``stem_stride=2`` makes the first
    convolution strided instead of following it by max-pooling (4x cheaper
    at the full 150x150 resolution, where FIRST's 5.4" beam spans 3 pixels);
    ``stem_pool`` adds a max-pooling after the stem; ``stretch``,
    ``center_zoom``, ``radial``, ``align`` and ``pool`` choose the
    :class:`InputView` (``align=True``: invariant to the 8 dihedral
    transforms by construction). ``head_pool=k`` averages the last feature
    maps into ``k x k`` cells instead of one, so that the head knows where
    emission lies (at the centre or at the ends of an aligned source).
    """

    def __init__(
        self,
        num_classes: int = 2,
        width: int = 16,
        dropout: float = 0.3,
        stem_stride: int = 1,
        stem_pool: bool = False,
        stretch: str = "linear",
        center_zoom: int = 0,
        radial: bool = False,
        align: bool = False,
        pool: int = 1,
        spread_head: bool = False,
        head_pool: int = 1,
    ) -> None:
        super().__init__()
        w = width
        self.view = InputView(stretch, center_zoom, radial, align, pool)
        cin = self.view.channels
        stem = (
            [nn.Conv2d(cin, w, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if stem_stride == 2
            else [*_block(cin, w, 5), nn.MaxPool2d(2)]
        )
        if stem_pool:  # 37x37 after the stem: ~4x cheaper again, 3.6" per feature pixel
            stem.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(
            *stem,  # 75
            *_block(w, 2 * w),
            nn.MaxPool2d(2),  # 37
            *_block(2 * w, 4 * w),
            nn.MaxPool2d(2),  # 18
            *_block(4 * w, 4 * w),
            nn.MaxPool2d(2),  # 9
            *_block(4 * w, 8 * w),
            nn.AdaptiveAvgPool2d(int(head_pool)),
        )
        n_features = 8 * w * int(head_pool) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(n_features, num_classes))
        #: With ``spread_head``: a second output, trained by distillation to predict how much a
        #: teacher ensemble's members disagree on P(FRII) (see :meth:`forward_spread`).
        self.spread = nn.Linear(n_features, 1) if spread_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.view(x)))

    def forward_spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, spread)``: the class logits and the predicted spread of P(FRII), in [0, 0.5].

        Raises
        ------
        ValueError
            If the network was built without ``spread_head``.
        """
        if self.spread is None:
            raise ValueError("this network has no spread head (build it with spread_head=True)")
        f = self.features(self.view(x))
        return self.head(f), 0.5 * torch.sigmoid(self.spread(torch.flatten(f, 1))[:, 0].float())


def _resnet18(num_classes: int = 2) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


class D4Average(nn.Module):
    """Wrap a network so that it averages its logits over the 8 dihedral
    transforms of the input: its output is exactly invariant to rotations by
    multiples of 90 degrees and to mirroring."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        views = torch.cat([dihedral(x, k) for k in range(8)], dim=0)
        return self.backbone(views).view(8, n, -1).mean(dim=0)


class Ensemble(nn.Module):
    """Several networks whose class probabilities are averaged.

    ``forward`` returns the log of the mean probability, so that softmax of
    the output is the ensemble's probability and temperature scaling applies
    to it as to any logits. ``members`` is a list of ``{"arch": name,
    "kwargs": {...}}`` specifications (stored in the model card).
    """

    def __init__(self, num_classes: int = 2, members: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs members: [{'arch': ..., 'kwargs': {...}}, ...]")
        self.members = nn.ModuleList(
            build_model(m["arch"], num_classes=num_classes, **m.get("kwargs", {})) for m in members
        )

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(members, N, classes)``: each member's logits.

        Members that all align their input (``align=True``) share one
        alignment of ``x`` (the same numbers as each aligning it itself).
        """
        if all(isinstance(m, SmallCNN) and m.view.align for m in self.members):
            aligned = align_orientation(x)
            return torch.stack([m.head(m.features(m.view(aligned, aligned=True))).float() for m in self.members])
        return torch.stack([m(x).float() for m in self.members])

    def member_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(members, N, classes)``: each member's class probabilities."""
        return torch.softmax(self.member_logits(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.member_probs(x).mean(dim=0).clamp_min(1e-12))


#: Constructors by architecture name: ``ARCHITECTURES[name](num_classes=2, **kwargs)``.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "cnn": SmallCNN,
    "resnet18": _resnet18,
    "d4cnn": lambda num_classes=2, **kw: D4Average(SmallCNN(num_classes, **kw)),
    "ensemble": Ensemble,
}


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


def build_model(arch: str, num_classes: int = len(CLASSES), **kwargs: Any) -> nn.Module:
    """Return a freshly initialised network of the named architecture.

    Raises
    ------
    ValueError
        If ``arch`` is not one of :data:`ARCHITECTURES`.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, **kwargs)


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Return the sha256 of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def card_sha256(card: dict[str, Any]) -> str:
    """Return the sha256 of a model card's content (every entry but ``card_sha256`` itself).

    The card holds what turns the weights into probabilities (architecture,
    temperature, test-time augmentation, preprocessing contract), so an
    edited card is as much a different model as edited weights.
    """
    content = {k: v for k, v in card.items() if k != "card_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Return the sha256 hex digest of a file."""
    return file_digest(path, "sha256")


def package_versions() -> dict[str, str]:
    """Return the versions of the packages a model's results depend on."""
    import astropy
    import torchvision

    return {
        "frsurvey": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "astropy": astropy.__version__,
        "python": platform.python_version(),
    }


def save_model(model: FRClassifier, path: str | os.PathLike, **card_updates: Any) -> Path:
    """Write ``model`` and its card to ``path`` (atomically) and return the path.

    The card gains the architecture's input contract (classes, preprocessing
    name and version), the package versions and the sha256 of the weights.
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    card = dict(model.card)
    card.update(card_updates)
    card.setdefault("classes", list(CLASSES))
    card.setdefault("preprocessing", PREPROCESSING)
    card.setdefault("preprocessing_version", PREPROCESSING_VERSION)
    card.setdefault("normalization", {"mean": 0.5, "std": 0.5})
    card["temperature"] = float(model.temperature)
    card["versions"] = package_versions()
    card["weights_sha256"] = weights_sha256(state)
    card = _plain(card)
    card["card_sha256"] = card_sha256(card)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written through a new file beside it and renamed into place, as _utils.atomic_write does; torch.save is
    # given the file's name (not bytes in memory), which names the archive inside, so the bytes stay the same
    tmp = path.with_name(f".{path.name}.part")
    tmp.unlink(missing_ok=True)  # a left-over file (or link) is removed, not written through
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "card": card, "state_dict": state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    model.card = card
    return path


def _plain(value: Any, where: str = "card") -> Any:
    """Return ``value`` as plain Python data (dict, list, str, int, float, bool, None)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"{where} is a {type(value).__name__}; model cards hold plain values only")


#: Shipped models by name: ``default`` (one network, one pass per source) and ``accurate`` (the ensemble
#: it was distilled from).
SHIPPED_MODELS = ("default", "accurate")


def default_model_path(name: str = "default") -> Path:
    """Return the path of a shipped model (``$FRSURVEY_MODEL``, if set, for ``default``).

    Parameters
    ----------
    name : str
        One of :data:`SHIPPED_MODELS`.

    Looked for in the source tree's ``checkpoints/`` (editable installs) and
    in ``<prefix>/share/frsurvey/checkpoints`` (wheel installs).

    Raises
    ------
    CheckpointError
        If ``name`` is not a shipped model's name.
    """
    if name not in SHIPPED_MODELS:
        raise CheckpointError(
            f"no shipped model is called {name!r}; the shipped models are {', '.join(SHIPPED_MODELS)}"
        )
    env = os.environ.get("FRSURVEY_MODEL")
    if env and name == "default":
        return Path(env)
    filename = f"frsurvey-{name}.pt"
    here = Path(__file__).resolve().parent
    for candidate in (
        here.parent / "checkpoints" / filename,
        Path(sys.prefix) / "share" / "frsurvey" / "checkpoints" / filename,
    ):
        if candidate.exists():
            return candidate
    return here.parent / "checkpoints" / filename


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FRClassifier:
    """Return the model stored in a checkpoint, in evaluation mode.

    Parameters
    ----------
    path : str or path-like, optional
        A checkpoint written by :func:`save_model`, or the name of a shipped
        model (:data:`SHIPPED_MODELS`: ``default``, ``accurate``) where no
        file of that name exists; default: the shipped default model
        (:func:`default_model_path`).
    device : str or torch.device
        Where to put the weights.

    Returns
    -------
    FRClassifier
        With ``card`` (the model card), ``path`` and ``sha256`` (of the file).

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, holds anything but plain data
        (pickled code is refused), was tampered with (weights or card do not
        match the sha256 the card carries), or was made for other classes or preprocessing.
    """
    if path is None:
        path = default_model_path()
    elif isinstance(path, str) and path in SHIPPED_MODELS and not Path(path).exists():
        path = default_model_path(path)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"refusing {str(path)!r}: it is not a plain-data checkpoint (torch.load with weights_only=True "
            f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an frsurvey checkpoint (format {CHECKPOINT_FORMAT})")
    card, state = blob.get("card"), blob.get("state_dict")
    if not isinstance(card, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} lacks its model card or weights")
    try:
        card = _plain(card)
    except TypeError as exc:
        raise CheckpointError(
            f"{str(path)!r}: its model card holds something other than plain values ({exc})"
        ) from None
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{str(path)!r}: its state dict holds entries that are not named tensors ({', '.join(map(repr, bad[:5]))})"
        )
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not_finite:
        raise CheckpointError(
            f"{str(path)!r}: weights {', '.join(not_finite[:5])} hold NaN or infinite values "
            "(a training run that diverged?): its scores would mean nothing"
        )
    temperature = card.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise CheckpointError(f"{str(path)!r}: its temperature {temperature!r} is not a finite number above 0")
    if weights_sha256(state) != card.get("weights_sha256"):
        raise CheckpointError(f"{str(path)!r}: the weights do not match the sha256 in the model card (tampered?)")
    if card_sha256(card) != card.get("card_sha256"):
        raise CheckpointError(
            f"{str(path)!r}: the model card does not match its sha256 (edited after saving?): refusing it, "
            "since the card decides what the scores mean (temperature, test-time augmentation, preprocessing)"
        )
    if tuple(card.get("classes", ())) != CLASSES:
        raise CheckpointError(f"{str(path)!r} predicts {card.get('classes')}, not {list(CLASSES)}")
    if not isinstance(card.get("arch_kwargs", {}), dict):
        raise CheckpointError(f"{str(path)!r}: its arch_kwargs are not a mapping")
    prep = (card.get("preprocessing"), card.get("preprocessing_version"))
    if prep != (PREPROCESSING, PREPROCESSING_VERSION):
        raise CheckpointError(
            f"{str(path)!r} was trained on images made by {prep[0]!r} v{prep[1]}; this frsurvey makes "
            f"{PREPROCESSING!r} v{PREPROCESSING_VERSION} images, so its scores would mean nothing"
        )
    try:
        net = build_model(card["arch"], **card.get("arch_kwargs", {}))
        net.load_state_dict(state)
        model = FRClassifier(net, card)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{str(path)!r}: cannot build its network: {exc}") from exc
    model.path = str(path)
    model.sha256 = file_sha256(path)
    return model.to(device).eval()
