"""Survey scale: the fast paths give the same answers, catalogs stream in chunks, Dask gives the same table.

Nothing here asserts a time: ``scripts/bench_classify.py`` does the timing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import MaskedColumn, Table
from conftest import default_blobs, frsurvey_command, make_first_fits, run_cli

import frsurvey.image.preprocess as prep
from frsurvey.io import ChunkWriter, read_catalog, write_catalog
from frsurvey.run import classify_file
from frsurvey.sources import LocalFITSSource
from frsurvey.status import Status

pytestmark = pytest.mark.filterwarnings("ignore:File may have been truncated")


def astropy_std(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sigma_clipped_stats(x, sigma=3, maxiters=5)[2]


def same(a, b) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


# --------------------------------------------------------------------------------------------------
# The fast sigma clip, also where its shortcuts do not apply


@pytest.fixture
def no_band(monkeypatch):
    """Make the sorted band around the median useless, so that every median is selected the slow way."""
    monkeypatch.setattr(prep, "_BAND", 1e-9)


@pytest.mark.slow
def test_clip_exact_when_the_median_band_misses(no_band, first_cutouts):
    for path in sorted((first_cutouts / "fits").glob("*.fits"))[::15]:
        data = np.nan_to_num(fits.getdata(path))
        for x in (data, data.astype(np.float32), data.astype(np.float64)):
            assert prep.sigma_clipped_std(x) == astropy_std(x), path.name


@pytest.mark.parametrize("band", [None, 1e-9])
def test_clip_exact_on_large_awkward_arrays(band, monkeypatch):
    if band is not None:
        monkeypatch.setattr(prep, "_BAND", band)
    rng = np.random.default_rng(7)
    arrays = [
        np.r_[np.zeros(60_000), rng.normal(size=30_000)],  # a blanked (NaN -> 0) third of an image
        rng.exponential(size=90_000),  # skewed: the clipped medians wander
        np.round(rng.normal(size=90_000), 1),  # ties everywhere
        np.r_[rng.normal(size=80_000), rng.normal(30, 1, size=10_000)],  # a bright source
        rng.lognormal(sigma=2, size=5_000),
        np.full(50_000, 3.25),
        np.r_[rng.normal(size=9_000), [np.nan, np.inf, -np.inf] * 10],  # astropy leaves these out
    ]
    for i, a in enumerate(arrays):
        for x in (a.astype(np.float32), a.astype(np.float64), a.astype(np.float32).astype(">f4")):
            assert same(prep.sigma_clipped_std(x), astropy_std(x)), (i, x.dtype)


def test_preprocessing_unchanged_by_the_fast_path(first_cutouts, monkeypatch):
    """The canonical images are the same with the band shortcut and without it."""
    files = sorted((first_cutouts / "fits").glob("*.fits"))[::20]
    fast = [prep.preprocess_first(fits.getdata(f)) for f in files]
    monkeypatch.setattr(prep, "_BAND", 1e-9)
    slow = [prep.preprocess_first(fits.getdata(f)) for f in files]
    for f, a, b in zip(files, fast, slow):
        np.testing.assert_array_equal(a, b, err_msg=f.name)


# --------------------------------------------------------------------------------------------------
# Reading pixels straight from the file


@pytest.mark.slow
def test_direct_read_gives_astropys_pixels(first_cutouts, tmp_path):
    from dataclasses import replace

    from conftest import first_wcs

    # FIRST's own 4-D layout, a float64 image, and the real SkyView cutouts
    make_first_fits(tmp_path / "four.fits", 150.0, 30.0, naxis4=True, shape=(400, 500))
    data64 = np.random.default_rng(1).normal(size=(300, 320))
    fits.PrimaryHDU(data64, header=first_wcs(152.0, 30.0, (300, 320)).to_header()).writeto(tmp_path / "f64.fits")
    for directory, dtypes in ((tmp_path, {">f4", ">f8"}), (first_cutouts / "fits", {">f4"})):
        fast = LocalFITSSource(directory)
        assert {r.dtype for r in fast.records} == dtypes and all(r.data_offset > 0 for r in fast.records)
        slow = LocalFITSSource(directory)
        slow.records = [replace(r, data_offset=-1, dtype="") for r in slow.records]  # astropy reads them
        rng = np.random.default_rng(3)
        for c in rng.choice(len(fast.records), min(12, len(fast.records)), replace=False):
            for x, y in ((149.5, 149.5), (120.2, 180.7), (40.0, 160.0), (200.0, 260.0)):  # some padded with blanks
                a, b = fast.load((int(c), x, y)), slow.load((int(c), x, y))
                assert (a.status, a.message) == (b.status, b.message)
                if a.ok:
                    assert a.image.dtype == b.image.dtype == np.float32 and a.image.dtype.isnative
                    np.testing.assert_array_equal(a.image, b.image)


# --------------------------------------------------------------------------------------------------
# Chunked runs equal whole runs


def awkward_catalog(status_zoo) -> tuple[Table, list[str]]:
    """The status zoo's rows with columns whose types, blanks, widths and null values only the whole table shows."""
    catalog, _, expected = status_zoo
    zoo = Table.read(catalog, format="ascii.csv", converters={"ra": [_str()], "dec": [_str()]})
    n = len(zoo)
    names = [str(x) for x in zoo["name"]]
    names[9] = "Ångström ψ"  # non-ASCII text only in a later chunk
    names[11] = "a much longer name than any before it"
    zoo["name"] = names
    zoo["count"] = MaskedColumn(np.arange(n, dtype=np.int32) * 3, mask=np.arange(n) == 8)  # blank only in chunk 3
    big = np.arange(n, dtype=np.int64)
    big[12] = np.iinfo(np.int64).min  # the usual null value is taken, but only in the last chunk
    zoo["big"] = MaskedColumn(big, mask=np.arange(n) == 1)
    zoo["flag"] = MaskedColumn(np.arange(n) % 3 == 0, mask=np.arange(n) == 5)
    zoo["small"] = np.arange(n, dtype=np.uint8)
    zoo["flux"].unit = "mJy"
    zoo["flux"].description = "peak flux"
    zoo["flux"].meta["ucd"] = "phot.flux.density"
    zoo.meta["name"] = "zoo"
    zoo.meta["description"] = "the status zoo, made awkward"
    return zoo, expected


