"""What frsurvey will not classify: measurements of the central source, and the statuses they earn.

Real FITS images with WCS written by astropy, the shipped model, the real
command line (in this process) and STILTS.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table
from conftest import FIRST_NOISE, first_wcs, make_first_fits, render_blobs, run_cli

from frsurvey.image.morphology import MEASURES, Thresholds, beam_fwhm, measure
from frsurvey.image.preprocess import preprocess_first_with_noise
from frsurvey.run import classify_table

RA, DEC = 150.0, 30.0
NEW_COLUMNS = {
    "FR_SNR": ("stat.snr", ""),
    "FR_LAS": ("phys.angSize;src", "arcsec"),
    "FR_SIZE_DECONV": ("phys.angSize.smajAxis", "arcsec"),
    "FR_NCOMP": ("meta.number", ""),
    "FR_OOD": ("stat.value", ""),
}


def gaussian_cutout(fwhm_arcsec: float, snr: float, seed: int = 0, beam=(5.4, 5.4), offset=(0.3, -0.2)) -> np.ndarray:
    """Return a 300x300 cutout: noise plus a Gaussian (source convolved with the beam, major axis north-south)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:300, :300]
    sy = np.hypot(fwhm_arcsec, beam[0]) / 2.3548 / 1.8
    sx = np.hypot(fwhm_arcsec, beam[1]) / 2.3548 / 1.8
    y0, x0 = 149.5 + offset[0], 149.5 + offset[1]
    g = np.exp(-0.5 * (((yy - y0) / sy) ** 2 + ((xx - x0) / sx) ** 2))
    return (rng.normal(0, FIRST_NOISE, (300, 300)) + snr * FIRST_NOISE * g).astype(np.float32)


def measured(image: np.ndarray, dec: float | None = DEC) -> dict[str, float]:
    _, std = preprocess_first_with_noise(image)
    return dict(zip(MEASURES, measure(image, std, dec)))


# Deconvolved FWHM within 2.5" at S/N 30 and within 1" at S/N 300, for sources from points to 4 beams
# (noise biases the size of a point source up: the larger of two noisy axes, never below 0).
@pytest.mark.parametrize("snr, tolerance", [(30, 2.5), (300, 1.0)])
@pytest.mark.parametrize("fwhm", [0.0, 4.0, 8.0, 15.0, 22.0])
def test_deconvolved_size_of_gaussians(fwhm, snr, tolerance):
    sizes = [measured(gaussian_cutout(fwhm, snr, seed))["size"] for seed in range(3)]
    assert abs(np.median(sizes) - fwhm) < tolerance, sizes
    m = measured(gaussian_cutout(fwhm, snr))
    assert m["ncomp"] == 1 and m["edge"] == 0 and m["flanked"] == 0
    assert m["snr"] == pytest.approx(snr, rel=0.2)
    # the >3 sigma extent grows with size and S/N, and is at least the beam's
    assert m["las"] > 5.4


def test_the_beam_is_elongated_south_of_dec_4_5():
    assert beam_fwhm(30.0) == (5.4, 5.4)
    assert beam_fwhm(0.0) == (6.4, 5.4)
    assert beam_fwhm(-10.0) == (6.8, 5.4)
    image = gaussian_cutout(0.0, 300, beam=beam_fwhm(-10.0))
    assert measured(image, dec=-10.0)["size"] < 1.0  # a point source at the southern beam
    assert measured(image, dec=30.0)["size"] > 2.5  # the same image taken for the round beam looks resolved


def test_nothing_to_measure_without_noise():
    assert np.isnan(measure(np.zeros((300, 300), np.float32), 0.0)).all()


def test_size_limit_shrinks_with_snr():
    t = Thresholds(unresolved_size=3.0, unresolved_snr_size=20.0)
    np.testing.assert_allclose(t.size_limit(np.array([4.0, 100.0, 1000.0])), [10.0, 3.0, 3.0])


# --------------------------------------------------------------------------------------------------
# Through classify_table and the command line


