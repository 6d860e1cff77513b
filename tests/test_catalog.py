"""Catalogs in and out: formats, position columns, sexagesimal parsing, writing results and provenance."""

from __future__ import annotations

import logging
import os
import stat
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits, votable
from astropy.table import Column, MaskedColumn, Table

from frsurvey.io import (
    OUTPUT_COLUMNS,
    PROVENANCE_KEYS,
    CatalogError,
    NoPositionColumnsError,
    add_results,
    find_position_columns,
    format_from_path,
    parse_positions,
    read_catalog,
    write_catalog,
)
from frsurvey.status import Status

FORMATS = {"vot": "votable", "xml": "votable", "fits": "fits", "ecsv": "ecsv", "csv": "csv"}
PROVENANCE = {
    "FRS_VER": "0.1.0",
    "FRS_MOD": "test-model",
    "FRS_MSHA": "ab" * 32,
    "FRS_PREP": "first-canonical v1",
    "FRS_SRC": "local:/somewhere (3 images)",
    "FRS_DATE": "2025-01-01T00:00:00Z",
    "FRS_STAT": "4 rows: 2 ok, 1 no_image, 1 bad_position",
    "FRS_UNC": "views",
}


def input_table() -> Table:
    """A catalog with units, descriptions, UCDs, masked values and several types."""
    t = Table()
    t["id"] = Column(np.array([7, 3, 11, 5], dtype=np.int32), description="source number")
    t["id"].meta["ucd"] = "meta.id"
    t["RAJ2000"] = Column([10.5, 200.25, 30.125, 359.875], unit=u.deg, description="Right ascension (J2000)")
    t["RAJ2000"].meta["ucd"] = "pos.eq.ra;meta.main"
    t["DEJ2000"] = Column([-1.5, 2.5, 89.0, -30.0], unit=u.deg, description="Declination (J2000)")
    t["DEJ2000"].meta["ucd"] = "pos.eq.dec;meta.main"
    t["flux"] = MaskedColumn([1.5, 2.0, np.nan, 3.0], mask=[False, True, False, False], unit="mJy")
    t["flux"].description = "peak flux density"
    t["flux"].meta["ucd"] = "phot.flux.density;em.radio"
    t["name"] = Column(["a", "bb", "ccc", "dddd"], description="a name")
    t["flag"] = Column([True, False, True, False])
    return t


def results_for(table: Table) -> Table:
    return add_results(
        table,
        fr_class=["FRI", "", "FRII", ""],
        p_fri=[0.9, np.nan, 0.2, np.nan],
        status=[Status.OK, Status.NO_IMAGE, Status.OK, Status.BAD_POSITION],
        uncertainty=[0.01, np.nan, 0.02, np.nan],
        provenance=PROVENANCE,
        # S/N, LAS, deconvolved size, components: blank (NaN) for the rows without an image
        measures=[[50.0, 30.0, 12.0, 2], [np.nan] * 4, [20.0, 8.0, 0.0, 1], [np.nan] * 4],
        ood=[-1.2, np.nan, -0.9, np.nan],
    )


def values(col) -> list:
    """Column values as plain Python, masked entries as None, NaN as 'nan'.

    A masked float is 'nan' too: FITS has one null for floats, NaN, which astropy reads back as masked.
    """
    out = []
    floats = np.ma.getdata(col).dtype.kind == "f"
    for v, m in zip(np.ma.getdata(col), np.ma.getmaskarray(col)):
        if m:
            out.append("nan" if floats else None)
        elif isinstance(v, (float, np.floating)) and np.isnan(v):
            out.append("nan")
        elif isinstance(v, bytes):
            out.append(v.decode())
        else:
            out.append(v.item() if hasattr(v, "item") else v)
    return out


# --------------------------------------------------------------------------------------------------
# Reading


