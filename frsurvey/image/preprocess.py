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
    "preprocess_first_with_noise",
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
    (median centre, population standard deviation, bounds inclusive,
    non-finite values left out), computed about ten times as fast. Each
    iteration filters the values kept so far, as astropy does; its median is
    read off one sorted band of values around the median of the whole array
    (the medians of the clipped sets stay within it in practice; otherwise
    the median is selected from the clipped values), never from a full sort;
    each standard deviation is computed by numpy on the clipped values in
    their original order and byte order, as astropy computes it.

    Parameters
    ----------
    data : numpy.ndarray
        Any shape and float dtype; NaN and inf are left out, as astropy does.
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
    if x.size and not np.isfinite(x).all():
        x = x[np.isfinite(x)]
    if x.size == 0:
        return np.float32(np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        return _clipped_std(x, sigma, maxiters)


#: Half-width, as a fraction of the values, of the sorted band around the median.
_BAND = 0.03
#: About how many values the band's edges are taken from.
_BAND_SAMPLE = 4096
#: Arrays up to this size are sorted outright.
_SMALL = 4096


def _clipped_std(x: np.ndarray, sigma: float, maxiters: int) -> np.floating:
    native = x.dtype.isnative
    # np.std and np.nanstd agree to the bit on finite native data; on other byte orders numpy
    # sums through a conversion buffer, and only nanstd sums the way astropy's nanstd does.
    std_of = np.std if native else np.nanstd
    sel = x if native else x.astype(x.dtype.newbyteorder("="))  # what the medians are read from
    clipped = x  # the same values, in the caller's byte order: what the deviations are computed on
    band, band_rank = _median_band(sel)
    below = 0  # values of x below the clipped set: its k-th value is x's (below + k)-th
    std = None
    for _ in range(maxiters):
        n = sel.size
        center = _median(sel, below, band, band_rank)
        std = std_of(clipped)
        lo, hi = center - std * sigma, center + std * sigma
        keep = (sel >= lo) & (sel <= hi)
        kept = int(np.count_nonzero(keep))
        if kept == n:
            return std
        if kept == 0:
            return np.float32(np.nan)
        below += int(np.count_nonzero(sel < lo))
        sel = sel[keep]
        clipped = sel if native else clipped[keep]
        std = None
    return std_of(clipped) if std is None else std


def _median_band(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the sorted values of ``x`` in a band around its median, and the rank of the first.

    The band's edges are quantiles of a strided sample: any edges would do,
    since the rank of the band is counted; these make it narrow and likely
    to hold the medians of the clipped sets.
    """
    n = x.size
    if n <= _SMALL:
        return np.sort(x), 0
    sample = x[:: n // _BAND_SAMPLE]
    ns = sample.size
    half = int(ns * _BAND)
    i_lo, i_hi = ns // 2 - half, (ns - 1) // 2 + half
    part = np.partition(sample, (i_lo, i_hi))
    lo_value, hi_value = part[i_lo], part[i_hi]
    inside = (x >= lo_value) & (x <= hi_value)
    return np.sort(x[inside]), int(np.count_nonzero(x < lo_value))


def _median(sel: np.ndarray, below: int, band: np.ndarray, band_rank: int):
    """Return numpy's median of ``sel``, the values of x ranked ``below`` to ``below + sel.size - 1``."""
    n = sel.size
    k0, k1 = below + (n - 1) // 2, below + n // 2
    if band_rank <= k0 and k1 < band_rank + band.size:
        pair = band[k0 - band_rank : k1 - band_rank + 1]
    else:
        pair = np.array(_select(sel, (n - 1) // 2, n // 2), dtype=sel.dtype)
    # exactly what np.median does: the middle value, or the float mean of the middle two
    return pair[0] if n % 2 else np.mean(pair)


def _select(x: np.ndarray, k0: int, k1: int):
    """Return the ``k0``-th and ``k1``-th smallest values of ``x`` (``k0 <= k1``), without sorting it.

    Values from a strided sample bound a window that must hold both ranks;
    counting checks it does, and only the window is partitioned (the whole
    array when the check fails, e.g. for many tied values).
    """
    while x.size > _SMALL:
        n = x.size
        sample = x[:: n // 1024]
        ns = sample.size
        margin = int(3 * np.sqrt(ns)) + 2
        i_lo = int(k0 / n * ns) - margin
        i_hi = int(k1 / n * ns) + margin
        if i_lo < 0 and i_hi >= ns:
            break
        picks = [i for i in (i_lo, i_hi) if 0 <= i < ns]
        part = np.partition(sample, picks)
        lo_value = part[i_lo] if i_lo >= 0 else -np.inf
        hi_value = part[i_hi] if i_hi < ns else np.inf
        nb = int(np.count_nonzero(x < lo_value)) if i_lo >= 0 else 0
        window = x[(x >= lo_value) & (x <= hi_value)]
        if not (nb <= k0 and k1 < nb + window.size) or window.size > 0.7 * n:
            break
        x, k0, k1 = window, k0 - nb, k1 - nb
    part = np.partition(x, (k0, k1) if k1 != k0 else k0)
    return part[k0], part[k1]


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
    return preprocess_first_with_noise(image)[0]


def preprocess_first_with_noise(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Return the canonical image of :func:`preprocess_first` and the cutout's noise (the clipped std, Jy/beam).

    The noise is the one the recipe clips at three times; :mod:`frsurvey.image.morphology`
    measures the source with it. Raises as :func:`preprocess_first`.
    """
    image = np.asarray(image)
    if image.shape != (CUTOUT_SIZE, CUTOUT_SIZE):
        raise ValueError(f"expected a {CUTOUT_SIZE}x{CUTOUT_SIZE} cutout, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    if not np.isfinite(image).all():  # most cutouts are: no copy for them
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    std = sigma_clipped_std(image, sigma=3, maxiters=5)
    lo = (CUTOUT_SIZE - CROP_SIZE) // 2
    crop = image[lo : lo + CROP_SIZE, lo : lo + CROP_SIZE].copy()
    crop[crop <= 3 * std] = 0
    crop[~_MASK] = 0
    return scale_to_uint8(crop), float(std)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Return uint8 images as float32 model input: ``(x / 255 - 0.5) / 0.5``.

    Accepts one image ``(150, 150)`` or a stack ``(N, 150, 150)`` and returns
    the same leading shape with a channel axis: ``(1, 150, 150)`` or
    ``(N, 1, 150, 150)``.
    """
    x = np.asarray(images, dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return x[None] if x.ndim == 2 else x[:, None]
