#!/usr/bin/env python3
"""Simulate FIRST-like radio galaxies and write the bundled offline demo.

Every image this script writes is SIMULATED: none of it is FIRST data.  The
demo lets the classifier be tried end to end without network access.

Output (by default under ``catalogs/demo/`` of the repository)::

    images/field_NNN.fits   Rice-compressed float32 images in Jy/beam
    demo.csv                the demo catalog (simulated truth included)

What is simulated
-----------------
* FIRST's imaging: 1.8"/pixel, a circular Gaussian restoring beam of 5.4"
  FWHM, map units Jy/beam, Gaussian noise of 0.15 mJy/beam rms per pixel that
  is correlated on the beam scale (white noise convolved with the beam, then
  rescaled), a TAN-projection celestial WCS (FK5, J2000) and field centres
  spread over FIRST's northern footprint (RA 115..255 deg, Dec -8..+57 deg).
* The sky is a sum of elliptical Gaussian components, each analytically
  convolved with the beam (a Gaussian convolved with a Gaussian is a Gaussian),
  so the model is exact in Jy/beam:  a component of total flux S with intrinsic
  sigmas (a, b) has a peak of ``S * s_b**2 / sqrt((a**2 + s_b**2) * (b**2 + s_b**2))``
  Jy/beam, where s_b is the beam's sigma.
* FRI (edge-darkened): a bright compact core and two-sided jets whose surface
  brightness falls with distance while they widen into plumes; a
  counter-jet fainter by up to a factor of ~2; half of them mildly bent
  (C-shaped, as wide-angle tails).  Total extent 25..115 arcsec.
* FRII (edge-brightened): a faint or absent core and two lobes that end in
  compact hotspots, the brightest features, at the outer ends; lobe flux ratio
  0.5..2, arm-length asymmetry up to ~25 per cent and a misalignment of up to 8
  degrees; sometimes a secondary hotspot.  Total extent 35..195 arcsec.
* The noiseless model is scaled so that its peak signal-to-noise ratio is
  log-uniform in 40..800; every model is checked to be brightest where its
  class says it should be (FRI near the core, FRII at a hotspot).

``sim_size_arcsec`` in the catalog is the projected distance between the two
outer ends of the model: the ends of the jets (FRI) or the two primary
hotspots (FRII).  Faint FRI plumes may fade into the noise before that.

Image layout
------------
24 sources, 12 FRI and 12 FRII.  21 of them get their own 360x360 image, with
the source up to ~18 pixels from the image centre (and never on a half-pixel
position), so a 300x300 cutout must be cut around the catalog position with
the WCS.  The remaining three (two FRI, one FRII) share one 900x900 mosaic.
File names (``field_001.fits`` ...) number the fields in order of right
ascension and say nothing about the class; the image headers say nothing about
it either.  Two extra catalog rows at the end demonstrate statuses: one with a
blank Dec and one far from every image (RA 10, Dec -40).

Reproducibility
---------------
Everything is drawn from ``numpy.random.default_rng(--seed)``, the Rice
quantization uses a fixed dither seed and the ``DATE`` header is a fixed
string, so two runs with the same seed give byte-identical files.

Usage::

    python scripts/simulate_demo.py                 # writes catalogs/demo/
    python scripts/simulate_demo.py --seed 7 --out /tmp/demo
    python scripts/simulate_demo.py --montage /tmp/demo_montage.png  # needs matplotlib
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

# --- FIRST-like imaging parameters -------------------------------------------------------------------
PIXEL_SCALE_ARCSEC = 1.8
BEAM_FWHM_ARCSEC = 5.4
NOISE_JY = 0.15e-3  # rms per pixel in Jy/beam
BEAM_SIGMA_PX = BEAM_FWHM_ARCSEC / PIXEL_SCALE_ARCSEC / (2.0 * math.sqrt(2.0 * math.log(2.0)))

# --- demo layout --------------------------------------------------------------------------------------
N_SOURCES = 24  # half FRI, half FRII
FIELD_SIZE = 360  # single-source images
MOSAIC_SIZE = 900  # the one shared image
MAX_OFFSET_PX = 18.0  # source offset from the centre of a single-source image, per axis
MIN_OFFSET_PX = 3.0  # ... and at least this far from it (radially)
MOSAIC_SLOTS = ((255.0, 262.0, "FRI"), (640.0, 300.0, "FRII"), (450.0, 640.0, "FRI"))  # x, y (0-based)
MOSAIC_JITTER_PX = 12.0
EDGE_MARGIN_PX = 160  # every catalog position is at least this far from the image edges
CUTOUT_HALF = 150  # the tool cuts 300x300 around each position

RA_RANGE = (115.0, 255.0)  # FIRST's northern footprint, roughly
DEC_RANGE = (-8.0, 57.0)
SNR_RANGE = (40.0, 800.0)
FRI_SIZE_ARCSEC = (25.0, 115.0)
FRII_SIZE_ARCSEC = (35.0, 195.0)

COORD_DECIMALS = 6  # catalog precision in degrees (0.0036 arcsec)
DITHER_SEED = 4242  # fixed dither seed of the Rice quantization (1..10000)
QUANTIZE_LEVEL = 16.0
FIXED_DATE = "2025-01-01T00:00:00"
DEFAULT_SEED = 20250101
NOTE = "simulated FIRST-like source; not real data"
CSV_COLUMNS = ("name", "ra", "dec", "sim_class", "sim_size_arcsec", "note")


# ------------------------------------------------------------------------------------------------------
# Source models
# ------------------------------------------------------------------------------------------------------
@dataclass
class Component:
    """An elliptical Gaussian: centre offset from the core (pixels), total flux, sigmas and angle.

    ``theta`` is the angle of the major axis from the +x pixel axis, counter-clockwise (radians).
    """

    dx: float
    dy: float
    flux: float
    sig_a: float
    sig_b: float
    theta: float


@dataclass
class SourceModel:
    kind: str  # "FRI" or "FRII"
    components: list[Component]
    size_px: float  # end-to-end extent (see module docstring)
    pa_deg: float
    snr: float
    meta: dict = field(default_factory=dict)


def _unit(pa_rad: float) -> np.ndarray:
    """Unit vector in pixel coordinates for a position angle east of north (north +y, east -x)."""
    return np.array([-math.sin(pa_rad), math.cos(pa_rad)])


def _perp(vec: np.ndarray) -> np.ndarray:
    return np.array([vec[1], -vec[0]])


def _angle(vec: np.ndarray) -> float:
    return math.atan2(vec[1], vec[0])


def make_fri(rng: np.random.Generator) -> SourceModel:
    """A two-sided, edge-darkened FRI: bright core, jets that fade and widen into plumes."""
    size_arcsec = rng.uniform(*FRI_SIZE_ARCSEC)
    half = size_arcsec / PIXEL_SCALE_ARCSEC / 2.0
    pa = rng.uniform(0.0, 360.0)
    u = _unit(math.radians(pa))
    v = _perp(u)
    bend = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3) if rng.random() < 0.5 else 0.0
    scale_len = rng.uniform(0.5, 0.9) * half  # e-folding length of the jet's flux per unit length
    width_end = max(1.2, rng.uniform(0.18, 0.32) * half)  # plume sigma at the end of the jet
    width_start = 0.35
    counter = rng.uniform(0.5, 1.0)  # counter-jet / jet flux ratio (mild Doppler asymmetry)
    comps: list[Component] = []
    n_steps = max(10, math.ceil(half / 0.6))
    t_grid = np.linspace(0.9, half, n_steps)
    dt = t_grid[1] - t_grid[0]
    jet_total = 0.0
    ends = []
    for side, side_flux in ((1.0, 1.0), (-1.0, counter)):
        for t in t_grid:
            frac = t / half
            pos = side * t * u + bend * half * frac**2 * v
            tangent = side * u + 2.0 * bend * frac * v
            width = width_start + (width_end - width_start) * frac**1.2
            along = max(0.8 * dt, 0.6 * width)
            taper = 1.0 if frac < 0.85 else 0.15 + 0.85 * math.sqrt(max(0.0, 1.0 - frac) / 0.15)
            flux = side_flux * math.exp(-t / scale_len) * taper * dt
            comps.append(Component(pos[0], pos[1], flux, along, width, _angle(tangent)))
            jet_total += flux
        ends.append(side * half * u + bend * half * v)
    core_flux = rng.uniform(0.25, 0.6) * jet_total
    comps.append(Component(0.0, 0.0, core_flux, 0.25, 0.25, 0.0))
    size_px = float(np.hypot(*(ends[0] - ends[1])))
    return SourceModel("FRI", comps, size_px, pa, 0.0, {"bend": bend, "counter": counter})


def make_frii(rng: np.random.Generator) -> SourceModel:
    """An edge-brightened FRII: faint or no core, two lobes ending in bright compact hotspots."""
    size_arcsec = rng.uniform(*FRII_SIZE_ARCSEC)
    half = size_arcsec / PIXEL_SCALE_ARCSEC / 2.0
    pa = rng.uniform(0.0, 360.0)
    asym = rng.uniform(0.0, 0.12)  # arm-length asymmetry
    misalign = math.radians(rng.uniform(-8.0, 8.0))
    ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))  # lobe 2 / lobe 1 flux ratio
    comps: list[Component] = []
    hotspots = []
    side_specs = (
        (half * (1.0 + asym), math.radians(pa), 1.0),
        (half * (1.0 - asym), math.radians(pa) + math.pi + misalign, ratio),
    )
    lobe_width = rng.uniform(0.16, 0.28) * half
    for arm, ang, side_flux in side_specs:
        u = _unit(ang)
        v = _perp(u)
        hs_flux = side_flux * rng.uniform(0.25, 0.45)  # hotspot share of the lobe's flux
        hs_sig = rng.uniform(0.3, 0.9)
        hs = arm * u
        comps.append(Component(hs[0], hs[1], hs_flux, hs_sig * rng.uniform(1.0, 1.6), hs_sig, _angle(v)))
        hotspots.append(hs)
        if rng.random() < 0.3:  # a fainter secondary hotspot just behind the primary
            pos = (arm - rng.uniform(1.5, 3.0)) * u + rng.uniform(-1.5, 1.5) * v
            comps.append(Component(pos[0], pos[1], 0.3 * hs_flux, 0.7, 0.6, _angle(v)))
        # diffuse lobe: brightest just behind the hotspot, fading and narrowing towards the core
        # (the lobe stops short of the hotspot, which sits at its leading edge)
        lobe_flux = side_flux - hs_flux
        t_end = arm - max(1.0, 0.6 * lobe_width)
        t_grid = np.linspace(rng.uniform(0.25, 0.45) * arm, t_end, max(6, math.ceil(arm / 1.2)))
        weights = (t_grid / arm) ** rng.uniform(1.0, 2.0)
        weights *= lobe_flux / weights.sum()
        wiggle = rng.uniform(-0.05, 0.05) * arm
        step = t_grid[1] - t_grid[0]
        for t, wflux in zip(t_grid, weights, strict=True):
            frac = t / arm
            width = max(1.0, lobe_width * (0.4 + 0.6 * frac))
            pos = t * u + wiggle * math.sin(math.pi * frac) * v
            comps.append(Component(pos[0], pos[1], wflux, max(1.0, 1.5 * step), width, _angle(u)))
    if rng.random() < 0.65:  # faint, unresolved core
        comps.append(Component(0.0, 0.0, rng.uniform(0.01, 0.05) * (1.0 + ratio) * 0.35, 0.25, 0.25, 0.0))
    size_px = float(np.hypot(*(hotspots[0] - hotspots[1])))
    return SourceModel("FRII", comps, size_px, pa, 0.0, {"ratio": ratio, "hotspots": hotspots})


def render(model: SourceModel, shape: tuple, x0: float, y0: float, scale: float = 1.0) -> np.ndarray:
    """Render ``model`` (beam-convolved, Jy/beam times ``scale``) centred on 0-based pixel (x0, y0)."""
    img = np.zeros(shape, dtype=np.float64)
    sb2 = BEAM_SIGMA_PX**2
    ny, nx = shape
    for c in model.components:
        a2, b2 = c.sig_a**2 + sb2, c.sig_b**2 + sb2
        peak = scale * c.flux * sb2 / math.sqrt(a2 * b2)
        ct, st = math.cos(c.theta), math.sin(c.theta)
        # inverse covariance of the rotated Gaussian
        ixx = ct * ct / a2 + st * st / b2
        iyy = st * st / a2 + ct * ct / b2
        ixy = ct * st * (1.0 / a2 - 1.0 / b2)
        xc, yc = x0 + c.dx, y0 + c.dy
        r = 6.0 * math.sqrt(max(a2, b2))
        xlo, xhi = max(0, int(xc - r)), min(nx, int(xc + r) + 2)
        ylo, yhi = max(0, int(yc - r)), min(ny, int(yc + r) + 2)
        if xlo >= xhi or ylo >= yhi:
            continue
        dx = np.arange(xlo, xhi) - xc
        dy = (np.arange(ylo, yhi) - yc)[:, None]
        img[ylo:yhi, xlo:xhi] += peak * np.exp(-0.5 * (ixx * dx * dx + 2.0 * ixy * dx * dy + iyy * dy * dy))
    return img


def _morphology_ok(model: SourceModel) -> bool:
    """Check on a noiseless stamp that the brightest emission is where the class puts it."""
    n = int(2 * math.ceil(model.size_px / 2 + 12)) + 1
    c = (n - 1) / 2.0
    img = render(model, (n, n), c, c)
    peak = img.max()
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(xx - c, yy - c)
    half = model.size_px / 2.0
    if model.kind == "FRI":
        # brightest near the core, everything beyond half the extent much fainter
        iy, ix = np.unravel_index(np.argmax(img), img.shape)
        return r[iy, ix] <= max(2.0, 0.2 * half) and img[r > 0.5 * half].max() < 0.3 * peak
    # FRII: on each side the brightest pixel is at the hotspot, both hotspots are prominent and
    # the inner half of the source is much fainter
    if img[r < 0.5 * half].max() >= 0.5 * peak:
        return False
    for hx, hy in model.meta["hotspots"]:
        side = (xx - c) * hx + (yy - c) * hy > 0
        side_img = np.where(side, img, -np.inf)
        jy, jx = np.unravel_index(np.argmax(side_img), img.shape)
        if math.hypot(jx - c - hx, jy - c - hy) > 2.0 or side_img[jy, jx] < 0.2 * peak:
            return False
    return True


def make_source(kind: str, rng: np.random.Generator) -> SourceModel:
    for _ in range(200):
        model = make_fri(rng) if kind == "FRI" else make_frii(rng)
        if _morphology_ok(model):
            model.snr = math.exp(rng.uniform(math.log(SNR_RANGE[0]), math.log(SNR_RANGE[1])))
            return model
    raise RuntimeError(f"could not draw a well-formed {kind} model")  # pragma: no cover


def peak_scale(model: SourceModel) -> float:
    """Factor that brings the model's beam-convolved peak to ``snr * NOISE_JY`` Jy/beam."""
    n = int(2 * math.ceil(model.size_px / 2 + 12)) + 1
    c = (n - 1) / 2.0
    return model.snr * NOISE_JY / render(model, (n, n), c, c).max()