@pytest.mark.parametrize("ext", ["fits", "vot", "xml", "ecsv", "csv"])
def test_read_each_format(tmp_path, ext):
    t = input_table()
    path = tmp_path / f"cat.{ext}"
    if ext in ("vot", "xml"):
        t.write(path, format="votable")
    elif ext == "fits":
        t.write(path, format="fits")
    else:
        t.write(path, format=f"ascii.{ext}")
    r = read_catalog(path)
    assert r.colnames == t.colnames
    assert len(r) == 4
    assert values(r["id"]) == [7, 3, 11, 5]
    assert values(r["RAJ2000"]) == [10.5, 200.25, 30.125, 359.875]
    assert values(r["name"]) == ["a", "bb", "ccc", "dddd"]
    if ext != "csv":
        assert r["RAJ2000"].unit == u.deg
        assert r["flux"].description == "peak flux density"
        assert values(r["flux"]) == [1.5, "nan", "nan", 3.0]
    assert find_position_columns(r) == ("RAJ2000", "DEJ2000")


def test_fits_table_ucds_are_read_from_tucd(tmp_path):
    t = Table({"alpha": [1.0, 2.0], "beta": [3.0, 4.0]})
    hdu = fits.table_to_hdu(t)
    hdu.header["TUCD1"] = "pos.eq.ra;meta.main"
    hdu.header["TUCD2"] = "pos.eq.dec;meta.main"
    hdu.header["TCOMM1"] = "the right ascension"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "t.fits")
    r = read_catalog(tmp_path / "t.fits")
    assert r["alpha"].meta["ucd"] == "pos.eq.ra;meta.main"
    assert r["alpha"].description == "the right ascension"
    assert find_position_columns(r) == ("alpha", "beta")


def test_fits_column_keywords_do_not_stay_in_table_meta(tmp_path):
    """TUCDn/TCOMMn belong to the columns; left in meta they become stray VOTable INFOs and stale UCDs."""
    write_catalog(results_for(input_table()), tmp_path / "a.fits")
    r = read_catalog(tmp_path / "a.fits")
    assert not [k for k in r.meta if k.upper().startswith(("TUCD", "TCOMM"))]
    assert r["FR_STATUS"].meta["ucd"] == "meta.code.status"
    write_catalog(r, tmp_path / "b.vot")
    infos = [i.name for i in votable.parse(str(tmp_path / "b.vot")).resources[0].infos]
    assert sorted(infos) == sorted(PROVENANCE_KEYS)


def test_format_forced_and_from_extension(tmp_path):
    t = input_table()
    path = tmp_path / "catalog.dat"
    t.write(path, format="votable")
    with pytest.raises(CatalogError, match="cannot tell the catalog format"):
        read_catalog(path)
    assert read_catalog(path, format="votable").colnames == t.colnames
    # the extension says CSV, the content is a VOTable: forcing wins
    xml_as_csv = tmp_path / "really_votable.csv"
    t.write(xml_as_csv, format="votable")
    assert read_catalog(xml_as_csv, format="vot").colnames == t.colnames
    assert format_from_path("x.FITS.GZ") == "fits"
    assert format_from_path("x.xml") == "votable"
    assert format_from_path("x.anything", format="ascii.ecsv") == "ecsv"
    with pytest.raises(CatalogError, match="unknown catalog format"):
        format_from_path("x.csv", format="parquet")


def test_unreadable_and_missing_catalogs(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "missing.csv")
    bad = tmp_path / "bad.fits"
    bad.write_text("this is not FITS")
    with pytest.raises(CatalogError, match="cannot read"):
        read_catalog(bad)
    bad_vot = tmp_path / "bad.vot"
    bad_vot.write_text("<VOTABLE><RESOURCE><TABLE><FIELD name='a'")
    with pytest.raises(CatalogError):
        read_catalog(bad_vot)
    image_only = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(image_only)
    with pytest.raises(CatalogError, match="no FITS table"):
        read_catalog(image_only)


