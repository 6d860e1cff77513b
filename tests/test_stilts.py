"""STILTS, an independent VOTable/FITS reader, reads what `frsurvey classify` writes."""

from __future__ import annotations

import csv
import io
import re
import shlex
import subprocess

import numpy as np
import pytest
from astropy.table import Column, Table
from conftest import REPO, run_cli

from frsurvey.io import OUTPUT_COLUMNS, PROVENANCE_KEYS, read_catalog
from frsurvey.status import REFUSED, summarize

# every check here starts STILTS (a Java virtual machine), most of them several times
pytestmark = pytest.mark.slow


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
        proc = run_cli("classify", src, "--images", images, "--model", model_path, "--out", out, "--device", "cpu")
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
    rows, _, params, _ = stilts_meta(stilts, out, "votable")
    assert rows == 301
    statuses = stilts_statuses(stilts, out, "votable")
    # every MiraBest source classified; a few bright cores with faint diffuse lobes refused as unresolved
    assert set(statuses) <= {"ok", *REFUSED} and statuses.count("ok") >= 0.97 * 301
    assert params["FRS_STAT"] == summarize(statuses)
    assert proc.returncode == (0 if set(statuses) == {"ok"} else 3), proc.stderr
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
    """votlint: no errors and no warnings (they are printed: run pytest -rA or -s to see them)."""
    if run == "synthetic":
        path = request.getfixturevalue("classified")[0]["vot"]
    else:
        path = request.getfixturevalue("real_classified")[1]
    errors, warnings = votlint(stilts, path)
    print(f"votlint {path.name}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in errors + warnings:
        print("   ", line)
    assert errors == [], errors
    assert warnings == [], warnings


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


# --------------------------------------------------------------------------------------------------
# Awkward inputs: nulls, arrays, unicode, several tables (a hand-written VOTable, as TOPCAT might send)

AWKWARD_VOTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE>
  <INFO name="QUERY_STATUS" value="OK"/>
  <TABLE name="sources">
   <DESCRIPTION>Radio sources with every awkward thing a catalog can hold</DESCRIPTION>
   <PARAM name="survey" datatype="char" arraysize="*" value="FIRST"/>
   <FIELD name="name" datatype="unicodeChar" arraysize="*" ucd="meta.id;meta.main"/>
   <FIELD name="RAJ2000" datatype="double" unit="deg" ucd="pos.eq.ra;meta.main"/>
   <FIELD name="DEJ2000" datatype="double" unit="deg" ucd="pos.eq.dec;meta.main"/>
   <FIELD name="nvss_id" datatype="int"><VALUES null="-1"/></FIELD>
   <FIELD name="resolved" datatype="boolean"/>
   <FIELD name="flux" datatype="float" unit="mJy" ucd="phot.flux.density;em.radio">
    <DESCRIPTION>Integrated flux density at 1.4 GHz</DESCRIPTION>
   </FIELD>
   <FIELD name="sizes" datatype="double" arraysize="3" unit="arcsec"/>
   <FIELD name="counts" datatype="short" arraysize="2"><VALUES null="-99"/></FIELD>
   <FIELD name="spectrum" datatype="double" arraysize="*" unit="mJy"/>
   <FIELD name="comment" datatype="char" arraysize="*"/>
   <DATA><TABLEDATA>
    <TR><TD>Cygnus A &#8211; Å</TD><TD>150.0</TD><TD>30.0</TD><TD>7</TD><TD>T</TD><TD>1.5</TD>
        <TD>1 2 3</TD><TD>1 2</TD><TD>1 2 3</TD><TD>a &lt;&amp;&gt; b</TD></TR>
    <TR><TD>3C 31 ∅ 日本語</TD><TD>151.0</TD><TD>31.0</TD><TD>-1</TD><TD>?</TD><TD>NaN</TD>
        <TD>NaN 2 NaN</TD><TD>-99 5</TD><TD></TD><TD></TD></TR>
    <TR><TD>🌌 no position</TD><TD></TD><TD>30.0</TD><TD></TD><TD>F</TD><TD></TD>
        <TD>NaN NaN NaN</TD><TD>-99 -99</TD><TD>4</TD><TD>x</TD></TR>
    <TR><TD></TD><TD>200.0</TD><TD>30.0</TD><TD>9</TD><TD></TD><TD>2.5</TD>
        <TD>4 5 6</TD><TD>3 4</TD><TD>5 6</TD><TD>nowhere</TD></TR>
    <TR><TD>plain</TD><TD>150.0</TD><TD>30.0</TD><TD>11</TD><TD>F</TD><TD>3</TD>
        <TD>7 8 9</TD><TD>5 6</TD><TD>7</TD><TD>again</TD></TR>
   </TABLEDATA></DATA>
  </TABLE>
 </RESOURCE>
 <RESOURCE>
  <TABLE name="second">
   <FIELD name="ra" datatype="double" unit="deg"/>
   <FIELD name="dec" datatype="double" unit="deg"/>
   <DATA><TABLEDATA>
    <TR><TD>151.0</TD><TD>31.0</TD></TR>
    <TR><TD>150.0</TD><TD>30.0</TD></TR>
   </TABLEDATA></DATA>
  </TABLE>
 </RESOURCE>
</VOTABLE>
"""
AWKWARD_STATUSES = ["ok", "ok", "bad_position", "no_image", "ok"]


@pytest.fixture(scope="module")
def awkward(tmp_path_factory, status_zoo, model_path):
    """The awkward VOTable classified: by the CLI to a VOTable (table 0, and table 1 with --table 1), and
    through the API to a FITS table; each with what was logged (stderr for the CLI)."""
    import logging

    from frsurvey import classify_table
    from frsurvey.io import write_catalog

    _, images, _ = status_zoo
    tmp = tmp_path_factory.mktemp("awkward")
    src = tmp / "awkward.vot"
    src.write_text(AWKWARD_VOTABLE, encoding="utf-8")
    runs = {}
    for key, extra, out in (("vot", [], tmp / "out.vot"), ("second", ["--table", "1"], tmp / "second.vot")):
        proc = run_cli("classify", src, *extra, "--images", images, "--model", model_path, "--out", out)
        assert proc.returncode in (0, 3), proc.stderr
        runs[key] = (proc.stderr, out)
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    logging.getLogger("frsurvey").addHandler(handler)
    try:
        fits_out = write_catalog(classify_table(src, images=images, model=model_path), tmp / "out.fits")
    finally:
        logging.getLogger("frsurvey").removeHandler(handler)
    runs["fits"] = (logged.getvalue(), fits_out)
    return src, images, runs


def test_the_awkward_input_is_itself_a_valid_votable(stilts, tmp_path):
    src = tmp_path / "awkward.vot"
    src.write_text(AWKWARD_VOTABLE, encoding="utf-8")
    assert votlint(stilts, src) == ([], [])


@pytest.mark.parametrize("key", ["vot", "second"])
def test_votlint_clean_for_nulls_arrays_unicode_and_several_tables(stilts, awkward, key):
    _, out = awkward[2][key]
    errors, warnings = votlint(stilts, out)
    assert (errors, warnings) == ([], []), "\n".join(errors + warnings)


def test_votlint_clean_for_types_votable_lacks(stilts, tmp_path):
    """Types VOTable has no datatype for, blanks everywhere, control characters, times, an empty table."""
    from astropy.time import Time

    from frsurvey.io import write_catalog

    t = Table()
    t["i8"] = np.array([1, -2, 3], dtype=np.int8)
    t["u16"] = np.ma.MaskedArray(np.array([1, 2, 65535], dtype=np.uint16), mask=[0, 1, 0])
    t["u64"] = np.array([1, 2, 2**63 + 5], dtype=np.uint64)
    t["f16"] = np.array([1, 2, 3], dtype=np.float16)
    t["c"] = np.ma.MaskedArray(np.array([1 + 2j, 3j, 4]), mask=[0, 0, 1])
    t["when"] = Time(["2020-01-01", "2021-02-03T04:05:06", "2000-01-01"])
    t["raw"] = np.array([b"abc", b"\xff\xfe", b""], dtype="S3")
    t["control"] = ["a\x00b", "tab\there", "\x1b[31m"]
    t["anything"] = Column([{"a": 1}, None, 3.5], dtype=object)
    t["flags"] = np.ma.MaskedArray(np.array([[True, False]] * 3), mask=[[0, 1], [0, 0], [1, 1]])
    t["full"] = np.ma.MaskedArray(np.arange(256, dtype=np.uint8).repeat(1)[:3], mask=[0, 0, 1])
    t["a b"] = [1, 2, 3]
    t["a_b"] = [1, 2, 3]
    t.meta["note"] = "ünï <&> \x01"
    for table, name in ((t, "types.vot"), (t[:0], "empty.vot")):
        path = write_catalog(table, tmp_path / name)
        assert votlint(stilts, path) == ([], []), name
        stilts_run(stilts, "tpipe", f"in={path}", "omode=count")


def test_every_new_column_has_a_valid_ucd_unit_and_description(awkward):
    """votlint here cannot check UCDs and units (the Debian STILTS lacks its UCD and unit libraries): astropy does."""
    from astropy import units as u
    from astropy.io import votable
    from astropy.io.votable.ucd import check_ucd

    out = awkward[2]["vot"][1]
    fields = {f.name: f for f in votable.parse(str(out)).get_first_table().fields}
    for name, spec in OUTPUT_COLUMNS.items():
        f = fields[name]
        assert f.ucd == spec["ucd"] and check_ucd(f.ucd, check_controlled_vocabulary=True), name
        assert " ".join(str(f.description).split()) == spec["description"]
        if f.datatype == "double":
            unit = u.Unit(spec["unit"]) if "unit" in spec else u.dimensionless_unscaled  # arcsec for sizes
            assert f.unit is not None and u.Unit(f.unit.to_string("vounit"), format="vounit") == unit, name
    for f in fields.values():
        if f.ucd:
            assert check_ucd(f.ucd, check_controlled_vocabulary=True), (f.name, f.ucd)


def test_awkward_values_arrive_as_sent(stilts, awkward):
    _src, _, runs = awkward
    stderr, out = runs["vot"]
    assert "read table 0 'sources' of 2 in the file" in stderr
    rows = list(csv.DictReader(io.StringIO(stilts_run(stilts, "tpipe", f"in={out}", "ofmt=csv"))))
    assert [r["FR_STATUS"] for r in rows] == AWKWARD_STATUSES
    assert [r["name"] for r in rows] == ["Cygnus A – Å", "3C 31 ∅ 日本語", "🌌 no position", "", "plain"]
    assert [r["nvss_id"] for r in rows] == ["7", "", "", "9", "11"]
    assert [r["resolved"] for r in rows] == ["true", "", "false", "", "false"]
    assert rows[0]["comment"] == "a <&> b"
    assert rows[0]["sizes"] == "(1.0, 2.0, 3.0)" and rows[2]["sizes"] == "(NaN, NaN, NaN)"
    assert rows[0]["spectrum"] == "(1.0, 2.0, 3.0)" and rows[4]["spectrum"] == "(7.0)"
    cols = stilts_columns(stilts, out, "votable")
    assert cols["sizes"]["Units"] == "arcsec" and cols["flux"]["UCD"] == "phot.flux.density;em.radio"
    assert cols["flux"]["Description"] == "Integrated flux density at 1.4 GHz"
    # astropy reads the blanks back as blanks, the arrays' blank elements included
    t = read_catalog(out)
    assert list(np.ma.getmaskarray(t["nvss_id"])) == [False, True, True, False, False]
    assert np.ma.getmaskarray(t["counts"])[2].all() and np.ma.getmaskarray(t["counts"])[1].tolist() == [True, False]
    text = out.read_text(encoding="utf-8")
    assert '<INFO name="frsurvey_table_note" value="read table 0 &apos;sources&apos; of 2 in the file"/>' in text
    assert '<TABLE name="sources">' in text


def test_table_option_picks_another_table_and_says_which(stilts, awkward):
    stderr, out = awkward[2]["second"]
    assert "read table 1 'second' of 2 in the file" in stderr
    assert stilts_statuses(stilts, out, "votable") == ["ok", "ok"]
    assert "read table 1 &apos;second&apos; of 2" in out.read_text(encoding="utf-8")


def test_fits_output_keeps_units_ucds_descriptions_nulls_and_provenance(stilts, awkward):
    from astropy.io import fits

    logged, out = awkward[2]["fits"]
    cols = stilts_columns(stilts, out, "fits")
    assert cols["RAJ2000"]["Units"] == "deg" and cols["RAJ2000"]["UCD"] == "pos.eq.ra;meta.main"
    assert cols["sizes"]["Units"] == "arcsec" and cols["flux"]["Units"] == "mJy"
    assert cols["flux"]["UCD"] == "phot.flux.density;em.radio"
    assert cols["flux"]["Description"] == "Integrated flux density at 1.4 GHz"
    for name, spec in OUTPUT_COLUMNS.items():
        assert cols[name]["UCD"] == spec["ucd"], name
    rows = list(csv.DictReader(io.StringIO(stilts_run(stilts, "tpipe", f"in={out}", "ofmt=csv"))))
    assert [r["nvss_id"] for r in rows] == ["7", "", "", "9", "11"]  # TNULL
    assert [r["resolved"] for r in rows] == ["true", "", "false", "", "false"]  # FITS logical null
    assert [r["FR_STATUS"] for r in rows] == AWKWARD_STATUSES
    assert rows[0]["name"] == "Cygnus A ? ?"  # FITS text is ASCII: said in the log
    assert "non-ASCII text" in logged
    with fits.open(out) as hdul:
        header = hdul[1].header
        n = header["TFIELDS"]
        names = [header[f"TTYPE{i}"] for i in range(1, n + 1)]
        k = names.index("nvss_id") + 1
        assert header[f"TNULL{k}"] not in (7, 9, 11)
        for key, meaning in PROVENANCE_KEYS.items():
            assert key in header and header.comments[key], key
            assert meaning.startswith(header.comments[key][:20])
    _, _, params, text = stilts_meta(stilts, out, "fits")  # stilts tpipe omode=meta
    assert set(params) == set(PROVENANCE_KEYS)
    assert "RAJ2000(Double)/deg" in text and "sizes(double[3])/arcsec" in text and "flux(Float)/mJy" in text


def test_api_and_cli_give_identical_tables(awkward, model_path, tmp_path):
    """classify_table and `frsurvey classify` give the same table: written alike, the files are identical."""
    import frsurvey
    from frsurvey.io import write_catalog

    src, images, runs = awkward
    api = frsurvey.classify_table(str(src), images=images, model=model_path)
    cli_file = runs["vot"][1]
    api_file = write_catalog(api, tmp_path / "api.vot")

    def without_date(path):
        return re.sub(r'name="FRS_DATE" value="[^"]*"', "", path.read_text(encoding="utf-8"))

    assert without_date(api_file) == without_date(cli_file)
    cli = read_catalog(cli_file)
    assert cli.colnames == api.colnames
    assert list(cli["FR_STATUS"]) == list(api["FR_STATUS"]) == AWKWARD_STATUSES
    ok = api["FR_STATUS"] == "ok"
    assert np.array_equal(np.asarray(cli["P_FRII"])[ok], np.asarray(api["P_FRII"])[ok])


def _readme_stilts_commands() -> list[str]:
    """The STILTS commands of the README's recipe, joined across backslash line ends."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- stilts-recipe -->", 2)[1]
    lines = block.replace("\\\n", " ").splitlines()
    return [ln.strip() for ln in lines if ln.strip().startswith("stilts ")]


def test_readme_stilts_recipe_runs(stilts, status_zoo, model_path, tmp_path):
    """The exact commands the README gives run on a real output, and make what it says they make."""
    from frsurvey import classify_table
    from frsurvey.io import write_catalog

    catalog, images, _ = status_zoo  # a catalog with ra and dec columns, as the README's commands name them
    write_catalog(classify_table(catalog, images=images, model=model_path), tmp_path / "labeled.vot")
    commands = _readme_stilts_commands()
    assert len(commands) >= 3
    for command in commands:
        argv = shlex.split(command)
        argv[0] = stilts
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
    for made in ("frii.vot", "sky.png"):
        assert (tmp_path / made).stat().st_size > 0, made
    assert (tmp_path / "sky.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ext, ifmt", [("vot", "votable"), ("fits", "fits")])
def test_stilts_keepcols_fr_class_gets_ours_when_the_input_has_its_own_fr_class(
    stilts, tmp_path, model_path, ext, ifmt
):
    """A labeled catalog's `fr_class` (the truth): STILTS and TOPCAT match names without case."""
    from conftest import default_blobs, make_first_fits

    from frsurvey.cli import main

    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i, kind in enumerate(["FRI", "FRII", "FRII"]):
        ra, dec = 150.0 + 2 * i, 20.0
        make_first_fits(images / f"s{i}.fits", ra, dec, seed=i, sources=default_blobs(ra, dec, kind))
        rows.append((ra, dec, f"truth {kind}"))
    Table(rows=rows, names=["ra", "dec", "fr_class"]).write(tmp_path / "labeled.vot", format="votable")
    out = tmp_path / f"out.{ext}"
    argv = ["classify", tmp_path / "labeled.vot", "--images", images, "--model", model_path, "--out", out]
    assert main([str(a) for a in [*argv, "--device", "cpu", "--no-progress"]]) == 0
    ours = [str(v) for v in read_catalog(out)["FR_CLASS"]]
    assert set(ours) <= {"FRI", "FRII"}
    got = stilts_run(stilts, "tpipe", f"in={out}", f"ifmt={ifmt}", 'cmd=keepcols "FR_CLASS"', "ofmt=csv")
    assert got.splitlines() == ["FR_CLASS", *ours]
    theirs = stilts_run(stilts, "tpipe", f"in={out}", f"ifmt={ifmt}", 'cmd=keepcols "fr_class_input"', "ofmt=csv")
    assert theirs.splitlines()[1:] == ["truth FRI", "truth FRII", "truth FRII"]
