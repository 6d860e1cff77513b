"""Golden outputs: the labeled files stay byte for byte what they were, however the run is made.

The demo catalog is classified through the command line (in this process)
from CSV and FITS input into the four output formats, whole, in chunks, in
chunks interrupted and resumed, and on a Dask cluster; each output must
equal ``tests/golden/demo-labeled.*`` byte for byte, apart from the date
and the image folder's path in the provenance (:mod:`golden_runs`). The
golden files were written by the code before the restructure of issue 12;
the 301 FIRST cutouts of ``../shared`` are checked against the digests of
that code's outputs (``tests/golden/first-cutouts.json``).

The model's float32 arithmetic may differ in the last bits on a CPU of
another kind than the one the golden files were made on
(``tests/golden/PLATFORM.json``); there, the tables are compared value by
value instead (text and integers exactly, floats to 1e-6).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from conftest import REPO
from golden_runs import classify_all_ways

GOLDEN = Path(__file__).parent / "golden"
DEMO = REPO / "catalogs" / "demo"

pytestmark = pytest.mark.slow


def _platform() -> dict:
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _same_platform() -> bool:
    return _platform() == json.loads((GOLDEN / "PLATFORM.json").read_text())


def _table(data: bytes, fmt: str) -> Table:
    if fmt == "fits":
        from astropy.io import fits

        with fits.open(io.BytesIO(data)) as hdul:
            return Table(hdul[1].data)
    return Table.read(io.BytesIO(data), format={"vot": "votable", "ecsv": "ascii.ecsv", "csv": "ascii.csv"}[fmt])


def _assert_close(got: Table, want: Table, what: str) -> None:
    assert got.colnames == want.colnames, what
    assert len(got) == len(want), what
    for name in want.colnames:
        a, b = np.ma.filled(np.asarray(got[name]), np.nan), np.ma.filled(np.asarray(want[name]), np.nan)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=f"{what}: {name}")
        else:
            assert (a == b).all(), f"{what}: column {name} differs"


def _first_difference(got: bytes, want: bytes) -> str:
    i = next((k for k, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
    return f"first difference at byte {i}: {got[max(0, i - 60) : i + 60]!r} vs {want[max(0, i - 60) : i + 60]!r}"


def _check(results: dict[str, bytes], golden: dict[str, bytes]) -> None:
    for key, data in sorted(results.items()):
        fmt = key.rsplit(".", 1)[1]
        want = golden[fmt]
        if data == want:
            continue
        assert not _same_platform(), f"{key} is not the golden output: {_first_difference(data, want)}"
        _assert_close(_table(data, fmt), _table(want, fmt), key)


@pytest.fixture(scope="module")
def golden_demo() -> dict[str, bytes]:
    from golden_runs import normalized

    out = {fmt: (GOLDEN / f"demo-labeled.{fmt}").read_bytes() for fmt in ("vot", "ecsv", "csv")}
    out["fits"] = normalized(GOLDEN / "demo-labeled.fits", Path("/nowhere"))
    return out


def _demo(tmp_path, modes: tuple[str, ...], in_formats: tuple[str, ...], **kw) -> dict[str, bytes]:
    """The demo catalog classified in these ways (chunks of 7 rows; the resumed runs interrupted in chunk 2)."""
    return classify_all_ways(
        DEMO / "demo.csv", DEMO / "images", tmp_path, 7, 12, modes=modes, in_formats=in_formats, **kw
    )


def test_demo_whole_and_resumed_runs_write_the_golden_files(tmp_path, golden_demo):
    results = _demo(tmp_path, ("whole", "resumed"), ("csv",))
    assert len(results) == 8
    _check(results, golden_demo)


def test_demo_chunked_runs_from_fits_write_the_golden_files(tmp_path, golden_demo):
    results = _demo(tmp_path, ("chunked",), ("fits",))
    assert len(results) == 4
    _check(results, golden_demo)


def test_demo_on_dask_writes_the_golden_file(tmp_path, golden_demo):
    pytest.importorskip("distributed", reason="Dask is an extra: pip install 'frsurvey[dask]'")
    results = _demo(tmp_path, ("dask",), ("csv",), out_formats=("fits",))
    assert len(results) == 1
    _check(results, golden_demo)


def test_the_301_cutouts_give_the_golden_digests(tmp_path, shared_data):
    recorded = json.loads((GOLDEN / "first-cutouts.json").read_text())
    cutouts = shared_data / "first-cutouts"
    results = classify_all_ways(
        cutouts / "catalog.csv",
        cutouts / "fits",
        tmp_path,
        chunk_size=64,
        interrupt_at=100,
        modes=("whole", "resumed"),
        in_formats=("csv",),
        out_formats=("vot", "fits"),
    )
    if not _same_platform():  # the digests are of another CPU's float32 arithmetic: at least, every way agrees
        for fmt in ("vot", "fits"):
            assert results[f"csv/whole.{fmt}"] == results[f"csv/resumed.{fmt}"], fmt
        return
    for key, data in results.items():
        assert hashlib.sha256(data).hexdigest() == recorded["first-cutouts"][key], key
