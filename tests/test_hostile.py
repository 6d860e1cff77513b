"""Hostile and careless input: nothing touched outside the output, no row lost, no input that eats the machine.

Each test is one way a user (or someone sharing an output folder) can hurt
a run: symbolic links beside ``--out``, catalogs astropy would read short,
files with Windows line breaks, a model that says NaN, small files that
inflate to gigabytes, slow or endless servers, forged journal files, cache
paths that climb out of the cache. Every one is a real file, a real HTTP
server on 127.0.0.1 or a real subprocess; peak memory is measured with
``resource`` in a subprocess.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from conftest import cli, first_wcs, make_first_fits
from fake_services import FakeServices

from frsurvey._utils import resolve_device
from frsurvey.io import CatalogChunks, CatalogError, read_catalog
from frsurvey.model.checkpoint import CheckpointError, load_model, save_model
from frsurvey.run import classify_file
from frsurvey.run.engine import BatchClassifier
from frsurvey.run.journal import ResumeJournal, journal_path
from frsurvey.samp import SampClassifier, _Job, _Refused
from frsurvey.sources import LocalFITSSource, SkyViewSource
from frsurvey.sources.cache import CutoutCache
from frsurvey.sources.http import FetchError, PoliteSession
from frsurvey.sources.local import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from frsurvey.status import DESCRIPTIONS, Status

pytestmark = pytest.mark.filterwarnings("ignore:File may have been truncated")

REPO = Path(__file__).resolve().parents[1]


def six_rows(path: Path) -> Path:
    path.write_text(
        "name,ra,dec\n" + "".join(f"s{i},{150.0 if i % 2 else 10.0},{30.0 if i % 2 else -5.0}\n" for i in range(6))
    )
    return path


#: Runs the script it is given in a fresh interpreter of its own: on Linux a process's ru_maxrss
#: starts from the size of the process it was forked from (pytest's, with torch loaded), so the
#: measured process is forked from this small one instead.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode)"


def peak_rss_mib(script: str, timeout: float = 300) -> tuple[float, str]:
    """Run a Python script in a fresh interpreter; return (its peak RSS in MiB, its stdout)."""
    code = script + "\nimport resource\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, code], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("PEAK ")][-1]
    return int(line.split()[1]) / 1024.0, proc.stdout  # ru_maxrss: KiB on Linux


# --------------------------------------------------------------------------------------------------
# 1. Symbolic links beside --out


@pytest.mark.parametrize("chunk", ["2", "0"])
def test_a_journal_path_that_is_a_symlink_is_refused_and_nothing_is_touched_through_it(
    tmp_path, sky, model_path, capsys, chunk
):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / "lock").write_text("not a pid")
    cat = six_rows(tmp_path / "c.csv")
    out = tmp_path / "out.csv"
    journal_path(out).symlink_to(victim, target_is_directory=True)
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", chunk)
    assert rc == 2, err
    assert "symbolic link" in err and "Traceback" not in err
    assert sorted(p.name for p in victim.iterdir()) == ["lock", "precious.txt"]
    assert (victim / "precious.txt").read_text() == "keep me" and (victim / "lock").read_text() == "not a pid"
    assert not out.exists()


def test_a_lock_file_that_is_a_symlink_is_never_written_through(tmp_path, sky, model_path, capsys):
    victim = tmp_path / "unrelated.txt"
    victim.write_text("someone else's file")
    cat = six_rows(tmp_path / "c.csv")
    out = tmp_path / "out.csv"
    journal = journal_path(out)
    journal.mkdir()
    (journal / "lock").symlink_to(victim)
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", "2")
    assert rc == 2, err
    assert "lock" in err and "Traceback" not in err
    assert victim.read_text() == "someone else's file"


def test_a_journal_path_that_is_a_file_is_refused(tmp_path, sky, model_path, capsys):
    cat = six_rows(tmp_path / "c.csv")
    out = tmp_path / "out.csv"
    journal_path(out).write_text("a file, not a journal")
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out)
    assert rc == 2 and "not a directory" in err, err
    assert journal_path(out).read_text() == "a file, not a journal"


def test_journal_files_planted_as_symlinks_are_not_followed(tmp_path, sky, model):
    """A link planted where the journal writes a temporary file, or named like a chunk, is never used."""
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    out = tmp_path / "out.csv"
    journal = ResumeJournal(out, {"x": 1})
    journal.open()
    (journal.path / ".manifest.json.tmp").symlink_to(victim)
    (journal.path / "chunk-0000000.npz").symlink_to(victim)
    assert journal._chunk_files() == {}
    journal.save(1, _results(["ok"], [0.3], [0.1]))
    journal.release()
    assert victim.read_text() == "untouched"
    journal = ResumeJournal(out, {"x": 1})
    journal.open()  # the manifest is written through a new temporary file, never the planted link
    journal.discard()
    assert victim.read_text() == "untouched"


def _results(status, p, sd):
    from frsurvey.run.engine import RowResults

    n = len(status)
    return RowResults(
        np.array(status, dtype=object), np.full(n, "", dtype=object), np.array(p, float), np.array(sd, float)
    )


# --------------------------------------------------------------------------------------------------
# 2. Rows silently lost; 5. chunked reading changes values


@pytest.mark.parametrize("chunk", ["0", "2", "50000"])
def test_an_unterminated_quote_is_an_error_naming_its_line_not_lost_rows(tmp_path, sky, model_path, capsys, chunk):
    cat = tmp_path / "c.csv"
    cat.write_text('name,ra,dec\na,150.0,30.0\n"b,150.0,30.0\nc,10.0,-5.0\nd,10.0,-5.0\ne,10.0,-5.0\n')
    out = tmp_path / "out.csv"
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", chunk)
    assert rc == 2, err
    assert "line 3" in err and "Traceback" not in err
    assert not out.exists()


def test_a_record_count_mismatch_names_the_line_where_the_reader_stopped(tmp_path, monkeypatch):
    """Whatever makes astropy read fewer rows than the file has records is an error, not a shorter table."""
    cat = tmp_path / "c.csv"
    cat.write_text("name,ra,dec\na,150.0,30.0\nb,150.0,30.0\nc,10.0,-5.0\n")
    original = Table.read

    def short(*args, **kwargs):  # a reader that stops early, as astropy's does on some malformed lines
        return original(*args, **kwargs)[:1]

    monkeypatch.setattr(Table, "read", short)
    with pytest.raises(CatalogError, match="stopped at line 3"):
        read_catalog(cat)
    with pytest.raises(CatalogError, match="stopped at line 3"):
        list(CatalogChunks(cat, chunk_size=2))


def test_quotes_inside_values_are_not_taken_for_open_quotes(tmp_path):
    """A quote that does not start a field is an ordinary character to the reader: no false alarm, no merged rows."""
    cat = tmp_path / "c.csv"
    cat.write_text('name,ra,dec\nab"c,1,2\nd,3,4\n "x\ny",5,6\n"p""q",7,8\ne,9,10\n')
    expected = ['ab"c', "d", "x\ny", 'p"q', "e"]
    assert list(read_catalog(cat)["name"]) == expected
    for size in (1, 2, 3):
        assert [str(v) for t in CatalogChunks(cat, chunk_size=size) for v in t["name"]] == expected, size


LINE_ENDINGS = {
    "lf": ["\n"] * 8,
    "crlf": ["\r\n"] * 8,
    "mixed": ["\r\n", "\n", "\r\n", "\n", "\n", "\r\n", "\n", "\r\n"],
}


@pytest.mark.parametrize("ending", sorted(LINE_ENDINGS))
def test_chunked_and_whole_reads_give_the_same_values_whatever_the_line_breaks(tmp_path, ending):
    e = LINE_ENDINGS[ending]
    text = (
        f"name,ra,dec,note{e[0]}"
        f'a,150.0,30.0,"multi{e[1]}line"{e[2]}'
        f"b,10.0,-5.0,plain{e[3]}"
        f'c,150.0,30.0,"x{e[4]}y{e[5]}z"{e[6]}'
        f"d,10.0,-5.0,last{e[7]}"
    )
    cat = tmp_path / "c.csv"
    cat.write_bytes(text.encode())
    whole = read_catalog(cat)
    assert list(whole["note"]) == ["multi\nline", "plain", "x\ny\nz", "last"]
    for size in (1, 2, 3, 100):
        parts = list(CatalogChunks(cat, chunk_size=size))
        assert [str(v) for t in parts for v in t["note"]] == list(whole["note"]), size
        assert [str(v) for t in parts for v in t["name"]] == list(whole["name"]), size


def test_a_crlf_quoted_field_classifies_the_same_whole_and_in_chunks(tmp_path, sky, model_path, capsys):
    cat = tmp_path / "c.csv"
    cat.write_bytes(b'name,ra,dec\r\n"multi\r\nline",150.0,30.0\r\nb,10.0,-5.0\r\nc,150.0,30.0\r\n')
    outs = []
    for chunk in ("0", "1"):
        out = tmp_path / f"out{chunk}.ecsv"
        rc, err = cli(
            capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", chunk
        )
        assert rc == 0, err
        outs.append(Table.read(out, format="ascii.ecsv"))
    assert list(outs[0]["name"]) == list(outs[1]["name"]) == ["multi\nline", "b", "c"]
    np.testing.assert_array_equal(np.asarray(outs[0]["P_FRI"]), np.asarray(outs[1]["P_FRI"]))


# --------------------------------------------------------------------------------------------------
# 3. A model that gives NaN


def _nan_model(model_path: Path, what: str):
    model = load_model(model_path)
    if what == "weights":
        with torch.no_grad():
            next(p for p in model.net.parameters() if p.ndim > 1).fill_(float("nan"))
    else:
        model.temperature.fill_(float("nan"))
    return model


@pytest.mark.parametrize("what", ["weights", "temperature"])
def test_a_checkpoint_with_nan_weights_or_temperature_is_refused_at_load(tmp_path, sky, model_path, capsys, what):
    bad = save_model(_nan_model(model_path, what), tmp_path / "nan.pt")  # checksums consistent, as training saves it
    with pytest.raises(CheckpointError, match=r"NaN|temperature"):
        load_model(bad)
    cat = six_rows(tmp_path / "c.csv")
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", bad, "--out", tmp_path / "o.csv")
    assert rc == 2 and err.startswith("frsurvey: error: "), err


@pytest.mark.parametrize("what", ["weights", "temperature"])
@pytest.mark.parametrize("chunk", [0, 2])
def test_rows_a_nan_model_cannot_score_get_model_error_never_ok(tmp_path, sky, model_path, what, chunk):
    model = _nan_model(model_path, what)
    cat = six_rows(tmp_path / "c.csv")
    out = tmp_path / "out.ecsv"
    run = classify_file(cat, out, sky, model, chunk_size=chunk, device="cpu")
    t = Table.read(out, format="ascii.ecsv")
    assert list(t["FR_STATUS"]) == [Status.MODEL_ERROR] * 6
    assert np.isnan(np.asarray(t["P_FRI"], dtype=float)).all()
    assert run.counts == {Status.MODEL_ERROR: 6} and not run.all_ok
    assert run.summary == "6 rows: 6 model_error"
    assert Status.MODEL_ERROR in DESCRIPTIONS


# --------------------------------------------------------------------------------------------------
# 7. User errors are typed errors and exit 2


def _checkpoint_with(model_path: Path, how: str, path: Path) -> Path:
    blob = torch.load(model_path, weights_only=True)
    if how == "tensor-in-card":
        blob["card"]["notes"] = torch.zeros(3)
    elif how == "int-in-state-dict":
        blob["state_dict"]["extra"] = 3
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("how", ["tensor-in-card", "int-in-state-dict"])
def test_odd_checkpoint_contents_are_user_errors(tmp_path, sky, model_path, capsys, how):
    bad = _checkpoint_with(model_path, how, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError):
        load_model(bad)
    cat = six_rows(tmp_path / "c.csv")
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", bad, "--out", tmp_path / "o.csv")
    assert rc == 2 and err.startswith("frsurvey: error: ") and "internal error" not in err, err


def test_an_array_valued_position_column_is_a_user_error(tmp_path, sky, model_path, capsys):
    t = Table({"ra": np.array([[150.0, 150.1], [10.0, 10.1]]), "dec": np.array([30.0, -5.0])})
    cat = tmp_path / "c.fits"
    t.write(cat)
    for chunk in ("0", "1"):
        rc, err = cli(
            capsys,
            "classify",
            cat,
            "--images",
            sky,
            "--model",
            model_path,
            "--out",
            tmp_path / "o.csv",
            "--chunk-size",
            chunk,
        )
        assert rc == 2 and "not one angle" in err and "internal error" not in err, err


@pytest.mark.parametrize("device", ["bogus", "meta", "cuda:99x"])
def test_a_bogus_device_is_a_user_error(tmp_path, sky, model_path, capsys, device):
    with pytest.raises(ValueError):
        resolve_device(device)
    cat = six_rows(tmp_path / "c.csv")
    rc, err = cli(
        capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", tmp_path / "o.csv", "--device", device
    )
    assert rc == 2 and "--device" in err and "internal error" not in err, err


def _gzip_zeros(path: Path, head: bytes, nbytes: int) -> Path:
    """Write ``head`` then ``nbytes`` zeros, gzip-compressed, a megabyte at a time (a decompression bomb)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        block = bytes(1 << 20)
        for _ in range(nbytes >> 20):
            f.write(block)
    return path