def _str():
    from astropy.io import ascii

    return ascii.convert_numpy(str)


def write_input(table: Table, path: Path) -> Path:
    if path.suffix == ".csv":
        write_catalog(table, path)
        text = path.read_text().splitlines()
        # a column that is integer in the first chunks and float, then text, further on (CSV only)
        text[0] += ",mixed,code"
        for i in range(1, len(text)):
            text[i] += f",{'2.5' if i == 10 else i},{'x7' if i == 12 else i}"
        path.write_text("\n".join(text) + "\n")
    else:
        write_catalog(table, path)
    return path


def masked_out(text: str) -> str:
    return re.sub(r"FRS_DATE.{0,90}", "FRS_DATE", text)


def assert_same_tables(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        ca, cb = a[name], b[name]
        assert ca.dtype == cb.dtype, name
        assert ca.unit == cb.unit and ca.description == cb.description, name
        assert (ca.meta or {}).get("ucd") == (cb.meta or {}).get("ucd"), name
        ma, mb = np.ma.getmaskarray(ca), np.ma.getmaskarray(cb)
        np.testing.assert_array_equal(ma, mb, err_msg=name)
        da, db = np.ma.getdata(ca)[~ma], np.ma.getdata(cb)[~mb]
        if da.dtype.kind == "f":
            np.testing.assert_array_equal(da, db, err_msg=name)  # NaN equals NaN here, nothing else is close
        else:
            assert da.tolist() == db.tolist(), name
    ka = {k: v for k, v in a.meta.items() if k != "FRS_DATE"}
    kb = {k: v for k, v in b.meta.items() if k != "FRS_DATE"}
    assert ka == kb


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt_in, fmt_out",
    [("csv", "vot"), ("ecsv", "ecsv"), ("fits", "fits"), ("vot", "csv"), ("csv", "fits"), ("fits", "vot")],
)
def test_chunked_equals_whole(tmp_path, status_zoo, model_path, fmt_in, fmt_out, stilts_maybe):
    zoo, expected = awkward_catalog(status_zoo)
    _, images, _ = status_zoo
    src = write_input(zoo, tmp_path / f"in.{fmt_in}")
    whole = tmp_path / f"whole.{fmt_out}"
    parts = tmp_path / f"parts.{fmt_out}"
    options = {"images": images, "model": model_path, "device": "cpu"}
    run_whole = classify_file(src, whole, chunk_size=0, **options)
    run_parts = classify_file(src, parts, chunk_size=4, **options)
    assert run_parts.chunks == 4 and run_whole.rows == run_parts.rows == len(zoo)
    assert run_parts.counts == run_whole.counts
    # the duplicates of chunk 1 (rows 12, 13) were not prepared again in chunk 4
    assert run_parts.remembered >= 1
    a, b = read_catalog(whole), read_catalog(parts)
    assert list(a["FR_STATUS"]) == expected
    assert_same_tables(a, b)
    if fmt_out in ("csv", "ecsv", "vot"):
        assert masked_out(parts.read_text(encoding="utf-8")) == masked_out(whole.read_text(encoding="utf-8"))
    else:
        with fits.open(whole) as ha, fits.open(parts) as hb:
            assert masked_out(ha[1].header.tostring()) == masked_out(hb[1].header.tostring())
            assert ha[1].data.tobytes() == hb[1].data.tobytes()
    if fmt_out == "vot" and stilts_maybe:  # STILTS says of the chunked file what it says of the whole one
        lint = [
            subprocess.run([stilts_maybe, "votlint", f"votable={f}"], capture_output=True, text=True, timeout=120)
            for f in (whole, parts)
        ]
        assert not any(line.startswith("ERROR") for line in lint[1].stdout.splitlines()), lint[1].stdout
        assert lint[0].stdout.replace(str(whole), "") == lint[1].stdout.replace(str(parts), "")
    assert not list(tmp_path.glob(".parts*")), "temporary files left behind"


