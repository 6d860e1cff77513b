"""Make the data that sets frsurvey's thresholds for ``unresolved`` and ``too_large``, and measure them.

Reads the FIRST cutouts in ``../shared/data`` (``first-cutouts/`` and
``mirabest-more/``) and writes only under ``--out`` (default: a new
temporary directory):

- ``mirabest.ecsv``: the MiraBest FRI/FRII, classified by ``classify_table``
  with every refusal turned off, so that any thresholds can be applied to
  their measurements afterwards;
- ``compact.csv``, ``compact.ecsv``, ``compact.png``: real compact sources
  found away from the centres of the cutouts (peak S/N 8-1000, isolated,
  above 3 sigma no larger than a point source at FIRST's beam would be), their
  positions classified through ``--images`` as a user would, and a gallery of
  them to check the detections by eye;
- ``placed/``, ``placed.csv``, ``placed.ecsv``: point sources at FIRST's beam
  (5.4", elongated north-south south of Dec +4.5 deg) added into real noise
  of those cutouts, at empty places away from their centres, peak S/N drawn
  log-uniformly over 8-1000, each in its own copy of the cutout (a FITS file
  with the cutout's WCS), classified through ``--images``;
- ``neighbour/``, ``neighbour.*``: the same point sources placed 55-75 px from
  a MiraBest FRI/FRII, the field shifted so that the point source is at the
  centre: a compact target with an unrelated radio galaxy inside the circle;
- ``marginal/``, ``marginal.*``: elliptical Gaussians 1.0-1.3x the beam
  (random position angle), S/N 8-1000, at empty places as ``placed``;
- ``frdeep.ecsv``: FR_OOD of the FRDEEP-F images (in-domain);
- ``tradeoff.png`` and ``summary.json``: the share of MiraBest FRI/FRII still
  labeled against the share of unresolved sources refused (each kind and
  all pooled), over the size limit, and the shares at the defaults by kind
  and peak S/N.

Run from the repository root::

    PYTHONPATH=. python scripts/refusal_study.py --out /tmp/refusal [--figure docs/refusal-tradeoff.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy import ndimage

from frsurvey.image.morphology import FWHM_PER_SIGMA, Thresholds, beam_fwhm, decide
from frsurvey.image.preprocess import PIXEL_SCALE_ARCSEC, sigma_clipped_std
from frsurvey.run import classify_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DIRS = ("first-cutouts", "mirabest-more")
#: Thresholds that refuse nothing: every row keeps its label, so that any thresholds can be applied later.
OFF = Thresholds(unresolved_size=0.0, unresolved_snr_size=0.0, too_large=False)
MEASURE_COLUMNS = ("FR_SNR", "FR_LAS", "FR_SIZE_DECONV", "FR_NCOMP")


def read_cutout(path: Path) -> tuple[np.ndarray, fits.Header]:
    """Return (float32 image with NaN as 0, header) of a plain or tile-compressed FITS cutout."""
    with warnings.catch_warnings(), fits.open(path) as hdul:
        warnings.simplefilter("ignore")
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        return np.nan_to_num(hdu.data.astype(np.float32)), hdu.header.copy()


def images_dir(out: Path) -> Path:
    """Return a directory of links to every cutout of ``DIRS`` (what ``--images`` is given)."""
    d = out / "images"
    d.mkdir(exist_ok=True)
    for name in DIRS:
        for f in sorted((SHARED / name / "fits").glob("*.fits")):
            link = d / f"{name}-{f.name}"
            if not link.exists():
                link.symlink_to(f)
    return d


def classify(table: Table, images: Path) -> Table:
    """Classify ``table`` (columns ra, dec) through a local image directory, refusing nothing."""
    return classify_table(table, images=images, device="cpu", thresholds=OFF, batch_size=64)


def mirabest(images: Path) -> Table:
    """Return the MiraBest FRI/FRII of ``DIRS`` with their classification and measurements."""
    parts = []
    for name in DIRS:
        cat = Table.read(SHARED / name / "catalog.csv", format="ascii.csv")
        cat = cat[(cat["fr_class"] == "FRI") | (cat["fr_class"] == "FRII")]
        cat.rename_columns(["ra_deg", "dec_deg"], ["ra", "dec"])
        cat["set"] = name
        parts.append(classify(cat, images))
    return vstack(parts)


def expected_area(peak_snr: float, dec: float) -> float:
    """Pixels above 3 sigma of a point source at FIRST's beam with this peak S/N."""
    bmaj, bmin = beam_fwhm(dec)
    sx, sy = (b / FWHM_PER_SIGMA / PIXEL_SCALE_ARCSEC for b in (bmin, bmaj))
    return float(np.pi * sx * sy * 2.0 * np.log(max(peak_snr / 3.0, 1.0)))


