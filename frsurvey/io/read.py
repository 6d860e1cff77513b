"""Reading catalogs: a whole table (:func:`read_catalog`) or a file in chunks of rows (:class:`CatalogChunks`)."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from .fits import fits_hdu_table, fits_table_choice, read_fits_table
from .formats import ASTROPY_FORMAT, CatalogError, check_compressed_size, check_exists, compression, format_from_path
from .text import check_text_rows, is_record, records_text, text_records, widest_kind
from .votable import read_votable_table

#: Rows per chunk of ``frsurvey classify`` (``--chunk-size``).
DEFAULT_CHUNK_SIZE = 50_000

__all__ = ["DEFAULT_CHUNK_SIZE", "CatalogChunks", "read_catalog"]


def read_catalog(path: str | os.PathLike, format: str | None = None, table: int | None = None) -> Table:
    """Return the table stored in a catalog file.

    Parameters
    ----------
    path : str or path-like
        A FITS binary table, VOTable, ECSV or CSV file.
    format : str, optional
        Force the format instead of reading it from the extension.
    table : int, optional
        Which table to read, counting from 0, in files holding several
        (VOTable TABLE elements, FITS table extensions). Default: the first.

    Returns
    -------
    astropy.table.Table
        The table with its column units, descriptions and UCDs (the latter in
        ``column.meta['ucd']``, also for FITS files carrying ``TUCDn``).
        ``meta['frsurvey_table_note']`` says which table was read when the
        file holds several.

    Raises
    ------
    CatalogError
        If the file is missing, unreadable or does not hold the table asked for.
    """
    path = Path(path)
    fmt = format_from_path(path, format)
    check_exists(path)
    check_compressed_size(path)
    if fmt in ("csv", "ecsv") and compression(path):
        raise CatalogError(f"{str(path)!r} is a compressed {fmt} file: decompress it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                result = read_votable_table(path, table)
            elif fmt == "fits":
                result = read_fits_table(path, table)
            else:
                result = Table.read(path, format=ASTROPY_FORMAT[fmt])
                check_text_rows(path, fmt, result)
    except CatalogError:
        raise
    except MemoryError:
        raise CatalogError(f"{str(path)!r} is too big to read into memory: give a --chunk-size above 0") from None
    except Exception as exc:  # astropy raises many types for unreadable input
        raise CatalogError(f"cannot read {str(path)!r} as {fmt}: {exc}") from exc
    return result


class CatalogChunks:
    """A catalog file as a sequence of tables of at most ``chunk_size`` rows, in order.

    Each chunk has the columns, types, units, UCDs, descriptions and table
    meta that :func:`frsurvey.io.read_catalog` gives the whole table,
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
        check_exists(self.path)
        check_compressed_size(self.path)
        if self.format in ("csv", "ecsv") and compression(self.path):
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
            hdu_no, note = fits_table_choice(hdul, self.path, self.table)
            nrows = int(hdul[hdu_no].header.get("NAXIS2", 0))
            self.rows = nrows
            whole = fits_hdu_table(hdul[hdu_no]) if nrows <= self.chunk_size else None
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
                chunk = fits_hdu_table(cls(data=part, header=hdu.header))
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
                    if is_record(rec[1], self.format):
                        rows += 1
                        if rows == self.chunk_size:
                            yield batch
                            batch, rows = [], 0
                if rows:
                    yield batch

        return "".join(header), chunks()

    def _read(self, header: str, batch: list[tuple[int, str]], fmt: str, **kwargs: Any) -> Table:
        """Parse one chunk's records; refuse it unless astropy read one row per record."""
        t = Table.read(records_text(header, batch), format=fmt, **kwargs)
        lines = [line for line, rec in batch if is_record(rec, self.format)]
        if len(t) != len(lines):
            stopped = f"; the reader stopped at line {lines[len(t)]}" if len(t) < len(lines) else ""
            raise CatalogError(
                f"{str(self.path)!r}: astropy read {len(t)} rows from lines {lines[0]}-{lines[-1]}, which hold "
                f"{len(lines)} records{stopped} (an unbalanced quote or a malformed line?): refusing to lose rows"
            )
        return t

    def _one_chunk(self, chunks, fmt: str) -> tuple[Table | None, Iterator]:
        """Return (the whole table as read_catalog reads it, no batches) when the records make one chunk,
        else (None, all the batches of records)."""
        first, second = next(chunks, None), next(chunks, None)
        if second is not None:
            return None, itertools.chain([first, second], chunks)
        chunks.close()
        whole = read_catalog(self.path, format=fmt)
        self.rows = len(whole)
        return whole, iter(())

    def _ecsv(self) -> Iterator[Table]:
        header, chunks = self._records()
        whole, batches = self._one_chunk(chunks, "ecsv")
        if whole is not None:
            yield whole
            return
        for batch in batches:
            yield self._read(header, batch, "ascii.ecsv")

    def _csv(self) -> Iterator[Table]:
        # Types are inferred chunk by chunk; the whole file's type of a column is the widest of
        # them (int < float < text), as astropy finds it reading the file whole.
        header, chunks = self._records()
        whole, batches = self._one_chunk(chunks, "csv")
        if whole is not None:
            yield whole
            return
        kinds: list[dict[str, str]] = []
        rows = 0
        for batch in batches:
            t = self._read(header, batch, "ascii.csv")
            kinds.append({name: t[name].dtype.kind for name in t.colnames})
            rows += len(t)
        self.rows = rows
        merged = {name: widest_kind([k[name] for k in kinds]) for name in kinds[0]}
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
