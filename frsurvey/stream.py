"""Catalogs of any size: read, classify and write in chunks, in one process or on a Dask cluster.

:func:`classify_file` is what ``frsurvey classify`` runs. The catalog is
read ``chunk_size`` rows at a time (:class:`CatalogChunks`), each chunk is
classified (:class:`~frsurvey.engine.BatchClassifier`, which prepares each
distinct source once over the whole run) and written out
(:class:`ChunkWriter`), so memory stays flat however long the catalog is,
and the output is never held whole. The result is the table
:func:`~frsurvey.classify_table` and :func:`~frsurvey.catalog.write_catalog`
would give, value for value, and for a catalog of one chunk the very same
file.

- **In**: FITS tables are read by row ranges of the memory-mapped file; CSV
  and ECSV by records (quoted line breaks kept together), each chunk parsed
  by astropy with the file's header; CSV column types are those of the
  whole file (a first pass finds them, as astropy would reading it whole).
  VOTables are parsed whole by astropy (its parser reads whole tables) and
  then classified and written in chunks.
- **Out**: CSV and ECSV are written chunk by chunk (ECSV's header, which
  carries the provenance, is put in front at the end); VOTable and FITS
  chunks are spooled to disk and written at the end, once the column types,
  null values and text widths of the whole table are known, rows from one
  chunk at a time. Always to a temporary file beside the output, renamed
  when complete.
- **Dask** (``dask=``): chunks' positions go to ``dask.distributed``
  workers, each keeping one classifier (model and image source) for the
  run; results come back in catalog order.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import io
import itertools
import json
import logging
import os
import pickle
import re
import shutil
import stat
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack

from ._utils import __version__, atomic_write, replace_atomically, resolve_device
from .catalog import (
    CatalogError,
    _check_exists,
    _compression,
    _fits_hdu_table,
    _fits_table_choice,
    _is_record,
    _plain_table,
    _write_fits,
    _write_votable,
    check_compressed_size,
    find_position_columns,
    format_from_path,
    parse_positions,
    read_catalog,
    text_records,
    text_table,
    write_catalog,
)
from .classify import with_results
from .engine import (
    BatchClassifier,
    FailureLog,
    get_model,
    numeric_settings,
    provenance,
)
from .morphology import Thresholds
from .preprocess import PREPROCESSING, PREPROCESSING_VERSION
from .sources import ImageSource, make_source
from .status import REFUSED, Status, summarize_counts

try:  # POSIX: a journal is locked by the run using it
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "JOURNAL_SUFFIX",
    "CatalogChunks",
    "ChunkWriter",
    "ResumeJournal",
    "RunSummary",
    "classify_file",
    "journal_path",
]

log = logging.getLogger(__name__)

#: Rows per chunk of ``frsurvey classify`` (``--chunk-size``).
DEFAULT_CHUNK_SIZE = 50_000


# --------------------------------------------------------------------------------------------------
# Reading in chunks


class CatalogChunks:
    """A catalog file as a sequence of tables of at most ``chunk_size`` rows, in order.

    Each chunk has the columns, types, units, UCDs, descriptions and table
    meta that :func:`frsurvey.catalog.read_catalog` gives the whole table,
    and the values of its rows; at least one (maybe empty) chunk is given.

    Parameters
    ----------
    path : str or path-like
        A FITS binary table, VOTable, ECSV or CSV file.
    format : str, optional
        Force the format instead of reading it from the extension.
    table : int, optional
        Which table of a file holding several (from 0).
    chunk_size : int
        Rows per chunk.

    Raises
    ------
    CatalogError
        If the file is missing or unreadable (also while iterating).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        format: str | None = None,
        table: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.path = Path(path)
        self.format = format_from_path(self.path, format)
        self.table = table
        if chunk_size < 1:
            raise ValueError(f"chunk size must be at least 1, not {chunk_size}")
        self.chunk_size = int(chunk_size)
        _check_exists(self.path)
        check_compressed_size(self.path)
        if self.format in ("csv", "ecsv") and _compression(self.path):
            raise CatalogError(f"{str(self.path)!r} is a compressed {self.format} file: decompress it first")
        #: Rows of the catalog, once known: after the first chunk (CSV, FITS, VOTable) or :meth:`count_rows`.
        self.rows: int | None = None

    def count_rows(self) -> int:
        """Return (and remember in :attr:`rows`) the catalog's row count, reading the file if need be."""
        if self.rows is None:
            if self.format in ("csv", "ecsv"):
                _, chunks = self._records()
                self.rows = sum(sum(1 for _, rec in batch if rec.strip()) for batch in chunks)
            else:
                self.rows = sum(len(chunk) for chunk in self)
        return self.rows

    def __iter__(self) -> Iterator[Table]:
        chunks = {"fits": self._fits, "csv": self._csv, "ecsv": self._ecsv}.get(self.format, self._whole)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield from chunks()
        except CatalogError:
            raise
        except MemoryError:
            raise CatalogError(
                f"{str(self.path)!r}: a chunk of {self.chunk_size} rows does not fit in memory: give a smaller --chunk-size"
            ) from None
        except (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read {str(self.path)!r} as {self.format}: {exc}") from exc

    # -------------------------------------------------------------- VOTable: astropy parses it whole

    def _whole(self) -> Iterator[Table]:
        table = read_catalog(self.path, format=self.format, table=self.table)
        self.rows = len(table)
        for start in range(0, max(len(table), 1), self.chunk_size):
            yield table[start : start + self.chunk_size]

    # -------------------------------------------------------------- FITS: row ranges of the mapped file

    def _fits(self) -> Iterator[Table]:
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            hdu_no, note = _fits_table_choice(hdul, self.path, self.table)
            nrows = int(hdul[hdu_no].header.get("NAXIS2", 0))
            self.rows = nrows
            whole = _fits_hdu_table(hdul[hdu_no]) if nrows <= self.chunk_size else None
        if whole is not None:  # one chunk: exactly what read_catalog reads
            if note:
                whole.meta["frsurvey_table_note"] = note
            yield whole
            return
        for start in range(0, nrows, self.chunk_size):
            # opened again for each chunk: only this chunk's pages of the file are ever mapped in
            with fits.open(self.path, memmap=True) as hdul:
                hdu = hdul[hdu_no]
                part = hdu.data[start : start + self.chunk_size]
                cls = fits.BinTableHDU if isinstance(hdu, fits.BinTableHDU) else fits.TableHDU
                chunk = _fits_hdu_table(cls(data=part, header=hdu.header))
                chunk = Table(chunk, copy=True)  # nothing may point into the mapped file once it is closed
            if note:
                chunk.meta["frsurvey_table_note"] = note
            yield chunk

    # -------------------------------------------------------------- CSV and ECSV: records of text

    def _records(self) -> tuple[str, Iterator[list[tuple[int, str]]]]:
        """Return the header and an iterator over lists of at most chunk_size records ``(line, text)``.

        The file is read with universal newlines, as astropy reads a whole
        file: ``\\r\\n``, ``\\r`` and ``\\n`` are all one line break, so a chunk's
        values are the whole file's.
        """
        f = open(self.path, encoding="utf-8", newline=None)  # closed later
        header: list[str] = []
        records = text_records(f, " " if self.format == "ecsv" else ",")
        for _, line in records:  # ECSV's commented header, then the line of column names
            if self.format == "ecsv" and line.startswith("#"):
                header.append(line)
                continue
            if not line.strip():
                continue
            header.append(line)
            break
        if header and not header[-1].endswith("\n"):
            header[-1] += "\n"

        def chunks() -> Iterator[list[tuple[int, str]]]:
            with f:
                batch: list[tuple[int, str]] = []
                rows = 0
                for rec in records:
                    batch.append(rec)
                    if _is_record(rec[1], self.format):
                        rows += 1
                        if rows == self.chunk_size:
                            yield batch
                            batch, rows = [], 0
                if rows:
                    yield batch

        return "".join(header), chunks()

    def _read(self, header: str, batch: list[tuple[int, str]], fmt: str, **kwargs: Any) -> Table:
        """Parse one chunk's records; refuse it unless astropy read one row per record."""
        t = Table.read(_text(header, batch), format=fmt, **kwargs)
        lines = [line for line, rec in batch if _is_record(rec, self.format)]
        if len(t) != len(lines):
            stopped = f"; the reader stopped at line {lines[len(t)]}" if len(t) < len(lines) else ""
            raise CatalogError(
                f"{str(self.path)!r}: astropy read {len(t)} rows from lines {lines[0]}-{lines[-1]}, which hold "
                f"{len(lines)} records{stopped} (an unbalanced quote or a malformed line?): refusing to lose rows"
            )
        return t

    def _ecsv(self) -> Iterator[Table]:
        header, chunks = self._records()
        first, second = next(chunks, None), next(chunks, None)
        if second is None:  # one chunk: exactly what read_catalog reads
            chunks.close()
            whole = read_catalog(self.path, format="ecsv")
            self.rows = len(whole)
            yield whole
            return
        for batch in itertools.chain([first, second], chunks):
            yield self._read(header, batch, "ascii.ecsv")

    def _csv(self) -> Iterator[Table]:
        # Types are inferred chunk by chunk; the whole file's type of a column is the widest of
        # them (int < float < text), as astropy finds it reading the file whole.
        header, chunks = self._records()
        first, second = next(chunks, None), next(chunks, None)
        if second is None:  # one chunk: exactly what read_catalog reads
            chunks.close()
            whole = read_catalog(self.path, format="csv")
            self.rows = len(whole)
            yield whole
            return
        kinds: list[dict[str, str]] = []
        rows = 0
        for batch in itertools.chain([first, second], chunks):
            t = self._read(header, batch, "ascii.csv")
            kinds.append({name: t[name].dtype.kind for name in t.colnames})
            rows += len(t)
        self.rows = rows
        merged = {name: _widest([k[name] for k in kinds]) for name in kinds[0]}
        _, chunks = self._records()
        for batch, chunk_kinds in zip(chunks, kinds):
            as_text = [n for n, k in merged.items() if k == "U" and chunk_kinds[n] != "U"]
            if as_text:
                from astropy.io import ascii

                converters = {n: [ascii.convert_numpy(str)] for n in as_text}
                t = self._read(header, batch, "ascii.csv", converters=converters)
            else:
                t = self._read(header, batch, "ascii.csv")
            for n, k in merged.items():
                if k == "f" and t[n].dtype.kind != "f":
                    t.replace_column(n, t[n].astype(np.float64))
            yield t


def _text(header: str, batch: list[tuple[int, str]]) -> str:
    return header + "".join(rec for _, rec in batch)


def _widest(kinds: list[str]) -> str:
    if all(k == kinds[0] for k in kinds):
        return kinds[0]
    if all(k in "iuf" for k in kinds):
        return "f"
    return "U"


# --------------------------------------------------------------------------------------------------
# Writing in chunks


class ChunkWriter:
    """Write a catalog chunk by chunk; :meth:`close` puts the finished file in place.

    The output is what :func:`frsurvey.catalog.write_catalog` writes for the
    whole table: a single chunk is written by it; more chunks are streamed
    (CSV, ECSV) or spooled and assembled (VOTable, FITS), one chunk in memory
    at a time, into a temporary file beside ``path`` that is renamed when
    complete.

    Parameters
    ----------
    path : str or path-like
        The output file; its format comes from the extension unless ``format``.
    format : str, optional
        ``votable``, ``fits``, ``ecsv`` or ``csv``.
    scratch : str or path-like, optional
        Where the temporary files go (default: beside ``path``); on the same
        file system as ``path``, which the finished file is renamed onto.
    """

    def __init__(
        self, path: str | os.PathLike, format: str | None = None, scratch: str | os.PathLike | None = None
    ) -> None:
        self.path = Path(path)
        self.format = format_from_path(self.path, format)
        self.scratch = Path(scratch) if scratch is not None else None
        self.rows = 0
        self._first: Table | None = None
        self._stream: _Stream | None = None

    def write(self, chunk: Table) -> None:
        """Add the next rows (a table with the same columns as the ones before)."""
        self.rows += len(chunk)
        if self._first is None and self._stream is None:
            self._first = chunk
            return
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = _STREAMS[self.format](self.path, self.scratch)
            self._stream.write(self._first)
            self._first = None
        if len(chunk):
            self._stream.write(chunk)

    def close(self, meta: dict[str, Any] | None = None) -> Path:
        """Finish the file, with ``meta`` (provenance) added to the table's meta; return its path."""
        if self._stream is None:
            table = self._first if self._first is not None else Table()
            table.meta.update(meta or {})
            self._first = None
            return write_catalog(table, self.path, format=self.format)
        try:
            self._stream.finish(meta or {})
        finally:
            self._stream.cleanup()
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the output path is not touched."""
        self._first = None
        if self._stream is not None:
            self._stream.cleanup()


class _Stream:
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


def _csv_text(table: Table) -> str:
    return text_table(table, "csv")


class _CsvStream(_Stream):
    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        super().__init__(path, scratch)
        self.out = self.tmp_dir / "out.csv"
        self.f = open(self.out, "w", encoding="utf-8", newline="")  # closed later
        self.header: str | None = None

    def write(self, chunk: Table) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = _csv_text(chunk)
            header = _csv_text(chunk[:0])
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


def _ecsv_text(table: Table, meta: dict | None = None) -> tuple[str, str]:
    """Return (header, body) of ``table`` as ECSV, with ``meta`` as its table meta (default none)."""
    work = Table(table, copy=False)
    work.meta = dict(meta or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = text_table(work, "ecsv")
        names = text_table(work[:0], "ecsv").rstrip("\n").rsplit("\n", 1)[-1]  # never quoted: no values
    pos = 0
    while text.startswith("#", pos):
        pos = text.index("\n", pos) + 1
    comments = text[:pos]
    pos = text.index("\n", pos) + 1  # the line of column names (quoted where the values are)
    return comments + names + "\n", text[pos:]


class _EcsvStream(_Stream):
    def __init__(self, path: Path, scratch: Path | None = None) -> None:
        super().__init__(path, scratch)
        self.body = self.tmp_dir / "body.ecsv"
        self.f = open(self.body, "w", encoding="utf-8", newline="")  # closed later
        self.first: Table | None = None
        self.header: str | None = None

    def write(self, chunk: Table) -> None:
        header, body = _ecsv_text(chunk)
        if self.first is None:
            self.first, self.header = chunk[:0].copy(), header
        elif header != self.header:
            raise CatalogError("cannot stream this table as ECSV: its column types change from chunk to chunk")
        self.f.write(body)

    def finish(self, meta: dict[str, Any]) -> None:
        self.f.close()
        header, _ = _ecsv_text(self.first, {**self.first.meta, **meta})
        out = self.tmp_dir / "out.ecsv"
        with open(out, "w", encoding="utf-8", newline="") as dst, open(self.body, encoding="utf-8", newline="") as src:
            dst.write(header)
            shutil.copyfileobj(src, dst, 1 << 20)
        self._install(out)

    def cleanup(self) -> None:
        self.f.close()
        super().cleanup()


class _SpoolStream(_Stream):
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

    def write(self, chunk: Table) -> None:
        if not self.nchunks:
            self.meta = dict(chunk.meta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = _plain_table(chunk)
        self.samples.append(chunk[_representative_rows(plain, chunk)])
        pickle.dump(plain, self.spool, protocol=pickle.HIGHEST_PROTOCOL)
        self.nchunks += 1

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
            merged = _plain_table(sample)
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
            _write_votable(sample, str(part), plain=merged.copy(copy_data=True))
        head, _, foot = _split_tabledata(part.read_text(encoding="utf-8"))
        with open(out, "w", encoding="utf-8") as dst:
            dst.write(head)
            for plain in self._chunks():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _write_votable(sample, str(part), plain=_coerce(plain, merged))
                dst.write(_split_tabledata(part.read_text(encoding="utf-8"))[1])
            dst.write(foot)


def _split_tabledata(text: str) -> tuple[str, str, str]:
    """Return (everything up to the TABLEDATA rows, the rows, everything after them) of a VOTable's text."""
    start = text.index("<TABLEDATA>")
    start = text.index("\n", start) + 1
    end = text.rindex("</TABLEDATA>")
    end = text.rindex("\n", 0, end) + 1
    return text[:start], text[start:end], text[end:]


#: FITS header keywords that describe the row layout; every chunk must have the same.
_LAYOUT = ("NAXIS1", "TFIELDS", "PCOUNT", "GCOUNT")
_COLUMN_LAYOUT = ("TTYPE", "TFORM", "TDIM", "TNULL", "TSCAL", "TZERO")


class _FitsStream(_SpoolStream):
    def assemble(self, sample: Table, merged: Table, out: Path) -> None:
        from astropy.io import fits

        part = self.tmp_dir / "part.fits"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write_fits(sample, str(part), plain=merged.copy(copy_data=True))
        with fits.open(part) as hdul:
            header = hdul[1].header.copy()
            primary = part.read_bytes()[: hdul.fileinfo(1)["hdrLoc"]]
        layout = _fits_layout(header)
        total = 0
        data = self.tmp_dir / "data.bin"
        with open(data, "wb") as dst:
            for plain in self._chunks():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _write_fits(sample, str(part), plain=_coerce(plain, merged))
                with fits.open(part) as hdul:
                    h = hdul[1].header
                    if h.get("PCOUNT", 0):
                        raise CatalogError(
                            "cannot write this table as FITS in chunks: it has variable-length array columns; "
                            "write a VOTable or ECSV, or give --chunk-size 0 (in memory)"
                        )
                    if _fits_layout(h) != layout:
                        raise CatalogError("internal error: a chunk's FITS row layout differs from the table's")
                    start, nbytes = hdul.fileinfo(1)["datLoc"], h["NAXIS1"] * h["NAXIS2"]
                    total += h["NAXIS2"]
                with open(part, "rb") as src:
                    src.seek(start)
                    shutil.copyfileobj(_Limited(src, nbytes), dst, 1 << 20)
        header["NAXIS2"] = total
        with open(out, "wb") as dst, open(data, "rb") as src:
            dst.write(primary)
            dst.write(header.tostring().encode("ascii"))
            shutil.copyfileobj(src, dst, 1 << 20)
            size = src.tell()
            dst.write(b"\0" * (-size % 2880))


def _fits_layout(header) -> tuple:
    n = int(header.get("TFIELDS", 0))
    return tuple(header.get(k) for k in _LAYOUT) + tuple(
        header.get(f"{k}{i}") for i in range(1, n + 1) for k in _COLUMN_LAYOUT
    )


class _Limited(io.RawIOBase):
    """The next ``n`` bytes of a file."""

    def __init__(self, f, n: int) -> None:
        self.f, self.left = f, n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        k = min(len(b), self.left)
        data = self.f.read(k)
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


_STREAMS = {"csv": _CsvStream, "ecsv": _EcsvStream, "votable": _VOTableStream, "fits": _FitsStream}

#: Integer values a null value may be chosen from, besides a column's own (see frsurvey.catalog._free_integer).
_NULL_CANDIDATES = sorted(
    {-1, 0}
    | {int(np.iinfo(t).min) for t in (np.int8, np.int16, np.int32, np.int64)}
    | {int(np.iinfo(t).max) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)}
)