# ------------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------------
def correlated_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise convolved with the beam, rescaled to NOISE_JY rms per pixel."""
    white = rng.standard_normal(shape)
    smooth = gaussian_filter(white, BEAM_SIGMA_PX, mode="wrap", truncate=5.0)
    return smooth * (NOISE_JY / smooth.std())


def make_wcs(size: int, ra: float, dec: float) -> WCS:
    """A FIRST-like TAN WCS of a ``size`` x ``size`` image with its tangent point at the image centre."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
    w.wcs.crval = [ra, dec]
    w.wcs.cdelt = [-PIXEL_SCALE_ARCSEC / 3600.0, PIXEL_SCALE_ARCSEC / 3600.0]
    w.wcs.radesys = "FK5"
    w.wcs.equinox = 2000.0
    return w


def image_header(w: WCS, field_name: str, seed: int) -> fits.Header:
    hdr = fits.Header()
    hdr["OBJECT"] = (field_name, "simulated field")
    hdr["BUNIT"] = ("JY/BEAM", "map units")
    hdr["BMAJ"] = (BEAM_FWHM_ARCSEC / 3600.0, "restoring beam FWHM major axis (deg)")
    hdr["BMIN"] = (BEAM_FWHM_ARCSEC / 3600.0, "restoring beam FWHM minor axis (deg)")
    hdr["BPA"] = (0.0, "restoring beam position angle (deg)")
    hdr.extend(w.to_header(relax=False).cards)
    for key in ("DATE-OBS", "MJD-OBS", "MJDREF", "DATEREF"):  # no observation dates: nothing was observed
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdr["EQUINOX"] = (2000.0, "equinox of the celestial coordinates")
    hdr["RADESYS"] = ("FK5", "reference frame of the celestial coordinates")
    hdr["NOISE"] = (NOISE_JY, "rms of the simulated noise per pixel (Jy/beam)")
    hdr["SIMULATD"] = (True, "this image is simulated, not FIRST data")
    hdr["SIMSEED"] = (seed, "seed of scripts/simulate_demo.py")
    hdr["ORIGIN"] = ("frsurvey scripts/simulate_demo.py", "simulated FIRST-like image")
    hdr["DATE"] = (FIXED_DATE, "fixed (reproducible), not the creation time")
    hdr["COMMENT"] = "SIMULATED FIRST-like 1.4 GHz image (1.8 arcsec pixels, 5.4 arcsec beam,"
    hdr["COMMENT"] = "0.15 mJy/beam beam-correlated noise). Not real FIRST survey data."
    return hdr


