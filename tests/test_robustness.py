"""Nothing lost: bad catalogs, bad images, untrusted checkpoints, and random input through the whole pipeline.

Every fault is a real file: catalogs and images written to disk and
classified by the command line (in this process, its stderr as a user sees
it), checkpoints built the way an attacker would.
Each bad row gets a documented ``FR_STATUS`` and a reason in the log, and
the run goes on; unusable input is exit code 2 with one clear line, never a
traceback. Interrupted runs: ``test_resume.py``.
"""

from __future__ import annotations

import logging
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Column, MaskedColumn, Table
from conftest import OUR_COLUMNS, cli, default_blobs, first_wcs, make_first_fits, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frsurvey.cli import main
from frsurvey.io import CatalogError, parse_positions, read_catalog, write_catalog
from frsurvey.model.checkpoint import CheckpointError, card_sha256, load_model
from frsurvey.model.networks import CLASSES
from frsurvey.run import classify_file
from frsurvey.sources import LocalFITSSource
from frsurvey.status import DESCRIPTIONS, REFUSED, Status

pytestmark = pytest.mark.filterwarnings("ignore:File may have been truncated")

OURS = OUR_COLUMNS
EXT = {"vot": "votable", "fits": "fits", "ecsv": "ascii.ecsv", "csv": "ascii.csv"}
SUMMARY = re.compile(r"^frsurvey: (\d+) rows(?:: (.*))? -> (.+)$", re.MULTILINE)


def summary(err: str) -> tuple[int, dict[str, int]]:
    [(total, parts, _)] = SUMMARY.findall(err)
    counts = {p.split(" ")[1]: int(p.split(" ")[0]) for p in parts.split(", ")} if parts else {}
    return int(total), counts


def reasons(err: str) -> dict[int, tuple[str, str]]:
    """The failed rows the log describes: {row: (status, reason)}."""
    found = re.findall(r"^frsurvey: (?:WARNING|DEBUG): row (\d+): (\w+)(?:: (.*))?$", err, re.MULTILINE)
    return {int(r): (s, why) for r, s, why in found}


def check_invariants(out: Table, n: int) -> None:
    """Probabilities in [0, 1] summing to 1 for scored rows, NaN for the others; a class only for ``ok`` rows.

    Scored: ``ok``, and the rows refused a label (unresolved, too_large, out_of_domain), which keep P_FRI.
    """
    assert len(out) == n
    status = np.asarray(out["FR_STATUS"]).astype(str)
    assert set(status) <= set(DESCRIPTIONS), set(status)
    ok = status == Status.OK
    scored = ok | np.isin(status, list(REFUSED))
    p1 = np.ma.filled(np.ma.asarray(out["P_FRI"], dtype=float), np.nan)
    p2 = np.ma.filled(np.ma.asarray(out["P_FRII"], dtype=float), np.nan)
    cls = np.asarray(np.ma.filled(out["FR_CLASS"].astype(str), ""))
    assert np.isfinite(p1[scored]).all() and ((p1[scored] >= 0) & (p1[scored] <= 1)).all()
    np.testing.assert_allclose(p1[scored] + p2[scored], 1.0, atol=1e-12)
    np.testing.assert_array_equal(cls[ok], np.where(p1[ok] >= 0.5, "FRI", "FRII"))
    assert np.isnan(p1[~scored]).all() and np.isnan(p2[~scored]).all() and (cls[~ok] == "").all()


# --------------------------------------------------------------------------------------------------
# Bad catalogs


@pytest.mark.parametrize("fmt_in", ["csv", "ecsv", "vot", "fits"])
def test_an_empty_catalog_gives_a_valid_empty_output_in_every_format(tmp_path, sky, model_path, capsys, fmt_in):
    src = tmp_path / f"empty.{fmt_in}"
    if fmt_in == "csv":
        src.write_text("name,ra,dec\n")  # a header and no rows
    else:
        Table({"name": np.zeros(0, "U4"), "ra": np.zeros(0), "dec": np.zeros(0)}).write(src, format=EXT[fmt_in])
    for fmt_out in EXT:
        out = tmp_path / f"out.{fmt_out}"
        rc, err = cli(capsys, "classify", src, "--images", sky, "--model", model_path, "--out", out, "--no-progress")
        assert rc == 0, err  # every row (there is none) classified
        assert summary(err) == (0, {}) and "Traceback" not in err
        back = read_catalog(out)
        assert len(back) == 0 and back.colnames == ["name", "ra", "dec", *OURS], (fmt_in, fmt_out)
        if fmt_out == "vot":
            assert "<TABLEDATA/>" in out.read_text()  # STIL reads a TABLE without DATA as no table
    (tmp_path / "nothing.csv").write_bytes(b"")  # not even a header: no table at all
    rc, err = cli(capsys, "classify", tmp_path / "nothing.csv", "--images", sky, "--model", model_path, "--out", out)
    assert rc == 2 and "empty file" in err and "Traceback" not in err