def _representative_rows(plain: Table, raw: Table) -> np.ndarray:
    """Return rows of a chunk that show everything the writers decide from a column's values.

    A blank cell; for integers the smallest and largest value and any value
    a null value might be chosen from (and the input's own null value); for
    text the longest value and one that is not ASCII; for variable-length
    arrays one cell of each element type; else the first value.
    """
    rows: set[int] = {0} if len(plain) else set()
    for name in plain.colnames:
        col = plain[name]
        n = len(col)
        if not n:
            continue
        data = np.ma.getdata(col)
        mask = np.ma.getmaskarray(col).reshape(n, -1)
        blank, full = mask.any(axis=1), mask.all(axis=1)
        if blank.any():
            rows.add(int(np.argmax(blank)))
        if full.any():
            rows.add(int(np.argmax(full)))
        good = ~mask
        kind = data.dtype.kind
        if kind in "iu":
            values = data.reshape(n, -1)
            if good.any():
                flat = np.where(good, values, values[good][0])
                rows.add(int(np.argmax(flat.max(axis=1))))
                rows.add(int(np.argmin(flat.min(axis=1))))
            declared = ((raw[name].info.meta or {}).get("values") or {}).get("null") if name in raw.colnames else None
            wanted = _NULL_CANDIDATES + ([int(declared)] if declared is not None else [])
            hit = np.isin(values, wanted) & good
            for value in np.unique(values[hit]):
                rows.add(int(np.argmax(((values == value) & good).any(axis=1))))
        elif kind == "U" and data.ndim == 1:
            lengths = np.char.str_len(data)
            rows.add(int(np.argmax(np.where(good[:, 0], lengths, -1))))
            wide = np.char.str_len(np.char.encode(data, "utf-8")) != lengths
            if wide.any():
                rows.add(int(np.argmax(wide)))
        elif kind == "O":
            seen: set = set()
            for i, item in enumerate(data):
                key = getattr(item, "dtype", type(item))
                if key not in seen:
                    seen.add(key)
                    rows.add(i)
        elif good.any():
            rows.add(int(np.argmax(good.any(axis=1))))
    return np.array(sorted(rows), dtype=np.intp)