def test_a_compressed_catalog_that_inflates_past_the_cap_is_a_clear_error(tmp_path, sky, model_path, capsys):
    header = fits.BinTableHDU.from_columns(
        [fits.Column("ra", "D", array=np.zeros(1)), fits.Column("dec", "D", array=np.zeros(1))]
    ).header
    header["NAXIS2"] = 600_000_000  # declares 9.6 GB of rows
    head = fits.PrimaryHDU().header.tostring().encode() + header.tostring().encode()
    cat = _gzip_zeros(tmp_path / "bomb.fits.gz", head, 64 << 20)
    assert cat.stat().st_size < 2 << 20
    args = ["classify", cat, "--images", sky, "--model", model_path, "--out", tmp_path / "o.csv"]
    rc, err = cli(capsys, *args, "--max-catalog-bytes", str(32 << 20))
    assert rc == 2 and "--max-catalog-bytes" in err and "internal error" not in err, err
    rc, err = cli(capsys, *args, "--chunk-size", "0", "--max-catalog-bytes", str(32 << 20))
    assert rc == 2 and "--max-catalog-bytes" in err, err


@pytest.mark.slow
def test_the_catalog_cap_is_measured_in_a_subprocess(tmp_path):
    """The default cap refuses a 2.5 GiB-inflating catalog while holding at most a few megabytes of it."""
    header = fits.BinTableHDU.from_columns(
        [fits.Column("ra", "D", array=np.zeros(1)), fits.Column("dec", "D", array=np.zeros(1))]
    ).header
    header["NAXIS2"] = 600_000_000
    head = fits.PrimaryHDU().header.tostring().encode() + header.tostring().encode()
    cat = tmp_path / "bomb.fits.gz"
    with open(cat, "wb") as f:  # 2.5 GiB of zeros in a few MB, made without holding them
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        f.write(z.compress(head))
        block = bytes(1 << 20)
        for _ in range(2560):
            f.write(z.compress(block))
        f.write(z.flush())
    peak, out = peak_rss_mib(
        textwrap.dedent(
            f"""
            from frsurvey.io import CatalogError, read_catalog
            from frsurvey.io.formats import MAX_CATALOG_BYTES
            try:
                read_catalog({str(cat)!r})
            except CatalogError as exc:
                print("REFUSED", exc)
            print("CAP", MAX_CATALOG_BYTES)
            """
        )
    )
    assert "REFUSED" in out and "--max-catalog-bytes" in out, out
    assert peak < 200, f"peak RSS {peak:.0f} MiB"  # measured: 64 MiB