def test_bad_positions_each_get_bad_position_with_a_reason_and_the_run_goes_on(tmp_path, sky, model_path, capsys):
    numeric = [
        (150.0, 30.0, False, "ok", ""),
        (np.nan, 30.0, False, "bad_position", "RA is NaN"),
        (150.0, 30.0, True, "bad_position", "Dec is blank (masked)"),
        (np.inf, 30.0, False, "bad_position", "RA is infinite"),
        (150.0, 95.0, False, "bad_position", "Dec 95.0 is beyond ±90 deg"),
        (150.0, -90.5, False, "bad_position", "Dec -90.5 is beyond ±90 deg"),
        (370.0, -5.0, False, "ok", ""),  # wrapped: 10
        (-350.0, -5.0, False, "ok", ""),  # wrapped: 10
        (1e30, 30.0, False, "bad_position", "more than 3600 deg from 0"),
        (-1e-300, -5.0, False, "no_image", "covers the position"),  # wraps to 0, not to 360
        (150.0, 90.0, False, "no_image", "covers the position"),  # the pole is a position
    ]
    t = Table()
    t["name"] = [f"n{i}" for i in range(len(numeric))]
    t["ra"] = [r for r, *_ in numeric]
    t["dec"] = MaskedColumn([d for _, d, *_ in numeric], mask=[m for _, _, m, *_ in numeric])
    t.write(tmp_path / "numeric.ecsv")  # ECSV keeps NaN apart from blank (masked)
    text = [
        ("10:00:00", "+30:00:00", "ok", ""),
        ("10h00m00.0s", "+30d00m00s", "ok", ""),
        ("10 00 00", "+30°00′00″", "ok", ""),
        ("00:40:00", "\u221205:00:00", "ok", ""),  # a Unicode minus sign: -5 deg
        ("1.0e1", "\u22125", "ok", ""),  # decimal, in degrees, with a Unicode minus
        ("10:00", "+30:00:00", "bad_position", "RA is not an angle: '10:00'"),
        ("25:00:00", "+30:00:00", "bad_position", "RA is not an angle: '25:00:00'"),
        ("12:61:00", "+30:00:00", "bad_position", "RA is not an angle"),
        ("abc", "+30:00:00", "bad_position", "RA is not an angle: 'abc'"),
        ("", "+30:00:00", "bad_position", "RA is blank"),
        ("nan", "30", "bad_position", "RA is blank"),
        ("1e400", "30", "bad_position", "RA is infinite"),
        ("10:00:00", "ten", "bad_position", "Dec is not an angle: 'ten'"),
    ]
    (tmp_path / "text.csv").write_text(
        "name,ra,dec\n" + "".join(f'"s{i}","{r}","{d}"\n' for i, (r, d, *_) in enumerate(text)), encoding="utf-8"
    )
    for name, rows, prefix in (("numeric.ecsv", numeric, "n"), ("text.csv", text, "s")):
        out = tmp_path / f"{name}.out.vot"
        rc, err = cli(capsys, "classify", tmp_path / name, "--images", sky, "--model", model_path, "--out", out,
                      "--chunk-size", "4", "--no-progress", "-vv")  # fmt: skip
        assert rc == 3, err
        assert "Traceback" not in err
        expected = [row[-2] for row in rows]
        result = read_catalog(out)
        assert list(result["FR_STATUS"]) == expected, name
        assert list(result["name"]) == [f"{prefix}{i}" for i in range(len(rows))]
        check_invariants(result, len(rows))
        told = reasons(err)
        for i, (*_, status, why) in enumerate(rows):
            if status != "ok":
                assert told[i][0] == status and why in told[i][1], (name, i, told.get(i))
        assert summary(err)[1] == {s: expected.count(s) for s in set(expected)}
    wrapped = read_catalog(tmp_path / "numeric.ecsv.out.vot")
    assert wrapped["P_FRI"][6] == wrapped["P_FRI"][7]  # 370 and -350 are both 10 deg