def write_image(path: Path, data: np.ndarray, header: fits.Header) -> None:
    comp = fits.CompImageHDU(
        data=data.astype(np.float32),
        header=header,
        compression_type="RICE_1",
        quantize_level=QUANTIZE_LEVEL,
        quantize_method=1,  # SUBTRACTIVE_DITHER_1
        dither_seed=DITHER_SEED,
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path, overwrite=True)


# ------------------------------------------------------------------------------------------------------
# Catalog helpers
# ------------------------------------------------------------------------------------------------------
def iau_name(ra: float, dec: float) -> str:
    """``SIM Jhhmmss.s+ddmmss`` with truncated (IAU-style) sexagesimal digits."""
    tenths = math.floor(ra / 15.0 * 36000.0 + 1e-6)  # RA in tenths of a second of time
    h, rem = divmod(tenths, 36000)
    m, s10 = divmod(rem, 600)
    arcsec = math.floor(abs(dec) * 3600.0 + 1e-6)
    d, rem = divmod(arcsec, 3600)
    dm, ds = divmod(rem, 60)
    sign = "-" if dec < 0 else "+"
    return f"SIM J{h:02d}{m:02d}{s10 // 10:02d}.{s10 % 10:d}{sign}{d:02d}{dm:02d}{ds:02d}"


