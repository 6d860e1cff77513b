"""Network architectures by name (:data:`ARCHITECTURES`), and the pieces they share.

``lenet``, ``cnn`` (:class:`SmallCNN` with its :class:`InputView`: stretch,
radial channel, centre zoom, alignment by :func:`align_orientation`),
``plain`` (:class:`PlainCNN`: double 3x3 blocks on the image pooled to
75x75), ``d4cnn``, ``d4plain`` and ``resnet18``; :class:`D4Average` (the 8 dihedral views
averaged) and :class:`Ensemble` (members averaged). :data:`CLASSES` is the
order of every network's outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..image.preprocess import CROP_SIZE, circle_mask

__all__ = [
    "ARCHITECTURES",
    "CLASSES",
    "D4Average",
    "Ensemble",
    "InputView",
    "LeNet",
    "PlainCNN",
    "SmallCNN",
    "align_orientation",
    "build_model",
    "dihedral",
    "orientation_moments",
]


#: Class names, in the order of the network's outputs (FRDEEP-F's labels).
CLASSES = ("FRI", "FRII")


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``x`` (``..., H, W``) under the ``k``-th of the 8 dihedral transforms.

    ``k`` in 0..3 rotates by ``k`` x 90 degrees; 4..7 mirror first. The
    inscribed circle of a square image maps onto itself under all eight.
    """
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


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


class PlainCNN(SmallCNN):
    """A plain, deeper CNN: four blocks of two 3x3 conv-BN-ReLU layers.

    The image is first average-pooled 2x2 (75x75, 3.6" per pixel: FIRST's
    5.4" beam still spans 1.5 pixels); each block but the last is followed by
    2x2 max-pooling (75 -> 37 -> 18 -> 9), the last by global average
    pooling, dropout and a linear head. ``widths`` are the blocks' channels
    (default 24, 48, 96, 128). ``align``, ``radial`` and ``center_zoom``
    choose the :class:`InputView` as for :class:`SmallCNN` (``align=True``:
    invariant to the 8 dihedral transforms by construction); ``spread_head``
    adds the predicted spread of :meth:`SmallCNN.forward_spread`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        widths: tuple[int, ...] | list[int] = (24, 48, 96, 128),
        dropout: float = 0.3,
        align: bool = False,
        radial: bool = False,
        center_zoom: int = 0,
        spread_head: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self.view = InputView("linear", center_zoom, radial, align, pool=2)
        layers: list[nn.Module] = []
        cin = self.view.channels
        for i, w in enumerate(int(w) for w in widths):
            layers += [*_block(cin, w), *_block(w, w)]
            layers.append(nn.MaxPool2d(2) if i < len(widths) - 1 else nn.AdaptiveAvgPool2d(1))
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))
        self.spread = nn.Linear(cin, 1) if spread_head else None


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
    "plain": PlainCNN,
    "d4plain": lambda num_classes=2, **kw: D4Average(PlainCNN(num_classes, **kw)),
    "ensemble": Ensemble,
}


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