def test_right_ascensions_wrap_into_0_360_never_to_360():
    t = Table({"RA": [-1e-300, -1e-17, 359.99999999999994, 3600.0, -3600.0, 3600.1, 1e300], "DEC": [0.0] * 7})
    ra, _, status, why = parse_positions(t, "RA", "DEC", with_reasons=True)
    assert list(status) == ["ok"] * 5 + ["bad_position"] * 2
    assert ((ra[:5] >= 0) & (ra[:5] < 360)).all()
    assert ra[0] == 0.0 and ra[3] == 0.0 and ra[4] == 0.0
    assert "more than 3600 deg from 0" in why[5] and why[0] == ""


def test_duplicate_rows_get_the_same_results_across_chunks(tmp_path, sky, model_path):
    lines = ["id,ra,dec"] + [f"{i},{150.0 + 0.01 * (i % 3)},{30.0}" for i in range(9)]
    lines += [lines[1].replace("0,", "9,", 1), lines[2].replace("1,", "10,", 1), "11,150.0,30.0"]
    (tmp_path / "dups.csv").write_text("\n".join(lines) + "\n")
    run = classify_file(tmp_path / "dups.csv", tmp_path / "dups.fits", images=sky, model=model_path, chunk_size=2)
    assert run.remembered >= 3 and run.prepared == 3  # three distinct sources, each prepared once
    out = read_catalog(tmp_path / "dups.fits")
    assert list(out["id"]) == list(range(12)) and list(out["FR_STATUS"]) == ["ok"] * 12
    p = np.asarray(out["P_FRI"])
    for i in range(12):
        j = round((float(out["ra"][i]) - 150.0) / 0.01) % 3  # the first row at that position
        assert p[i] == p[j]


def test_unicode_column_names_and_values(tmp_path, sky, model_path, capsys, caplog):
    t = Table()
    t["名前"] = ["α Cen", "naïve ✓", "🌌 far away"]
    t["α"] = ["10:00:00", "150", "00:40:00"]  # positions in columns named in Greek
    t["δ"] = ["+30:00:00", "30", "\u221205:00:00"]
    t["flux (mJy)"] = [1.5, 2.5, 3.5]
    src = write_catalog(t, tmp_path / "unicode.vot")
    for ext in ("vot", "ecsv", "csv", "fits"):
        out = tmp_path / f"out.{ext}"
        rc, err = cli(capsys, "classify", src, "--images", sky, "--model", model_path, "--out", out,
                      "--ra-col", "α", "--dec-col", "δ", "--no-progress")  # fmt: skip
        assert rc == 0, err
        assert "Traceback" not in err
        back = read_catalog(out)
        assert list(back["FR_STATUS"]) == ["ok"] * 3
        if ext == "fits":  # FITS is ASCII: names and text change, with a warning saying so
            assert back.colnames[:4] == ["??", "?", "?_", "flux (mJy)"]
            assert "FITS names are ASCII" in err and "non-ASCII text" in err
        else:
            assert back.colnames == [*t.colnames, *OURS]
            assert list(back["名前"]) == list(t["名前"]) and list(back["α"]) == list(t["α"])


def test_columns_named_like_ours(tmp_path, sky, model_path, capsys):
    t = Table()
    t["ra"], t["dec"] = [150.0, 10.0], [30.0, -5.0]
    t["FR_CLASS"] = ["stale", "stale"]  # ours, from an earlier run: replaced
    t["P_FRI"] = [0.123, 0.456]
    t["fr_status"] = ["truth-a", "truth-b"]  # another catalog's own, but for case: kept under another name
    t["p_frii"] = [0.9, 0.1]
    src = tmp_path / "named.fits"
    t.write(src)
    out = tmp_path / "out.fits"
    rc, err = cli(capsys, "classify", src, "--images", sky, "--model", model_path, "--out", out, "--no-progress")
    assert rc == 0, err
    assert "already has FR_CLASS, P_FRI" in err and "replacing them" in err
    assert "fr_status -> fr_status_input, p_frii -> p_frii_input" in err and "without case" in err
    back = read_catalog(out)
    assert back.colnames == ["ra", "dec", "fr_status_input", "p_frii_input", *OURS]
    assert list(back["fr_status_input"]) == ["truth-a", "truth-b"]
    assert list(back["FR_STATUS"]) == ["ok", "ok"] and 0 <= back["P_FRI"][0] <= 1
    with fits.open(out) as h:  # no two names left that a reader matching without case could confuse
        assert list(h[1].data["FR_STATUS"]) == ["ok", "ok"]
        assert list(h[1].data["fr_status_input"]) == ["truth-a", "truth-b"]