# --------------------------------------------------------------------------------------------------
# 4. Images that eat memory; 8. one bad file hides a good one


def _image_bomb(path: Path, ra: float, dec: float, n: int) -> Path:
    """A .fits.gz of an n x n float32 image of zeros with a FIRST WCS: n*n*4 bytes in a few hundred KB."""
    header = fits.PrimaryHDU().header
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = n
    header["NAXIS2"] = n
    header.update(first_wcs(ra, dec, (n, n)).to_header())
    head = header.tostring().encode()
    nbytes = n * n * 4
    nbytes += -nbytes % 2880
    with open(path, "wb") as f:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        f.write(z.compress(head))
        block = bytes(1 << 20)
        for _ in range(nbytes >> 20):
            f.write(z.compress(block))
        f.write(z.compress(bytes(nbytes % (1 << 20))))
        f.write(z.flush())
    return path


@pytest.mark.slow
def test_an_image_bomb_is_refused_from_its_header_and_memory_stays_flat(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    bomb = _image_bomb(images / "bomb.fits.gz", 150.0, 30.0, 12_000)  # 576 MB of pixels
    assert bomb.stat().st_size < 4 << 20
    assert 12_000**2 > MAX_IMAGE_PIXELS and 12_000**2 * 4 > MAX_IMAGE_BYTES
    peak, out = peak_rss_mib(
        textwrap.dedent(
            f"""
            import numpy as np
            from frsurvey.sources import LocalFITSSource
            src = LocalFITSSource({str(images)!r})
            c = src.load(src.locate(np.array([150.0]), np.array([30.0]))[0])
            print("STATUS", c.status, c.message)
            """
        )
    )
    assert "STATUS bad_image" in out and "--max-image-pixels" in out, out
    assert peak < 250, f"peak RSS {peak:.0f} MiB for one row of a 576 MB image"  # measured: 97 MiB


def test_an_image_over_a_lowered_cap_gives_way_to_the_next_image(tmp_path, sky, model_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    make_first_fits(images / "big.fits", 150.0, 30.0, shape=(600, 600), gz=True, seed=3)
    make_first_fits(images / "good.fits", 150.0, 30.01, seed=1)
    cat = tmp_path / "c.csv"
    cat.write_text("name,ra,dec\na,150.0,30.0\n")
    out = tmp_path / "o.ecsv"
    base = ["classify", cat, "--images", images, "--model", model_path, "--out", out]
    rc, err = cli(capsys, *base, "--max-image-pixels", "100000")
    assert rc == 0, err
    assert "big.fits.gz" in err and "not using it again" in err


def _truncated_copy(good: Path, path: Path) -> Path:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) - 100_000])
    return path