def point_blobs(ra, dec, snr):
    return [(ra, dec, snr * FIRST_NOISE, 5.4)]


def double_blobs(ra, dec):
    cosd = np.cos(np.radians(dec))
    return [
        (ra, dec, 6 * FIRST_NOISE, 5.4),  # a faint compact core
        (ra + 35 / 3600 / cosd, dec + 10 / 3600, 60 * FIRST_NOISE, 9.0),
        (ra - 35 / 3600 / cosd, dec - 10 / 3600, 50 * FIRST_NOISE, 9.0),
    ]


def long_jet_blobs(ra, dec):
    """A bright source whose jet runs from the centre off the 75 px (135") circle."""
    cosd = np.cos(np.radians(dec))
    return [(ra + k * 8 / 3600 / cosd, dec, (80 - k) * FIRST_NOISE, 12.0) for k in range(0, 24)]


@pytest.fixture(scope="module")
def refusal_images(tmp_path_factory):
    """Images of a point source at S/N 10 and 1000, a double-lobed source, a source larger than the crop."""
    d = tmp_path_factory.mktemp("refusal")
    kinds = {
        "point10": (RA, DEC, point_blobs(RA, DEC, 10)),
        "point1000": (RA + 1, DEC, point_blobs(RA + 1, DEC, 1000)),
        "double": (RA + 2, DEC, double_blobs(RA + 2, DEC)),
        "large": (RA + 3, DEC, long_jet_blobs(RA + 3, DEC)),
    }
    for i, (ra, dec, blobs) in enumerate(kinds.values()):
        make_first_fits(d / "images" / f"img{i}.fits", ra, dec, sources=blobs, seed=i)
    # a catalog: the four, a row without a position, and the double again
    cat = Table(
        {
            "name": ["p10", "p1000", "double", "large", "nopos", "double again"],
            "ra": [RA, RA + 1, RA + 2, RA + 3, np.nan, RA + 2],
            "dec": [DEC, DEC, DEC, DEC, DEC, DEC],
            "extra": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
        }
    )
    cat["extra"].unit = "mJy"
    cat["extra"].description = "something of the user's"
    cat.write(d / "cat.vot", format="votable")
    return d, cat


@pytest.fixture(scope="module")
def refused_table(refusal_images):
    d, cat = refusal_images
    return classify_table(cat, images=d / "images", device="cpu")


def test_points_are_unresolved_and_the_rest_is_not(refused_table):
    t = refused_table
    assert list(t["FR_STATUS"]) == ["unresolved", "unresolved", "ok", "too_large", "bad_position", "ok"]
    for i in (0, 1, 3):  # refused, but the model's answer is still written
        assert t["FR_CLASS"][i] == ""
        assert 0 <= t["P_FRI"][i] <= 1 and t["P_FRII"][i] == pytest.approx(1 - t["P_FRI"][i])
        assert np.isfinite(t["FR_OOD"][i])
    assert t["FR_CLASS"][2] in ("FRI", "FRII") and t["FR_CLASS"][5] == t["FR_CLASS"][2]
    assert t["FR_SIZE_DECONV"][0] < 6 and t["FR_SIZE_DECONV"][1] < 1.5
    assert t["FR_SNR"][0] == pytest.approx(10, rel=0.3) and t["FR_SNR"][1] == pytest.approx(
        1000, rel=0.2
    )  # the peak pixel, off the true peak
    assert t["FR_NCOMP"][2] == 3 and t["FR_LAS"][3] > 135
    # the row without a position is not measured: blank
    assert t["FR_STATUS"][4] == "bad_position"
    assert np.isnan(t["FR_SNR"][4]) and np.isnan(t["FR_OOD"][4]) and t["FR_NCOMP"].mask[4]