@pytest.mark.parametrize("chunk", ["1", "50000"])
def test_one_row(tmp_path, sky, model_path, capsys, chunk):
    (tmp_path / "one.csv").write_text("ra,dec\n150.0,30.0\n")
    out = tmp_path / "one.ecsv"
    rc, err = cli(capsys, "classify", tmp_path / "one.csv", "--images", sky, "--model", model_path, "--out", out,
                  "--chunk-size", chunk, "--no-progress")  # fmt: skip
    assert rc == 0 and summary(err) == (1, {"ok": 1})
    check_invariants(read_catalog(out), 1)


@pytest.mark.slow
def test_a_hundred_thousand_rows(tmp_path, sky, model_path):
    n = 100_000
    rng = np.random.default_rng(3)
    places = np.array([(150.0 + dx, 30.0 + dy) for dx, dy in rng.uniform(-0.02, 0.02, (8, 2))] + [(200.0, 0.0)])
    pick = rng.integers(0, len(places), n)
    ra, dec = places[pick, 0].copy(), places[pick, 1].copy()
    blank = rng.random(n) < 0.01
    ra[blank] = np.nan
    t = Table({"id": np.arange(n), "ra": ra, "dec": dec})
    src = write_catalog(t, tmp_path / "big.fits")
    run = classify_file(src, tmp_path / "big.fits.out.fits", images=sky, model=model_path, chunk_size=25_000)
    assert (run.rows, run.chunks, run.prepared) == (n, 4, 8)
    out = read_catalog(tmp_path / "big.fits.out.fits")
    np.testing.assert_array_equal(out["id"], np.arange(n))
    status = np.asarray(out["FR_STATUS"]).astype(str)
    expect = np.where(blank, "bad_position", np.where(pick == len(places) - 1, "no_image", "ok"))
    np.testing.assert_array_equal(status, expect)
    p = np.asarray(out["P_FRI"])
    for k in range(len(places) - 1):  # every row of a place has that place's probability
        rows = (pick == k) & ~blank
        assert len(set(p[rows].tolist())) == 1
    check_invariants(out[::97], len(out[::97]))


# --------------------------------------------------------------------------------------------------
# Bad images