def random_sky_position(rng: np.random.Generator) -> tuple[float, float]:
    """Uniform on the sphere within the footprint box."""
    ra = rng.uniform(*RA_RANGE)
    sin_dec = rng.uniform(math.sin(math.radians(DEC_RANGE[0])), math.sin(math.radians(DEC_RANGE[1])))
    return ra, math.degrees(math.asin(sin_dec))


def _angsep(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _not_half(v: float) -> bool:
    frac = v - math.floor(v)
    return abs(frac - 0.5) > 0.1 and 0.05 < frac < 0.95


def place(w: WCS, x: float, y: float) -> tuple[float, float, float, float]:
    """Catalog RA/Dec (rounded) of pixel (x, y) and the exact pixel position of the rounded coordinates."""
    ra, dec = (float(v) for v in w.wcs_pix2world([[x, y]], 0)[0])
    ra, dec = round(ra % 360.0, COORD_DECIMALS), round(dec, COORD_DECIMALS)
    px, py = (float(v) for v in w.wcs_world2pix([[ra, dec]], 0)[0])
    return ra, dec, px, py


# ------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------
def simulate(out: Path, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    kinds = np.array(["FRI"] * (N_SOURCES // 2) + ["FRII"] * (N_SOURCES - N_SOURCES // 2))
    rng.shuffle(kinds)
    kinds = [str(k) for k in kinds]
    # the two FRI and one FRII of the mosaic: the first of each in the shuffled order
    by_kind = {k: [i for i, kk in enumerate(kinds) if kk == k] for k in ("FRI", "FRII")}
    mosaic_idx = [by_kind[kind].pop(0) for _, _, kind in MOSAIC_SLOTS]
    single_idx = [i for i in range(N_SOURCES) if i not in mosaic_idx]
    models = [make_source(k, rng) for k in kinds]

    # field centres, well apart from one another
    centres: list[tuple[float, float]] = []
    while len(centres) < len(single_idx) + 1:
        ra, dec = random_sky_position(rng)
        if all(_angsep(ra, dec, r, d) > 2.0 for r, d in centres):
            centres.append((round(ra, 4), round(dec, 4)))

    fields = []  # (centre, size, [(source index, x, y)])
    for idx, centre in zip(single_idx, centres[:-1], strict=True):
        while True:
            dx, dy = rng.uniform(-MAX_OFFSET_PX, MAX_OFFSET_PX, size=2)
            c = (FIELD_SIZE - 1) / 2.0
            if math.hypot(dx, dy) >= MIN_OFFSET_PX and _not_half(c + dx) and _not_half(c + dy):
                break
        fields.append((centre, FIELD_SIZE, [(idx, c + dx, c + dy)]))
    slots = []
    for (sx, sy, _), idx in zip(MOSAIC_SLOTS, mosaic_idx, strict=True):
        while True:
            x, y = np.array([sx, sy]) + rng.uniform(-MOSAIC_JITTER_PX, MOSAIC_JITTER_PX, size=2)
            if _not_half(x) and _not_half(y):
                break
        slots.append((idx, float(x), float(y)))
    fields.append((centres[-1], MOSAIC_SIZE, slots))
    fields.sort(key=lambda f: f[0][0])  # number the fields in order of right ascension

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("field_*.fits"):
        old.unlink()
    rows = []
    for n, ((ra0, dec0), size, members) in enumerate(fields, start=1):
        field_name = f"field_{n:03d}"
        w = make_wcs(size, ra0, dec0)
        data = correlated_noise((size, size), rng)
        for idx, x, y in members:
            model = models[idx]
            ra, dec, px, py = place(w, x, y)
            data += render(model, (size, size), px, py, peak_scale(model))
            rows.append(
                {
                    "name": iau_name(ra, dec),
                    "ra": f"{ra:.{COORD_DECIMALS}f}",
                    "dec": f"{dec:.{COORD_DECIMALS}f}",
                    "sim_class": model.kind,
                    "sim_size_arcsec": f"{model.size_px * PIXEL_SCALE_ARCSEC:.1f}",
                    "note": NOTE,
                    "_file": f"{field_name}.fits",
                    "_snr": model.snr,
                }
            )
        write_image(images / f"{field_name}.fits", data, image_header(w, field_name, seed))

    rows.sort(key=lambda r: float(r["ra"]))
    rows.append(
        {
            "name": "SIM blank-dec",
            "ra": "150.000000",
            "dec": "",
            "sim_class": "",
            "sim_size_arcsec": "",
            "note": "status demo: blank coordinate (no dec)",
        }
    )
    rows.append(
        {
            "name": iau_name(10.0, -40.0),
            "ra": "10.000000",
            "dec": "-40.000000",
            "sim_class": "",
            "sim_size_arcsec": "",
            "note": "status demo: position outside every image",
        }
    )
    with open(out / "demo.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def verify(out: Path, rows: list[dict]) -> list[str]:
    """Reopen every image and check the catalog against it; return a list of problems (empty if fine)."""
    problems = []
    files = sorted((out / "images").glob("field_*.fits"))
    opened = {}
    for path in files:
        with fits.open(path) as hdul:
            hdu = hdul[1]
            data = np.asarray(hdu.data, dtype=np.float64)
            hdr = hdu.header
            opened[path.name] = (data, WCS(hdr))
            if hdr.get("BUNIT") != "JY/BEAM" or hdr.get("BITPIX") != -32 or data.dtype.kind != "f":
                problems.append(f"{path.name}: bad BUNIT/BITPIX")
            corner = data[:60, :60]
            if not 0.12e-3 < corner.std() < 0.18e-3:
                problems.append(f"{path.name}: corner rms {corner.std() * 1e3:.3f} mJy/beam")
    for row in rows:
        if not row.get("dec"):
            continue
        ra, dec = float(row["ra"]), float(row["dec"])
        hits = []
        for name, (data, w) in opened.items():
            x, y = (float(v) for v in w.world_to_pixel_values(ra, dec))
            ny, nx = data.shape
            margin = min(x, y, nx - 1 - x, ny - 1 - y)
            if margin >= 0:
                hits.append((name, x, y, margin))
        if "_file" not in row:
            if hits:
                problems.append(f"{row['name']}: status row falls inside {hits[0][0]}")
            continue
        if [h[0] for h in hits] != [row["_file"]]:
            problems.append(f"{row['name']}: in {[h[0] for h in hits]}, expected {row['_file']}")
            continue
        _, x, y, margin = hits[0]
        if margin < EDGE_MARGIN_PX:
            problems.append(f"{row['name']}: only {margin:.1f} px from an edge")
        data = opened[row["_file"]][0]
        stamp = data[round(y) - 75 : round(y) + 76, round(x) - 75 : round(x) + 76]
        snr = stamp.max() / NOISE_JY
        if not 25 < snr < 1100:
            problems.append(f"{row['name']}: peak S/N {snr:.0f}")
    return problems


def montage(out: Path, rows: list[dict], path: Path) -> None:
    """Save a PNG of the 300x300 cutout around every source (asinh stretch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    srcs = [r for r in rows if "_file" in r]
    ncol = 6
    nrow = math.ceil(len(srcs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 3.2 * nrow))
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, row in zip(axes.ravel(), srcs, strict=False):
        with fits.open(out / "images" / row["_file"]) as hdul:
            data = np.asarray(hdul[1].data, dtype=np.float64)
            x, y = WCS(hdul[1].header).world_to_pixel_values(float(row["ra"]), float(row["dec"]))
        xi, yi = round(float(x)), round(float(y))
        cut = data[yi - CUTOUT_HALF : yi + CUTOUT_HALF, xi - CUTOUT_HALF : xi + CUTOUT_HALF]
        cut = cut[75:225, 75:225]  # the central 150x150 that the classifier sees
        ax.imshow(np.arcsinh(cut / (3 * NOISE_JY)), origin="lower", cmap="inferno")
        size = row["sim_size_arcsec"]
        ax.set_title(f'{row["sim_class"]} {size}" S/N {row["_snr"]:.0f}\n{row["_file"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed ({DEFAULT_SEED})")
    parser.add_argument(
        "--out", type=Path, default=repo / "catalogs" / "demo", help="output folder (default catalogs/demo)"
    )
    parser.add_argument("--montage", type=Path, help="also save a PNG montage of all sources (matplotlib)")
    args = parser.parse_args(argv)

    rows = simulate(args.out, args.seed)
    problems = verify(args.out, rows)
    n_files = len(list((args.out / "images").glob("field_*.fits")))
    total = sum(p.stat().st_size for p in (args.out / "images").glob("field_*.fits"))
    n_src = sum("_file" in r for r in rows)
    print(f"wrote {n_files} images ({total / 1e6:.2f} MB) in {args.out / 'images'}")
    print(f"wrote {args.out / 'demo.csv'}: {len(rows)} rows, {n_src} simulated sources")
    if args.montage:
        montage(args.out, rows, args.montage)
        print(f"wrote {args.montage}")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