def _corrupt_tiles(path: Path, ra: float, dec: float) -> Path:
    make_first_fits(path, ra, dec, compressed=True, seed=5)
    with fits.open(path) as hdul:
        start = hdul.fileinfo(1)["datLoc"]
    raw = bytearray(path.read_bytes())
    for i in range(start + 100, len(raw) - 3000, 97):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("bad", ["truncated", "corrupt-tiles"])
def test_an_unreadable_image_is_dropped_and_the_next_image_covering_the_position_is_used(
    tmp_path, model_path, capsys, bad
):
    images = tmp_path / "images"
    images.mkdir()
    good = make_first_fits(images / "good.fits", 150.0, 30.01, seed=1)  # the position 20 px off its centre
    if bad == "truncated":  # centred on the position: chosen first (farthest from an edge)
        broken = make_first_fits(tmp_path / "full.fits", 150.0, 30.0, seed=1)
        broken = _truncated_copy(broken, images / "broken.fits")
    else:
        broken = _corrupt_tiles(images / "broken.fits", 150.0, 30.0)
    src = LocalFITSSource(images)
    assert len(src.records) == 2
    key = src.locate(np.array([150.0]), np.array([30.0]))[0]
    assert src.records[key[0]].path == str(broken)
    cut = src.load(key)
    assert cut.status == Status.OK and cut.origin == str(good), cut.message
    cat = tmp_path / "c.csv"
    cat.write_text("name,ra,dec\na,150.0,30.0\nb,150.0,30.0\n")
    out = tmp_path / "o.ecsv"
    rc, err = cli(capsys, "classify", cat, "--images", images, "--model", model_path, "--out", out)
    assert rc == 0, err
    assert "broken.fits" in err and "not using it again" in err
    assert list(Table.read(out)["FR_STATUS"]) == ["ok", "ok"]