def test_bad_images_each_get_a_documented_status_and_the_run_goes_on(tmp_path, model_path):
    images = tmp_path / "images"
    rng = np.random.default_rng(8)
    pixels = make_first_fits(tmp_path / "ref.fits", 150.0, 30.0, seed=4)  # the same pixels, in every layout
    data = fits.getdata(pixels)
    rows = []

    def row(ra, dec, status):
        rows.append((ra, dec, status))

    make_first_fits(images / "plain.fits", 150.0, 30.0, data=data)
    row(150.0, 30.0, "ok")
    make_first_fits(images / "first4d.fits", 151.0, 30.0, data=data, naxis4=True)  # FIRST's STOKES, FREQ axes
    row(151.0, 30.0, "ok")
    make_first_fits(images / "tiled.fits", 152.0, 30.0, data=data, compressed=True)
    row(152.0, 30.0, "ok")
    make_first_fits(images / "zipped.fits", 153.0, 30.0, data=data, gz=True)
    row(153.0, 30.0, "ok")
    nan_border = data.copy()
    nan_border[:, :60] = np.nan  # beyond a survey's edge, as SkyView blanks it
    nan_border[7, 200] = np.inf
    make_first_fits(images / "border.fits", 154.0, 30.0, data=nan_border)
    row(154.0, 30.0, "ok")
    scaled = fits.PrimaryHDU(np.round(data / 1e-5).astype(np.int16), header=first_wcs(155.0, 30.0).to_header())
    scaled.header["BSCALE"], scaled.header["BZERO"] = 1e-5, 0.0
    scaled.writeto(images / "int16.fits")
    row(155.0, 30.0, "ok")
    for k, fill in enumerate([np.nan, 0.0, 0.5]):  # all NaN, all zero, constant: nothing to scale, no 0/0
        make_first_fits(images / f"blank{k}.fits", 160.0 + k, 30.0, data=np.full((300, 300), fill))
        row(160.0 + k, 30.0, "blank_image")
    skipped = {}
    fits.PrimaryHDU(data).writeto(images / "nowcs.fits")
    skipped["nowcs.fits"] = "no celestial WCS"
    row(170.0, 30.0, "no_image")
    for name, ctype, frame in [("linear", ["LINEAR", "LINEAR"], None), ("galactic", ["GLON-TAN", "GLAT-TAN"], None),
                               ("b1950", None, ("FK4", 1950.0))]:  # fmt: skip
        w = first_wcs(171.0 + len(skipped), 30.0)
        if ctype:
            w.wcs.ctype = ctype
        if frame:
            w.wcs.radesys, w.wcs.equinox = frame
        fits.PrimaryHDU(data, header=w.to_header()).writeto(images / f"{name}.fits")
        row(171.0 + len(skipped), 30.0, "no_image")  # the image is not used: it would put positions elsewhere
        skipped[f"{name}.fits"] = {"linear": "no celestial WCS", "galactic": "GLON/GLAT", "b1950": "FK4 1950"}[name]
    truncated = make_first_fits(images / "truncated.fits", 180.0, 30.0, data=data)
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: 2880 + (len(raw) - 2880) // 2])  # header whole, half the pixels
    row(180.0, 30.0, "bad_image")
    (images / "cut-header.fits").write_bytes(raw[:1000])
    skipped["cut-header.fits"] = "not a readable FITS file"
    (images / "empty.fits").write_bytes(b"")
    skipped["empty.fits"] = "not a readable FITS file"
    (images / "notes.fits").write_text("these are notes, not FITS\n")
    skipped["notes.fits"] = "not a readable FITS file"
    (images / "README.txt").write_text("not an image, and not named like one\n")
    (images / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 100, dtype=np.uint8)))
    field = first_wcs(190.0, 30.0, (600, 600))
    edge = tuple(float(v) for v in field.pixel_to_world_values(100.2, 300.2))  # crop inside: padded
    near = tuple(float(v) for v in field.pixel_to_world_values(300.2, 40.2))  # within 75 px: refused
    make_first_fits(images / "field.fits", 190.0, 30.0, shape=(600, 600), seed=5,
                    sources=default_blobs(*edge, "FRII"))  # fmt: skip
    row(*edge, "ok")
    row(*near, "outside_image")
    make_first_fits(images / "coarse.fits", 195.0, 30.0, scale_arcsec=3.6, seed=6)
    row(195.0, 30.0, "wrong_scale")

    catalog = tmp_path / "cat.csv"
    catalog.write_text("id,ra,dec\n" + "".join(f"{i},{r!r},{d!r}\n" for i, (r, d, _) in enumerate(rows)))
    out = tmp_path / "out.vot"
    proc = run_cli("classify", catalog, "--images", images, "--model", model_path, "--out", out, "--no-progress")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    result = read_catalog(out)
    expected = [s for *_, s in rows]
    assert list(result["FR_STATUS"]) == expected
    check_invariants(result, len(rows))
    p = np.asarray(result["P_FRI"])
    assert p[0] == p[1] == p[2] == p[3], "2-D, 4-D, tile-compressed and gzipped copies of one image agree"
    for name, why in skipped.items():  # every unusable file is named, with the reason
        assert re.search(rf"skipping \S*{re.escape(name)}: .*{re.escape(why)}", proc.stderr), (name, proc.stderr)
    assert "README.txt" not in proc.stderr and "preview.png" not in proc.stderr
    counts = summary(proc.stderr)[1]
    assert counts == {s: expected.count(s) for s in set(expected)}


def test_a_galactic_image_is_not_taken_for_an_equatorial_one(tmp_path):
    w = first_wcs(150.0, 30.0)
    w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    fits.PrimaryHDU(np.zeros((300, 300), np.float32), header=w.to_header()).writeto(tmp_path / "g.fits")
    make_first_fits(tmp_path / "eq.fits", 150.0, 30.0)
    src = LocalFITSSource(tmp_path)
    assert [Path(r.path).name for r in src.records] == ["eq.fits"]
    assert "GLON/GLAT" in src.skipped[str(tmp_path / "g.fits")]


# --------------------------------------------------------------------------------------------------
# Untrusted checkpoints


