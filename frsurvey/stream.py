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
import functools
import io
import itertools
import logging
import os
import pickle
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

from .catalog import (
    CatalogError,
    _csv_ready,
    _fits_hdu_table,
    _plain_table,
    _umask,
    _write_fits,
    _write_votable,
    add_results,
    find_position_columns,
    format_from_path,
    parse_positions,
    read_catalog,
    write_catalog,
)
from .engine import BatchClassifier, FailureLog, fr_classes, get_model, provenance, resolve_device
from .sources import ImageSource, make_source
from .status import Status, summarize

__all__ = ["DEFAULT_CHUNK_SIZE", "CatalogChunks", "ChunkWriter", "RunSummary", "classify_file"]

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
        if not self.path.exists():
            raise CatalogError(f"catalog {str(self.path)!r} does not exist")

    def __iter__(self) -> Iterator[Table]:
        chunks = {"fits": self._fits, "csv": self._csv, "ecsv": self._ecsv}.get(self.format, self._whole)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield from chunks()
        except CatalogError:
            raise
        except (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read {str(self.path)!r} as {self.format}: {exc}") from exc

    # -------------------------------------------------------------- VOTable: astropy parses it whole

    def _whole(self) -> Iterator[Table]:
        table = read_catalog(self.path, format=self.format, table=self.table)
        for start in range(0, max(len(table), 1), self.chunk_size):
            yield table[start : start + self.chunk_size]

    # -------------------------------------------------------------- FITS: row ranges of the mapped file

    def _fits(self) -> Iterator[Table]:
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            tabs = [i for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]
            if not tabs:
                raise CatalogError(f"{str(self.path)!r} holds no FITS table extension")
            i = 0 if self.table is None else self.table
            if not 0 <= i < len(tabs):
                raise CatalogError(f"{str(self.path)!r} holds {len(tabs)} tables; table {i} does not exist")
            nrows = int(hdul[tabs[i]].header.get("NAXIS2", 0))
        if nrows <= self.chunk_size:
            yield read_catalog(self.path, format="fits", table=self.table)
            return
        note = None
        if len(tabs) > 1:
            note = f"read table {i} (HDU {tabs[i]}) of {len(tabs)} in the file"
            log.warning("%s: %s (choose another with --table)", self.path, note)
        for start in range(0, nrows, self.chunk_size):
            # opened again for each chunk: only this chunk's pages of the file are ever mapped in
            with fits.open(self.path, memmap=True) as hdul:
                hdu = hdul[tabs[i]]
                part = hdu.data[start : start + self.chunk_size]
                cls = fits.BinTableHDU if isinstance(hdu, fits.BinTableHDU) else fits.TableHDU
                chunk = _fits_hdu_table(cls(data=part, header=hdu.header))
                chunk = Table(chunk, copy=True)  # nothing may point into the mapped file once it is closed
            if note:
                chunk.meta["frsurvey_table_note"] = note
            yield chunk

    # -------------------------------------------------------------- CSV and ECSV: records of text

    def _records(self) -> tuple[bytes, Iterator[list[bytes]]]:
        """Return the header and an iterator over lists of at most chunk_size records (raw bytes)."""
        f = open(self.path, "rb")  # closed later
        header: list[bytes] = []
        for line in f:  # ECSV's commented header, then the line of column names
            if self.format == "ecsv" and line.startswith(b"#"):
                header.append(line)
                continue
            if not line.strip():
                continue
            header.append(line)
            break
        if header and not header[-1].endswith(b"\n"):
            header[-1] += b"\n"
        records = _records(f)

        def chunks() -> Iterator[list[bytes]]:
            with f:
                batch: list[bytes] = []
                rows = 0
                for rec in records:
                    batch.append(rec)
                    if rec.strip():
                        rows += 1
                        if rows == self.chunk_size:
                            yield batch
                            batch, rows = [], 0
                if rows:
                    yield batch

        return b"".join(header), chunks()

    def _ecsv(self) -> Iterator[Table]:
        header, chunks = self._records()
        first, second = next(chunks, None), next(chunks, None)
        if second is None:  # one chunk: exactly what read_catalog reads
            chunks.close()
            yield read_catalog(self.path, format="ecsv")
            return
        for batch in itertools.chain([first, second], chunks):
            yield Table.read(_text(header, batch), format="ascii.ecsv")

    def _csv(self) -> Iterator[Table]:
        # Types are inferred chunk by chunk; the whole file's type of a column is the widest of
        # them (int < float < text), as astropy finds it reading the file whole.
        header, chunks = self._records()
        kinds: list[dict[str, str]] = []
        for batch in chunks:
            t = Table.read(_text(header, batch), format="ascii.csv")
            kinds.append({name: t[name].dtype.kind for name in t.colnames})
        if len(kinds) <= 1:
            yield read_catalog(self.path, format="csv")
            return
        merged = {name: _widest([k[name] for k in kinds]) for name in kinds[0]}
        _, chunks = self._records()
        for batch, chunk_kinds in zip(chunks, kinds):
            as_text = [n for n, k in merged.items() if k == "U" and chunk_kinds[n] != "U"]
            if as_text:
                from astropy.io import ascii

                converters = {n: [ascii.convert_numpy(str)] for n in as_text}
                t = Table.read(_text(header, batch), format="ascii.csv", converters=converters)
            else:
                t = Table.read(_text(header, batch), format="ascii.csv")
            for n, k in merged.items():
                if k == "f" and t[n].dtype.kind != "f":
                    t.replace_column(n, t[n].astype(np.float64))
            yield t


def _records(f) -> Iterator[bytes]:
    """Yield the records of a text table file: lines, with line breaks inside double quotes kept together."""
    pending: list[bytes] = []
    odd = False
    for line in f:
        if line.count(b'"') % 2:
            odd = not odd
        if odd:
            pending.append(line)
            continue
        if pending:
            pending.append(line)
            yield b"".join(pending)
            pending = []
        else:
            yield line
    if pending:
        yield b"".join(pending)


def _text(header: bytes, batch: list[bytes]) -> str:
    return (header + b"".join(batch)).decode("utf-8")


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
    """

    def __init__(self, path: str | os.PathLike, format: str | None = None) -> None:
        self.path = Path(path)
        self.format = format_from_path(self.path, format)
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
            self._stream = _STREAMS[self.format](self.path)
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

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))

    def write(self, chunk: Table) -> None:
        raise NotImplementedError

    def finish(self, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _install(self, tmp: Path) -> None:
        # the mode of the file it replaces, or the umask's (as write_catalog does)
        os.chmod(tmp, stat.S_IMODE(self.path.stat().st_mode) if self.path.exists() else 0o666 & ~_umask())
        os.replace(tmp, self.path)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _csv_text(table: Table) -> str:
    buf = io.StringIO()
    _csv_ready(table).write(buf, format="ascii.csv")
    return buf.getvalue()


class _CsvStream(_Stream):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.out = self.tmp_dir / "out.csv"
        self.f = open(self.out, "w", encoding="utf-8", newline="")  # closed later
        self.header: str | None = None

    def write(self, chunk: Table) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = _csv_text(chunk)
            if self.header is None:
                self.header = _csv_text(chunk[:0])
                self.f.write(self.header)
        if not text.startswith(self.header):
            raise CatalogError("internal error: a chunk's CSV header differs from the first chunk's")
        self.f.write(text[len(self.header) :])

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
    buf = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work.write(buf, format="ascii.ecsv")
    text = buf.getvalue()
    pos = 0
    while text.startswith("#", pos):
        pos = text.index("\n", pos) + 1
    pos = text.index("\n", pos) + 1  # the line of column names
    return text[:pos], text[pos:]


class _EcsvStream(_Stream):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
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

    def __init__(self, path: Path) -> None:
        super().__init__(path)
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
        blank = mask.any(axis=1)
        if blank.any():
            rows.add(int(np.argmax(blank)))
            rows.add(int(np.argmax(mask.all(axis=1))) if mask.all(axis=1).any() else int(np.argmax(blank)))
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
    """

    path: Path
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    prepared: int = 0
    remembered: int = 0

    @property
    def summary(self) -> str:
        """The one-line count of statuses, e.g. ``301 rows: 299 ok, 2 no_image``."""
        return summarize(s for s, k in self.counts.items() for _ in range(k)) if self.counts else "0 rows"

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
) -> RunSummary:
    """Classify a catalog file into an output file, ``chunk_size`` rows at a time.

    The output is the table :func:`frsurvey.classify_table` returns for the
    whole catalog, written as :func:`frsurvey.catalog.write_catalog` writes
    it (for one chunk, exactly that), but memory holds one chunk at a time.
    Each distinct source is prepared once over the whole run (up to
    :data:`frsurvey.engine.MEMORY` of them are remembered).

    Parameters
    ----------
    catalog, out : str or path-like
        Input and output catalog files (formats from the extensions unless
        ``format`` / ``out_format``).
    images, model, source, source_options, ra_col, dec_col, table_index, batch_size, device, workers, tta, amp
        As for :func:`frsurvey.classify_table`.
    chunk_size : int
        Rows read, classified and written at a time; 0: the whole catalog
        at once, in memory (:func:`~frsurvey.classify_table`).
    progress : bool
        A progress bar (rows) on stderr.
    gallery, gallery_max : optional
        Draw the first rows of the first chunk (see :func:`~frsurvey.classify_table`);
        not with ``dask``.
    dask : str or distributed.Client, optional
        Classify the chunks on a Dask cluster: a scheduler address
        (``tcp://host:8786``), ``local`` or ``local:N`` (a LocalCluster of N
        worker processes, default one per core), or a ``Client``. The images
        (and a model given as a path) must be readable by the workers.

    Returns
    -------
    RunSummary
        The output path, row count and status counts.

    Raises
    ------
    frsurvey.catalog.CatalogError
        If the catalog cannot be read or has no position columns, or the output cannot be written.
    frsurvey.models.CheckpointError
        If the model cannot be loaded.
    """
    if chunk_size == 0:
        if dask is not None:
            raise ValueError("--dask sends chunks to the workers: give a --chunk-size above 0")
        from .classify import classify_table

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
        )
        path = write_catalog(table, out, format=out_format)
        statuses = collections.Counter(str(s) for s in table["FR_STATUS"])
        return RunSummary(path, len(table), dict(statuses), 1)
    if dask is not None and gallery is not None:
        raise ValueError("--gallery draws from the images in this process: it cannot be combined with --dask")

    chunks = iter(CatalogChunks(catalog, format=format, table=table_index, chunk_size=chunk_size))
    first = next(chunks)
    ra_name, dec_name = find_position_columns(first, ra_col, dec_col)
    dev = resolve_device(device)
    model = get_model(model, dev)
    if not isinstance(source, ImageSource):
        source = make_source(images=images, source=source, **(source_options or {}))
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())
    options = {"batch_size": batch_size, "workers": workers, "tta": tta, "amp": amp}

    writer = ChunkWriter(out, format=out_format)
    summary = RunSummary(writer.path)
    failures = FailureLog(logger=logging.getLogger("frsurvey.classify"))
    counts: collections.Counter = collections.Counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="row", desc="classify", dynamic_ncols=True)
    runner = (
        _DaskRunner(dask, model, source, device, options)
        if dask is not None
        else _LocalRunner(model, source, dev, options, gallery, gallery_max)
    )
    try:
        for chunk, res in runner.run(_with_first(first, chunks), ra_name, dec_name):
            failures.add(res.status, res.message, offset=summary.rows)
            with _quiet("frsurvey.catalog") if summary.chunks else contextlib.nullcontext():
                labeled = add_results(chunk, fr_classes(res.p_fri), res.p_fri, res.status, uncertainty=res.spread)
            if res.keeper is not None:
                res.keeper.draw(labeled, gallery)
            writer.write(labeled)
            counts.update(str(s) for s in res.status)
            summary.rows += len(chunk)
            summary.chunks += 1
            if bar is not None:
                bar.update(len(chunk))
        failures.close()
        summary.prepared, summary.remembered = runner.prepared, runner.remembered
        summary.counts = dict(counts)
        statuses = summary.summary
        writer.close(provenance(model, source, statuses))
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        runner.close()
    log.info(
        "%d rows in %d chunk(s); %d source(s) prepared, %d remembered from earlier chunks",
        summary.rows,
        summary.chunks,
        summary.prepared,
        summary.remembered,
    )
    return summary