def test_multi_table_files_choose_a_table(tmp_path, caplog):
    a, b = Table({"ra": [1.0], "dec": [2.0]}), Table({"RAJ2000": [3.0, 4.0], "DEJ2000": [5.0, 6.0]})
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(a), fits.table_to_hdu(b)]).writeto(path)
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        first = read_catalog(path)
    assert first.colnames == ["ra", "dec"]
    assert "table 0" in first.meta["frsurvey_table_note"]
    assert any("--table" in r.getMessage() for r in caplog.records)
    assert read_catalog(path, table=1).colnames == ["RAJ2000", "DEJ2000"]
    with pytest.raises(CatalogError, match="2 tables"):
        read_catalog(path, table=2)

    vot = votable.tree.VOTableFile()
    res = votable.tree.Resource()
    vot.resources.append(res)
    for t in (a, b):
        res.tables.append(votable.tree.TableElement.from_table(vot, t))
    vpath = tmp_path / "two.vot"
    vot.to_xml(str(vpath))
    assert read_catalog(vpath, table=1).colnames == ["RAJ2000", "DEJ2000"]
    with pytest.raises(CatalogError, match="table 5 does not exist"):
        read_catalog(vpath, table=5)


# --------------------------------------------------------------------------------------------------
# Position columns


@pytest.mark.parametrize(
    ("ra", "dec"),
    [
        ("RA", "DEC"),
        ("ra", "dec"),
        ("RAJ2000", "DEJ2000"),
        ("_RAJ2000", "_DEJ2000"),
        ("RA_deg", "Dec_deg"),
        ("ALPHA_J2000", "DELTA_J2000"),
        ("RA_ICRS", "DE_ICRS"),
        ("raj2000", "decj2000"),
    ],
)
def test_position_columns_by_usual_name(ra, dec):
    t = Table({"name": ["x"], "flux": [1.0], ra: [1.0], dec: [2.0], "z": [0.1]})
    assert find_position_columns(t) == (ra, dec)


def test_position_columns_by_ucd_beat_names():
    t = Table({"RA": [1.0], "DEC": [2.0], "x": [3.0], "y": [4.0]})  # RA/DEC: e.g. of a counterpart
    t["x"].meta["ucd"] = "pos.eq.ra;meta.main"
    t["y"].meta["ucd"] = "POS.EQ.DEC;META.MAIN"
    assert find_position_columns(t) == ("x", "y")


def test_position_columns_by_ucd_without_meta_main():
    t = Table({"a": [1.0], "b": [2.0], "c": [3.0]})
    t["b"].meta["ucd"] = "pos.eq.ra"
    t["c"].meta["ucd"] = "pos.eq.dec"
    assert find_position_columns(t) == ("b", "c")


def test_position_columns_by_ucd_from_a_votable(tmp_path):
    path = tmp_path / "ucd.vot"
    t = Table({"where_x": [150.0], "where_y": [30.0]})
    t["where_x"].meta["ucd"] = "pos.eq.ra;meta.main"
    t["where_y"].meta["ucd"] = "pos.eq.dec;meta.main"
    t.write(path, format="votable")
    assert find_position_columns(read_catalog(path)) == ("where_x", "where_y")


def test_position_columns_explicit():
    t = Table({"RA": [1.0], "DEC": [2.0], "ra2": [3.0], "dec2": [4.0]})
    assert find_position_columns(t, "ra2", "dec2") == ("ra2", "dec2")
    assert find_position_columns(t, ra_col="ra2") == ("ra2", "DEC")


def test_no_position_columns_lists_the_columns():
    t = Table({"name": ["x"], "flux": [1.0], "xpos": [3.0]})
    with pytest.raises(NoPositionColumnsError) as err:
        find_position_columns(t)
    msg = str(err.value)
    assert "right ascension and declination" in msg
    for c in ("name", "flux", "xpos"):
        assert c in msg
    assert "--ra-col" in msg
    assert isinstance(err.value, CatalogError)


def test_only_dec_missing_says_so():
    with pytest.raises(NoPositionColumnsError, match="find the declination column"):
        find_position_columns(Table({"RA": [1.0], "b": [2.0]}))


def test_explicit_column_that_does_not_exist():
    t = Table({"RA": [1.0], "DEC": [2.0]})
    with pytest.raises(NoPositionColumnsError, match=r"'nope' \(--ra-col\) is not in the catalog.*RA, DEC"):
        find_position_columns(t, "nope", "DEC")
    with pytest.raises(NoPositionColumnsError, match=r"'nope' \(--dec-col\) is not in the catalog"):
        find_position_columns(t, "RA", "nope")


# --------------------------------------------------------------------------------------------------
# Parsing positions