def _coerce(plain: Table, merged: Table) -> Table:
    """Return a chunk's plain table with the types, masks and null values decided for the whole table."""
    out = Table(meta=dict(plain.meta))
    for name in merged.colnames:
        m, c = merged[name], plain[name]
        if m.dtype.kind == "O":
            item_type = next((x.dtype for x in m if isinstance(x, np.ndarray)), None)
            cells = np.empty(len(c), dtype=object)
            for i, x in enumerate(c):
                cells[i] = x.astype(item_type) if item_type is not None and isinstance(x, np.ndarray) else x
            new = Column(cells, dtype=object)
        else:
            data = np.asarray(np.ma.getdata(c), dtype=m.dtype)
            if isinstance(m, MaskedColumn):
                new = MaskedColumn(data, mask=np.ma.getmaskarray(c))
            else:
                new = Column(data)
            null = m.meta.get("null")
            if null is not None:
                good = ~np.ma.getmaskarray(c)
                if np.any(data[good] == null):
                    raise CatalogError(
                        f"cannot write column {name!r} in chunks: its values leave no null value free; "
                        "give --chunk-size 0 (in memory)"
                    )
                if isinstance(new, MaskedColumn):
                    new.fill_value = null
        new.name = name
        new.unit = m.unit
        new.description = m.description
        new.meta.update(m.meta)
        out.add_column(new)
    return out