def find_compact(images: Path, rng: np.random.Generator) -> Table:
    """Return real compact sources away from the cutouts' centres: name, ra, dec, peak S/N, offset."""
    rows = []
    yy, xx = np.mgrid[:300, :300]
    for f in sorted(images.glob("*.fits")):
        img, hdr = read_cutout(f)
        std = float(sigma_clipped_std(img))
        snr = img / std
        labels, n = ndimage.label(snr > 3, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        peaks = np.asarray(ndimage.maximum(snr, labels, index))
        where = ndimage.maximum_position(snr, labels, index)
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        dec0 = float(hdr["CRVAL2"])
        for k in np.flatnonzero((peaks >= 8) & (peaks <= 1000)):
            y, x = where[k]
            off = np.hypot(y - 149.5, x - 149.5)
            # away from the centre, with the 150x150 px around it inside the cutout
            if off < 25 or abs(y - 149.5) > 60 or abs(x - 149.5) > 60:
                continue
            # no larger above 3 sigma than a point source at the beam (with room for noise)
            if area[k] > 1.6 * expected_area(peaks[k], dec0) + 4:
                continue
            # isolated: nothing else above 3 sigma within 15 px (27")
            near = (yy - y) ** 2 + (xx - x) ** 2 <= 15**2
            if np.any((labels[near] != 0) & (labels[near] != k + 1)):
                continue
            ra, dec = WCS(_celestial(hdr)).pixel_to_world_values(x, y)
            rows.append((f.name, float(ra), float(dec), float(peaks[k]), float(off)))
    t = Table(rows=rows, names=("image", "ra", "dec", "peak_snr", "offset_px"))
    return t


def _celestial(hdr: fits.Header) -> fits.Header:
    keep = fits.Header()
    for key in ("NAXIS", "NAXIS1", "NAXIS2", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"):
        keep[key] = hdr[key]
    for key in ("CDELT1", "CDELT2", "RADESYS", "EQUINOX"):
        if key in hdr:
            keep[key] = hdr[key]
    return keep


#: The sets of made unresolved sources: what each is (the ``kind`` of :func:`place_sources`).
PLACED = {
    "placed": "point sources at FIRST's beam at empty places 25-60 px from the centres of cutouts",
    "neighbour": "point sources at FIRST's beam 55-75 px from a MiraBest FRI/FRII, the cutout centred on them",
    "marginal": 'elliptical Gaussians 1.0-1.3x the beam (deconvolved up to 4.5") at empty places 25-60 px out',
}


def _spot(kind: str, rng: np.random.Generator) -> tuple[float, float] | None:
    """Draw where a made source goes in a cutout (y, x in px), or None to draw again."""
    if kind == "neighbour":  # 55-75 px from the radio galaxy at the cutout's centre
        r, theta = rng.uniform(55, 75), rng.uniform(0, 2 * np.pi)
        return 149.5 + r * np.sin(theta), 149.5 + r * np.cos(theta)
    y, x = 149.5 + rng.uniform(-60, 60, size=2)
    return None if np.hypot(y - 149.5, x - 149.5) < 25 else (float(y), float(x))


def _covariance(kind: str, dec: float, rng: np.random.Generator) -> np.ndarray:
    """Pixel covariance (rows, columns) of a made source as FIRST would see it at ``dec``.

    FIRST's beam (major axis north-south, along the rows) for point sources;
    for ``marginal`` the beam plus an intrinsic elliptical Gaussian at a
    random position angle whose axes make a round 5.4" beam 1.0-1.3x (major)
    and 1.0x to the major's factor (minor) as large.
    """
    bmaj, bmin = beam_fwhm(dec)
    sy, sx = (b / FWHM_PER_SIGMA / PIXEL_SCALE_ARCSEC for b in (bmaj, bmin))
    cov = np.diag([sy * sy, sx * sx])
    if kind == "marginal":
        f1 = rng.uniform(1.0, 1.3)
        f2 = rng.uniform(1.0, f1)
        pa = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(pa), -np.sin(pa)], [np.sin(pa), np.cos(pa)]])
        cov = cov + rot @ np.diag([sx * sx * (f1 * f1 - 1), sx * sx * (f2 * f2 - 1)]) @ rot.T
    return cov