class _Payload:
    """Pickled, it is a call of ``exec`` that writes a marker file: code that runs on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _checkpoint_with_code(model_path: Path, where: str, marker: Path, path: Path) -> Path:
    if where == "raw-pickle":  # not even a torch file: a plain pickle
        with open(path, "wb") as f:
            pickle.dump({"format": "frsurvey-checkpoint-1", "card": _Payload(marker)}, f)
        return path
    blob = torch.load(model_path, weights_only=True)
    if where == "card":
        blob["card"]["notes"] = _Payload(marker)
    else:
        blob["extra"] = _Payload(marker)
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("where", ["card", "top-level", "raw-pickle"])
def test_a_checkpoint_carrying_pickled_code_is_refused_and_the_code_never_runs(tmp_path, model_path, where, capsys):
    proof = tmp_path / "proof"
    evil = _checkpoint_with_code(model_path, where, proof, tmp_path / "evil.pt")
    if where == "raw-pickle":
        with open(evil, "rb") as f:
            pickle.load(f)
    else:
        torch.load(evil, weights_only=False)
    assert proof.read_text() == "pwned", "the payload is live: an unchecked load runs it"
    proof.unlink()
    with pytest.raises(CheckpointError, match="not a plain-data checkpoint"):
        load_model(evil)
    assert not proof.exists()
    (tmp_path / "c.csv").write_text("ra,dec\n150.0,30.0\n")
    make_first_fits(tmp_path / "images" / "a.fits", 150.0, 30.0)
    out = tmp_path / "out.vot"
    rc, err = cli(
        capsys, "classify", tmp_path / "c.csv", "--images", tmp_path / "images", "--model", evil, "--out", out
    )
    assert rc == 2 and "refusing" in err and "Traceback" not in err
    assert not proof.exists() and not out.exists()


def _doctored(model_path: Path, how: str, path: Path) -> Path:
    blob = torch.load(model_path, weights_only=True)
    if how == "tampered-weights":
        name = next(iter(blob["state_dict"]))
        blob["state_dict"][name] = blob["state_dict"][name] * 1.001
    elif how == "other-classes":
        blob["card"]["classes"] = list(reversed(CLASSES))
    elif how == "other-preprocessing":
        blob["card"]["preprocessing"] = "some-other-recipe"
    elif how == "not-ours":
        blob = {"weights": torch.zeros(3)}
    if how.startswith("other-"):  # a genuine checkpoint made for something else: its card hash is right
        blob["card"]["card_sha256"] = card_sha256(blob["card"])
    if how == "truncated":
        torch.save(blob, path)
        path.write_bytes(path.read_bytes()[:-200])
    else:
        torch.save(blob, path)
    return path


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("tampered-weights", "tampered"),
        ("other-classes", "predicts ['FRII', 'FRI']"),
        ("other-preprocessing", "'some-other-recipe'"),
        ("not-ours", "not an frsurvey checkpoint"),
        ("truncated", "not a plain-data checkpoint"),
    ],
)
def test_doctored_checkpoints_are_refused_by_the_command_line(tmp_path, sky, model_path, capsys, how, why):
    bad = _doctored(model_path, how, tmp_path / "bad.pt")
    (tmp_path / "c.csv").write_text("ra,dec\n150.0,30.0\n")
    out = tmp_path / "out.vot"
    args = ["classify", tmp_path / "c.csv", "--images", sky, "--model", bad, "--out", out, "--no-progress"]
    rc, err = cli(capsys, *args)
    assert rc == 2, err
    assert err.startswith("frsurvey: error: ") and why in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(CheckpointError):  # --debug lets the exception (and its traceback) through
        main([str(a) for a in [*args, "--debug"]])


def test_a_checkpoint_whose_card_was_edited_is_refused(tmp_path, model_path):
    blob = torch.load(model_path, weights_only=True)
    blob["card"]["temperature"] = blob["card"]["temperature"] * 3
    torch.save(blob, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="model card does not match its sha256"):
        load_model(tmp_path / "edited.pt")


# --------------------------------------------------------------------------------------------------
# Exit codes


def test_exit_codes_and_debug(tmp_path, sky, model_path, capsys, monkeypatch):
    (tmp_path / "c.csv").write_text("ra,dec\n150.0,30.0\n10.0,-5.0\n")
    (tmp_path / "d.csv").write_text("ra,dec\n150.0,30.0\n,\n")
    base = ["--images", sky, "--model", model_path, "--no-progress"]
    assert cli(capsys, "classify", tmp_path / "c.csv", "--out", tmp_path / "c.vot", *base)[0] == 0
    assert cli(capsys, "classify", tmp_path / "d.csv", "--out", tmp_path / "d.vot", *base)[0] == 3
    rc, err = cli(capsys, "classify", tmp_path / "nope.csv", "--out", tmp_path / "e.vot", *base)
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err
    with pytest.raises(CatalogError, match="does not exist"):
        main([str(a) for a in ["classify", tmp_path / "nope.csv", "--out", tmp_path / "e.vot", *base, "--debug"]])
    # a bug: one line that says so (exit 1), the traceback with --debug
    from frsurvey.run.engine import BatchClassifier

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(BatchClassifier, "classify", broken)
    rc, err = cli(capsys, "classify", tmp_path / "c.csv", "--out", tmp_path / "f.vot", *base)
    assert rc == 1 and "internal error: RuntimeError: a bug in the engine (a bug: rerun with --debug" in err
    assert "Traceback" not in err
    with pytest.raises(RuntimeError):
        main([str(a) for a in ["classify", tmp_path / "c.csv", "--out", tmp_path / "f.vot", *base, "--debug"]])


# --------------------------------------------------------------------------------------------------
# Random input through the whole pipeline (hypothesis)

#: Where the sky image of the property tests is (150, 30); positions are drawn near it often.
NEAR = [150.0, 150.001, 149.99, 30.0, 30.02, 10.0, -5.0]
_FLOATS = st.one_of(
    st.sampled_from(NEAR),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-800, max_value=800),
)
_TEXT = st.one_of(
    st.sampled_from(["10:00:00", "+30:00:00", "30", "150", "10h00m00s", "\u221205:00:00", "", "--", "nan", "x"]),
    _FLOATS.map(repr),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
)


@st.composite
def position_column(draw, n: int) -> Column:
    kind = draw(st.sampled_from(["float64", "float32", "int", "text", "masked-float", "masked-text"]))
    if kind in ("text", "masked-text"):
        values = draw(st.lists(_TEXT, min_size=n, max_size=n))
        col = np.array(values, dtype=str) if n else np.zeros(0, "U1")
    elif kind == "int":
        col = np.array(draw(st.lists(st.integers(-1000, 1000) | st.sampled_from([150, 30]), min_size=n, max_size=n)))
        col = col.astype(np.int64)
    else:
        col = np.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), dtype=np.float64)
        if kind == "float32":
            with np.errstate(over="ignore"):
                col = col.astype(np.float32)
    if kind.startswith("masked"):
        return MaskedColumn(col, mask=draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return Column(col)


@st.composite
def catalogs(draw) -> Table:
    n = draw(st.integers(0, 10))
    t = Table()
    t["id"] = np.arange(n, dtype=np.int64)
    t["ra"] = draw(position_column(n))
    t["dec"] = draw(position_column(n))
    t["note"] = draw(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6), min_size=n,
                              max_size=n)) if n else np.zeros(0, "U1")  # fmt: skip
    return t


class _Rows(logging.Handler):
    """Collects the failure log's rows: {row: (status, reason)}."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.rows: dict[int, tuple[str, str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "row %d: %s%s":
            row, status, why = record.args
            self.rows[int(row)] = (status, why.removeprefix(": "))