# --------------------------------------------------------------------------------------------------
# Resume journals

#: The journal of an unfinished run is this directory beside the output: ``labeled.fits.frsurvey-partial``.
JOURNAL_SUFFIX = ".frsurvey-partial"
#: Version of the journal layout; a journal of another version is not used.
JOURNAL_FORMAT = 2
_MANIFEST = "manifest.json"
_LOCK = "lock"
_CHUNK = re.compile(r"^chunk-(\d{7})\.npz$")


def journal_path(out: str | os.PathLike) -> Path:
    """Return the resume journal directory of an output file: ``<out>.frsurvey-partial`` beside it."""
    out = Path(out)
    return out.with_name(out.name + JOURNAL_SUFFIX)


def catalog_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Return what identifies a catalog file's content: its size and the sha256 of its bytes."""
    from .models import file_sha256

    path = Path(path)
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def model_fingerprint(model: Any) -> str:
    """Return the sha256 of a model's checkpoint file, or of its weights, temperature and settings when unsaved."""
    sha = getattr(model, "sha256", None)
    if sha:
        return str(sha)
    import hashlib
    import json

    from .models import weights_sha256

    extra = json.dumps(
        {"temperature": float(model.temperature), "tta": bool(model.tta), "card": model.card},
        sort_keys=True,
        default=str,
    )
    return "unsaved:" + hashlib.sha256((weights_sha256(model.net.state_dict()) + extra).encode()).hexdigest()