@pytest.fixture(scope="session")
def stilts_maybe():
    import shutil

    return shutil.which("stilts")


def test_chunked_csv_types_of_the_whole_file(tmp_path):
    """A column read as integers in the first chunk and as text later is text everywhere, as read whole."""
    from frsurvey.io import CatalogChunks

    lines = ["ra,dec,code,mixed,blank"] + [
        f"{i},{i / 10},{'A1' if i == 7 else i},{2.5 if i == 5 else i},{'' if i > 4 else i}" for i in range(9)
    ]
    lines.insert(4, '"quoted, with a\nline break",0,1,1,1')
    path = tmp_path / "types.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = read_catalog(path)
    chunks = list(CatalogChunks(path, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    from astropy.table import vstack

    assert_same_tables(whole, vstack(chunks))
    assert whole["code"].dtype.kind == "U" and whole["mixed"].dtype.kind == "f"


def test_chunk_writer_single_chunk_is_write_catalog(tmp_path, status_zoo):
    zoo, _ = awkward_catalog(status_zoo)
    for ext in ("vot", "fits", "ecsv", "csv"):
        w = ChunkWriter(tmp_path / f"one.{ext}")
        w.write(zoo)
        w.close({"FRS_VER": "x"})
        ref = zoo.copy()
        ref.meta["FRS_VER"] = "x"
        write_catalog(ref, tmp_path / f"ref.{ext}")
        assert (tmp_path / f"one.{ext}").read_bytes() == (tmp_path / f"ref.{ext}").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["fits", "ecsv", "csv"])
def test_failed_run_leaves_no_file(tmp_path, status_zoo, model_path, monkeypatch, ext):
    from frsurvey.run.engine import BatchClassifier

    catalog, images, _ = status_zoo
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls = []
    classify = BatchClassifier.classify

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # after two chunks were written
            raise RuntimeError("disk on fire")
        return classify(self, *args, **kwargs)

    monkeypatch.setattr(BatchClassifier, "classify", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        classify_file(catalog, out_dir / f"out.{ext}", images=images, model=model_path, chunk_size=3)
    assert list(out_dir.iterdir()) == []


def test_cli_chunks_and_no_tta(tmp_path, status_zoo, model_path):
    catalog, images, expected = status_zoo
    out = tmp_path / "out.ecsv"
    proc = run_cli(
        "classify", catalog, "--images", images, "--model", model_path, "--out", out, "--chunk-size", "5", "--no-tta"
    )
    assert proc.returncode == 3, proc.stderr
    assert re.search(r"^frsurvey: 14 rows: 5 ok, .* -> ", proc.stderr, re.MULTILINE), proc.stderr
    t = read_catalog(out)
    assert list(t["FR_STATUS"]) == expected
    ok = np.asarray(t["FR_STATUS"]) == Status.OK
    assert np.isnan(np.asarray(t["FR_UNCERTAINTY"], dtype=float)).all()
    p = np.asarray(t["P_FRI"], dtype=float)
    assert np.isfinite(p[ok]).all() and np.isnan(p[~ok]).all()
    # one view is the 8-view model's first view: close to, not equal to, the averaged probability
    with_tta = read_catalog(_classify(tmp_path, status_zoo, model_path))
    q = np.asarray(with_tta["P_FRI"], dtype=float)
    assert np.all(np.abs(p[ok] - q[ok]) < 0.5)
    assert (run_cli("classify", catalog, "--images", images, "--out", out, "--chunk-size", "-1")).returncode == 2


def _classify(tmp_path, status_zoo, model_path) -> Path:
    catalog, images, _ = status_zoo
    out = tmp_path / "tta.ecsv"
    classify_file(catalog, out, images=images, model=model_path, device="cpu")
    return out


def test_no_tta_is_one_view_of_the_model(status_zoo, model):
    """--no-tta gives the calibrated probability of the unrotated image, from one forward pass."""
    import torch

    from frsurvey.image.prepare import PreparedCutouts, collate_prepared
    from frsurvey.run import classify_table
    from frsurvey.sources import make_source

    catalog, images, _ = status_zoo
    t = classify_table(catalog, images=images, model=model, tta=False, device="cpu")
    assert model.tta == bool(model.card.get("tta", False))  # restored after the run
    ok = np.flatnonzero(np.asarray(t["FR_STATUS"]) == Status.OK)
    src = make_source(images=images)
    keys = src.locate(np.asarray([150.0]), np.asarray([30.0]))
    x = collate_prepared([PreparedCutouts(src, keys)[0]])["x"]
    with torch.inference_mode():
        logits = model.net(x).float() / model.temperature
        expected = torch.softmax(logits, dim=-1)[0, 0].item()
    assert t["P_FRI"][ok[0]] == pytest.approx(expected, abs=1e-6)
    assert np.isnan(np.asarray(t["FR_UNCERTAINTY"], dtype=float)).all()


# --------------------------------------------------------------------------------------------------
# A million rows in flat memory


def make_million(directory: Path, rows: int = 1_000_000) -> tuple[Path, Path, np.ndarray, int]:
    """Three FIRST-like fields and a CSV catalog of ``rows`` positions drawn from 300 distinct ones (and a few blanks).

    Returns the catalog, the image directory, the distinct positions as written and the number of blank rows.
    """
    images = directory / "images"
    centers = [(140.0, 20.0), (141.0, 21.0), (142.0, 22.0)]
    rng = np.random.default_rng(42)
    for k, (ra, dec) in enumerate(centers):
        blobs = []
        for j in range(6):
            r, d = ra + rng.uniform(-0.1, 0.1), dec + rng.uniform(-0.1, 0.1)
            blobs += default_blobs(r, d, "FRII" if j % 2 else "FRI")
        make_first_fits(images / f"field{k}.fits", ra, dec, shape=(600, 600), sources=blobs, seed=k)
    distinct = np.array(
        [(ra + rng.uniform(-0.08, 0.08), dec + rng.uniform(-0.08, 0.08)) for ra, dec in centers for _ in range(100)]
    )
    text = np.char.add(np.char.add(np.char.mod("%.7f", distinct[:, 0]), ","), np.char.mod("%.7f", distinct[:, 1]))
    written = np.array([[float(v) for v in t.split(",")] for t in text.tolist()])
    pick = rng.integers(0, len(distinct), rows)
    blank = rng.random(rows) < 0.001
    lines = text[pick]
    lines[blank] = ","
    catalog = directory / "million.csv"
    with open(catalog, "w") as f:
        f.write("id,ra,dec\n")
        for start in range(0, rows, 100_000):
            ids = np.arange(start, min(rows, start + 100_000)).astype(str)
            f.write("\n".join(np.char.add(np.char.add(ids, ","), lines[start : start + 100_000]).tolist()) + "\n")
    return catalog, images, written, int(blank.sum())


@pytest.mark.slow
def test_million_rows_in_flat_memory(tmp_path, model_path):
    from frsurvey.run import classify_table

    catalog, images, distinct, blanks = make_million(tmp_path)
    out = tmp_path / "million.fits"
    # measured on a process of its own, whose only child is the run
    probe = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(p.stderr); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = dict(os.environ)
    env.pop("FRSURVEY_MODEL", None)
    cmd = [*frsurvey_command(), "classify", str(catalog), "--images", str(images), "--model", str(model_path)]
    cmd += ["--out", str(out), "--device", "cpu", "--threads", "1", "-v"]
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, timeout=900)
    code, maxrss_kib = (int(x) for x in proc.stdout.split())
    assert code == 3, proc.stderr
    print(f"1M rows: peak RSS {maxrss_kib / 1024:.0f} MiB")
    assert maxrss_kib < 1.5 * 1024 * 1024, f"peak RSS {maxrss_kib / 1024:.0f} MiB"
    assert "1000000 rows in 20 chunk(s); 300 source(s) prepared" in proc.stderr, proc.stderr
    assert f"frsurvey: 1000000 rows: {1_000_000 - blanks} ok, {blanks} bad_position -> " in proc.stderr

    # every row of a position has that position's probability: the one a run over the 300 positions gives
    ref = classify_table(Table({"ra": distinct[:, 0], "dec": distinct[:, 1]}), images=images, model=model_path)
    assert list(ref["FR_STATUS"]) == ["ok"] * 300
    lookup = dict(zip(distinct[:, 0].tolist(), np.asarray(ref["P_FRI"]).tolist()))
    with fits.open(out, memmap=True) as h:
        data = h[1].data
        assert len(data) == 1_000_000
        for start in range(0, 1_000_000, 250_000):
            part = data[start : start + 250_000]
            np.testing.assert_array_equal(part["id"], np.arange(start, start + len(part)))
            ra, p = np.asarray(part["ra"]), np.asarray(part["P_FRI"])
            status = np.char.strip(part["FR_STATUS"].astype(str))
            ok = np.isfinite(ra)
            assert ((status == "ok") == ok).all() and (status[~ok] == "bad_position").all()
            np.testing.assert_array_equal(p[ok], [lookup[r] for r in ra[ok].tolist()])


# --------------------------------------------------------------------------------------------------
# Dask


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_table(tmp_path, status_zoo, model_path):
    pytest.importorskip("distributed")
    zoo, expected = awkward_catalog(status_zoo)
    _, images, _ = status_zoo
    src = write_input(zoo, tmp_path / "in.fits")
    options = {"images": images, "model": model_path, "device": "cpu", "chunk_size": 3}
    classify_file(src, tmp_path / "plain.vot", **options)
    run = classify_file(src, tmp_path / "dask.vot", dask="local:2", **options)
    assert run.chunks == 5
    a, b = read_catalog(tmp_path / "plain.vot"), read_catalog(tmp_path / "dask.vot")
    assert list(b["FR_STATUS"]) == expected
    assert_same_tables(a, b)
    text = [masked_out((tmp_path / f"{n}.vot").read_text(encoding="utf-8")) for n in ("plain", "dask")]
    assert text[0] == text[1]
