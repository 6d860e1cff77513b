"""Augmentations that respect the physics of radio galaxies.

A radio galaxy has no preferred orientation on the sky, so a training image
may be rotated by any angle and mirrored; it may sit a few pixels off the
cutout centre (catalog positions are not perfect). Everything works on
batches of model input (``N, 1, 150, 150`` tensors, background at -1 after
normalisation) on any device, and keeps the canonical circular mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .preprocess import circle_mask

__all__ = ["RandomOrientation", "rotate"]

_BACKGROUND = -1.0  # a 0 pixel after (x/255 - 0.5) / 0.5


def rotate(x: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor | None = None, shift=None) -> torch.Tensor:
    """Return ``x`` rotated by ``angle`` (radians, counter-clockwise), mirrored and shifted.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` model input.
    angle : torch.Tensor
        ``(N,)`` angles in radians.
    flip : torch.Tensor, optional
        ``(N,)`` booleans: mirror left-right before rotating.
    shift : torch.Tensor, optional
        ``(N, 2)`` shifts in pixels (x, y).

    Pixels brought in from outside are background; pixels outside the
    inscribed circle are set to background afterwards.
    """
    n, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    sx = torch.ones(n, dtype=x.dtype, device=x.device)
    if flip is not None:
        sx = torch.where(flip.to(x.device), -sx, sx)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos
    if shift is not None:
        theta[:, 0, 2] = -2.0 * shift[:, 0].to(x) / w
        theta[:, 1, 2] = -2.0 * shift[:, 1].to(x) / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - _BACKGROUND, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out + _BACKGROUND
    mask = torch.from_numpy(circle_mask(h)).to(x.device)
    return torch.where(mask, out, torch.full_like(out, _BACKGROUND))


class RandomOrientation:
    """Rotate by a uniform angle in [0, 2 pi), mirror with probability 1/2, and
    shift by up to ``max_shift`` pixels, independently for each image.

    Parameters
    ----------
    max_shift : float
        Largest shift in pixels along each axis.
    generator : torch.Generator, optional
        For reproducible draws.
    """

    def __init__(self, max_shift: float = 3.0, generator: torch.Generator | None = None) -> None:
        self.max_shift = float(max_shift)
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = self.generator
        angle = torch.rand(n, generator=g) * 2 * math.pi
        flip = torch.rand(n, generator=g) < 0.5
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * self.max_shift
        return rotate(x, angle.to(x.device), flip, shift.to(x.device))

    def __repr__(self) -> str:
        return f"RandomOrientation(max_shift={self.max_shift})"
