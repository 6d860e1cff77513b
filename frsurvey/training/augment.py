"""Augmentations that respect the physics of radio galaxies.

A radio galaxy has no preferred orientation on the sky, so a training image
may be rotated by any angle and mirrored; it may sit a few pixels off the
cutout centre (catalog positions are not perfect). Everything works on
batches of model input (``N, 1, 150, 150`` tensors, background at -1 after
normalisation) on any device, and keeps the canonical circular mask.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..image.preprocess import circle_mask, sigma_clipped_std
from ..model.networks import dihedral

__all__ = ["BEAM_FWHM_PIXELS", "RandomOrientation", "noise_level", "perturb_cutout", "rotate"]

#: FIRST's restoring beam, 5.4", in 1.8" pixels.
BEAM_FWHM_PIXELS = 3.0
#: Smallest extent (pixels) the zoom augmentation shrinks a source to.
MIN_EXTENT_PIXELS = 12.0

_BACKGROUND = -1.0  # a 0 pixel after (x/255 - 0.5) / 0.5


def rotate(
    x: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor | None = None, shift=None, zoom=None
) -> torch.Tensor:
    """Return ``x`` rotated by ``angle`` (radians, counter-clockwise), mirrored, shifted and zoomed.

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
    zoom : torch.Tensor, optional
        ``(N,)`` magnifications (< 1 makes the source smaller, as if further away).

    Pixels brought in from outside are background; pixels outside the
    inscribed circle are set to background afterwards.
    """
    n, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    if zoom is not None:
        inv = 1.0 / zoom.to(x)
        cos, sin = cos * inv, sin * inv
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
    """Randomly re-orient a batch of images, independently for each image.

    Parameters
    ----------
    max_shift : float
        Largest shift in pixels along each axis.
    mode : str
        ``continuous``: rotate by a uniform angle in [0, 2 pi) (bilinear
        interpolation), mirror with probability 1/2 and shift by up to
        ``max_shift`` pixels; ``d4``: one of the 8 exact rotations by
        multiples of 90 degrees and mirror images, and whole-pixel shifts
        (no interpolation, so the pixels stay those of a canonical image);
        ``mixed``: either, with probability 1/2 per batch.
    min_zoom : float
        In ``continuous`` mode, also shrink each image by a factor drawn
        log-uniformly from [``min_zoom``, 1] (1: never), as if the source were
        further away, then smooth it so that FIRST's beam keeps its size and
        stretch it back to 0..255 as the canonical preprocessing does: a
        large FRII teaches what a small FRII looks like.
    generator : torch.Generator, optional
        For reproducible draws.
    """

    def __init__(
        self,
        max_shift: float = 3.0,
        mode: str = "continuous",
        generator: torch.Generator | None = None,
        min_zoom: float = 1.0,
    ) -> None:
        if mode not in ("continuous", "d4", "mixed"):
            raise ValueError(f"unknown orientation mode {mode!r}; use continuous, d4 or mixed")
        if not 0 < min_zoom <= 1:
            raise ValueError(f"min_zoom must be in (0, 1], not {min_zoom}")
        self.max_shift = float(max_shift)
        self.mode = mode
        self.min_zoom = float(min_zoom)
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = self.generator
        mode = self.mode
        if mode == "mixed":
            mode = "d4" if torch.rand(1, generator=g).item() < 0.5 else "continuous"
        n = x.shape[0]
        if mode == "d4":
            k = torch.randint(8, (n,), generator=g)
            m = int(self.max_shift)
            shifts = torch.randint(-m, m + 1, (n, 2), generator=g) if m else torch.zeros(n, 2, dtype=torch.long)
            out = torch.stack([dihedral(x[i], int(k[i])) for i in range(n)])
            if m:
                out = torch.stack(
                    [torch.roll(out[i], (int(shifts[i, 1]), int(shifts[i, 0])), dims=(-2, -1)) for i in range(n)]
                )
                mask = torch.from_numpy(circle_mask(x.shape[-1])).to(x.device)
                out = torch.where(mask, out, torch.full_like(out, _BACKGROUND))
            return out
        angle = torch.rand(n, generator=g) * 2 * math.pi
        flip = torch.rand(n, generator=g) < 0.5
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * self.max_shift
        if self.min_zoom >= 1:
            return rotate(x, angle.to(x.device), flip, shift.to(x.device))
        # never shrink a source below ~12 px (22"), where FRI and FRII cannot be told apart
        floor = (MIN_EXTENT_PIXELS / source_extent(x)).clamp(min=self.min_zoom, max=1.0)
        zoom = torch.exp(torch.rand(n, generator=g) * torch.log(floor.cpu()))
        out = rotate(x, angle.to(x.device), flip, shift.to(x.device), zoom.to(x.device))
        return _rebeam(out, zoom.to(x.device))

    def __repr__(self) -> str:
        return f"RandomOrientation(max_shift={self.max_shift}, mode={self.mode!r}, min_zoom={self.min_zoom})"


def source_extent(x: torch.Tensor, level: float = 0.1) -> torch.Tensor:
    """Return ``(N,)`` the diagonal in pixels of the box holding the pixels above ``level`` of the peak."""
    img = (x - _BACKGROUND)[:, 0]
    bright = img > level * img.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    h, w = img.shape[1:]
    rows, cols = bright.any(dim=2), bright.any(dim=1)
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    big = torch.tensor(10**6, device=x.device)
    dy = torch.where(rows, ys, -big).amax(1) - torch.where(rows, ys, big).amin(1)
    dx = torch.where(cols, xs, -big).amax(1) - torch.where(cols, xs, big).amin(1)
    return torch.sqrt((dx.clamp_min(0) ** 2 + dy.clamp_min(0) ** 2).to(x.dtype)) + 1


def _rebeam(x: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Smooth shrunk images back to FIRST's beam, re-threshold and re-stretch to the canonical range."""
    sigma_beam = BEAM_FWHM_PIXELS / 2.3548
    extra = sigma_beam * torch.sqrt(torch.clamp(1 - zoom**2, min=0))  # (N,) pixels
    r = 4
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    kern = torch.exp(-0.5 * (t[None] / extra.clamp_min(1e-3)[:, None]) ** 2)
    kern = kern / kern.sum(1, keepdim=True)  # (N, 2r+1)
    img = (x - _BACKGROUND)[:, 0]  # (N, H, W), 0 background
    n, h = img.shape[:2]
    # separable per-image blur as grouped convolutions
    img = F.conv2d(img[None], kern[:, None, None, :], padding=(0, r), groups=n)
    img = F.conv2d(img, kern[:, None, :, None], padding=(r, 0), groups=n)[0]
    # the canonical images are thresholded: drop the faint halo the blur spread
    top = img.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    img = torch.where(img > 0.02 * top, img, torch.zeros_like(img))
    img = img / top * 2.0  # back to 0..2 (i.e. -1..1 after the background offset)
    mask = torch.from_numpy(circle_mask(h)).to(x.device)
    img = torch.where(mask, img, torch.zeros_like(img))
    return (img + _BACKGROUND)[:, None]


