"""What frsurvey will not classify: measurements of the source at the position, and the statuses they earn.

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

from frsurvey.image.morphology import MEASURES, Thresholds, beam_fwhm, decide, measure
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


def test_the_default_size_limit_is_the_beam():
    t = Thresholds()
    np.testing.assert_allclose(t.size_limit(np.array([9.0, 100.0, 1000.0])), [10.0, 5.4, 5.4])


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


def field(blobs, seed=0, gaussian=None):
    """A 300x300 cutout at (RA, DEC): FIRST-like noise, ``blobs`` and optionally an elliptical source."""
    w = first_wcs(RA, DEC)
    rng = np.random.default_rng(seed)
    image = rng.normal(0, FIRST_NOISE, (300, 300)) + render_blobs(w, (300, 300), blobs, 1.8)
    return (image + (0 if gaussian is None else gaussian)).astype(np.float32)


def neighbour_blobs(distance_px: float, angle_deg: float = 30.0) -> list[tuple]:
    """An extended double (core and two lobes, 50" long) ``distance_px`` from the centre."""
    cosd = np.cos(np.radians(DEC))
    r = distance_px * 1.8 / 3600
    ra0 = RA + r * np.cos(np.radians(angle_deg)) / cosd
    dec0 = DEC + r * np.sin(np.radians(angle_deg))
    return [
        (ra0, dec0, 20 * FIRST_NOISE, 6.0),
        (ra0 + 25 / 3600 / cosd, dec0 + 8 / 3600, 80 * FIRST_NOISE, 12.0),
        (ra0 - 25 / 3600 / cosd, dec0 - 8 / 3600, 70 * FIRST_NOISE, 12.0),
    ]


@pytest.mark.parametrize("distance", [55, 65, 72])
def test_an_extended_neighbour_does_not_make_a_compact_target_resolved(distance):
    """A point source at the position, an unrelated radio galaxy 55-72 px away inside the circle."""
    for snr in (12, 300):
        image = field([(RA, DEC, snr * FIRST_NOISE, 5.4), *neighbour_blobs(distance)], seed=distance)
        m = measured(image)
        assert m["ncomp"] == 1 and m["flanked"] == 0 and m["las"] < 30, m  # the target alone
        assert m["snr"] == pytest.approx(snr, rel=0.3)
        assert decide(np.array([list(m.values())]), Thresholds())[0] == "unresolved"
    # without the target there is nothing at the position: no size, no component, no refusal
    m = measured(field(neighbour_blobs(distance), seed=distance))
    assert m["ncomp"] == 0 and np.isnan(m["size"]) and np.isnan(m["las"])
    assert decide(np.array([list(m.values())]), Thresholds())[0] == "ok"


def elliptical(major_factor: float, minor_factor: float, pa_deg: float, snr: float) -> np.ndarray:
    """A Gaussian ``major_factor`` x ``minor_factor`` times the round 5.4" beam at position angle ``pa_deg``."""
    s = 5.4 / 2.3548 / 1.8
    pa = np.radians(pa_deg)
    rot = np.array([[np.cos(pa), -np.sin(pa)], [np.sin(pa), np.cos(pa)]])
    inv = np.linalg.inv(rot @ np.diag([(major_factor * s) ** 2, (minor_factor * s) ** 2]) @ rot.T)
    yy, xx = np.mgrid[:300, :300]
    dy, dx = yy - 149.7, xx - 149.2
    return snr * FIRST_NOISE * np.exp(-0.5 * (inv[0, 0] * dy * dy + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx * dx))


@pytest.mark.parametrize("snr", [10, 60, 1000])
@pytest.mark.parametrize("major", [1.0, 1.15, 1.3])
def test_marginally_resolved_bright_gaussians_are_unresolved(major, snr):
    """Gaussians up to 1.3x the beam have a non-zero deconvolved size but no structure: refused at any S/N."""
    m = measured(field([], seed=int(snr), gaussian=elliptical(major, 1.0, 35.0, snr)))
    assert m["ncomp"] == 1 and 0 <= m["size"] < Thresholds().size_limit(m["snr"])
    assert decide(np.array([list(m.values())]), Thresholds())[0] == "unresolved", m


def test_a_resolved_gaussian_and_a_linked_companion_are_not_unresolved():
    # twice the beam (deconvolved 9.4"): resolved
    m = measured(field([], seed=1, gaussian=elliptical(2.0, 1.2, 60.0, 300)))
    assert m["size"] > 7 and decide(np.array([list(m.values())]), Thresholds())[0] == "ok"
    # a compact core with a knot 17" away (a gap of 3-4 px below 3 sigma): one source of two components
    cosd = np.cos(np.radians(DEC))
    m = measured(field([(RA, DEC, 100 * FIRST_NOISE, 5.4), (RA + 17 / 3600 / cosd, DEC, 12 * FIRST_NOISE, 5.4)]))
    assert m["ncomp"] == 2 and m["las"] > 15
    assert decide(np.array([list(m.values())]), Thresholds())[0] == "ok"


def test_unrelated_sources_unlike_each_other_are_not_lobes():
    """Two sources on opposite sides but 30x apart in flux do not flank a point source."""
    cosd = np.cos(np.radians(DEC))
    blobs = [
        (RA, DEC, 200 * FIRST_NOISE, 5.4),
        (RA + 60 / 3600 / cosd, DEC, 300 * FIRST_NOISE, 12.0),
        (RA - 60 / 3600 / cosd, DEC, 10 * FIRST_NOISE, 12.0),
    ]
    m = measured(field(blobs, seed=5))
    assert m["flanked"] == 0 and m["ncomp"] == 1
    assert decide(np.array([list(m.values())]), Thresholds())[0] == "unresolved"


def test_the_neighbour_case_through_classify_table(tmp_path):
    """The rule as a user meets it: FITS files with WCS, the shipped model, every row in order."""
    rows = {
        "compact beside a galaxy": [(RA, DEC, 40 * FIRST_NOISE, 5.4), *neighbour_blobs(62)],
        "galaxy": double_blobs(RA, DEC),
        "galaxy beside a galaxy": [*double_blobs(RA, DEC), *neighbour_blobs(66, angle_deg=-120)],
    }
    for i, blobs in enumerate(rows.values()):
        make_first_fits(tmp_path / f"img{i}.fits", RA + i, DEC, sources=[(b[0] + i, *b[1:]) for b in blobs], seed=i)
    cat = Table({"name": list(rows), "ra": [RA, RA + 1, RA + 2], "dec": [DEC] * 3})
    t = classify_table(cat, images=tmp_path, device="cpu")
    assert list(t["FR_STATUS"]) == ["unresolved", "ok", "ok"]
    assert list(t["FR_NCOMP"]) == [1, 3, 3]
    assert t["FR_LAS"][0] < 30 and t["FR_LAS"][2] == pytest.approx(t["FR_LAS"][1], rel=0.1)
