"""STILTS, an independent VOTable/FITS reader, reads what `frsurvey classify` writes."""

from __future__ import annotations

import csv
import io
import re
import subprocess

import pytest
from astropy.table import Column, Table
from conftest import run_frsurvey

from frsurvey.catalog import OUTPUT_COLUMNS, PROVENANCE_KEYS, read_catalog


def stilts_run(exe: str, *args: str) -> str:
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"stilts {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def stilts_meta(exe: str, path, ifmt: str) -> tuple[int, int, dict[str, str], str]:
    """Rows, columns, parameters and the raw text of `stilts tpipe omode=meta`."""
    text = stilts_run(exe, "tpipe", f"in={path}", f"ifmt={ifmt}", "omode=meta")
    rows = int(re.search(r"^Rows:\s+(\d+)", text, re.MULTILINE).group(1))
    ncols = int(re.search(r"^Columns:\s+(\d+)", text, re.MULTILINE).group(1))
    params = dict(re.findall(r"^(FRS_\w+):\n\s+(.*)$", text, re.MULTILINE))
    return rows, ncols, params, text


def stilts_columns(exe: str, path, ifmt: str) -> dict[str, dict[str, str]]:
    """Column metadata (Name, Units, UCD, Description, ...) as STILTS sees it, by column name."""
    text = stilts_run(exe, "tpipe", f"in={path}", f"ifmt={ifmt}", "cmd=meta", "omode=out", "ofmt=csv")
    return {row["Name"]: row for row in csv.DictReader(io.StringIO(text))}


def stilts_statuses(exe: str, path, ifmt: str) -> list[str]:
    text = stilts_run(exe, "tpipe", f"in={path}", f"ifmt={ifmt}", 'cmd=keepcols "FR_STATUS"', "omode=out", "ofmt=csv")
    lines = text.splitlines()
    assert lines[0] == "FR_STATUS"
    return lines[1:]


@pytest.fixture(scope="module")
def classified(tmp_path_factory, status_zoo, model_path):
    """The status zoo as a VOTable with units, UCDs and descriptions, classified to a VOTable and a FITS table."""
    catalog, images, expected = status_zoo
    tmp = tmp_path_factory.mktemp("stilts")
    t = read_catalog(catalog)
    t["ra"] = Column(t["ra"].astype(str), description="Right ascension (decimal or sexagesimal)")
    t["ra"].meta["ucd"] = "pos.eq.ra;meta.main"
    t["dec"] = Column(t["dec"].filled("") if hasattr(t["dec"], "filled") else t["dec"], description="Declination")
    t["dec"].meta["ucd"] = "pos.eq.dec;meta.main"
    t["flux"].unit = "mJy"
    t["flux"].description = "Peak flux density"
    t["flux"].meta["ucd"] = "phot.flux.density;em.radio"
    src = tmp / "input.vot"
    t.write(src, format="votable")
    outs = {}
    for ext in ("vot", "fits"):
        out = tmp / f"out.{ext}"
        proc = run_frsurvey("classify", src, "--images", images, "--model", model_path, "--out", out, "--device", "cpu")
        assert proc.returncode == 3, proc.stderr
        outs[ext] = out
    return outs, expected, t


@pytest.mark.parametrize(("ext", "ifmt"), [("vot", "votable"), ("fits", "fits")])
def test_stilts_reads_rows_columns_and_provenance(stilts, classified, ext, ifmt):
    outs, expected, t = classified
    rows, ncols, params, text = stilts_meta(stilts, outs[ext], ifmt)
    assert rows == len(expected)
    assert ncols == len(t.colnames) + len(OUTPUT_COLUMNS)
    assert set(params) == set(PROVENANCE_KEYS), text
    assert params["FRS_STAT"].startswith(f"{len(expected)} rows: 5 ok")
    assert params["FRS_MOD"] == "test-cnn"


@pytest.mark.parametrize(("ext", "ifmt"), [("vot", "votable"), ("fits", "fits")])
def test_stilts_sees_our_columns_with_ucds_and_the_input_columns_unchanged(stilts, classified, ext, ifmt):
    outs, _, t = classified
    cols = stilts_columns(stilts, outs[ext], ifmt)
    assert list(cols) == [*t.colnames, *OUTPUT_COLUMNS]
    for name, spec in OUTPUT_COLUMNS.items():
        assert cols[name]["UCD"] == spec["ucd"], name
        assert " ".join(cols[name]["Description"].split()) == spec["description"], name
    assert cols["ra"]["UCD"] == "pos.eq.ra;meta.main"
    assert cols["dec"]["UCD"] == "pos.eq.dec;meta.main"
    assert cols["flux"]["UCD"] == "phot.flux.density;em.radio"
    assert cols["flux"]["Units"] == "mJy"
    assert cols["flux"]["Description"] == "Peak flux density"
    assert cols["P_FRI"]["Class"] == "Double" and cols["FR_STATUS"]["Class"] == "String"
    assert not cols["ra"].get("Units") and not cols["name"].get("Units")


@pytest.mark.parametrize(("ext", "ifmt"), [("vot", "votable"), ("fits", "fits")])
def test_stilts_statuses_in_order(stilts, classified, ext, ifmt):
    outs, expected, _ = classified
    assert stilts_statuses(stilts, outs[ext], ifmt) == expected


def test_stilts_reads_the_real_run(stilts, real_classified, first_cutouts):
    proc, out = real_classified
    assert proc.returncode == 0, proc.stderr
    rows, _, params, _ = stilts_meta(stilts, out, "votable")
    assert rows == 301
    assert params["FRS_STAT"] == "301 rows: 301 ok"
    assert stilts_statuses(stilts, out, "votable") == ["ok"] * 301
    names = stilts_run(stilts, "tpipe", f"in={out}", 'cmd=keepcols "name"', "omode=out", "ofmt=csv").splitlines()[1:]
    assert names == list(Table.read(first_cutouts / "catalog.csv", format="ascii.csv")["name"])


def votlint(exe: str, path) -> tuple[list[str], list[str]]:
    proc = subprocess.run([exe, "votlint", f"votable={path}"], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    warnings = [ln for ln in lines if ln.startswith("WARNING")]
    return errors, warnings


@pytest.mark.parametrize("run", ["synthetic", "real"])
def test_votlint_finds_no_errors(stilts, request, run):
    """votlint: errors fail the test; warnings are printed (run pytest -rA or -s to see them)."""
    if run == "synthetic":
        path = request.getfixturevalue("classified")[0]["vot"]
    else:
        path = request.getfixturevalue("real_classified")[1]
    errors, warnings = votlint(stilts, path)
    print(f"votlint {path.name}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in errors + warnings:
        print("   ", line)
    assert errors == [], errors


def test_votlint_does_report_errors(stilts, tmp_path):
    """The check above can fail: votlint flags a broken VOTable."""
    bad = tmp_path / "bad.vot"
    bad.write_text(
        '<?xml version="1.0"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE>'
        '<TABLE><FIELD name="a" datatype="double"/><DATA><TABLEDATA><TR><TD>x</TD></TR></TABLEDATA></DATA>'
        "</TABLE></RESOURCE></VOTABLE>\n"
    )
    errors, _ = votlint(stilts, bad)
    assert errors