def _with_rows(fn):
    logger = logging.getLogger("frsurvey.classify")
    handler, level = _Rows(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        return fn(), handler.rows
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=catalogs(),
    fmt_in=st.sampled_from(["ecsv", "vot", "fits", "csv"]),
    fmt_out=st.sampled_from(["ecsv", "vot", "fits", "csv"]),
    chunk=st.integers(1, 6),
)
def test_random_catalogs_through_the_whole_pipeline(sky, model, table, fmt_in, fmt_out, chunk):
    with tempfile.TemporaryDirectory() as d:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = write_catalog(table, Path(d) / f"in.{fmt_in}")
        out = Path(d) / f"out.{fmt_out}"
        run, told = _with_rows(lambda: classify_file(src, out, images=sky, model=model, chunk_size=chunk))
        result = read_catalog(out)
        assert run.rows == len(table)
        check_invariants(result, len(table))
        assert list(result["id"]) == list(range(len(table))), "same rows, same order"
        status = [str(s) for s in result["FR_STATUS"]]
        for i, s in enumerate(status):
            if s != Status.OK:
                assert told[i][0] == s and told[i][1], (i, s, told.get(i))  # every failed row says why
        assert sorted(told) == [i for i, s in enumerate(status) if s != Status.OK]
        assert not list(Path(d).glob("*.frsurvey-partial"))