GOOD_SEXAGESIMAL = [
    ("12:34:56.78", "+45:06:07.8"),
    ("12 34 56.78", "-45 06 07.8"),
    ("00:00:00", "-00:30:00"),
    ("23:59:59.999", "+89:59:59.9"),
    ("05:06:07.5", "-00 00 01"),
    ("  01:02:03  ", "  +01:02:03  "),
    ("12h34m56.7s", "+45d06m07.8s"),
    ("18 00 00", "-89 59 59.99"),
]


@pytest.mark.parametrize(("ra", "dec"), GOOD_SEXAGESIMAL)
def test_sexagesimal_matches_skycoord(ra, dec):
    t = Table({"RA": [ra], "DEC": [dec]})
    got_ra, got_dec, status = parse_positions(t, "RA", "DEC")
    c = SkyCoord(ra.strip(), dec.strip(), unit=(u.hourangle, u.deg))
    assert list(status) == [Status.OK]
    assert got_ra[0] == pytest.approx(c.ra.deg, abs=1e-9)
    assert got_dec[0] == pytest.approx(c.dec.deg, abs=1e-9)


def test_negative_declination_below_one_degree_keeps_its_sign():
    t = Table({"RA": ["00:00:00", "00:00:00"], "DEC": ["-00:30:00", "-00 00 30.0"]})
    _, dec, _ = parse_positions(t, "RA", "DEC")
    np.testing.assert_allclose(dec, [-0.5, -30 / 3600])


def test_decimal_strings_and_numbers():
    t = Table({"RA": ["150.5", " 10 ", "1.5e2"], "DEC": ["-1.25", "+2", "3"]})
    ra, dec, status = parse_positions(t, "RA", "DEC")
    np.testing.assert_allclose(ra, [150.5, 10.0, 150.0])
    np.testing.assert_allclose(dec, [-1.25, 2.0, 3.0])
    assert list(status) == [Status.OK] * 3


def test_numeric_columns_in_degrees_need_no_warning(caplog):
    t = Table({"RA": [150.0], "DEC": [-30.0]})
    t["RA"].unit = t["DEC"].unit = u.deg
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        ra, dec, _ = parse_positions(t, "RA", "DEC")
    assert (ra[0], dec[0]) == (150.0, -30.0)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("ra_unit", "ra_value", "dec_unit", "dec_value"),
    [
        (u.rad, np.pi, u.arcmin, 30.0 * 60),
        (u.hourangle, 12.0, u.arcsec, 30.0 * 3600),
        (u.deg, 180.0, u.mas, 3.0e7 * 3.6),
    ],
)
def test_numeric_columns_in_other_angle_units(ra_unit, ra_value, dec_unit, dec_value, caplog):
    t = Table({"RA": [ra_value], "DEC": [dec_value]})
    t["RA"].unit = ra_unit
    t["DEC"].unit = dec_unit
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        ra, dec, _ = parse_positions(t, "RA", "DEC")
    assert ra[0] == pytest.approx(180.0) and dec[0] == pytest.approx(30.0)
    assert caplog.records == []


def test_numeric_column_with_a_non_angle_unit_is_taken_as_degrees(caplog):
    t = Table({"RA": [150.0], "DEC": [20.0]})
    t["RA"].unit = u.m
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        ra, dec, _ = parse_positions(t, "RA", "DEC")
    assert (ra[0], dec[0]) == (150.0, 20.0)
    assert any("not an angle" in r.getMessage() for r in caplog.records)


BAD_POSITIONS = [
    ("12:34", "+10:00:00"),
    ("25:00:00", "+10:00:00"),
    ("12:61:00", "+10:00:00"),
    ("12:00:60", "+10:00:00"),
    ("-01:00:00", "+10:00:00"),
    ("12:34:56:78", "+10:00:00"),
    ("abc", "+10:00:00"),
    ("12:00:00", "ten degrees"),
    ("12:00:00", "+10:00"),
    ("", "+10:00:00"),
    ("  ", "+10:00:00"),
    ("12:00:00", ""),
    ("nan", "10"),
    ("inf", "10"),
    ("1e400", "10"),
    ("10", "-1e400"),
    ("12:00:00", "+95:00:00"),
    ("12:00:00", "-90:00:01"),
    ("150", "95"),
    ("150", "-90.5"),
]