def test_rows_keep_their_order_and_every_other_column(refusal_images, refused_table):
    _, cat = refusal_images
    t = refused_table
    assert t.colnames[: len(cat.colnames)] == cat.colnames
    for name in cat.colnames:
        np.testing.assert_array_equal(np.asarray(t[name]), np.asarray(cat[name]))
    assert t["extra"].unit == cat["extra"].unit and t["extra"].description == cat["extra"].description
    assert set(NEW_COLUMNS) <= set(t.colnames)
    assert "unresolved" in t.meta["FRS_STAT"] and "too_large" in t.meta["FRS_STAT"]


def test_thresholds_are_options(refusal_images):
    d, cat = refusal_images
    off = Thresholds(unresolved_size=0.0, unresolved_snr_size=0.0, too_large=False)
    t = classify_table(cat, images=d / "images", device="cpu", thresholds=off)
    assert list(t["FR_STATUS"]) == ["ok", "ok", "ok", "ok", "bad_position", "ok"]
    assert all(c in ("FRI", "FRII") for c in t["FR_CLASS"][:4])
    # a threshold on FR_OOD below every score refuses every classified row
    low = Thresholds(ood_threshold=-1e9, unresolved_size=0.0, unresolved_snr_size=0.0, too_large=False)
    t = classify_table(cat, images=d / "images", device="cpu", thresholds=low)
    assert list(t["FR_STATUS"]) == ["out_of_domain"] * 4 + ["bad_position", "out_of_domain"]


@pytest.mark.slow
def test_cli_writes_columns_votlint_accepts_and_show_selects_unresolved(refusal_images, tmp_path):
    d, _ = refusal_images
    out = tmp_path / "labeled.vot"
    classify = ["classify", d / "cat.vot", "--images", d / "images", "--out", out]
    proc = run_cli(*classify, "--device", "cpu", "--no-progress")
    assert proc.returncode == 3, proc.stderr  # finished, some rows not classified
    assert "2 unresolved" in proc.stderr and "1 too_large" in proc.stderr
    table = parse_single_table(str(out))
    fields = {f.name: f for f in table.fields}
    from astropy.io.votable.ucd import check_ucd

    for name, (ucd, unit) in NEW_COLUMNS.items():
        assert fields[name].ucd == ucd and check_ucd(ucd, check_controlled_vocabulary=True), name
        assert (str(fields[name].unit) if fields[name].unit is not None else "") == unit
    if shutil.which("stilts"):
        lint = subprocess.run(["stilts", "votlint", str(out)], capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and "ERROR" not in lint.stderr, (
            lint.stdout + lint.stderr
        )
    png = tmp_path / "unresolved.png"
    select = "FR_STATUS == 'unresolved'"
    proc = run_cli("show", out, "--images", d / "images", "--out", png, "--select", select)
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 0
    # the options: with the refusals off every classified row is labeled
    proc = run_cli(
        *classify,
        "--device",
        "cpu",
        "--no-progress",
        "--unresolved-size",
        "0",
        "--unresolved-snr-size",
        "0",
        "--keep-too-large",
    )
    assert "5 ok, 1 bad_position" in proc.stderr, proc.stderr


def test_flanking_lobes_keep_a_compact_core_labeled():
    """An FRII whose core is a point source: the lobes on opposite sides keep it from being 'unresolved'."""
    w = first_wcs(RA, DEC)
    cosd = np.cos(np.radians(DEC))
    blobs = [
        (RA, DEC, 200 * FIRST_NOISE, 5.4),
        (RA + 40 / 3600 / cosd, DEC, 40 * FIRST_NOISE, 8.0),
        (RA - 38 / 3600 / cosd, DEC + 4 / 3600, 40 * FIRST_NOISE, 8.0),
    ]
    rng = np.random.default_rng(3)
    image = (rng.normal(0, FIRST_NOISE, (300, 300)) + render_blobs(w, (300, 300), blobs, 1.8)).astype(np.float32)
    m = measured(image)
    assert m["size"] < 2 and m["flanked"] == 1 and m["ncomp"] == 3
    # one lobe alone does not flank
    image = (rng.normal(0, FIRST_NOISE, (300, 300)) + render_blobs(w, (300, 300), blobs[:2], 1.8)).astype(np.float32)
    assert measured(image)["flanked"] == 0