def place_sources(files: list[Path], out: Path, n: int, rng: np.random.Generator, kind: str = "placed") -> Table:
    """Write ``n`` copies of cutouts each with one made unresolved source; return their catalog.

    ``kind`` (:data:`PLACED`): ``placed``, a point source at an empty place
    (nothing above 3 sigma within 12 px) 25-60 px from the cutout's centre;
    ``neighbour``, a point source at an empty place 55-75 px from the
    radio galaxy at the centre, the field then shifted (``np.roll``, which
    keeps the real noise; the seam lies outside the central 150 px) so that
    the new source is at the centre, as a cutout centred on it would be;
    ``marginal``, as ``placed`` but an elliptical Gaussian 1.0-1.3x the beam.
    Peak S/N (of the pixel grid: the source sits at a random sub-pixel place)
    log-uniform over 8-1000. Each cutout lends its noise once. Each copy is a
    FITS file with the cutout's WCS in ``out/kind/``.
    """
    files = list(rng.permutation(sorted(files)))
    d = out / kind
    d.mkdir(exist_ok=True)
    yy, xx = np.mgrid[:300, :300]
    rows = []
    while len(rows) < n and files:
        f = files.pop()
        img, hdr = read_cutout(f)
        std = float(sigma_clipped_std(img))
        for _ in range(50):
            spot = _spot(kind, rng)
            if spot is None:
                continue
            y, x = spot
            near = (yy - y) ** 2 + (xx - x) ** 2 <= 12**2
            if not np.any(img[near] > 3 * std):
                break
        else:
            continue
        snr = float(10 ** rng.uniform(np.log10(8), 3))
        dec0 = float(hdr["CRVAL2"])
        cov = _covariance(kind, dec0, rng)
        if kind == "neighbour":
            iy, ix = round(y - 149.5), round(x - 149.5)
            img = np.roll(img, (-iy, -ix), axis=(0, 1))
            y, x = y - iy, x - ix
        inv = np.linalg.inv(cov)
        dy, dx = yy - y, xx - x
        g = np.exp(-0.5 * (inv[0, 0] * dy * dy + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx * dx))
        new = img + (snr * std / g.max()) * g
        name = f"{kind}-{len(rows):04d}.fits"
        header = _celestial(hdr)
        header["BUNIT"] = "JY/BEAM"
        fits.PrimaryHDU(new.astype(np.float32), header=header).writeto(d / name, overwrite=True)
        ra, dec = WCS(header).pixel_to_world_values(x, y)
        rows.append((name, f.name, float(ra), float(dec), snr))
    return Table(rows=rows, names=("image", "noise_from", "ra", "dec", "peak_snr"))


def mirabest_files() -> list[Path]:
    """The cutouts of the MiraBest FRI/FRII of ``DIRS``: the radio galaxies beside the ``neighbour`` sources."""
    files = []
    for name in DIRS:
        cat = Table.read(SHARED / name / "catalog.csv", format="ascii.csv")
        keep = (cat["fr_class"] == "FRI") | (cat["fr_class"] == "FRII")
        files += [SHARED / name / "fits" / f"{n}.fits" for n in cat["name"][keep]]
    return files


def frdeep_ood(model=None) -> Table:
    """Return FR_OOD of the FRDEEP-F images (its canonical PNG-like arrays), in-domain."""
    import pickle
    import tarfile

    import torch

    from frsurvey.image.preprocess import to_model_input
    from frsurvey.model.checkpoint import load_model
    from frsurvey.model.ood import energy

    model = load_model(model)
    data, labels = [], []
    with tarfile.open(SHARED / "frdeep-f" / "FIRST_PNG_dataset.tar.gz") as tar:
        for m in tar.getmembers():
            if "batch" in m.name and not m.name.endswith("meta"):
                d = pickle.load(tar.extractfile(m), encoding="latin1")
                data.append(np.asarray(d["data"], np.uint8).reshape(-1, 150, 150))
                labels += list(d["labels"])
    x = torch.from_numpy(to_model_input(np.concatenate(data)))
    e = torch.cat([energy(model, x[i : i + 64]) for i in range(0, len(x), 64)]).numpy()
    return Table({"label": np.array(labels), "FR_OOD": e.astype(float)})


