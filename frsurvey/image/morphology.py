"""What astronomers measure on a cutout before they give it a Fanaroff-Riley class.

:func:`measure` works on the pixels the model sees: the central 150x150 px
of the cutout, inside the 75 px circle, above three times the noise of the
canonical sigma clip (:func:`frsurvey.image.preprocess.sigma_clipped_std` of the
whole 300x300 cutout). It is called where the canonical preprocessing happens
(:class:`frsurvey.image.prepare.PreparedCutouts`), so every runner gets the same
values.

It measures the source at the catalog position, not the cutout. A
*component* is a connected (8-neighbour) region above 3 sigma whose peak
reaches 5 sigma. The *target* is the component containing the position or
with a pixel within :data:`CENTRAL_RADIUS` (3 px, 5.4") of it, the nearest
if several. The target's *group* is the source it belongs to: the target,
the components with a pixel within :data:`LINK_PX` (5 px, 9", along rows,
columns or diagonals) of one of its pixels, and pairs of lobes around it
(two extended or bright components on opposite sides of it, more than
:data:`FLANK_ANGLE` apart as seen from it, their distances within a factor
:data:`FLANK_RATIO` and their integrated fluxes within a factor
:data:`FLANK_FLUX_RATIO` of each other). Emission elsewhere in the cutout
(an unrelated neighbour 60 px away) changes none of the values below.

It returns one float64 vector per source (:data:`MEASURES`):

``snr``
    peak surface brightness of the group over the noise; when there is no
    target, of the brightest pixel inside the circle.
``las``
    largest angular size (arcsec) of the group, from pixel centre to pixel
    centre plus one pixel. NaN when there is no target.
``size``
    FWHM (arcsec) of the major axis of the target deconvolved from the beam:
    its intensity-weighted second moments above 3 sigma, corrected for the
    cut at 3 sigma (exact for a Gaussian), less the beam's. 0 when the
    target is no larger than the beam; NaN when there is no target.
``ncomp``
    number of components in the group; 0 when there is no target.
``edge``
    1 when the target reaches the edge of the circle (it runs off the image
    the model sees), else 0.
``flanked``
    1 when the group has lobes on opposite sides of the target (a double
    source whose core is the target), else 0.

:func:`decide` turns the measurements into the statuses ``unresolved`` and
``too_large`` with thresholds (:class:`Thresholds`): a group of one
component smaller than the beam is ``unresolved``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .._flags import Check, at_least, check_fields, option
from ..status import Status
from .preprocess import CROP_SIZE, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, circle_mask

__all__ = [
    "FWHM_PER_SIGMA",
    "MEASURES",
    "Thresholds",
    "beam_fwhm",
    "blank_measures",
    "decide",
    "measure",
]

#: Names of the values in the vector :func:`measure` returns, in order.
MEASURES: tuple[str, ...] = ("snr", "las", "size", "ncomp", "edge", "flanked")
#: FWHM of a Gaussian in units of its standard deviation.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Emission threshold in units of the noise (the canonical preprocessing's).
DETECT = 3.0
#: A component counts when its peak reaches this many times the noise.
COMPONENT_SNR = 5.0
#: The target is the component with a pixel this close (px) to the catalog position (the centre).
CENTRAL_RADIUS = 3.0
#: Components with a pixel this close (px, chessboard distance) to one of the target's join its group.
LINK_PX = 5
#: Other components must be this far apart (degrees, seen from the centre) to flank the core.
FLANK_ANGLE = 150.0
#: ... and their distances from the core within this factor of each other.
FLANK_RATIO = 3.0
#: ... and each of them at least this many pixels above 3 sigma (three beams' worth): extended, like lobes.
FLANK_AREA = 40
#: ... or peaking at least this many times the noise (bright compact hotspots).
FLANK_SNR = 50.0
#: ... and their integrated fluxes within this factor of each other (lobes of one source are alike).
FLANK_FLUX_RATIO = 10.0

_MASK = circle_mask(CROP_SIZE)
_C = (CROP_SIZE - 1) / 2.0
_YY, _XX = np.mgrid[:CROP_SIZE, :CROP_SIZE]
_R2 = (_YY - _C) ** 2 + (_XX - _C) ** 2
_NEAR = _R2 <= CENTRAL_RADIUS**2
#: Pixels on the rim of the circle: the target reaching them runs off the image.
_RIM = _MASK & (_R2 > (CROP_SIZE / 2.0 - 1.5) ** 2)
_EIGHT = np.ones((3, 3), dtype=bool)


def blank_measures() -> np.ndarray:
    """Return the vector of a source that was not measured (all NaN)."""
    return np.full(len(MEASURES), np.nan)


def beam_fwhm(dec: float | None) -> tuple[float, float]:
    """Return FIRST's restoring beam (major, minor) FWHM in arcsec at declination ``dec``.

    5.4" round north of Dec +4.5 deg; south of it the beam is elongated
    north-south: 6.4" x 5.4" down to Dec -2.5 deg, 6.8" x 5.4" below
    (Becker, White & Helfand 1995; the FIRST catalog's documentation).
    ``None`` or NaN: the round beam.
    """
    if dec is None or not np.isfinite(dec) or dec > 4.5:
        return 5.4, 5.4
    if dec > -2.5:
        return 6.4, 5.4
    return 6.8, 5.4


def _truncation(q: float) -> float:
    """Share of a Gaussian's variance kept by intensity-weighted moments above ``q`` times its peak."""
    q = min(max(q, 1e-12), 1.0 - 1e-9)
    return (1.0 - q * (1.0 - np.log(q))) / (1.0 - q)


#: Unit vectors of 180 directions 1 degree apart: the largest size is the widest projection on them.
_DIRECTIONS = np.stack([np.sin(np.radians(np.arange(180.0))), np.cos(np.radians(np.arange(180.0)))])


def _largest_size(ys: np.ndarray, xs: np.ndarray) -> float:
    """Return the largest distance (px) between pixel centres of a set, plus one pixel.

    The widest of the set's projections on 180 directions: at most 0.02%
    short of the largest distance between two of its pixels.
    """
    proj = np.column_stack([ys, xs]) @ _DIRECTIONS
    return float((proj.max(axis=0) - proj.min(axis=0)).max()) + 1.0


def measure(image: np.ndarray, std: float, dec: float | None = None) -> np.ndarray:
    """Measure the source at the centre of a 300x300 FIRST cutout (see the module's docstring).

    Parameters
    ----------
    image : numpy.ndarray
        The cutout, ``(300, 300)`` in Jy/beam (non-finite pixels count as 0),
        centred on the catalog position.
    std : float
        Its noise: the canonical sigma-clipped standard deviation.
    dec : float, optional
        Declination (deg), which sets the beam (:func:`beam_fwhm`).

    Returns
    -------
    numpy.ndarray
        float64 vector in the order of :data:`MEASURES`; all NaN when the
        noise is not positive and finite.
    """
    out = blank_measures()
    if not (np.isfinite(std) and std > 0):
        return out
    lo = (CUTOUT_SIZE - CROP_SIZE) // 2
    crop = np.asarray(image)[lo : lo + CROP_SIZE, lo : lo + CROP_SIZE].astype(np.float64)
    if not np.isfinite(crop).all():
        crop = np.nan_to_num(crop)
    snr = crop / std
    mask = (snr > DETECT) & _MASK
    out[0] = float(np.max(snr, where=_MASK, initial=-np.inf))
    labels, n = ndimage.label(mask, structure=_EIGHT)
    out[3:] = 0.0
    if n == 0:
        return out
    lab, value = labels[mask], snr[mask]
    peaks = np.full(n + 1, -np.inf)
    np.maximum.at(peaks, lab, value)
    real = peaks >= COMPONENT_SNR
    near = np.unique(labels[_NEAR & mask])
    near = near[real[near]]
    if not len(near):
        return out
    # the target: the component with the pixel nearest the position
    c = int(near[np.argmin([_R2[labels == k].min() for k in near])]) if len(near) > 1 else int(near[0])
    where = labels == c
    ys, xs = np.nonzero(where)
    w = snr[where]
    out[4] = float(bool((where & _RIM).any()))

    # beam-corrected second moments of the target, corrected for the cut at DETECT sigma
    total = w.sum()
    my, mx = (w * ys).sum() / total, (w * xs).sum() / total
    dy, dx = ys - my, xs - mx
    cov = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()], [(w * dx * dy).sum(), (w * dy * dy).sum()]]) / total
    cov /= _truncation(DETECT / peaks[c])
    bmaj, bmin = beam_fwhm(dec)
    sx, sy = bmin / FWHM_PER_SIGMA / PIXEL_SCALE_ARCSEC, bmaj / FWHM_PER_SIGMA / PIXEL_SCALE_ARCSEC
    src = cov - np.diag([sx * sx, sy * sy])  # the beam's major axis runs north-south (along the rows)
    top = float(np.linalg.eigvalsh(src)[-1])
    out[2] = FWHM_PER_SIGMA * np.sqrt(max(top, 0.0)) * PIXEL_SCALE_ARCSEC

    # the group: the target, components within LINK_PX of it, and lobes on opposite sides of it
    group = np.zeros(n + 1, dtype=bool)
    y0, y1 = max(int(ys[0]) - LINK_PX, 0), min(int(ys[-1]) + LINK_PX + 1, CROP_SIZE)
    x0, x1 = max(int(xs.min()) - LINK_PX, 0), min(int(xs.max()) + LINK_PX + 1, CROP_SIZE)
    # dilation by a (2 LINK_PX + 1)-pixel square: every pixel within LINK_PX (chessboard) of the target
    grown = ndimage.maximum_filter(where[y0:y1, x0:x1], size=2 * LINK_PX + 1, mode="constant", cval=0)
    group[labels[y0:y1, x0:x1][grown]] = True
    group &= real
    area = np.bincount(lab, minlength=n + 1)
    flux = np.bincount(lab, weights=value, minlength=n + 1)
    others = np.flatnonzero(real & ~group & ((area >= FLANK_AREA) | (peaks >= FLANK_SNR)))
    lobes = _lobes(snr, labels, others, flux[others], my, mx)
    group[lobes] = True
    out[5] = float(len(lobes) > 0)
    members = np.flatnonzero(group)
    out[3] = float(len(members))
    if len(members) > 1:
        where = group[labels]
        ys, xs = np.nonzero(where)
    out[0] = float(peaks[members].max())
    out[1] = _largest_size(*_outline(where, ys, xs)) * PIXEL_SCALE_ARCSEC
    return out


