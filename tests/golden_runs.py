"""Golden outputs: ``frsurvey classify`` run every way it can be run, each output normalised to comparable bytes.

The same catalog is classified from two input formats (CSV, FITS) into the
four output formats, whole (``--chunk-size 0``), in chunks, in chunks
interrupted and resumed, and in chunks on a Dask cluster. Every run goes
through the command line in this process (``frsurvey.cli.main``), so the
matrix means the same before and after any change of the Python API.

Normalised bytes are the file's bytes with the two values that differ
between two runs of the same command blanked: ``FRS_DATE`` (when it ran,
``@DATE@``) and the image directory's absolute path in ``FRS_SRC`` (where
it ran, ``@IMAGES@``); the text formats stay readable. For FITS, the header
cards of those keys (and their ``CONTINUE`` cards) are dropped and the rest
of the file kept byte for byte.

Used by ``tests/test_golden.py`` (the demo catalog against
``tests/golden/``, and the 301 cutouts of ``../shared`` against digests),
and from the command line to compare two versions of the code::

    python tests/golden_runs.py OUTDIR [--shared ../shared/data] [--dask]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

OUT_FORMATS = ("vot", "fits", "ecsv", "csv")
IN_FORMATS = ("csv", "fits")
MODES = ("whole", "chunked", "resumed", "dask")

_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def normalized(path: Path, images: Path) -> bytes:
    """Return the bytes of an output file with ``FRS_DATE`` and the image directory's path blanked."""
    data = path.read_bytes()
    where = str(images.resolve()).encode()
    if not data.startswith(b"SIMPLE  ="):
        return _DATE.sub(b"@DATE@", data).replace(where, b"@IMAGES@")
    out = bytearray()
    pos = 0
    while pos < len(data):  # each HDU: header cards up to END (padding dropped), then the data as written
        cards, skip = [], False
        while True:
            card = data[pos : pos + 80]
            pos += 80
            key = card[:8].strip()
            if key == b"END":
                break
            if key in (b"FRS_DATE", b"FRS_SRC"):
                skip = True
                continue
            if key == b"CONTINUE" and skip:
                continue
            skip = False
            if card.strip():
                cards.append(card)
        pos = -(-pos // 2880) * 2880
        out += b"".join(cards) + b"END\n"
        size = _data_size(cards)
        out += data[pos : pos + size] + b"\n"
        pos += -(-size // 2880) * 2880
    return bytes(out)


def _data_size(cards: list[bytes]) -> int:
    """Return the data size in bytes that a FITS header's cards declare."""
    words = {c[:8].strip().decode(): c[10:].split(b"/")[0].strip() for c in cards}
    naxis = int(words.get("NAXIS", b"0"))
    if naxis == 0:
        return 0
    size = abs(int(words["BITPIX"])) // 8
    for i in range(1, naxis + 1):
        size *= int(words[f"NAXIS{i}"])
    return size + int(words.get("PCOUNT", b"0"))


def convert(csv: Path, fmt: str, dest: Path) -> Path:
    """Return the CSV catalog written by astropy in ``fmt`` (``csv``: the file itself)."""
    if fmt == "csv":
        return csv
    from astropy.table import Table

    out = dest / f"{csv.stem}.{fmt}"
    Table.read(csv, format="ascii.csv").write(out, overwrite=True)
    return out


def run_cli(*args: object) -> int:
    """Run ``frsurvey`` in this process and return its exit code."""
    from frsurvey.cli import main

    try:
        return int(main([str(a) for a in args]))
    except SystemExit as exc:
        return int(exc.code or 0)


@contextlib.contextmanager
def interrupted_after(loads: int) -> Iterator[None]:
    """Make the ``loads``-th cutout read of the local image source raise KeyboardInterrupt (Ctrl-C)."""
    from frsurvey.sources.local import LocalFITSSource

    original = LocalFITSSource.load
    count = [0]

    def load(self, key):
        count[0] += 1
        if count[0] == loads:
            raise KeyboardInterrupt
        return original(self, key)

    LocalFITSSource.load = load
    try:
        yield
    finally:
        LocalFITSSource.load = original


def classify_all_ways(
    catalog: Path,
    images: Path,
    work: Path,
    chunk_size: int,
    interrupt_at: int,
    modes: tuple[str, ...] = MODES,
    in_formats: tuple[str, ...] = IN_FORMATS,
    out_formats: tuple[str, ...] = OUT_FORMATS,
) -> dict[str, bytes]:
    """Classify ``catalog`` every way in the matrix; return ``{"<in>/<mode>.<out>": normalised bytes}``.

    ``interrupt_at`` is the cutout read at which the ``resumed`` runs are
    interrupted (it must come after the first chunk is finished).
    """
    work.mkdir(parents=True, exist_ok=True)
    common = ["--images", images, "--threads", 1, "--no-progress", "-q"]
    results: dict[str, bytes] = {}
    for fin in in_formats:
        src = convert(catalog, fin, work)
        for mode in modes:
            for fout in out_formats:
                out = work / f"{fin}-{mode}.{fout}"
                chunks = ["--chunk-size", 0 if mode == "whole" else chunk_size]
                extra = ["--dask", "local:1"] if mode == "dask" else []
                if mode == "resumed":
                    with interrupted_after(interrupt_at):
                        rc = run_cli("classify", src, "--out", out, *chunks, *common)
                    if rc != 130 or out.exists():
                        raise AssertionError(f"{out.name}: the interrupted run exited {rc} (130 expected)")
                    journal = out.with_name(out.name + ".frsurvey-partial")
                    if not journal.is_dir():
                        raise AssertionError(f"{out.name}: the interrupted run left no journal")
                rc = run_cli("classify", src, "--out", out, *chunks, *extra, *common)
                if rc not in (0, 3):
                    raise AssertionError(f"{out.name}: frsurvey classify exited {rc}")
                results[f"{fin}/{mode}.{fout}"] = normalized(out, images)
    return results


def digests(results: dict[str, bytes]) -> dict[str, str]:
    """Return the sha256 of each normalised output."""
    return {k: hashlib.sha256(v).hexdigest() for k, v in sorted(results.items())}


def shared_catalog(shared: Path, work: Path) -> tuple[Path, Path]:
    """Return (catalog, images) of the 301 FIRST cutouts of ``shared`` (the catalog as it is)."""
    return shared / "first-cutouts" / "catalog.csv", shared / "first-cutouts" / "fits"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--shared", type=Path, help="also the 301 cutouts of this ../shared/data")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    modes = tuple(m for m in MODES if not (args.no_dask and m == "dask"))
    sets = [("demo", repo / "catalogs" / "demo" / "demo.csv", repo / "catalogs" / "demo" / "images", 7, 12)]
    if args.shared:
        cat, img = shared_catalog(args.shared, args.outdir)
        sets.append(("first-cutouts", cat, img, 64, 100))
    summary = {}
    for name, cat, img, chunk, at in sets:
        res = classify_all_ways(cat, img, args.outdir / name / "work", chunk, at, modes)
        for key, data in res.items():
            dest = args.outdir / name / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        summary[name] = digests(res)
        distinct = len(set(summary[name].values()))
        print(f"{name}: {len(res)} outputs, {distinct} distinct normalised files", file=sys.stderr)
    (args.outdir / "digests.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