def refused(t: Table, thresholds: Thresholds) -> np.ndarray:
    """Return True for the rows of a result table that ``thresholds`` would refuse a label."""
    m = np.column_stack([np.ma.filled(np.ma.asarray(t[c], dtype=float), np.nan) for c in MEASURE_COLUMNS])
    full = np.column_stack([m, np.asarray(t["edge"], float), np.asarray(t["flanked"], float)])
    ood = np.asarray(t["FR_OOD"], float)
    return (decide(full, thresholds, ood) != "ok") & (np.asarray(t["FR_STATUS"]) == "ok")


def main() -> None:
    """Make the data, classify it, and write the shares and the trade-off figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="where to write (default: a new temporary directory)")
    p.add_argument("--placed", type=int, default=400, help="sources of each made set to place (default 400)")
    p.add_argument("--figure", type=Path, help="also write the trade-off figure here")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--report-only", action="store_true", help="only the shares and figure, from the tables in --out")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="frsurvey-refusal-"))
    out.mkdir(parents=True, exist_ok=True)
    sets = ("mirabest", "compact", *PLACED)
    if args.report_only:
        results = {name: Table.read(out / f"{name}.ecsv") for name in sets}
        summary = report(results, Table.read(out / "frdeep.ecsv"), args.figure or out / "tradeoff.png")
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        return
    rng = np.random.default_rng(args.seed)
    images = images_dir(out)

    compact = find_compact(images, rng)
    compact.write(out / "compact.csv", overwrite=True)
    results = {"mirabest": mirabest(images), "compact": classify(compact, images)}
    where = {"mirabest": images, "compact": images}
    for k, kind in enumerate(PLACED):
        # each made set its own random stream: adding a set changes none of the others
        files = mirabest_files() if kind == "neighbour" else sorted(images.glob("*.fits"))
        made = place_sources(files, out, args.placed, rng if k == 0 else np.random.default_rng([args.seed, k]), kind)
        made.write(out / f"{kind}.csv", overwrite=True)
        results[kind], where[kind] = classify(made, out / kind), out / kind
    for name, t in results.items():
        add_flags(t, where[name])
        t.write(out / f"{name}.ecsv", overwrite=True)
    gallery(results["compact"], images, out / "compact.png")
    fr = frdeep_ood()
    fr.write(out / "frdeep.ecsv", overwrite=True)
    summary = report(results, fr, args.figure or out / "tradeoff.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"written to {out}")


def add_flags(t: Table, images: Path) -> None:
    """Add the columns ``edge`` and ``flanked`` of :func:`frsurvey.image.morphology.measure` (not output columns)."""
    from frsurvey.image.prepare import PreparedCutouts
    from frsurvey.sources import LocalFITSSource

    src = LocalFITSSource(images)
    ra, dec = np.asarray(t["ra"], float), np.asarray(t["dec"], float)
    keys = src.locate(ra, dec)
    prep = PreparedCutouts(src, keys, measured=True, decs=dec)
    flags = np.full((len(t), 2), np.nan)
    for i in range(len(t)):
        flags[i] = prep[i][4][4:6]
    t["edge"], t["flanked"] = flags[:, 0], flags[:, 1]


def gallery(t: Table, images: Path, path: Path, max_panels: int = 120) -> None:
    """Draw the compact sources' canonical images with their peak S/N and status."""
    from frsurvey.show import show_catalog

    sub = t[:max_panels]
    show_catalog(sub, path, images=images, max_images=max_panels, ra_col="ra", dec_col="dec")


def shares(t: Table, thresholds: Thresholds) -> tuple[int, int]:
    """Return (rows refused, rows measured and classified) of a result table."""
    ok = np.asarray(t["FR_STATUS"]) == "ok"
    return int(refused(t, thresholds).sum()), int(ok.sum())


