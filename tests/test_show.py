"""Pictures: the safe --select evaluator, `frsurvey show` and `classify --gallery`."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, Table
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import frsurvey.gallery as gallery
from frsurvey.io import CatalogError, read_catalog, write_catalog
from frsurvey.show import SelectError, select_rows, show_catalog

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Check the PNG signature and IHDR chunk; return (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    return width, height


# --------------------------------------------------------------------------------------------------
# --select


@pytest.fixture(scope="module")
def small() -> Table:
    t = Table()
    t["name"] = ["a", "b", "c", "d", "e"]
    t["P_FRII"] = [0.95, 0.2, np.nan, 0.91, 0.5]
    t["P_FRI"] = 1 - t["P_FRII"]
    t["FR_STATUS"] = ["ok", "ok", "no_image", "ok", "ok"]
    t["FR_CLASS"] = ["FRII", "FRI", "", "FRII", "FRII"]
    t["flux (mJy)"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    t["n"] = MaskedColumn([1, 2, 3, 4, 5], mask=[0, 0, 0, 1, 0])
    t["flag"] = [True, False, True, False, True]
    return t


@pytest.mark.parametrize(
    ("expr", "rows"),
    [
        ("P_FRII > 0.9", [0, 3]),
        ("FR_STATUS == 'ok'", [0, 1, 3, 4]),
        ('FR_STATUS != "ok"', [2]),
        ("P_FRII > 0.9 and FR_STATUS == 'ok'", [0, 3]),
        ('P_FRII > 0.9 && FR_STATUS == "ok"', [0, 3]),
        ("P_FRII < 0.3 or FR_STATUS != 'ok'", [1, 2]),
        ("P_FRII < 0.3 || !(FR_STATUS == 'ok')", [1, 2]),
        ("(P_FRII > 0.9) & ~(name == 'd')", [0]),
        ("not P_FRII > 0.5", [1, 2, 4]),  # NaN compares False, so "not" keeps it
        ("0.4 < P_FRI < 0.6", [4]),
        ("FR_STATUS in ('no_image', 'outside_image')", [2]),
        ("FR_CLASS not in ['FRII']", [1, 2]),
        ("p_frii * 2 - 1 > 0.8", [0, 3]),  # case ignored, arithmetic
        ("`flux (mJy)` >= 4", [3, 4]),
        ("n >= 4", [4]),  # blank values match nothing
        ("n < 4 or n >= 4", [0, 1, 2, 4]),
        ("flag", [0, 2, 4]),
        ("flag == True", [0, 2, 4]),
        ("FR_STATUS == 1", []),
        ("True", [0, 1, 2, 3, 4]),
        ("", [0, 1, 2, 3, 4]),
        ("P_FRII ** 9 ** 9 ** 9 > 1", []),  # powers in floating point: instant
    ],
)
def test_select_rows(small, expr, rows):
    assert list(np.flatnonzero(select_rows(small, expr))) == rows


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os').system('touch pwned')", "Call is not allowed"),
        ("open('x').read()", "not allowed"),
        ("P_FRII.__class__", "Attribute is not allowed"),
        ("name[0] == 'a'", "Subscript is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in name]", "not allowed"),
        ("(y := 1)", "NamedExpr is not allowed"),
        ("f'{name}' == 'a'", "JoinedStr is not allowed"),
        ("b'ok' == FR_STATUS", "not allowed"),
        ("P_FRII if True else 0", "IfExp is not allowed"),
        ("nope > 1", "no column 'nope'"),
        ("P_FRII", "does not say True or False"),
        ("~()", "does not give one True or False per row"),  # found by hypothesis: an empty tuple, negated
        ("(FR_STATUS == 'ok', FR_STATUS == 'ok')", "does not give one True or False per row"),
        ("P_FRII >", "cannot parse"),
        ("FR_STATUS + 1 > 0", "numbers only"),
        ("FR_STATUS > 1", "cannot compare text with a number"),
        ("`flux (mJy) > 1", "not closed"),
        ("(" * 500 + "1" + ")" * 500, "selection"),
        ("1 > 0 " + "and 1 > 0 " * 400, "longer than"),
    ],
)
def test_select_refuses_what_is_not_a_simple_expression(small, tmp_path, monkeypatch, expr, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SelectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_rows(small, expr)
    assert list(tmp_path.iterdir()) == []  # nothing ran


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("P_FRII>=<!&|() 'ok\"0.9+-*/%~`nameornotandin,[]")), max_size=40))
def test_select_never_does_anything_but_select_or_refuse(small, expr):
    try:
        mask = select_rows(small, expr)
    except SelectError:
        return
    assert mask.dtype == bool and mask.shape == (len(small),)


# --------------------------------------------------------------------------------------------------
# classify --gallery and show


@pytest.fixture(scope="module")
def gallery_run(tmp_path_factory, status_zoo, model_path):
    """The status zoo classified through the API with a gallery; the Gallery drawn is captured."""
    import frsurvey

    catalog, images, expected = status_zoo
    tmp = tmp_path_factory.mktemp("gallery")
    drawn = []
    original = gallery.draw_gallery

    def capture(table, imgs, rows, path, **kw):
        g = original(table, imgs, rows, path, **kw)
        drawn.append((g, dict(imgs)))
        return g

    gallery.draw_gallery = capture
    try:
        result = frsurvey.classify_table(catalog, images=images, model=model_path, gallery=tmp / "run.png")
    finally:
        gallery.draw_gallery = original
    labeled = write_catalog(result, tmp / "labeled.vot")
    return result, labeled, images, expected, drawn[0], tmp


def test_classify_gallery_is_a_png_with_one_panel_per_row(gallery_run):
    result, _, _, expected, (gallery, kept), tmp = gallery_run
    png_size(gallery.path)
    assert gallery.path == tmp / "run.png"
    assert gallery.panels == gallery.selected == len(expected) == len(result)
    assert gallery.rows == list(range(len(expected)))
    assert gallery.images == expected.count("ok")
    assert gallery.statuses == [c if s == "ok" else "failed" for c, s in zip(result["FR_CLASS"], expected)]
    for r, status in enumerate(expected):  # the images kept are those of the rows classified
        assert (kept.get(r) is not None) == (status == "ok"), r


def test_classify_gallery_images_are_the_ones_show_cuts_again(gallery_run, monkeypatch):
    """Kept from the run or cut again by `show`: the same canonical pixels."""
    result, _, images, expected, (_, kept), tmp = gallery_run
    captured = {}
    original = gallery.draw_gallery

    def capture(table, imgs, rows, path, **kw):
        captured.update(imgs)
        return original(table, imgs, rows, path, **kw)

    monkeypatch.setattr(gallery, "draw_gallery", capture)
    g = show_catalog(result, tmp / "again.png", images=images)
    assert g.images == expected.count("ok")
    for r, status in enumerate(expected):
        if status == "ok":
            assert kept[r].dtype == np.uint8 and kept[r].shape == (150, 150)
            assert np.array_equal(kept[r], captured[r]), r


@pytest.mark.slow
def test_show_selects_caps_and_draws_a_grid(gallery_run):
    _, labeled, images, expected, _, tmp = gallery_run
    ok = show_catalog(labeled, tmp / "ok.png", images=images, select="FR_STATUS == 'ok'")
    assert ok.panels == ok.images == ok.selected == expected.count("ok")
    assert set(ok.statuses) <= {"FRI", "FRII"}
    failed = show_catalog(labeled, tmp / "failed.png", images=images, select="FR_STATUS != 'ok'")
    assert failed.panels == len(expected) - expected.count("ok") and failed.images == 0
    assert set(failed.statuses) == {"failed"}
    capped = show_catalog(labeled, tmp / "capped.png", images=images, max_images=2, ncols=2)
    assert capped.panels == 2 and capped.selected == len(expected) and capped.rows == [0, 1]
    none = show_catalog(labeled, tmp / "none.png", images=images, select="P_FRII > 2")
    assert none.panels == 0 and none.selected == 0
    # one row of 2 panels against 3 rows of 6: narrower and shorter
    (w2, h2), (w6, _) = png_size(capped.path), png_size(ok.path if ok.panels > 6 else failed.path)
    assert w2 < w6
    png_size(none.path)
    full = show_catalog(labeled, tmp / "full.png", images=images)
    _, hf = png_size(full.path)
    assert full.panels == len(expected) and hf > h2


def test_show_refuses_an_unlabeled_catalog(status_zoo, tmp_path):
    catalog, images, _ = status_zoo
    with pytest.raises(CatalogError, match="FR_STATUS"):
        show_catalog(catalog, tmp_path / "x.png", images=images)


def test_show_on_a_row_without_an_image_now(gallery_run, tmp_path):
    """A row classified then, whose image is gone now, gets an empty panel saying so."""
    result, _, _, expected, _, _ = gallery_run
    elsewhere = tmp_path / "empty-images"
    elsewhere.mkdir()
    g = show_catalog(result, tmp_path / "gone.png", images=elsewhere, select="FR_STATUS == 'ok'")
    assert g.panels == expected.count("ok") and g.images == 0


@pytest.mark.slow
def test_cli_show_and_classify_gallery(gallery_run, status_zoo, model_path, tmp_path):
    _, labeled, images, expected, _, _ = gallery_run
    proc = run_cli("show", labeled, "--images", images, "--out", tmp_path / "cli.png", "--select", "P_FRII >= 0")
    assert proc.returncode == 0, proc.stderr
    n_ok = expected.count("ok")
    assert f"{n_ok} panel(s), {n_ok} with an image, of {n_ok} matching row(s)" in proc.stderr
    png_size(tmp_path / "cli.png")
    bad = run_cli("show", labeled, "--images", images, "--out", tmp_path / "bad.png", "--select", "exec('1')")
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    assert not (tmp_path / "bad.png").exists()
    catalog = status_zoo[0]
    out = tmp_path / "out.vot"
    run = run_cli(
        "classify", catalog, "--images", images, "--model", model_path, "--out", out, "--gallery", tmp_path / "g.png"
    )
    assert run.returncode == 3, run.stderr
    png_size(tmp_path / "g.png")
    assert len(read_catalog(out)) == len(expected)


def test_name_column_found_by_ucd_or_name():
    t = Table({"x": [1], "Source_ID": ["S1"]})
    assert gallery._name_column(t) == "Source_ID"
    t["label"] = Column(["L1"])
    t["label"].meta["ucd"] = "meta.id;meta.main"
    assert gallery._name_column(t) == "label"