class ResumeJournal:
    """What an unfinished :func:`classify_file` run has done, kept beside its output so that it can resume.

    The journal is a directory, ``<out>.frsurvey-partial``, holding

    - ``manifest.json``: what the run's results depend on: the catalog's
      size and sha256, the chunk size, table and position columns, the
      model's sha256, the preprocessing, the image source's fingerprint and
      the numeric settings (device type, precision, views, pass size)
      and the thresholds of the statuses ``unresolved``, ``too_large`` and
      ``out_of_domain``, with the frsurvey version;
    - ``chunk-NNNNNNN.npz``, one per finished chunk: its rows' statuses,
      reasons, probabilities, spreads, measurements and FR_OOD (plain arrays, read without
      pickle), each written to a temporary name, flushed to disk and renamed,
      so a chunk file is whole or absent;
    - ``lock``: held (``flock``) by the run using the journal: a second run
      writing the same output is refused.

    A run finds the journal of an earlier run of the same command, and takes
    the results of its finished chunks instead of classifying them again; a
    journal whose manifest differs is not used (the log says why) and is
    replaced. The finished run assembles its output from every chunk and
    deletes the journal.

    Parameters
    ----------
    out : str or path-like
        The run's output file.
    manifest : dict
        What the run's results depend on (JSON-serialisable).
    """

    def __init__(self, out: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.out = Path(out)
        self.path = journal_path(self.out)
        self.manifest = {"journal": JOURNAL_FORMAT, **manifest}
        #: Chunks finished by an earlier run (number -> file), found by :meth:`open`.
        self.finished: dict[int, Path] = {}
        self._lock_file = None
        self._created = False

    # ------------------------------------------------------------------ opening

    def open(self, restart: bool = False) -> None:
        """Lock the journal, decide whether the earlier run's chunks are used, and write this run's manifest.

        Raises
        ------
        frsurvey.catalog.CatalogError
            If another run holds the journal (is writing the same output).
        """
        self._make_dir()
        self._lock()
        old = self._read_manifest()
        chunks = self._chunk_files()
        if old is not None or chunks:
            if restart:
                log.warning("--restart: not using the journal of an earlier run in %s", self.path)
            elif old != self.manifest:
                log.warning("not resuming from %s: %s; starting over", self.path, self._why_not(old))
            else:
                self.finished = chunks
        self._clear(keep=set(self.finished.values()))
        atomic_write(
            self.path / _MANIFEST,
            json.dumps(self.manifest, indent=1, sort_keys=True).encode(),
            durable=True,
            mode=0o600,
        )
        if self.finished:
            log.warning(
                "resuming from %s: %d chunk(s) finished by an earlier run are not classified again",
                self.path,
                len(self.finished),
            )

    def _make_dir(self) -> bool:
        """Create the journal directory (if need be) and check it is safe to use; return whether it was created.

        Raises
        ------
        frsurvey.catalog.CatalogError
            If the journal path is a symbolic link, not a directory, or a
            directory of another user: frsurvey never writes or deletes
            through it.
        """
        created = False
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o700)
                created = True
            except FileExistsError:
                pass
            check_private_dir(self.path, f"the journal of {str(self.out)!r}")
        except OSError as exc:
            raise CatalogError(f"cannot write beside the output {str(self.out)!r}: {exc}") from exc
        return created

    def acquire(self) -> None:
        """Lock the journal directory without using it (a run that keeps no journal, ``--chunk-size 0``).

        The directory is created if need be (and deleted by :meth:`discard`).

        Raises
        ------
        frsurvey.catalog.CatalogError
            If another run holds the journal, or it is not safe to use.
        """
        self._created = self._make_dir()
        try:
            self._lock()
        except BaseException:
            if self._created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def _lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path / _LOCK, flags, 0o600)
        except OSError as exc:  # ELOOP: the lock file is a symbolic link
            raise CatalogError(
                f"cannot use {str(self.path / _LOCK)!r} as the lock of {str(self.out)!r}: {exc.strerror or exc} "
                "(a symbolic link or not a regular file? frsurvey never writes through one): remove it"
            ) from None
        f = os.fdopen(fd, "r+")  # closed by release()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            f.close()
            raise CatalogError(f"{str(self.path / _LOCK)!r} is not a regular file: remove it")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip()
                f.close()
                raise CatalogError(
                    f"another frsurvey run{f' (pid {holder})' if holder else ''} is writing {str(self.out)!r} "
                    f"(its journal {str(self.path)!r} is locked): wait for it, or choose another --out"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _read_manifest(self) -> dict | None:
        try:
            if (self.path / _MANIFEST).is_symlink():  # never read through a link
                return None
            value = json.loads((self.path / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _why_not(self, old: dict | None) -> str:
        if old is None:
            return "its manifest is missing or unreadable"
        if old.get("journal") != JOURNAL_FORMAT:
            return f"it was written in journal format {old.get('journal')}, not {JOURNAL_FORMAT}"
        names = {
            "catalog": "the catalog file changed",
            "model": "another model (its sha256 differs)",
            "source": "the image source changed (other images, directory, service, cache or --offline)",
            "frsurvey": "another frsurvey version",
        }
        why = []
        for key in sorted(set(old) | set(self.manifest)):
            a, b = old.get(key), self.manifest.get(key)
            if a == b:
                continue
            if key in names:
                why.append(names[key])
            elif isinstance(a, dict) and isinstance(b, dict):
                why += [
                    f"{key} {k}: {a.get(k)!r} then, {b.get(k)!r} now"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
            else:
                why.append(f"{key}: {a!r} then, {b!r} now")
        return "; ".join(why) or "its manifest differs"

    def _chunk_files(self) -> dict[int, Path]:
        out = {}
        for p in self.path.iterdir():
            m = _CHUNK.match(p.name)
            if m and stat.S_ISREG(p.lstat().st_mode):  # never read through a symbolic link
                out[int(m.group(1))] = p
        return out

    def _clear(self, keep: set[Path]) -> None:
        """Remove everything but the lock and ``keep``: other chunks, temporary files, spools of killed runs."""
        for p in self.path.iterdir():
            if p.name == _LOCK or p in keep:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ chunks

    def load(self, k: int, rows: int) -> Any:
        """Return the results (:class:`~frsurvey.engine.RowResults`) of finished chunk ``k`` of ``rows`` rows, or None.

        A chunk file that cannot be read or does not fit is logged and
        forgotten (the chunk is classified again).
        """
        from .engine import RowResults
        from .status import DESCRIPTIONS

        path = self.finished.get(k)
        if path is None:
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                n = int(z["rows"])
                status = z["status"][z["status_index"]].astype(object)
                message = z["message"][z["message_index"]].astype(object)
                p_fri, spread = z["p_fri"].astype(np.float64), z["spread"].astype(np.float64)
                measures, ood = z["measures"].astype(np.float64), z["ood"].astype(np.float64)
            if n != rows or not (len(status) == len(message) == len(p_fri) == len(spread) == len(measures) == rows):
                raise ValueError(f"it holds {n} rows, the chunk has {rows}")
            if not set(status) <= set(DESCRIPTIONS):
                raise ValueError(f"unknown statuses {sorted(set(status) - set(DESCRIPTIONS))}")
            _check_chunk_values(status, p_fri, spread)
        except Exception as exc:  # a damaged file: the chunk is classified again
            log.warning("journal file %s cannot be used (%s): classifying chunk %d again", path, exc, k)
            self.finished.pop(k, None)
            path.unlink(missing_ok=True)
            return None
        return RowResults(status, message, p_fri, spread, None, measures, ood)

    def save(self, k: int, res: Any) -> None:
        """Record the results of chunk ``k`` (whole, flushed to disk, or not at all)."""
        status_values, status_index = np.unique(np.asarray(res.status, dtype=str), return_inverse=True)
        message_values, message_index = np.unique(np.asarray(res.message, dtype=str), return_inverse=True)
        buf = io.BytesIO()
        np.savez(
            buf,
            rows=np.int64(len(res.status)),
            status=status_values,
            status_index=status_index.astype(np.int32).reshape(-1),
            message=message_values,
            message_index=message_index.astype(np.int32).reshape(-1),
            p_fri=np.asarray(res.p_fri, dtype=np.float64),
            spread=np.asarray(res.spread, dtype=np.float64),
            measures=np.asarray(res.measures, dtype=np.float64),
            ood=np.asarray(res.ood, dtype=np.float64),
        )
        path = self.path / f"chunk-{k:07d}.npz"
        atomic_write(path, buf.getvalue(), durable=True, mode=0o600)
        self.finished[k] = path

    def counts(self) -> tuple[int, dict[str, int]]:
        """Return the rows of the finished chunks on disk, and how many have each status."""
        rows, counts = 0, collections.Counter()
        for path in self._chunk_files().values():
            try:
                with np.load(path, allow_pickle=False) as z:
                    values, index = z["status"], z["status_index"]
                    counts.update(dict(zip(values.tolist(), np.bincount(index, minlength=len(values)).tolist())))
                    rows += int(z["rows"])
            except Exception:  # a damaged file: not finished
                continue
        return rows, {s: n for s, n in counts.items() if n}

    # ------------------------------------------------------------------ closing

    def release(self) -> None:
        """Unlock the journal and leave it for a later run (after an interruption)."""
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def discard(self) -> None:
        """Delete the journal (the output is complete, or there is nothing worth resuming)."""
        (self.path / _MANIFEST).unlink(missing_ok=True)  # first: chunk files without it are never used
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

    @classmethod
    def discard_stale(cls, out: str | os.PathLike) -> None:
        """Delete the journal of an earlier run of ``out`` unless a run holds it (for runs that keep none)."""
        path = journal_path(out)
        if path.is_symlink() or not path.is_dir():
            return
        journal = cls(out, {})
        try:
            journal._make_dir()
            journal._lock()
        except CatalogError:
            return
        log.info("deleting the journal of an earlier, unfinished run: %s", path)
        journal.discard()


def check_private_dir(path: Path, what: str) -> None:
    """Raise :class:`~frsurvey.catalog.CatalogError` unless ``path`` is a real directory of this user.

    A symbolic link (even to a directory) is refused, as is a directory owned
    by another user: frsurvey deletes and writes files in its journal, and
    must never do so in a directory someone else chose.
    """
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise CatalogError(
            f"{what} {str(path)!r} is a symbolic link: frsurvey never writes or deletes through one; "
            "remove the link (or choose another --out)"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise CatalogError(f"{what} {str(path)!r} exists and is not a directory: remove it (or choose another --out)")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CatalogError(
            f"{what} {str(path)!r} belongs to another user (uid {st.st_uid}): not using it; "
            "remove it (or choose another --out)"
        )


def _check_chunk_values(status: np.ndarray, p_fri: np.ndarray, spread: np.ndarray) -> None:
    """Raise ValueError unless a journal chunk's values are ones a run can give.

    Classified rows, and rows the model saw but that were refused a label
    (``unresolved``, ``too_large``, ``out_of_domain``: their probabilities are
    written): a finite probability in [0, 1] and a spread in [0, 0.5] or NaN
    (one view, or no spread); other rows: NaN for both.
    """
    ok = np.asarray([s == Status.OK or s in REFUSED for s in status], dtype=bool)
    with np.errstate(invalid="ignore"):
        good_p = np.isfinite(p_fri) & (p_fri >= 0.0) & (p_fri <= 1.0)
        good_sd = np.isnan(spread) | ((spread >= 0.0) & (spread <= 0.5))
    if not (good_p[ok].all() and good_sd[ok].all()):
        raise ValueError("a classified row has a probability outside [0, 1] or a spread outside [0, 0.5]")
    if not (np.isnan(p_fri[~ok]).all() and np.isnan(spread[~ok]).all()):
        raise ValueError("a row that was not classified has a probability")


# --------------------------------------------------------------------------------------------------
# Classifying a file


@dataclass
class RunSummary:
    """What :func:`classify_file` did.

    Attributes
    ----------
    path : Path
        The output file.
    rows : int
        Rows read and written.
    counts : dict
        Rows per ``FR_STATUS``.
    chunks : int
        Chunks the catalog was read in.
    prepared, remembered : int
        Source keys cut and prepared, and those answered from earlier chunks.
    resumed, resumed_rows : int
        Chunks, and their rows, whose results came from the journal of an earlier, interrupted run.
    journal : Path or None
        The resume journal of the run (deleted when the run finished).
    """

    path: Path
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    prepared: int = 0
    remembered: int = 0
    resumed: int = 0
    resumed_rows: int = 0
    journal: Path | None = None

    @property
    def summary(self) -> str:
        """The one-line count of statuses, e.g. ``301 rows: 299 ok, 2 no_image``."""
        return summarize_counts(self.counts)

    @property
    def all_ok(self) -> bool:
        """True when every row was classified."""
        return set(self.counts) <= {Status.OK}


def classify_file(
    catalog: str | os.PathLike,
    out: str | os.PathLike,
    images: str | os.PathLike | None = None,
    model: Any = None,
    *,
    source: ImageSource | str | None = None,
    source_options: dict[str, Any] | None = None,
    ra_col: str | None = None,
    dec_col: str | None = None,
    format: str | None = None,
    table_index: int | None = None,
    out_format: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    tta: bool | None = None,
    amp: bool | None = None,
    progress: bool = False,
    gallery: str | os.PathLike | None = None,
    gallery_max: int = 48,
    dask: str | Any | None = None,
    resume: bool = True,
    restart: bool = False,
    thresholds: Thresholds | None = None,
) -> RunSummary:
    """Classify a catalog file into an output file, ``chunk_size`` rows at a time, resumably.

    The output is the table :func:`frsurvey.classify_table` returns for the
    whole catalog, written as :func:`frsurvey.catalog.write_catalog` writes
    it (for one chunk, exactly that), but memory holds one chunk at a time.
    Each distinct source is prepared once over the whole run (up to
    :data:`frsurvey.engine.MEMORY` of them are remembered).

    Each finished chunk's results go to a :class:`ResumeJournal` beside the
    output (``<out>.frsurvey-partial``). A run that is interrupted (Ctrl-C,
    SIGTERM, SIGKILL, a crash of the machine, an OS error such as a full
    disk) and started again with the same arguments takes the finished
    chunks from there and classifies only the rest; its output is the one
    an uninterrupted run writes, row for row and value for value (only the
    date in ``FRS_DATE`` is that of the run that finished). The journal is
    deleted when the output is in place, and also when the run fails for a
    reason the same command would meet again (a bad catalog, a bug).

    Parameters
    ----------
    catalog, out : str or path-like
        Input and output catalog files (formats from the extensions unless
        ``format`` / ``out_format``).
    images, model, source, source_options, ra_col, dec_col, table_index, batch_size, device, workers, tta, amp
        As for :func:`frsurvey.classify_table`.
    thresholds : frsurvey.morphology.Thresholds, optional
        As for :func:`frsurvey.classify_table`; part of the journal's manifest.
    chunk_size : int
        Rows read, classified and written at a time; 0: the whole catalog
        at once, in memory (:func:`~frsurvey.classify_table`), without a journal.
    progress : bool or str
        Progress on stderr: True or ``"bar"``, a bar (rows, with an ETA when
        the row count is known); ``"lines"``, a line of text every minute
        (for runs without a terminal).
    gallery, gallery_max : optional
        Draw the first rows of the first chunk (see :func:`~frsurvey.classify_table`);
        not with ``dask``.
    dask : str or distributed.Client, optional
        Classify the chunks on a Dask cluster: a scheduler address
        (``tcp://host:8786``), ``local`` or ``local:N`` (a LocalCluster of N
        worker processes, default one per core), or a ``Client``. The images
        (and a model given as a path) must be readable by the workers.
    resume : bool
        Keep a journal and use an earlier run's (default). False: neither.
    restart : bool
        Do not use an earlier run's journal; start over.

    Returns
    -------
    RunSummary
        The output path, row count and status counts.

    Raises
    ------
    frsurvey.catalog.CatalogError
        If the catalog cannot be read or has no position columns, the output
        cannot be written, or another run is writing the same output.
    frsurvey.models.CheckpointError
        If the model cannot be loaded.
    KeyboardInterrupt
        On Ctrl-C (or SIGTERM made one), with ``run_summary`` (a RunSummary
        of the rows finished) and ``journal`` (the journal directory, or None
        when nothing was finished) as attributes.
    """
    if chunk_size == 0:
        if dask is not None:
            raise ValueError("--dask sends chunks to the workers: give a --chunk-size above 0")
        from .classify import classify_table

        guard = ResumeJournal(out, {})
        guard.acquire()  # the same lock as chunked runs: two runs never write one output
        try:
            table = classify_table(
                catalog,
                images,
                model,
                source=source,
                source_options=source_options,
                ra_col=ra_col,
                dec_col=dec_col,
                format=format,
                table_index=table_index,
                batch_size=batch_size,
                device=device,
                workers=workers,
                tta=tta,
                amp=amp,
                progress=progress,
                gallery=gallery,
                gallery_max=gallery_max,
                thresholds=thresholds,
            )
            path = write_catalog(table, out, format=out_format)
        except BaseException:
            if guard._created:  # an earlier run's journal stays for it; ours is only a lock
                guard.discard()
            else:
                guard.release()
            raise
        guard.discard()  # also an earlier, unfinished run's journal: the output is complete
        statuses = collections.Counter(str(s) for s in table["FR_STATUS"])
        return RunSummary(path, len(table), dict(statuses), 1)
    if dask is not None and gallery is not None:
        raise ValueError("--gallery draws from the images in this process: it cannot be combined with --dask")

    reader = CatalogChunks(catalog, format=format, table=table_index, chunk_size=chunk_size)
    chunks = iter(reader)
    first = next(chunks)
    if reader.rows is None and progress:
        reader.count_rows()
    ra_name, dec_name = find_position_columns(first, ra_col, dec_col)
    dev = resolve_device(device)
    model = get_model(model, dev)
    if not isinstance(source, ImageSource):
        source = make_source(images=images, source=source, **(source_options or {}))
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())
    thresholds = Thresholds() if thresholds is None else thresholds
    options = {"batch_size": batch_size, "workers": workers, "tta": tta, "amp": amp, "thresholds": thresholds}

    writer = ChunkWriter(out, format=out_format)
    journal = None
    if resume:
        journal = ResumeJournal(
            writer.path,
            {
                "frsurvey": __version__,
                "catalog": catalog_fingerprint(catalog),
                "reading": {
                    "format": format_from_path(catalog, format),
                    "table": table_index,
                    "chunk_size": int(chunk_size),
                    "ra": ra_name,
                    "dec": dec_name,
                },
                "model": model_fingerprint(model),
                "preprocessing": f"{PREPROCESSING} v{PREPROCESSING_VERSION}",
                "source": source.fingerprint(),
                "settings": numeric_settings(model, dev, batch_size, tta, amp),
                "thresholds": thresholds.as_dict(),
            },
        )
        journal.open(restart=restart)
        writer.scratch = journal.path
    summary = RunSummary(writer.path, journal=journal.path if journal is not None else None)
    failures = FailureLog(logger=logging.getLogger("frsurvey.classify"))
    counts: collections.Counter = collections.Counter()
    bar = None
    if progress:
        from .progress import LINE_INTERVAL, RowProgress

        bar = RowProgress(reader.rows, "lines" if progress == "lines" else "bar", interval=LINE_INTERVAL)
    runner = None
    try:
        runner = (
            _DaskRunner(dask, model, source, device, options)
            if dask is not None
            else _LocalRunner(model, source, dev, options, gallery, gallery_max, bar)
        )
        for k, (chunk, res, fresh) in enumerate(runner.run(_with_done(first, chunks, journal), ra_name, dec_name)):
            if fresh and journal is not None:
                journal.save(k, res)
            elif not fresh:
                summary.resumed += 1
                summary.resumed_rows += len(chunk)
            offset = summary.rows
            counts.update(str(s) for s in res.status)  # finished (and journaled): counted at once
            summary.rows += len(chunk)
            summary.chunks += 1
            failures.add(res.status, res.message, offset=offset)
            with _quiet("frsurvey.catalog") if k else contextlib.nullcontext():
                labeled = with_results(chunk, res)
            if res.keeper is not None:
                res.keeper.draw(labeled, gallery)
            elif k == 0 and gallery is not None and not fresh:
                _draw_again(labeled, gallery, gallery_max, source, ra_name, dec_name)
            writer.write(labeled)
            if bar is not None:
                if not fresh or dask is not None:  # not counted while it was classified
                    bar.start_chunk(len(chunk))
                bar.finish_chunk()
        failures.close()
        summary.prepared, summary.remembered = runner.prepared, runner.remembered
        summary.counts = dict(counts)
        statuses = summary.summary
        writer.close(provenance(model, source, statuses))
    except BaseException as exc:
        writer.abort()
        summary.counts = dict(counts)
        _keep_or_discard(journal, exc, summary)
        raise
    finally:
        if bar is not None:
            bar.close()
        if runner is not None:
            runner.close()
        else:
            source.close()
    if journal is not None:
        try:
            journal.discard()
        finally:
            journal.release()  # also when interrupted in there: the next run finds the journal and reassembles
        summary.journal = None
    log.info(
        "%d rows in %d chunk(s); %d source(s) prepared, %d remembered from earlier chunks%s",
        summary.rows,
        summary.chunks,
        summary.prepared,
        summary.remembered,
        f"; {summary.resumed} chunk(s) ({summary.resumed_rows} rows) from the journal of an earlier run"
        if summary.resumed
        else "",
    )
    return summary


def _keep_or_discard(journal: ResumeJournal | None, exc: BaseException, summary: RunSummary) -> None:
    """After a failed run: keep the journal when the same command may well succeed, else delete it.

    Kept after an interruption (Ctrl-C, SIGTERM) and OS errors (a full disk,
    a lost mount); deleted after other errors (an unreadable row, a bug),
    which a rerun would meet again, and when no chunk was finished.
    """
    if journal is None:
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit, OSError)) and journal.finished:
        journal.release()
    else:
        journal.discard()
        summary.journal = None
    if isinstance(exc, KeyboardInterrupt):
        if summary.journal is not None:  # what is on disk, whenever the interruption came
            summary.rows, summary.counts = journal.counts()
        exc.run_summary = summary  # type: ignore[attr-defined]
        exc.journal = summary.journal  # type: ignore[attr-defined]


def _with_done(first: Table, rest: Iterator[Table], journal: ResumeJournal | None) -> Iterator[tuple[Table, Any]]:
    """Yield (chunk, its results from the journal or None), chunk by chunk."""
    for k, chunk in enumerate(itertools.chain([first], rest)):
        yield chunk, journal.load(k, len(chunk)) if journal is not None else None


def _draw_again(labeled: Table, gallery, gallery_max: int, source, ra_name: str, dec_name: str) -> None:
    """Draw the gallery of a first chunk whose results came from a journal: its images are cut again."""
    from .show import show_catalog

    try:
        show_catalog(labeled, gallery, source=source, max_images=gallery_max, ra_col=ra_name, dec_col=dec_name)
    except (OSError, ValueError) as exc:
        log.error("cannot write the gallery %s: %s", gallery, exc)


@contextlib.contextmanager
def _quiet(name: str):
    """Silence a logger for a moment (the warnings of later chunks that repeat the first's)."""
    logger = logging.getLogger(name)
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def _positions(chunk: Table, ra_name: str, dec_name: str, first: bool):
    """Return parse_positions of a chunk with reasons; its warning logged only if ``first`` (the failure log counts all)."""
    with contextlib.nullcontext() if first else _quiet("frsurvey.catalog"):
        return parse_positions(chunk, ra_name, dec_name, with_reasons=True)


class _LocalRunner:
    """Classifies chunks in this process, one classifier for the run."""

    def __init__(self, model, source, device, options, gallery, gallery_max, bar=None) -> None:
        self.engine = BatchClassifier(model, source, device=device, **options)
        self.gallery = gallery
        self.gallery_max = gallery_max
        self.bar = bar  # a RowProgress: told of each chunk, and of its sources as they are done
        self.parsed = False  # a chunk's positions parsed (its warning logged) by this run

    def run(self, chunks: Iterator[tuple[Table, Any]], ra_name: str, dec_name: str):
        """Yield (chunk, results, classified now) for (chunk, results from a journal or None)."""
        from .show import GalleryKeeper

        for k, (chunk, done) in enumerate(chunks):
            if done is not None:
                yield chunk, done, False
                continue
            ra, dec, status, reason = _positions(chunk, ra_name, dec_name, not self.parsed)
            self.parsed = True
            keep = None
            if k == 0 and self.gallery is not None:
                keep = functools.partial(GalleryKeeper, max_rows=self.gallery_max)
            if self.bar is not None:
                self.bar.start_chunk(len(chunk))
            yield chunk, self.engine.classify(ra, dec, status, keep=keep, reason=reason, bar=self.bar), True

    @property
    def prepared(self) -> int:
        return self.engine.prepared

    @property
    def remembered(self) -> int:
        return self.engine.remembered

    def close(self) -> None:
        self.engine.close()


# --------------------------------------------------------------------------------------------------
# Dask


#: Per worker process: the classifier of the run in hand (token, classifier, lock).
_WORKER: dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()


def _classify_on_worker(
    token: str, setup: dict, ra: np.ndarray, dec: np.ndarray, status: np.ndarray, reason: np.ndarray
) -> tuple:
    """Classify one chunk's positions on a Dask worker, with the run's classifier (made once per worker)."""
    from .engine import BatchClassifier

    with _WORKER_LOCK:
        if _WORKER.get("token") != token:
            old = _WORKER.get("engine")
            if old is not None:
                old.close()
            opts = dict(setup["options"])
            opts["workers"] = 0  # worker processes are daemons: no DataLoader processes of their own
            engine = BatchClassifier(setup["model"], setup["source"], device=setup["device"], **opts)
            _WORKER.update(token=token, engine=engine, lock=threading.Lock())
        engine, lock = _WORKER["engine"], _WORKER["lock"]
    with lock:
        before = (engine.prepared, engine.remembered)
        res = engine.classify(ra, dec, status, reason=reason)
        counts = (engine.prepared - before[0], engine.remembered - before[1])
    return res.status, res.message, res.p_fri, res.spread, res.measures, res.ood, counts


def _client(dask: Any):
    """Return (client, cluster to close or None) for ``local``, ``local:N``, an address or a Client."""
    from distributed import Client, LocalCluster

    if isinstance(dask, Client):
        return dask, None, False
    spec = str(dask)
    if spec == "local" or spec.startswith("local:"):
        n = int(spec.split(":", 1)[1]) if ":" in spec else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"--dask local:N needs N >= 1, not {n}")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster, True
    return Client(spec), None, True


class _DaskRunner:
    """Sends each chunk's positions to Dask workers; results come back in catalog order."""

    def __init__(self, dask: Any, model, source, device, options) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise ValueError("--dask needs dask.distributed: pip install 'frsurvey[dask]'") from exc
        self.client, self.cluster, self.own = _client(dask)
        nworkers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.in_flight = 2 * nworkers
        self.token = uuid.uuid4().hex
        setup = {"model": copy.deepcopy(model).cpu(), "source": source, "device": str(device), "options": options}
        [self.setup] = self.client.scatter([setup], broadcast=True, hash=False)
        self.prepared = 0
        self.remembered = 0
        self.parsed = False  # a chunk's positions parsed (its warning logged) by this run
        log.info("classifying on Dask: %s (%d worker(s))", self.client.scheduler.address, nworkers)

    def run(self, chunks: Iterator[tuple[Table, Any]], ra_name: str, dec_name: str):
        """Yield (chunk, results, classified now) for (chunk, results from a journal or None), in order."""
        from .engine import RowResults

        pending: collections.deque = collections.deque()
        for chunk, done in chunks:
            if done is not None:
                pending.append((chunk, done))
            else:
                ra, dec, status, reason = _positions(chunk, ra_name, dec_name, not self.parsed)
                self.parsed = True
                future = self.client.submit(
                    _classify_on_worker, self.token, self.setup, ra, dec, status, reason, pure=False
                )
                pending.append((chunk, future))
            while len(pending) >= self.in_flight:
                yield self._result(pending.popleft(), RowResults)
        while pending:
            yield self._result(pending.popleft(), RowResults)

    def _result(self, item, RowResults):
        chunk, future = item
        if isinstance(future, RowResults):  # from the journal
            return chunk, future, False
        status, message, p_fri, spread, measures, ood, (prepared, remembered) = future.result()
        self.prepared += prepared
        self.remembered += remembered
        return chunk, RowResults(status, message, p_fri, spread, None, measures, ood), True

    def close(self) -> None:
        if self.own:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