def noise_level(image: np.ndarray) -> float:
    """Return the noise of a raw cutout: its 3-sigma-clipped standard deviation (5 iterations, NaN as 0).

    astropy's ``sigma_clipped_stats(image, sigma=3, maxiters=5)[2]`` to the
    bit (:func:`frsurvey.image.preprocess.sigma_clipped_std`).
    """
    return float(sigma_clipped_std(np.nan_to_num(np.asarray(image, dtype=np.float64)), sigma=3.0, maxiters=5))


def perturb_cutout(
    image: np.ndarray,
    rng: np.random.Generator,
    max_shift: int = 4,
    min_scale: float = 0.3,
    sigma: float | None = None,
) -> np.ndarray:
    """Return a 300x300 FIRST cutout as it might have been observed differently.

    Two physical perturbations, applied to the raw cutout *before* the
    canonical preprocessing, so that the model sees their real effect on the
    3-sigma clipping and the min..max scaling:

    - the source fainter by a factor ``s`` drawn from [``min_scale``, 1], with
      the noise kept at the map's level by adding beam-correlated Gaussian
      noise of rms ``sigma * sqrt(1 - s**2)`` (FIRST's 5.4" beam, 3 px FWHM);
    - the source off-centre by up to ``max_shift`` pixels along each axis.

    Parameters
    ----------
    image : numpy.ndarray
        ``(300, 300)`` cutout in Jy/beam (NaN allowed).
    rng : numpy.random.Generator
        Source of randomness.
    sigma : float, optional
        The map's noise: the 3-sigma-clipped standard deviation of the
        cutout (NaN as 0), as :func:`noise_level` gives it; computed if not
        given (pass it when perturbing one cutout many times).
    """
    from scipy.ndimage import gaussian_filter

    x = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if sigma is None:
        sigma = noise_level(image)
    s = rng.uniform(min_scale, 1.0)
    noise = gaussian_filter(rng.standard_normal(x.shape), BEAM_FWHM_PIXELS / 2.3548, mode="wrap")
    noise *= sigma * np.sqrt(max(1.0 - s * s, 0.0)) / max(noise.std(), 1e-12)
    x = s * x + noise
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    return np.roll(x, (int(dy), int(dx)), axis=(0, 1)).astype(np.float32)