def report(results: dict[str, Table], frdeep: Table, figure: Path) -> dict:
    """Return the shares at the defaults and over the size limit; draw the trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mb = results["mirabest"]
    # classify keeps the catalog's own fr_class as fr_class_input (named like our FR_CLASS but for case)
    truth = np.asarray(mb["fr_class_input" if "fr_class_input" in mb.colnames else "fr_class"])
    pred = np.where(np.asarray(mb["P_FRI"], float) >= 0.5, "FRI", "FRII")
    ok = np.asarray(mb["FR_STATUS"]) == "ok"
    d = Thresholds()
    kept = ok & ~refused(mb, d)
    kinds = ("compact", *PLACED)
    unres = vstack(
        [results[k][["FR_OOD", *MEASURE_COLUMNS, "FR_STATUS", "edge", "flanked"]] for k in kinds],
        metadata_conflicts="silent",
    )
    summary: dict = {
        "defaults": d.as_dict(),
        "mirabest": {
            "rows": len(mb),
            "classified": int(ok.sum()),
            "kept_share": float(kept.sum() / ok.sum()),
            "accuracy_before": float((pred[ok] == truth[ok]).mean()),
            "accuracy_after": float((pred[kept] == truth[kept]).mean()),
            "too_large": int((ok & (np.asarray(mb["edge"], float) == 1)).sum()),
        },
    }
    for name in kinds:
        t = results[name]
        r, n = shares(t, d)
        snr = np.asarray(t["peak_snr"], float)
        ref = refused(t, d)
        okr = np.asarray(t["FR_STATUS"]) == "ok"
        by = {}
        for lo, hi in ((8, 15), (15, 30), (30, 100), (100, 300), (300, 1000.1)):
            sel = okr & (snr >= lo) & (snr < hi)
            by[f"{lo}-{int(hi)}"] = [int(ref[sel].sum()), int(sel.sum())]
        summary[name] = {"refused": r, "classified": n, "share": r / max(n, 1), "by_snr": by}
    r, n = shares(unres, d)
    summary["unresolved_pooled"] = {"refused": r, "classified": n, "share": r / max(n, 1)}
    e_mb = np.asarray(mb["FR_OOD"], float)[ok]
    e_un = np.asarray(unres["FR_OOD"], float)
    summary["ood"] = {
        "mirabest_quantiles": {q: float(np.quantile(e_mb, q)) for q in (0.5, 0.9, 0.99, 0.999)},
        "frdeep_quantiles": {q: float(np.quantile(frdeep["FR_OOD"], q)) for q in (0.5, 0.9, 0.99, 0.999)},
        "unresolved_quantiles": {q: float(np.quantile(e_un, q)) for q in (0.1, 0.5, 0.9)},
        "unresolved_above_mirabest_p99": float((e_un > np.quantile(e_mb, 0.99)).mean()),
    }

    # the trade-off over the size limit (scaled together: floor s, S/N part s * d.snr / d.floor)
    fig, ax = plt.subplots(figsize=(6, 4.8))
    scales = np.linspace(0.0, 2.0, 21)
    kept, curves = [], {k: [] for k in ("all", *kinds)}
    for s in scales:
        th = Thresholds(unresolved_size=d.unresolved_size * s, unresolved_snr_size=d.unresolved_snr_size * s)
        kept.append(float(1 - refused(mb, th)[ok].mean()))
        for k, t in (("all", unres), *((k, results[k]) for k in kinds)):
            r, n = shares(t, th)
            curves[k].append(r / max(n, 1))
    i = int(np.argmin(np.abs(scales - 1.0)))
    styles = {"all": ("k", "o-"), "compact": ("C0", "--"), "placed": ("C1", "--"), "neighbour": ("C2", "--")}
    styles["marginal"] = ("C3", "--")
    for k, ys in curves.items():
        color, ls = styles[k]
        n = len(unres) if k == "all" else len(results[k])
        label = "all unresolved" if k == "all" else {"compact": "real compact"}.get(k, k)
        ax.plot(ys, kept, ls, color=color, ms=3, lw=1.5 if k == "all" else 1, label=f"{label} (n={n})")
        ax.plot(ys[i], kept[i], "*", color=color, ms=11 if k == "all" else 8)
    ax.axhline(0.97, color="grey", ls=":", lw=1)
    ax.axvline(0.95, color="grey", ls=":", lw=1)
    ax.set_xlabel("unresolved FIRST sources refused")
    ax.set_ylabel(f"MiraBest FRI/FRII still labeled (n={int(ok.sum())})")
    ax.set_title(
        f'Size limit max({d.unresolved_size:g}", {d.unresolved_snr_size:g}"/sqrt(S/N)) scaled 0-2x; * the default',
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    summary["tradeoff"] = {"scale": scales.tolist(), "kept": kept, "refused": curves}
    return summary


if __name__ == "__main__":
    main()