def test_an_unreadable_image_alone_still_gives_bad_image(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    full = make_first_fits(tmp_path / "full.fits", 150.0, 30.0, seed=1)
    _truncated_copy(full, images / "broken.fits")
    src = LocalFITSSource(images)
    cut = src.load(src.locate(np.array([150.0]), np.array([30.0]))[0])
    assert cut.status == Status.BAD_IMAGE and "broken.fits" in cut.message
    # later in the same run (a listener's next table, the next chunk): still bad_image, with the same reason
    again = src.locate(np.array([150.0]), np.array([30.0]))[0]
    assert isinstance(again, type(cut)) and (again.status, again.message) == (cut.status, cut.message)


# --------------------------------------------------------------------------------------------------
# 4, 9. Downloads: decompressed size and a deadline for the whole download


@pytest.fixture
def services(tmp_path):
    s = FakeServices(tmp_path / "served").start()
    yield s
    s.stop()


FAST = {"timeout": 1.0, "retries": 0, "backoff": 0.005, "backoff_max": 0.02, "max_rate": 0, "workers": 1}


@pytest.mark.slow
def test_a_slow_body_is_cut_off_by_the_fetch_timeout(services, tmp_path):
    services.drip = 0.1  # one byte every 0.1 s: a 370 KB cutout would take ten hours
    services.inject("fits", "drip")
    src = SkyViewSource(services.skyview_url, cache=tmp_path / "cache", **FAST)
    try:
        cut = src.load(src.locate(np.array([150.123]), np.array([30.4567]))[0])
    finally:
        src.close()
    assert cut.status == Status.FETCH_FAILED and "took longer than 1 s" in cut.message, cut.message


def test_a_gzip_bomb_from_a_service_is_cut_off_at_the_byte_cap(services, tmp_path):
    services.bomb_bytes = 64 << 20
    services.gzip_bomb()  # made before the request
    services.inject("fits", "gzip_bomb")
    src = SkyViewSource(services.skyview_url, cache=tmp_path / "cache", max_bytes=8 << 20, **{**FAST, "timeout": 30})
    try:
        cut = src.load(src.locate(np.array([150.123]), np.array([30.4567]))[0])
    finally:
        src.close()
    assert cut.status == Status.FETCH_FAILED and "larger than 8388608 bytes" in cut.message, cut.message


@pytest.mark.slow
def test_a_download_bomb_is_measured_under_the_default_cap(tmp_path):
    """4 MB answered with Content-Encoding: gzip that inflates to 4 GiB: the default cap stops it at 64 MiB."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    body = b"".join(z.compress(block) for _ in range(4096)) + z.flush()
    (tmp_path / "bomb.gz").write_bytes(body)
    peak, out = peak_rss_mib(
        textwrap.dedent(
            f"""
            import threading
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            from frsurvey.sources.http import FetchError, PoliteSession, conf

            class Bomb(BaseHTTPRequestHandler):
                body = open({str(tmp_path / "bomb.gz")!r}, "rb").read()

                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/fits")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(self.body)))
                    self.end_headers()
                    self.wfile.write(self.body)

                def log_message(self, *args):
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                PoliteSession(timeout=120, max_rate=0).get(f"http://127.0.0.1:{{server.server_port}}/x.fits")
            except FetchError as exc:
                print("REFUSED", exc, exc.retryable)
            server.shutdown()
            print("CAP", conf.max_bytes)
            """
        )
    )
    assert "REFUSED" in out and "larger than 67108864 bytes" in out and "False" in out, out
    assert peak < 64 + 186, f"peak RSS {peak:.0f} MiB"  # measured: 112 MiB


# --------------------------------------------------------------------------------------------------
# 6. --chunk-size 0 takes the output lock


def test_a_whole_catalog_run_is_refused_while_another_run_writes_the_same_output(tmp_path, sky, model_path, capsys):
    cat = six_rows(tmp_path / "c.csv")
    out = tmp_path / "out.csv"
    holder = ResumeJournal(out, {})
    holder.acquire()  # as a running chunked (or whole-catalog) run holds it
    try:
        for chunk in ("0", "2"):
            rc, err = cli(
                capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", chunk
            )
            assert rc == 2 and "another frsurvey run" in err, err
            assert not out.exists()
    finally:
        holder.discard()
    rc, err = cli(capsys, "classify", cat, "--images", sky, "--model", model_path, "--out", out, "--chunk-size", "0")
    assert rc == 0, err
    assert out.exists() and not journal_path(out).exists()


# --------------------------------------------------------------------------------------------------
# 11. Journal contents are checked


@pytest.mark.slow
def test_a_forged_journal_chunk_is_classified_again(tmp_path, sky, model, monkeypatch, caplog):
    cat = six_rows(tmp_path / "c.csv")
    options = {"images": sky, "model": model, "chunk_size": 2, "device": "cpu"}
    ref = tmp_path / "ref.csv"
    classify_file(cat, ref, **options)
    out = tmp_path / "out.csv"
    calls = {"n": 0}
    original = BatchClassifier.classify

    def interrupt_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(BatchClassifier, "classify", interrupt_third)
        with pytest.raises(KeyboardInterrupt):
            classify_file(cat, out, **options)
    journal = journal_path(out)
    forged = journal / "chunk-0000001.npz"
    assert forged.exists()
    np.savez(
        forged,
        rows=np.int64(2),
        status=np.array(["ok"]),
        status_index=np.zeros(2, np.int32),
        message=np.array([""]),
        message_index=np.zeros(2, np.int32),
        p_fri=np.array([5.0, 0.5]),
        spread=np.array([-3.0, 0.1]),
    )
    run = classify_file(cat, out, **options)
    assert "cannot be used" in caplog.text and "classifying chunk 1 again" in caplog.text
    assert run.resumed == 1
    assert out.read_text().splitlines()[1:] == ref.read_text().splitlines()[1:]
    p = np.asarray(Table.read(out, format="ascii.csv")["P_FRI"], dtype=float)
    assert ((p >= 0) & (p <= 1)).all()


# --------------------------------------------------------------------------------------------------
# 10. SAMP copies


def _listener(tmp_path: Path, **kwargs) -> SampClassifier:
    listener = SampClassifier(**kwargs)
    listener.work_dir = tmp_path / "work"
    listener.work_dir.mkdir()
    return listener


def _job() -> _Job:
    return _Job(1, "sender", None, "table.load.votable", {}, "t")


def test_samp_refuses_a_device_instead_of_copying_it_until_the_disk_fills(tmp_path):
    listener = _listener(tmp_path)
    with pytest.raises(_Refused, match="not a regular file"):
        listener._fetch("file:///dev/zero", _job())
    assert list(listener.work_dir.iterdir()) == []


class _EndlessHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-votable+xml")
        self.end_headers()
        block = b"<!-- endless -->" * 4096
        try:
            for _ in range(100_000):  # 6 GB, unless the client hangs up
                self.wfile.write(block)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_samp_stops_copying_an_endless_body_at_the_cap(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listener = _listener(tmp_path, max_table_bytes=4 << 20)
    try:
        with pytest.raises(_Refused, match="--max-table-bytes"):
            listener._fetch(f"http://127.0.0.1:{server.server_port}/t.vot", _job())
    finally:
        server.shutdown()
        server.server_close()
    assert list(listener.work_dir.iterdir()) == []


def test_samp_refuses_a_large_file_before_copying_it(tmp_path):
    big = tmp_path / "big.vot"
    with open(big, "wb") as f:
        f.truncate(8 << 20)
    listener = _listener(tmp_path, max_table_bytes=1 << 20)
    with pytest.raises(_Refused, match="above the cap"):
        listener._fetch(big.as_uri(), _job())
    assert list(listener.work_dir.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# 12. Cache paths


@pytest.mark.parametrize("survey", ["..", ".", "../../elsewhere", "a/b", "", "x\\..\\y"])
def test_cache_path_parts_cannot_leave_the_cache(tmp_path, survey):
    with pytest.raises(ValueError, match="cache path"):
        SkyViewSource(cache=tmp_path / "cache", survey=survey)
    with pytest.raises(ValueError, match="cache path"):
        CutoutCache(tmp_path / "cache").path("skyview", survey, "300px", "10 20")


def test_cache_paths_stay_inside_the_cache(tmp_path):
    cache = CutoutCache(tmp_path / "cache")
    for position in ("../../../etc/passwd", "10 20/../../x", "./."):
        path = cache.path("skyview", "VLA FIRST (1.4 GHz)", "300px", position)
        assert path.resolve().is_relative_to((tmp_path / "cache").resolve()), path


def test_caps_are_documented_in_the_readme():
    text = (REPO / "README.md").read_text()
    for option in ("--max-image-pixels", "--max-image-bytes", "--max-download-bytes", "--max-catalog-bytes"):
        assert option in text, option
    assert "--max-table-bytes" in text and "symbolic link" in text


@pytest.mark.slow
def test_slow_headers_are_cut_off_by_the_fetch_timeout_too():
    """A server that sends its status line and headers a byte at a time: the deadline covers them as well."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"x" * 60) for i in range(40))
            try:
                for i in range(len(head)):
                    conn.sendall(head[i : i + 1])
                    if stop.wait(0.05):
                        return
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    session = PoliteSession(timeout=1.0, max_rate=0)
    try:
        with pytest.raises(FetchError, match="took longer than 1 s"):
            session.get(f"http://127.0.0.1:{server.getsockname()[1]}/x.fits")
    finally:
        stop.set()
        session.close()
        server.close()