def _outline(where: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the rows and columns (float) of the pixels of ``where`` with a 4-neighbour outside it.

    The widest projection of a set of pixels on any direction is that of
    its outline: an inner pixel always has a neighbour farther along the
    direction. ``ys``, ``xs`` are the set's pixels (``np.nonzero(where)``).
    """
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs.min()), int(xs.max()) + 1
    box = np.zeros((y1 - y0 + 2, x1 - x0 + 2), dtype=bool)
    box[1:-1, 1:-1] = where[y0:y1, x0:x1]
    inner = box[1:-1, 1:-1] & box[:-2, 1:-1] & box[2:, 1:-1] & box[1:-1, :-2] & box[1:-1, 2:]
    oy, ox = np.nonzero(box[1:-1, 1:-1] & ~inner)
    return (oy + y0).astype(float), (ox + x0).astype(float)


def _lobes(
    snr: np.ndarray, labels: np.ndarray, others: np.ndarray, flux: np.ndarray, my: float, mx: float
) -> np.ndarray:
    """Return the labels among ``others`` that pair up on opposite sides of (my, mx), like lobes.

    Opposite: more than :data:`FLANK_ANGLE` apart as seen from the core,
    their distances from it within a factor :data:`FLANK_RATIO` and their
    integrated fluxes (``flux``, one per label) within a factor
    :data:`FLANK_FLUX_RATIO`. The caller passes only extended or bright
    components (:data:`FLANK_AREA`, :data:`FLANK_SNR`) outside the group.
    """
    if len(others) < 2:
        return others[:0]
    cy = np.asarray(ndimage.center_of_mass(snr, labels, others))
    vy, vx = cy[:, 0] - my, cy[:, 1] - mx
    ang = np.arctan2(vy, vx)
    dist = np.maximum(np.hypot(vy, vx), 1e-9)
    apart = np.degrees(np.abs(np.angle(np.exp(1j * (ang[:, None] - ang[None, :]))))) > FLANK_ANGLE
    ratio = np.maximum(dist[:, None], dist[None, :]) / np.minimum(dist[:, None], dist[None, :])
    fluxes = np.maximum(flux[:, None], flux[None, :]) / np.minimum(flux[:, None], flux[None, :])
    pair = apart & (ratio < FLANK_RATIO) & (fluxes < FLANK_FLUX_RATIO)
    return others[pair.any(axis=1)]


#: The title of the refusal options on the command line.
REFUSALS = "what is not classified (see the README)"


@dataclass(frozen=True)
class Thresholds:
    """When a source gets no FR label although its image was classified.

    Attributes
    ----------
    unresolved_size : float
        Arcsec. A source at the position whose group is one component (no
        other component within 5 px, no lobes around it) with a deconvolved
        major axis (``FR_SIZE_DECONV``) below ``max(unresolved_size,
        unresolved_snr_size / sqrt(FR_SNR))`` is ``unresolved``. The default,
        5.4", is FIRST's beam: a source smaller than the beam has no jet or
        lobe structure at 1.8"/px. 0 (both) turns the status off.
    unresolved_snr_size : float
        Arcsec: the part of the limit that shrinks with S/N as the noise of
        the size measurement does (a point source at S/N 10 measures up to
        about 6", at S/N 1000 under 1.5"; a Gaussian 1.3x the beam 4.5").
    too_large : bool
        Give ``too_large`` to sources whose target (the component at the position) reaches the
        edge of the 75 px circle.
    ood_threshold : float or None
        Refuse (``out_of_domain``) rows whose ``FR_OOD`` is above this; None: off.
    """

    unresolved_size: float = option(
        5.4,
        "--unresolved-size",
        check=at_least(0, float),
        metavar="ARCSEC",
        group=REFUSALS,
        help="a source at the position that is one component (FR_NCOMP 1) with a deconvolved size "
        "(FR_SIZE_DECONV) below max(this, --unresolved-snr-size / sqrt(FR_SNR)) is 'unresolved'",
    )
    unresolved_snr_size: float = option(
        30.0,
        "--unresolved-snr-size",
        check=at_least(0, float),
        metavar="ARCSEC",
        group=REFUSALS,
        help="the part of the size limit that shrinks as 1/sqrt(S/N) (0 and --unresolved-size 0: no 'unresolved')",
    )
    too_large: bool = option(
        True,
        "--keep-too-large",
        action="store_false",
        group=REFUSALS,
        help="label sources whose emission runs off the image instead of giving them 'too_large'",
    )
    ood_threshold: float | None = option(
        None,
        "--ood-threshold",
        check=Check(float),
        metavar="E",
        group=REFUSALS,
        help="give 'out_of_domain' (no FR_CLASS) to rows whose FR_OOD is above E (default: off)",
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def as_dict(self) -> dict[str, float | bool | None]:
        """Return the thresholds as a JSON-ready dict (for manifests and provenance)."""
        return asdict(self)

    def size_limit(self, snr: np.ndarray) -> np.ndarray:
        """Return the deconvolved size (arcsec) below which a lone component at peak S/N ``snr`` is unresolved."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.maximum(self.unresolved_size, self.unresolved_snr_size / np.sqrt(np.asarray(snr, dtype=float)))


def decide(measures: np.ndarray, thresholds: Thresholds, ood: np.ndarray | None = None) -> np.ndarray:
    """Return the status each measured source earns: ``ok``, ``unresolved``, ``too_large`` or ``out_of_domain``.

    ``unresolved`` wins over ``too_large``, which wins over ``out_of_domain``.

    Parameters
    ----------
    measures : numpy.ndarray
        ``(N, len(MEASURES))`` from :func:`measure` (NaN rows: ``ok``).
    thresholds : Thresholds
        The run's thresholds.
    ood : numpy.ndarray, optional
        ``FR_OOD`` of each source, for ``thresholds.ood_threshold``.
    """
    m = np.asarray(measures, dtype=float).reshape(-1, len(MEASURES))
    status = np.full(len(m), Status.OK, dtype=object)
    snr, size, ncomp, edge = m[:, 0], m[:, 2], m[:, 3], m[:, 4]
    if thresholds.ood_threshold is not None and ood is not None:
        with np.errstate(invalid="ignore"):
            status[np.asarray(ood, dtype=float).reshape(-1) > thresholds.ood_threshold] = Status.OUT_OF_DOMAIN
    if thresholds.too_large:
        status[edge == 1] = Status.TOO_LARGE
    with np.errstate(invalid="ignore"):
        point = (size < thresholds.size_limit(snr)) & (ncomp == 1)
    status[point] = Status.UNRESOLVED
    return status
