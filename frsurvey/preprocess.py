"""The canonical FIRST preprocessing of FRDEEP-F and MiraBest.

Every image the models see, in training and in classification, goes
through :func:`preprocess_first`.  It reproduces the recipe with which the
FRDEEP-F (Tang et al. 2019) and MiraBest (Porter & Scaife) images were made
from SkyView FIRST cutouts, pixel for pixel:

1. NaN to 0;
2. the standard deviation of ``sigma_clipped_stats(image, sigma=3, maxiters=5)``
   (computed by :func:`sigma_clipped_std`, which gives astropy's number to
   the last bit, faster) and every pixel at or below three times it set to 0;
3. the central 150x150 pixels;
4. pixels outside the inscribed circle (radius 75 pixels) set to 0;
5. inside the circle, min..max scaled to 0..255 and converted to 8 bits the
   way ``PIL.Image.fromarray(float32).convert('L')`` does (clip, truncate).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CROP_SIZE",
    "CUTOUT_SIZE",
    "PIXEL_SCALE_ARCSEC",
    "PREPROCESSING",
    "PREPROCESSING_VERSION",
    "BlankImageError",
    "circle_mask",
    "preprocess_first",
    "sigma_clipped_std",
    "to_model_input",
]

#: Name of the recipe, stored in model cards and in output provenance.
PREPROCESSING = "first-canonical"
#: Version of the recipe; a model trained on another version is refused.
PREPROCESSING_VERSION = 1
#: Size in pixels of the input cutout (SkyView, ``pixels=300``).
CUTOUT_SIZE = 300
#: Size in pixels of the preprocessed image.
CROP_SIZE = 150
#: FIRST's pixel scale in arcseconds.
PIXEL_SCALE_ARCSEC = 1.8


class BlankImageError(ValueError):
    """Raised when an image holds no signal to scale (constant after clipping)."""


def circle_mask(size: int = CROP_SIZE) -> np.ndarray:
    """Return a boolean ``(size, size)`` array, True inside the inscribed circle.

    The circle is centred on the middle of the array (between the two
    central pixels for even sizes) with radius ``size / 2``.
    """
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size]
    return (yy - c) ** 2 + (xx - c) ** 2 <= (size / 2.0) ** 2


_MASK = circle_mask()


def _to_uint8(scaled: np.ndarray) -> np.ndarray:
    # What PIL's float32 -> 'L' conversion does: NaN to 0, clip, truncate.
    scaled = np.nan_to_num(scaled.astype(np.float32, copy=False), nan=0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def scale_to_uint8(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Return ``image`` scaled min..max inside ``mask`` to 0..255 as uint8.

    Pixels outside ``mask`` (default: the inscribed circle) are 0.

    Raises
    ------
    BlankImageError
        If the image is constant inside the mask, so that there is nothing
        to scale.
    """
    mask = _MASK if mask is None else mask
    inside = image[mask]
    lo, hi = inside.min(), inside.max()
    if not hi > lo:
        raise BlankImageError(f"image is constant ({lo!r}) inside the circle: no signal above 3 sigma")
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = (inside - lo) / (hi - lo) * 255
    return _to_uint8(out)


def sigma_clipped_std(data: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> np.floating:
    """Return the standard deviation of ``data`` after iterative sigma clipping.

    The same number, to the last bit, as
    ``astropy.stats.sigma_clipped_stats(data, sigma=sigma, maxiters=maxiters)[2]``
    (median centre, population standard deviation, bounds inclusive) for
    finite data, computed about twice as fast: the data are sorted once, so
    that each iteration's median is read off the sorted values and its
    clipped set found by bisection, and each standard deviation is computed
    by numpy on the clipped values in their original order and byte order,
    as astropy computes it.

    Parameters
    ----------
    data : numpy.ndarray
        Finite values (no NaN or inf), any shape and float dtype.
    sigma : float
        Clipping bound in standard deviations, both sides.
    maxiters : int
        Most clipping iterations.

    Returns
    -------
    numpy.floating
        NaN for empty input.
    """
    x = np.asarray(data).ravel()
    if x.size == 0:
        return np.float32(np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        return _clipped_std(x, sigma, maxiters)


def _clipped_std(x: np.ndarray, sigma: float, maxiters: int) -> np.floating:
    ordered = np.sort(x.astype(x.dtype.newbyteorder("=")))
    a, b = 0, ordered.size
    clipped = x
    for _ in range(maxiters):
        n = b - a
        m = a + n // 2
        center = ordered[m] if n % 2 else np.mean(ordered[m - 1 : m + 1])
        std = np.nanstd(clipped)
        lo, hi = center - std * sigma, center + std * sigma
        a2 = int(np.searchsorted(ordered, lo, side="left"))
        b2 = int(np.searchsorted(ordered, hi, side="right"))
        if (a2, b2) == (a, b):
            break
        a, b = a2, b2
        if a == b:
            return np.float32(np.nan)
        clipped = x[(x >= lo) & (x <= hi)]
    return np.nanstd(clipped)


def preprocess_first(image: np.ndarray) -> np.ndarray:
    """Return the canonical 150x150 uint8 image of a 300x300 FIRST cutout.

    Parameters
    ----------
    image : array_like, shape (300, 300)
        A FIRST cutout in Jy/beam at 1.8"/pixel centred on the source, as
        SkyView delivers it for ``pixels=300`` (row 0 is the FITS file's
        first row). NaN pixels are treated as 0.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape (150, 150): the sigma-clipped, cropped,
        circularly masked and min..max scaled image, identical to the images
        of FRDEEP-F and MiraBest made from the same cutout.

    Raises
    ------
    ValueError
        If ``image`` is not a 300x300 array.
    BlankImageError
        If no pixel inside the circle rises above three sigma (for example
        an all-zero, all-NaN or constant image).
    """
    image = np.asarray(image)
    if image.shape != (CUTOUT_SIZE, CUTOUT_SIZE):
        raise ValueError(f"expected a {CUTOUT_SIZE}x{CUTOUT_SIZE} cutout, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    std = sigma_clipped_std(image, sigma=3, maxiters=5)
    lo = (CUTOUT_SIZE - CROP_SIZE) // 2
    crop = image[lo : lo + CROP_SIZE, lo : lo + CROP_SIZE].copy()
    crop[crop <= 3 * std] = 0
    crop[~_MASK] = 0
    return scale_to_uint8(crop)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Return uint8 images as float32 model input: ``(x / 255 - 0.5) / 0.5``.

    Accepts one image ``(150, 150)`` or a stack ``(N, 150, 150)`` and returns
    the same leading shape with a channel axis: ``(1, 150, 150)`` or
    ``(N, 1, 150, 150)``.
    """
    x = np.asarray(images, dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return x[None] if x.ndim == 2 else x[:, None]
