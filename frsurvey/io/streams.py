"""Chunked writers of each format: rows written (or spooled) a chunk at a time, the file assembled at the end."""

from __future__ import annotations

import pickle
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from .._compat.votable import split_tabledata
from .._utils import replace_atomically
from .fits import fits_layout, write_fits
from .formats import CatalogError
from .plain import coerce_like, plain_table, representative_rows
from .text import csv_text, ecsv_text
from .votable import write_votable

__all__ = ["STREAMS", "Stream"]


class Stream:
    """One output format's streaming: ``write`` chunks, then ``finish`` into a temporary file renamed onto path."""

    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        self.path = path
        where = scratch if scratch is not None else path.parent
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=where))

    def write(self, chunk: Table) -> None:
        raise NotImplementedError

    def finish(self, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _install(self, tmp: Path) -> None:
        replace_atomically(tmp, self.path)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


class _CsvStream(Stream):
    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        super().__init__(path, scratch)
        self.out = self.tmp_dir / "out.csv"
        self.f = open(self.out, "w", encoding="utf-8", newline="")  # closed later
        self.header: str | None = None

    def write(self, chunk: Table) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = csv_text(chunk)
            header = csv_text(chunk[:0])
            if self.header is None:
                self.header = header
                self.f.write(self.header)
        if header != self.header:
            raise CatalogError("internal error: a chunk's CSV header differs from the first chunk's")
        # the body: what follows the header's lines (quoted or not, see text_table)
        self.f.write(text.split("\n", header.count("\n"))[-1])

    def finish(self, meta: dict[str, Any]) -> None:
        self.f.close()
        self._install(self.out)

    def cleanup(self) -> None:
        self.f.close()
        super().cleanup()


class _EcsvStream(Stream):
    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        super().__init__(path, scratch)
        self.body = self.tmp_dir / "body.ecsv"
        self.f = open(self.body, "w", encoding="utf-8", newline="")  # closed later
        self.first: Table | None = None
        self.header: str | None = None

    def write(self, chunk: Table) -> None:
        header, body = ecsv_text(chunk)
        if self.first is None:
            self.first, self.header = chunk[:0].copy(), header
        elif header != self.header:
            raise CatalogError("cannot stream this table as ECSV: its column types change from chunk to chunk")
        self.f.write(body)

    def finish(self, meta: dict[str, Any]) -> None:
        self.f.close()
        header, _ = ecsv_text(self.first, {**self.first.meta, **meta})
        out = self.tmp_dir / "out.ecsv"
        with open(out, "w", encoding="utf-8", newline="") as dst, open(self.body, encoding="utf-8", newline="") as src:
            dst.write(header)
            shutil.copyfileobj(src, dst, 1 << 20)
        self._install(out)

    def cleanup(self) -> None:
        self.f.close()
        super().cleanup()


class _SpoolStream(Stream):
    """VOTable and FITS: the plain form of every chunk is spooled; the file is written at the end.

    Column types, null values and text widths (what the writers decide from
    the data) are decided from a few representative rows of every chunk, as
    they would be for the whole table; each chunk is then written under
    those decisions.
    """

    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        super().__init__(path, scratch)
        self.spool_path = self.tmp_dir / "spool.pickle"
        self.spool = open(self.spool_path, "wb")  # closed later
        self.samples: list[Table] = []
        self.meta: dict = {}
        self.nchunks = 0
        self.rows = 0

    def write(self, chunk: Table) -> None:
        if not self.nchunks:
            self.meta = dict(chunk.meta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = plain_table(chunk)
        self.samples.append(chunk[representative_rows(plain, chunk)])
        pickle.dump(plain, self.spool, protocol=pickle.HIGHEST_PROTOCOL)
        self.nchunks += 1
        self.rows += len(chunk)

    def _chunks(self) -> Iterator[Table]:
        with open(self.spool_path, "rb") as f:
            for _ in range(self.nchunks):
                yield pickle.load(f)  # our own spool

    def finish(self, meta: dict[str, Any]) -> None:
        self.spool.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = vstack(self.samples, metadata_conflicts="silent")
            sample.meta = {**self.meta, **meta}
            merged = plain_table(sample)
        out = self.tmp_dir / f"out{self.path.suffix or '.tmp'}"
        self.assemble(sample, merged, out)
        self._install(out)

    def assemble(self, sample: Table, merged: Table, out: Path) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        self.spool.close()
        super().cleanup()


class _VOTableStream(_SpoolStream):
    def assemble(self, sample: Table, merged: Table, out: Path) -> None:
        part = self.tmp_dir / "part.vot"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_votable(sample, str(part), plain=merged.copy(copy_data=True))
        head, _, foot = split_tabledata(part.read_text(encoding="utf-8"))
        with open(out, "w", encoding="utf-8") as dst:
            dst.write(head)
            for plain in self._chunks():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    write_votable(sample, str(part), plain=coerce_like(plain, merged))
                dst.write(split_tabledata(part.read_text(encoding="utf-8"))[1])
            dst.write(foot)


class _FitsStream(_SpoolStream):
    def assemble(self, sample: Table, merged: Table, out: Path) -> None:
        from astropy.io import fits

        part = self.tmp_dir / "part.fits"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_fits(sample, str(part), plain=merged.copy(copy_data=True))
        with fits.open(part) as hdul:
            header = hdul[1].header.copy()
            primary = part.read_bytes()[: hdul.fileinfo(1)["hdrLoc"]]
        layout = fits_layout(header)
        header["NAXIS2"] = self.rows
        out.write_bytes(primary)
        stream = fits.StreamingHDU(str(out), header)  # appends the table's header; pads the data when it is complete
        try:
            for plain in self._chunks():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    write_fits(sample, str(part), plain=coerce_like(plain, merged))
                with fits.open(part) as hdul:
                    h = hdul[1].header
                    if h.get("PCOUNT", 0):
                        raise CatalogError(
                            "cannot write this table as FITS in chunks: it has variable-length array columns; "
                            "write a VOTable or ECSV, or give --chunk-size 0 (in memory)"
                        )
                    if fits_layout(h) != layout:
                        raise CatalogError("internal error: a chunk's FITS row layout differs from the table's")
                    start, nbytes = hdul.fileinfo(1)["datLoc"], h["NAXIS1"] * h["NAXIS2"]
                with open(part, "rb") as src:
                    src.seek(start)
                    stream.write(np.frombuffer(src.read(nbytes), dtype=np.uint8))  # the rows' bytes, as written
        finally:
            stream.close()
        if not stream.writecomplete:
            raise CatalogError("internal error: the chunks hold fewer FITS rows than were written")


STREAMS = {"csv": _CsvStream, "ecsv": _EcsvStream, "votable": _VOTableStream, "fits": _FitsStream}
