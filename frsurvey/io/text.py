"""CSV and ECSV text: records (quoted line breaks kept together), counting rows, and the text writers' quoting."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from astropy.table import Column, Table

from .formats import ASTROPY_FORMAT, CatalogError
from .plain import text_column

__all__ = [
    "check_text_rows",
    "csv_text",
    "ecsv_text",
    "is_record",
    "records_text",
    "text_records",
    "text_table",
    "widest_kind",
]


def _quoted_after(line: str, quoted: bool, delimiter: str) -> bool:
    """Return whether a record is inside a quoted value at the end of ``line``, given whether it was at its start.

    As CSV readers (Python's, astropy's) see quotes: a double quote opens a
    quoted value only at the start of a field (after the delimiter and any
    blanks); inside one, ``""`` is a literal quote and ``"`` closes it.
    Elsewhere (``ab"c``) a quote is an ordinary character.
    """
    if '"' not in line:
        return quoted
    at_start = not quoted
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quoted:
            if c == '"':
                if i + 1 < n and line[i + 1] == '"':
                    i += 2
                    continue
                quoted = False
        elif c == '"' and at_start:
            quoted = True
            at_start = False
        elif c == delimiter or (delimiter == " " and c == "\t"):
            at_start = True
        elif c not in " \t" and c != "\n":
            at_start = False
        i += 1
    return quoted


def text_records(f, delimiter: str = ",") -> Iterator[tuple[int, str]]:
    """Yield ``(first line number, record)`` of a text table: lines, with line breaks inside quoted values kept together.

    ``f`` is a text file opened with universal newlines (every line break
    reads as ``"\\n"``, as astropy's readers see them); line numbers count
    from 1; ``delimiter`` is ``,`` (CSV) or ``" "`` (ECSV). A record still
    inside an open quote at the end of the file is refused: it would
    swallow every line after its opening quote.

    Raises
    ------
    CatalogError
        If a quote is opened and never closed.
    """
    pending: list[str] = []
    start = 0
    quoted = False
    lineno = 0
    for lineno, line in enumerate(f, start=1):
        quoted = _quoted_after(line, quoted, delimiter)
        if quoted:
            if not pending:
                start = lineno
            pending.append(line)
            continue
        if pending:
            pending.append(line)
            yield start, "".join(pending)
            pending = []
        else:
            yield lineno, line
    if pending:
        raise CatalogError(
            f"line {start} opens a double quote that is never closed: the reader would take every line from "
            f"there to the end of the file ({lineno - start + 1} lines) as one value; close the quote"
        )


def is_record(record: str, fmt: str) -> bool:
    """Whether a record of a text table is a row to astropy (not blank; for ECSV not a comment)."""
    text = record.strip()
    return bool(text) and not (fmt == "ecsv" and text.startswith("#"))


def check_text_rows(path: Path, fmt: str, table: Table) -> None:
    """Raise CatalogError unless astropy read as many rows as the file has records (CSV, ECSV)."""
    with open(path, encoding="utf-8", newline=None) as f:
        header_done = False
        records: list[int] = []
        for lineno, rec in text_records(f, " " if fmt == "ecsv" else ","):
            if not header_done:  # ECSV's commented header, then the line of column names
                if (fmt == "ecsv" and rec.startswith("#")) or not rec.strip():
                    continue
                header_done = True
                continue
            if is_record(rec, fmt):
                records.append(lineno)
    if len(records) != len(table):
        stopped = records[len(table)] if len(table) < len(records) else None
        where = f"; the reader stopped at line {stopped}" if stopped is not None else ""
        raise CatalogError(
            f"{str(path)!r}: astropy read {len(table)} rows but the file holds {len(records)} records{where} "
            "(an unbalanced quote or a malformed line?): refusing to lose rows"
        )


def text_table(table: Table, fmt: str) -> str:
    """Return ``table`` as the text of a CSV (``fmt="csv"``) or ECSV (``"ecsv"``) file that reads back row for row.

    Values holding whitespace other than plain spaces (no-break spaces, line
    or record separators, which astropy's readers split on) are written
    between quotes; astropy would otherwise write them bare and the file
    would not read back.
    """
    from astropy.io import ascii

    work = _csv_ready(table) if fmt == "csv" else table
    buf = io.StringIO()
    if not _has_odd_whitespace(work):
        work.write(buf, format=ASTROPY_FORMAT[fmt])
        return buf.getvalue()
    writer = ascii.get_writer(writer_cls=ascii.Csv if fmt == "csv" else ascii.Ecsv, fast_writer=False)
    writer.data.splitter.quoting = csv.QUOTE_NONNUMERIC  # every value quoted: masks and types survive
    return "\n".join(writer.write(work)) + "\n"


#: Whitespace other than " " and "\t" (no-break spaces, line and record separators, ...).
_ODD_WHITESPACE = re.compile(r"[^\S \t]")


def _has_odd_whitespace(table: Table) -> bool:
    """Return whether a text value of ``table`` holds whitespace other than ``" "`` and ``"\\t"``."""
    for name in table.colnames:
        col = table[name]
        if getattr(col, "dtype", None) is None or col.dtype.kind not in "USO":
            continue
        values = np.ma.getdata(col).ravel().tolist()
        if col.dtype.kind != "U":
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
        if _ODD_WHITESPACE.search("".join(values)):
            return True
    return False


def _csv_ready(table: Table) -> Table:
    """Return ``table`` with array-valued columns as text (space-separated values), which CSV can hold."""
    out = Table(table, copy=False)
    for name in out.colnames:
        col = out[name]
        if isinstance(col, Column) and (col.ndim > 1 or col.dtype.kind == "O"):
            text = text_column(col)
            text.description = col.description
            out.replace_column(name, text)
    return out


def records_text(header: str, batch: list[tuple[int, str]]) -> str:
    return header + "".join(rec for _, rec in batch)


def widest_kind(kinds: list[str]) -> str:
    if all(k == kinds[0] for k in kinds):
        return kinds[0]
    if all(k in "iuf" for k in kinds):
        return "f"
    return "U"


def csv_text(table: Table) -> str:
    return text_table(table, "csv")


def ecsv_text(table: Table, meta: dict | None = None) -> tuple[str, str]:
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