def _with_first(first: Table, rest: Iterator[Table]) -> Iterator[Table]:
    yield first
    yield from rest


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
    """Return parse_positions of a chunk; only the first chunk's warning is logged (the failure log counts all)."""
    with contextlib.nullcontext() if first else _quiet("frsurvey.catalog"):
        return parse_positions(chunk, ra_name, dec_name)


def _keeper(cls, rows, key_of_row, max_rows):
    return cls(rows, key_of_row, max_rows)


class _LocalRunner:
    """Classifies chunks in this process, one classifier for the run."""

    def __init__(self, model, source, device, options, gallery, gallery_max) -> None:
        self.engine = BatchClassifier(model, source, device=device, **options)
        self.gallery = gallery
        self.gallery_max = gallery_max

    def run(self, chunks: Iterator[Table], ra_name: str, dec_name: str):
        from .show import GalleryKeeper

        for k, chunk in enumerate(chunks):
            ra, dec, status = _positions(chunk, ra_name, dec_name, k == 0)
            keep = None
            if k == 0 and self.gallery is not None:
                keep = functools.partial(_keeper, GalleryKeeper, max_rows=self.gallery_max)
            yield chunk, self.engine.classify(ra, dec, status, keep=keep)

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


def _classify_on_worker(token: str, setup: dict, ra: np.ndarray, dec: np.ndarray, status: np.ndarray) -> tuple:
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
        res = engine.classify(ra, dec, status)
        counts = (engine.prepared - before[0], engine.remembered - before[1])
    return res.status, res.message, res.p_fri, res.spread, counts


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
        setup = {"model": model.cpu(), "source": source, "device": str(device), "options": options}
        [self.setup] = self.client.scatter([setup], broadcast=True, hash=False)
        self.prepared = 0
        self.remembered = 0
        log.info("classifying on Dask: %s (%d worker(s))", self.client.scheduler.address, nworkers)

    def run(self, chunks: Iterator[Table], ra_name: str, dec_name: str):
        from .engine import RowResults

        pending: collections.deque = collections.deque()
        for k, chunk in enumerate(chunks):
            ra, dec, status = _positions(chunk, ra_name, dec_name, k == 0)
            future = self.client.submit(
                _classify_on_worker, self.token, self.setup, ra, dec, status.astype(object), pure=False
            )
            pending.append((chunk, future))
            while len(pending) >= self.in_flight:
                yield self._result(pending.popleft(), RowResults)
        while pending:
            yield self._result(pending.popleft(), RowResults)

    def _result(self, item, RowResults):
        chunk, future = item
        status, message, p_fri, spread, (prepared, remembered) = future.result()
        self.prepared += prepared
        self.remembered += remembered
        return chunk, RowResults(status, message, p_fri, spread)

    def close(self) -> None:
        if self.own:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