@st.composite
def images(draw) -> np.ndarray:
    """A 2-D image: noise, a source, constant, NaN, infinities, huge or tiny values, in several types and sizes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from([(300, 300), (301, 299), (600, 400), (160, 160), (100, 300), (2, 2)]))
    pattern = draw(st.sampled_from(["noise", "source", "constant", "nan", "inf", "checker", "spike"]))
    scale = draw(st.sampled_from([1e-30, 1e-4, 1.0, 1e20]))
    if pattern == "noise":
        data = rng.normal(0, scale, shape)
    elif pattern == "source":
        w = first_wcs(150.0, 30.0, shape)
        from conftest import render_blobs

        data = rng.normal(0, 1.5e-4, shape) + render_blobs(w, shape, default_blobs(150.0, 30.0), 1.8)
        data *= scale / 1e-4
    elif pattern == "constant":
        data = np.full(shape, draw(st.floats(allow_nan=False, allow_infinity=False, width=32)))
    elif pattern == "nan":
        data = np.full(shape, np.nan)
    elif pattern == "inf":
        data = np.where(rng.random(shape) < 0.5, np.inf, -np.inf) * np.where(rng.random(shape) < 0.9, 1, np.nan)
    elif pattern == "checker":
        data = (np.indices(shape).sum(axis=0) % 2) * scale
    else:
        data = np.zeros(shape)
        data[shape[0] // 2, shape[1] // 2] = scale
    blanks = draw(st.floats(0, 1))
    data = np.where(rng.random(shape) < blanks * 0.5, np.nan, data)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    with np.errstate(over="ignore", invalid="ignore"):
        return data.astype(dtype)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=images(), offset=st.sampled_from([0.0, 0.01, 0.05]))
def test_random_images_through_the_whole_pipeline(model, data, offset):
    import frsurvey

    d = Path(tempfile.mkdtemp())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_first_fits(d / "img" / "x.fits", 150.0, 30.0, shape=data.shape, data=data)
            table = Table({"ra": [150.0, 150.0 + offset, 150.0], "dec": [30.0, 30.0, 30.0 + offset]})
            result, told = _with_rows(lambda: frsurvey.classify_table(table, images=d / "img", model=model))
        check_invariants(result, 3)
        status = [str(s) for s in result["FR_STATUS"]]
        assert set(status) <= {"ok", "blank_image", "outside_image", "no_image", *REFUSED}, status
        for i, s in enumerate(status):
            if s != Status.OK:
                assert told[i][0] == s and told[i][1]
    finally:
        shutil.rmtree(d)


# --------------------------------------------------------------------------------------------------
# Regressions the property test found


@pytest.mark.parametrize("fmt", ["ecsv", "csv"])
def test_text_with_odd_whitespace_reads_back_row_for_row(tmp_path, fmt):
    # astropy writes a no-break space or a line separator bare, and its readers then split the row on it
    t = Table({"id": [0, 1, 2, 3], "note": ["plain", "\u00a0", "a\u2028b", "\x1c"]})
    t["flux"] = MaskedColumn([1.0, 2.0, 3.0, 4.0], mask=[False, True, False, False])
    back = read_catalog(write_catalog(t, tmp_path / f"t.{fmt}"))
    assert back["id"].tolist() == [0, 1, 2, 3]
    assert back["note"][0] == "plain" and back["note"][1] == "\u00a0"
    assert list(np.ma.getmaskarray(back["flux"])) == [False, True, False, False]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ecsv", "csv", "fits", "vot"])
def test_chunks_with_non_ascii_text_of_other_widths_stream_to_every_format(tmp_path, sky, model, fmt):
    t = Table({"ra": [150.0, 150.0, 150.0], "dec": [30.0, 30.0, 30.0], "note": ["\u00a1", "00,", "\u00a0x"]})
    src = write_catalog(t, tmp_path / "in.ecsv")
    chunked = classify_file(src, tmp_path / f"a.{fmt}", images=sky, model=model, chunk_size=1)
    whole = classify_file(src, tmp_path / f"b.{fmt}", images=sky, model=model, chunk_size=10)
    a, b = read_catalog(tmp_path / f"a.{fmt}"), read_catalog(tmp_path / f"b.{fmt}")
    assert chunked.rows == whole.rows == 3
    assert a["note"].tolist() == b["note"].tolist()
    np.testing.assert_array_equal(a["P_FRII"], b["P_FRII"])