@pytest.mark.parametrize(("ra", "dec"), BAD_POSITIONS)
def test_bad_positions(ra, dec):
    t = Table({"RA": ["12:00:00", ra, "00:00:01"], "DEC": ["+10:00:00", dec, "-00:00:01"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN/inf arithmetic either
        got_ra, got_dec, status = parse_positions(t, "RA", "DEC")
    assert list(status) == [Status.OK, Status.BAD_POSITION, Status.OK]
    assert np.isnan(got_ra[1]) and np.isnan(got_dec[1])
    assert np.isfinite(got_ra[[0, 2]]).all()


def test_masked_nan_and_poles(caplog):
    t = Table()
    t["ra"] = MaskedColumn([10.0, 20.0, np.nan, 40.0, 50.0, 60.0], mask=[False, True, False, False, False, False])
    t["dec"] = MaskedColumn([90.0, 0.0, 0.0, np.nan, -90.0, 90.000001], mask=[False] * 6)
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        _, dec, status = parse_positions(t, "ra", "dec")
    assert list(status) == ["ok", "bad_position", "bad_position", "bad_position", "ok", "bad_position"]
    assert dec[0] == 90.0 and dec[4] == -90.0
    assert any("4 row(s) have no usable position" in r.getMessage() for r in caplog.records)


def test_masked_strings_from_a_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("name,ra,dec\na,12:00:00,+10:00:00\nb,,+10:00:00\nc,13:00:00,\n")
    t = read_catalog(path)
    _, _, status = parse_positions(t, "ra", "dec")
    assert list(status) == ["ok", "bad_position", "bad_position"]


def test_ra_wraps_into_0_360():
    t = Table({"RA": [370.0, -10.0, 360.0, 720.5, -0.0], "DEC": [0.0] * 5})
    ra, _, status = parse_positions(t, "RA", "DEC")
    np.testing.assert_allclose(ra, [10.0, 350.0, 0.0, 0.5, 0.0])
    assert (ra >= 0).all() and (ra < 360).all()
    assert list(status) == [Status.OK] * 5


def test_non_angle_column_type_is_refused():
    t = Table({"RA": [True, False], "DEC": [1.0, 2.0]})
    with pytest.raises(CatalogError, match="not a position"):
        parse_positions(t, "RA", "DEC")


# --------------------------------------------------------------------------------------------------
# Writing results


@pytest.mark.parametrize("ext", list(FORMATS))
def test_write_keeps_input_columns_and_adds_ours(tmp_path, ext):
    t = input_table()
    out = results_for(t)
    path = write_catalog(out, tmp_path / f"out.{ext}")
    assert path == tmp_path / f"out.{ext}"
    r = read_catalog(path)
    assert r.colnames == [*t.colnames, *OUTPUT_COLUMNS]
    assert len(r) == len(t)
    for name in t.colnames:
        expected = values(t[name])
        if ext == "csv" and name == "flag":
            expected = [str(v) for v in expected]  # CSV keeps text
        assert values(r[name]) == expected, name
        if ext == "csv":
            continue  # CSV keeps values only
        assert r[name].unit == t[name].unit, name
        assert (r[name].description or None) == (t[name].description or None), name
        assert r[name].meta.get("ucd") == t[name].meta.get("ucd"), name
    # our columns
    assert [v or "" for v in values(r["FR_CLASS"])] == ["FRI", "", "FRII", ""]
    assert values(r["P_FRI"])[0] == pytest.approx(0.9) and values(r["P_FRI"])[1] == "nan"
    assert values(r["P_FRII"])[2] == pytest.approx(0.8)
    assert values(r["FR_UNCERTAINTY"])[0] == pytest.approx(0.01)
    assert values(r["FR_STATUS"]) == ["ok", "no_image", "ok", "bad_position"]
    if ext != "csv":
        for name, spec in OUTPUT_COLUMNS.items():
            assert r[name].meta.get("ucd") == spec["ucd"], name
            # astropy's VOTable writer wraps long DESCRIPTIONs over lines: compare the words
            assert r[name].description.split() == spec["description"].split(), name
        assert r["FR_CLASS"].meta["ucd"] == "src.morph.type"
        assert r["P_FRI"].meta["ucd"] == "stat.probability"
        assert r["FR_STATUS"].meta["ucd"] == "meta.code.status"


def test_input_table_is_not_altered():
    t = input_table()
    before = {c: values(t[c]) for c in t.colnames}
    out = results_for(t)
    assert t.colnames == list(before) and {c: values(t[c]) for c in t.colnames} == before
    assert "FRS_VER" not in t.meta and "FRS_VER" in out.meta


def test_provenance_in_fits_header(tmp_path):
    path = write_catalog(results_for(input_table()), tmp_path / "out.fits")
    with fits.open(path) as hdul:
        header = hdul[1].header
        for key, value in PROVENANCE.items():
            assert header[key] == value, key
            assert header.comments[key] == PROVENANCE_KEYS[key][: len(header.comments[key])]
        n = hdul[1].columns.names.index("FR_STATUS") + 1
        assert header[f"TUCD{n}"] == "meta.code.status"
        assert header[f"TTYPE{n}"] == "FR_STATUS"


@pytest.mark.parametrize("ext", ["vot", "xml"])
def test_provenance_as_votable_info(tmp_path, ext):
    path = write_catalog(results_for(input_table()), tmp_path / f"out.{ext}")
    vot = votable.parse(str(path))
    infos = {i.name: i for i in vot.resources[0].infos}
    for key, value in PROVENANCE.items():
        assert infos[key].value == value
        assert infos[key].content == PROVENANCE_KEYS[key]
    fields = {f.name: f for f in vot.get_first_table().fields}
    assert fields["FR_STATUS"].ucd == "meta.code.status"
    assert fields["FR_CLASS"].ucd == "src.morph.type"
    assert fields["P_FRII"].ucd == "stat.probability"
    assert fields["RAJ2000"].ucd == "pos.eq.ra;meta.main"
    assert str(fields["RAJ2000"].unit) == "deg"


def test_provenance_in_ecsv_meta(tmp_path):
    r = read_catalog(write_catalog(results_for(input_table()), tmp_path / "out.ecsv"))
    for key, value in PROVENANCE.items():
        assert r.meta[key] == value


@pytest.mark.parametrize("ext", list(FORMATS))
def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path, ext):
    out = results_for(input_table())
    path = tmp_path / f"out.{ext}"
    write_catalog(out, path)
    write_catalog(out, path)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


class _Unwritable:
    """A value no writer can turn into text."""

    def __str__(self) -> str:
        raise ValueError("this value cannot be written")

    __repr__ = __str__


@pytest.mark.parametrize("ext", ["fits", "csv"])
def test_failed_write_keeps_the_existing_output(tmp_path, ext):
    path = tmp_path / f"out.{ext}"
    write_catalog(results_for(input_table()), path)
    before = path.read_bytes()
    bad = results_for(input_table())
    bad["obj"] = np.array([_Unwritable(), None, [1, 2], {"b"}], dtype=object)  # fails half way through writing
    with pytest.raises((TypeError, ValueError)):
        write_catalog(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_no_overwrite_when_asked(tmp_path):
    path = tmp_path / "out.vot"
    path.write_text("precious")
    with pytest.raises(CatalogError, match="exists"):
        write_catalog(results_for(input_table()), path, overwrite=False)
    assert path.read_text() == "precious"


@pytest.mark.parametrize("ext", list(FORMATS))
def test_output_file_permissions_follow_the_umask(tmp_path, ext):
    """An output catalog is as readable as any file the user writes (not private to the owner)."""
    umask = os.umask(0o022)
    try:
        path = write_catalog(results_for(input_table()), tmp_path / f"out.{ext}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o660)  # an existing file keeps its mode when overwritten
        write_catalog(results_for(input_table()), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        os.umask(umask)


def test_output_directory_is_created(tmp_path):
    path = write_catalog(results_for(input_table()), tmp_path / "new" / "dir" / "out.ecsv")
    assert path.is_file()


@pytest.mark.parametrize("ext", ["vot", "fits", "ecsv", "csv"])
def test_classifying_own_output_again_replaces_our_columns(tmp_path, ext, caplog):
    first = results_for(input_table())
    path = write_catalog(first, tmp_path / f"out.{ext}")
    again = read_catalog(path)
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        second = add_results(
            again,
            ["FRII"] * 4,
            [0.1, 0.2, 0.3, 0.4],
            [Status.OK] * 4,
            uncertainty=[0.0] * 4,
            provenance=PROVENANCE,
            measures=[[30.0, 20.0, 6.0, 1]] * 4,
            ood=[-1.0] * 4,
        )
    assert any("already has FR_CLASS" in r.getMessage() and "replacing" in r.getMessage() for r in caplog.records)
    assert second.colnames == first.colnames
    assert values(second["FR_STATUS"]) == ["ok"] * 4
    np.testing.assert_allclose(second["P_FRI"], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(second["P_FRII"], [0.9, 0.8, 0.7, 0.6])
    for name in input_table().colnames:
        assert values(second[name]) == values(again[name])
    r = read_catalog(write_catalog(second, tmp_path / f"again.{ext}"))
    assert r.colnames == first.colnames
    assert values(r["FR_STATUS"]) == ["ok"] * 4


def test_reclassified_fits_keeps_column_ucds_in_place(tmp_path):
    """A FITS catalog with our columns before one of its own: the UCDs and descriptions follow the columns."""
    t = results_for(input_table())
    t["note"] = Column(["w", "x", "y", "z"])  # a user column after ours, without UCD or description
    write_catalog(t, tmp_path / "in.fits")
    out = add_results(read_catalog(tmp_path / "in.fits"), ["FRI"] * 4, [0.7] * 4, ["ok"] * 4, uncertainty=[0.0] * 4)
    assert out.colnames[-6:] == ["note", "FR_CLASS", "P_FRI", "P_FRII", "FR_UNCERTAINTY", "FR_STATUS"]
    write_catalog(out, tmp_path / "out.fits")
    with fits.open(tmp_path / "out.fits") as hdul:
        header, names = hdul[1].header, hdul[1].columns.names
    ucds = {name: header.get(f"TUCD{i}") for i, name in enumerate(names, start=1)}
    comments = {name: header.get(f"TCOMM{i}") for i, name in enumerate(names, start=1)}
    assert ucds["note"] is None and comments["note"] is None
    assert ucds["FR_CLASS"] == "src.morph.type"
    assert ucds["FR_STATUS"] == "meta.code.status"
    assert ucds["RAJ2000"] == "pos.eq.ra;meta.main"


def test_input_columns_named_like_ours_but_for_case_are_renamed_with_a_warning(caplog):
    """The MiraBest catalog has `fr_class` (the truth); STILTS/TOPCAT/FITS match names without case."""
    t = Table(
        {"RA": [1.0], "DEC": [2.0], "fr_class": ["FRII"], "Fr_Status": ["x"], "FR_STATUS_INPUT": [1], "other": [3]}
    )
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        out = add_results(t, ["FRI"], [0.8], ["ok"], uncertainty=[0.1], measures=[[9.0, 20.0, 5.0, 1]], ood=[-1.0])
    messages = [r.getMessage() for r in caplog.records]
    assert any("fr_class -> fr_class_input, Fr_Status -> Fr_Status_input2" in m and "case" in m for m in messages)
    kept = ["RA", "DEC", "fr_class_input", "Fr_Status_input2", "FR_STATUS_INPUT", "other"]
    assert out.colnames == [*kept, *OUTPUT_COLUMNS]
    assert list(out["fr_class_input"]) == ["FRII"] and list(out["FR_CLASS"]) == ["FRI"]
    assert t.colnames[2] == "fr_class"  # the caller's table is untouched
    lower = {c.lower() for c in out.colnames}
    assert len(lower) == len(out.colnames)  # no two names left that differ only by case


def test_no_case_warning_for_ordinary_catalogs(caplog):
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        add_results(input_table(), ["FRI"] * 4, [0.8] * 4, ["ok"] * 4)
    assert caplog.records == []
