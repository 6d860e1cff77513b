"""Catalogs in and out: reading tables, finding positions, writing results.

The input table is never altered: :func:`add_results` returns a copy with
frsurvey's columns appended (or replaced, when a table is classified again)
and provenance in its ``meta``; :func:`write_catalog` writes it as a
VOTable, FITS table, ECSV or CSV file, atomically.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Column, MaskedColumn, Table

from ._utils import replace_atomically
from .status import Status

__all__ = [
    "OUTPUT_COLUMNS",
    "CatalogError",
    "NoPositionColumnsError",
    "add_results",
    "check_compressed_size",
    "find_position_columns",
    "format_from_path",
    "parse_positions",
    "read_catalog",
    "text_records",
    "write_catalog",
]

log = logging.getLogger(__name__)

#: Names, UCDs and descriptions of the columns frsurvey adds.
OUTPUT_COLUMNS: dict[str, dict[str, str]] = {
    "FR_CLASS": {
        "ucd": "src.morph.type",
        "description": "Fanaroff-Riley class predicted by frsurvey (FRI or FRII; empty when not classified)",
    },
    "P_FRI": {
        "ucd": "stat.probability",
        "description": "Calibrated probability that the source is FRI (NaN when the model did not see the image; "
        "also written for unresolved, too_large and out_of_domain rows, which have no FR_CLASS)",
    },
    "P_FRII": {
        "ucd": "stat.probability",
        "description": "Calibrated probability that the source is FRII, 1 - P_FRI (NaN when P_FRI is)",
    },
    "FR_UNCERTAINTY": {
        "ucd": "stat.stdev;stat.probability",
        "description": "Uncertainty of P_FRII, a standard deviation: over the 8 rotations and flips of the image, "
        "over an ensemble's networks, or a distilled network's own estimate of the latter, as the model "
        "makes it (FRS_UNC says which; NaN when not classified)",
    },
    "FR_STATUS": {
        "ucd": "meta.code.status",
        "description": "What happened to this row: ok, or why it has no classification (see the frsurvey README)",
    },
    "FR_SNR": {
        "ucd": "stat.snr",
        "description": "Peak S/N of the central component (of the brightest pixel inside the 75 px circle "
        "when no component reaches the centre); blank when the image could not be prepared",
    },
    "FR_LAS": {
        "ucd": "phys.angSize;src",
        "unit": "arcsec",
        "description": "Largest angular size of the >3 sigma emission connected to the centre "
        "(blank when no component reaches the central 3 px)",
    },
    "FR_SIZE_DECONV": {
        "ucd": "phys.angSize.smajAxis",
        "unit": "arcsec",
        "description": "FWHM major axis of the central component deconvolved from FIRST's beam "
        "(0: no larger than the beam; blank when there is no central component)",
    },
    "FR_NCOMP": {
        "ucd": "meta.number",
        "description": "Number of separate >3 sigma components peaking above 5 sigma inside the 75 px circle "
        "(blank when the image could not be prepared)",
    },
    "FR_OOD": {
        "ucd": "stat.value",
        "description": "Out-of-distribution score: energy -log(sum exp(logits)) of the model on the image; "
        "higher is less like the training images (blank when the model did not see the row)",
    },
}

#: The measurement columns, in the order of :data:`frsurvey.morphology.MEASURES`'s first four.
MEASURE_COLUMNS: tuple[str, ...] = ("FR_SNR", "FR_LAS", "FR_SIZE_DECONV", "FR_NCOMP")

#: Keys of the provenance written into table metadata, with their meaning.
PROVENANCE_KEYS: dict[str, str] = {
    "FRS_VER": "frsurvey version that wrote the FR_ columns",
    "FRS_MOD": "model name (architecture and training tag)",
    "FRS_MSHA": "sha256 of the model checkpoint file",
    "FRS_PREP": "image preprocessing (name and version)",
    "FRS_SRC": "image source the cutouts came from",
    "FRS_DATE": "UTC date and time of the classification",
    "FRS_STAT": "count of rows for each FR_STATUS",
    "FRS_UNC": "what FR_UNCERTAINTY is for this model",
}

#: FITS column keywords frsurvey writes from the columns themselves (never from table meta).
_COLUMN_KEYWORD = re.compile(r"^T(UCD|COMM)\d+$", re.IGNORECASE)

_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fits.gz": "fits",
    ".vot": "votable",
    ".xml": "votable",
    ".votable": "votable",
    ".ecsv": "ecsv",
    ".csv": "csv",
}
_ASTROPY_FORMAT = {"fits": "fits", "votable": "votable", "ecsv": "ascii.ecsv", "csv": "ascii.csv"}

_RA_NAMES = [
    "ra",
    "raj2000",
    "_raj2000",
    "ra_j2000",
    "ra2000",
    "ra_deg",
    "radeg",
    "ra_d",
    "ra_icrs",
    "alpha_j2000",
    "alpha",
    "right_ascension",
    "ra_hms",
]
_DEC_NAMES = [
    "dec",
    "dej2000",
    "decj2000",
    "_dej2000",
    "dec_j2000",
    "de_j2000",
    "dec2000",
    "dec_deg",
    "decdeg",
    "dec_d",
    "de_icrs",
    "dec_icrs",
    "delta_j2000",
    "delta",
    "declination",
    "dec_dms",
]


class CatalogError(ValueError):
    """Raised when a catalog cannot be read or written as asked."""


#: Largest decompressed size, in bytes, of a compressed catalog file (gzip, bzip2, xz): 2 GiB.
#: A compressed file is inflated in memory by its reader; a larger one is refused before it is
#: read (``--max-catalog-bytes``). Uncompressed files are not limited (FITS tables are read by
#: row ranges of the memory-mapped file).
MAX_CATALOG_BYTES = 2 * 1024**3

#: Magic numbers of the compressions astropy's readers open on their own.
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}


def _compression(path: Path) -> str | None:
    """Return ``gzip``, ``bzip2`` or ``xz`` when the file is compressed (by its first bytes), else None."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def check_compressed_size(path: str | os.PathLike, limit: int | None = None) -> None:
    """Raise :class:`CatalogError` if a compressed catalog inflates to more than ``limit`` bytes.

    The file is decompressed as a stream (a megabyte at a time) and counted,
    never held; an uncompressed file is not read. ``limit`` defaults to
    :data:`MAX_CATALOG_BYTES`.
    """
    import bz2
    import gzip
    import lzma
    import zipfile

    path = Path(path)
    kind = _compression(path)
    if kind is None:
        return
    limit = MAX_CATALOG_BYTES if limit is None else int(limit)

    def open_zip(p, mode):  # astropy reads the first member of a zip file
        archive = zipfile.ZipFile(p)
        names = archive.namelist()
        if not names:
            raise OSError("an empty zip archive")
        return archive.open(names[0])

    opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open, "zip": open_zip}[kind]
    total = 0
    try:
        with opener(path, "rb") as f:
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise CatalogError(
                        f"{str(path)!r} is {kind}-compressed and inflates to more than {limit} bytes "
                        f"(the cap on a compressed catalog, --max-catalog-bytes): decompress it yourself, "
                        "or raise the cap"
                    )
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise CatalogError(f"cannot decompress {str(path)!r} ({kind}): {exc}") from exc


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


def _is_record(record: str, fmt: str) -> bool:
    """Whether a record of a text table is a row to astropy (not blank; for ECSV not a comment)."""
    text = record.strip()
    return bool(text) and not (fmt == "ecsv" and text.startswith("#"))


def _check_text_rows(path: Path, fmt: str, table: Table) -> None:
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
            if _is_record(rec, fmt):
                records.append(lineno)
    if len(records) != len(table):
        stopped = records[len(table)] if len(table) < len(records) else None
        where = f"; the reader stopped at line {stopped}" if stopped is not None else ""
        raise CatalogError(
            f"{str(path)!r}: astropy read {len(table)} rows but the file holds {len(records)} records{where} "
            "(an unbalanced quote or a malformed line?): refusing to lose rows"
        )


class NoPositionColumnsError(CatalogError):
    """Raised when no right ascension / declination columns can be found."""


def format_from_path(path: str | os.PathLike, format: str | None = None) -> str:
    """Return the catalog format (``fits``, ``votable``, ``ecsv`` or ``csv``) for ``path``.

    ``format`` forces the answer; otherwise the file name's extension decides.

    Raises
    ------
    CatalogError
        If the format is unknown or cannot be told from the extension.
    """
    if format is not None:
        key = format.lower().lstrip(".")
        key = {"vot": "votable", "xml": "votable", "fit": "fits", "ascii.ecsv": "ecsv", "ascii.csv": "csv"}.get(
            key, key
        )
        if key not in _ASTROPY_FORMAT:
            raise CatalogError(f"unknown catalog format {format!r}; use one of {sorted(_ASTROPY_FORMAT)}")
        return key
    name = str(path).lower()
    for ext in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return _FORMATS[ext]
    raise CatalogError(
        f"cannot tell the catalog format of {str(path)!r} from its extension; "
        f"use one of {sorted(_FORMATS)} or give the format explicitly (--format)"
    )


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
    _check_exists(path)
    check_compressed_size(path)
    if fmt in ("csv", "ecsv") and _compression(path):
        raise CatalogError(f"{str(path)!r} is a compressed {fmt} file: decompress it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                result = _read_votable(path, table)
            elif fmt == "fits":
                result = _read_fits_table(path, table)
            else:
                result = Table.read(path, format=_ASTROPY_FORMAT[fmt])
                _check_text_rows(path, fmt, result)
    except CatalogError:
        raise
    except MemoryError:
        raise CatalogError(f"{str(path)!r} is too big to read into memory: give a --chunk-size above 0") from None
    except Exception as exc:  # astropy raises many types for unreadable input
        raise CatalogError(f"cannot read {str(path)!r} as {fmt}: {exc}") from exc
    return result


def _check_exists(path: Path) -> None:
    """Raise CatalogError if ``path`` is missing, not a file, or empty (no header: no table at all)."""
    if not path.exists():
        raise CatalogError(f"catalog {str(path)!r} does not exist")
    if not path.is_file():
        raise CatalogError(f"catalog {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CatalogError(f"catalog {str(path)!r} is an empty file (0 bytes): it holds no table, not even a header")


def _read_votable(path: Path, index: int | None) -> Table:
    from astropy.io import votable

    vot = votable.parse(str(path), verify="ignore")
    tables = list(vot.iter_tables())
    if not tables:
        raise CatalogError(f"{str(path)!r} holds no TABLE element")
    i = 0 if index is None else index
    if not 0 <= i < len(tables):
        raise CatalogError(f"{str(path)!r} holds {len(tables)} tables; table {i} does not exist")
    result = tables[i].to_table(use_names_over_ids=True)
    if len(tables) > 1:
        name = tables[i].name or tables[i].ID or ""
        note = f"read table {i} {name!r} of {len(tables)} in the file"
        result.meta["frsurvey_table_note"] = note
        log.warning("%s: %s (choose another with --table)", path, note)
    for col in result.itercols():
        if col.unit is not None and isinstance(col.unit, u.UnrecognizedUnit):
            log.debug("column %s has a unit astropy does not know: %s", col.name, col.unit)
    return result


def _fits_table_choice(hdul, path: Path, index: int | None) -> tuple[int, str | None]:
    """Return (the HDU number of table ``index`` of an open FITS file, a note if the file holds several).

    The note is logged as a warning (and kept in the table's meta by the callers).
    """
    from astropy.io import fits

    tabs = [i for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]
    if not tabs:
        raise CatalogError(f"{str(path)!r} holds no FITS table extension")
    i = 0 if index is None else index
    if not 0 <= i < len(tabs):
        raise CatalogError(f"{str(path)!r} holds {len(tabs)} tables; table {i} does not exist")
    note = None
    if len(tabs) > 1:
        note = f"read table {i} (HDU {tabs[i]}) of {len(tabs)} in the file"
        log.warning("%s: %s (choose another with --table)", path, note)
    return tabs[i], note


def _read_fits_table(path: Path, index: int | None) -> Table:
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu, note = _fits_table_choice(hdul, path, index)
        result = _fits_hdu_table(hdul[hdu])
        if note:
            result.meta["frsurvey_table_note"] = note
    return result


def _fits_hdu_table(hdu) -> Table:
    """Return the table of one FITS table HDU, with ``TUCDn``/``TCOMMn`` as column UCDs and descriptions."""
    result = Table.read(hdu)
    header = hdu.header
    for n, col in enumerate(result.itercols(), start=1):
        ucd = header.get(f"TUCD{n}")
        if ucd:
            col.meta["ucd"] = str(ucd)
        comm = header.get(f"TCOMM{n}")
        if comm and not col.description:
            col.description = str(comm)
    # They belong to the columns now; left in meta they would be written back to the wrong columns.
    for key in [k for k in result.meta if _COLUMN_KEYWORD.match(str(k))]:
        del result.meta[key]
    return result


def _ucd_words(col: Column) -> list[str]:
    ucd = str(col.meta.get("ucd", "") or "").lower()
    return [w.strip() for w in ucd.split(";") if w.strip()]


def find_position_columns(table: Table, ra_col: str | None = None, dec_col: str | None = None) -> tuple[str, str]:
    """Return the names of the right ascension and declination columns of ``table``.

    The columns are, in order of preference: those given; those whose UCD is
    ``pos.eq.ra;meta.main`` / ``pos.eq.dec;meta.main``; the only ``pos.eq.ra``
    / ``pos.eq.dec`` columns; the first columns with a usual name (``RA``,
    ``RAJ2000``, ``RA_deg``, ``ALPHA_J2000``, ... compared without case).

    Raises
    ------
    NoPositionColumnsError
        If a given column does not exist or no pair can be found; the message
        lists the table's columns.
    """
    names = list(table.colnames)
    listing = ", ".join(names) if names else "(none)"
    for given, option in ((ra_col, "--ra-col"), (dec_col, "--dec-col")):
        if given is not None and given not in names:
            raise NoPositionColumnsError(
                f"column {given!r} ({option}) is not in the catalog; its columns are: {listing}"
            )

    def by_ucd(axis: str) -> str | None:
        main = [n for n in names if axis in _ucd_words(table[n]) and "meta.main" in _ucd_words(table[n])]
        if main:
            return main[0]
        anyucd = [n for n in names if axis in _ucd_words(table[n])]
        return anyucd[0] if len(anyucd) == 1 else None

    def by_name(candidates: list[str]) -> str | None:
        lower = {n.lower(): n for n in reversed(names)}
        for c in candidates:
            if c in lower:
                return lower[c]
        return None

    ra = ra_col or by_ucd("pos.eq.ra") or by_name(_RA_NAMES)
    dec = dec_col or by_ucd("pos.eq.dec") or by_name(_DEC_NAMES)
    if ra is None or dec is None:
        missing = " and ".join(w for w, c in (("right ascension", ra), ("declination", dec)) if c is None)
        raise NoPositionColumnsError(
            f"cannot find the {missing} column: no column has the UCD pos.eq.ra/pos.eq.dec or a usual name "
            f"(RA, RAJ2000, RA_deg, ALPHA_J2000, DEC, DEJ2000, ...); the catalog's columns are: {listing}. "
            "Name them with --ra-col and --dec-col."
        )
    return ra, dec


_SEXA = re.compile(
    r"^\s*([+-])?\s*(\d{1,3})(?:\s*[:hd\s]\s*|°\s*)(\d{1,2})(?:\s*[:m'\s]\s*|′\s*)(\d{1,2}(?:\.\d*)?)\s*[s\"″]?\s*$",
    re.IGNORECASE,
)
_DECIMAL = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


#: Characters that stand for a minus or plus sign in text copied from documents (U+2212 MINUS SIGN, dashes,
#: full-width signs): read as ``-`` and ``+``.
_SIGNS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-", "\uff0b": "+"})
#: Right ascensions (degrees) up to this far from 0 are wrapped into [0, 360); beyond, the value is no angle
#: anyone meant (a sentinel such as 1e30, or a column in arcseconds read as degrees): ``bad_position``.
RA_WRAP_LIMIT = 3600.0
#: Text taken as a blank position (case ignored).
_BLANK_TEXT = frozenset({"", "nan", "--", "null", "none"})


def _parse_angle(text: str, hours: bool) -> float:
    """Return degrees for one sexagesimal or decimal string, or NaN."""
    text = text.translate(_SIGNS)
    if _DECIMAL.match(text):
        return float(text)
    m = _SEXA.match(text)
    if not m:
        return np.nan
    sign, a, b, c = m.groups()
    a, b, c = int(a), int(b), float(c)
    if b >= 60 or c >= 60 or (hours and (sign == "-" or a >= 24)):
        return np.nan
    value = a + b / 60.0 + c / 3600.0
    value = value * 15.0 if hours else value
    return -value if sign == "-" else value


def _column_degrees(col: Column, hours_if_sexagesimal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return (degrees, why) for one column: NaN and a reason where a cell gives no angle, else ``""``."""
    n = len(col)
    mask = np.zeros(n, dtype=bool)
    if isinstance(col, MaskedColumn) or hasattr(col, "mask"):
        mask = np.asarray(np.ma.getmaskarray(col), dtype=bool)
    data = np.ma.getdata(col)
    if data.ndim > 1:
        raise CatalogError(
            f"column {col.name!r} holds an array of shape {data.shape[1:]} per row, not one angle: "
            "choose position columns of single values (--ra-col, --dec-col)"
        )
    why = np.full(n, "", dtype=object)
    if data.dtype.kind in "fiu":
        values = np.asarray(data, dtype=np.float64)  # a plain array: a Column would carry its unit along
        unit = col.unit
        if unit is not None:
            try:
                values = (values * u.Unit(unit)).to_value(u.deg)
            except (u.UnitConversionError, ValueError, TypeError):
                log.warning("column %s has unit %s, not an angle: taking its values as degrees", col.name, unit)
        with np.errstate(invalid="ignore"):
            why[np.isnan(values)] = "is NaN"
            why[np.isinf(values)] = "is infinite"
    elif data.dtype.kind in "USO":
        values = np.full(n, np.nan)
        for i, item in enumerate(data):
            if mask[i]:
                continue
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            text = str(item).strip()
            if text.lower() in _BLANK_TEXT:
                why[i] = "is blank"
                continue
            values[i] = _parse_angle(text, hours_if_sexagesimal)  # decimal text is degrees whatever this says
            if np.isnan(values[i]):
                shown = text if len(text) <= 40 else text[:37] + "..."
                why[i] = f"is not an angle: {shown!r}"
            elif np.isinf(values[i]):
                why[i] = "is infinite"
    else:
        raise CatalogError(f"column {col.name!r} has type {data.dtype}, which is not a position")
    why[mask] = "is blank (masked)"
    values = np.where(mask, np.nan, values)
    return values, why


def parse_positions(
    table: Table, ra_col: str, dec_col: str, with_reasons: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return right ascension and declination in degrees, and a status per row.

    Numeric columns are taken in their unit (degrees when they have none);
    strings may be decimal degrees or sexagesimal (``hh:mm:ss.s`` /
    ``±dd:mm:ss``, with colons, spaces or ``h m s`` / ``d m s`` letters; a
    Unicode minus sign or dash counts as ``-``), right ascension in hours
    when sexagesimal. Right ascensions outside [0, 360) are wrapped into it
    when they are within :data:`RA_WRAP_LIMIT` (3600°, ten turns) of 0;
    further out, a row is ``bad_position``, as are blank, masked, NaN,
    infinite or unparsable values and |Dec| > 90°.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog (or a chunk of it).
    ra_col, dec_col : str
        The position columns (:func:`find_position_columns`).
    with_reasons : bool
        Also return why each ``bad_position`` row has no position.

    Returns
    -------
    ra, dec : numpy.ndarray
        float64 degrees, NaN where the row has no usable position; ``ra`` in [0, 360).
    status : numpy.ndarray
        ``Status.OK`` or ``Status.BAD_POSITION`` per row (object array of str).
    reason : numpy.ndarray
        Only with ``with_reasons``: object array of str, e.g. ``"Dec 95.0 is beyond ±90"``; ``""`` for good rows.
    """
    ra, ra_why = _column_degrees(table[ra_col], hours_if_sexagesimal=True)
    dec, dec_why = _column_degrees(table[dec_col], hours_if_sexagesimal=False)
    n = len(ra)
    reason = np.full(n, "", dtype=object)
    with np.errstate(invalid="ignore"):
        far = np.isfinite(ra) & (np.abs(ra) > RA_WRAP_LIMIT)
        pole = np.isfinite(dec) & (np.abs(dec) > 90.0)
        good = np.isfinite(ra) & np.isfinite(dec) & ~far & ~pole
        wrapped = np.mod(np.where(good, ra, 0.0), 360.0)
    wrapped[wrapped >= 360.0] = 0.0  # np.mod(-1e-17, 360) is 360.0: it is 0 on the sky
    ra = np.where(good, wrapped, np.nan)
    dec = np.where(good, dec, np.nan)
    for i in np.flatnonzero(~good):
        parts = []
        if ra_why[i]:
            parts.append(f"RA {ra_why[i]}")
        elif far[i]:
            parts.append(f"RA {table[ra_col][i]} is more than {RA_WRAP_LIMIT:g} deg from 0: not an angle in degrees")
        if dec_why[i]:
            parts.append(f"Dec {dec_why[i]}")
        elif pole[i]:
            parts.append(f"Dec {table[dec_col][i]} is beyond ±90 deg")
        reason[i] = "; ".join(parts) or "no position"
    status = np.where(good, Status.OK, Status.BAD_POSITION).astype(object)
    nbad = int((~good).sum())
    if nbad:
        unparsable = int(sum(1 for w in (*ra_why, *dec_why) if w.startswith("is not an angle")))
        log.warning(
            "%d row(s) have no usable position (blank, NaN, unparsable%s, |Dec| > 90 or |RA| > %g): FR_STATUS=%s",
            nbad,
            f" [{unparsable} unparsable]" if unparsable else "",
            RA_WRAP_LIMIT,
            Status.BAD_POSITION,
        )
    if with_reasons:
        return ra, dec, status, reason
    return ra, dec, status


#: Suffix given to an input column named like one of :data:`OUTPUT_COLUMNS` but for case.
CLASH_SUFFIX = "_input"


def _rename_clashes(table: Table) -> dict[str, str]:
    """Rename, in place, the columns of ``table`` whose names equal an output column's without case.

    TOPCAT, STILTS and FITS readers match column names case-insensitively:
    beside our ``FR_CLASS`` an input ``fr_class`` would be taken for ours
    (``keepcols FR_CLASS`` picks the first). Each such column becomes
    ``<name>_input`` (``_input2``, ... when that is taken too, again without
    case). Returns ``{old name: new name}``.
    """
    ours = {c.upper() for c in OUTPUT_COLUMNS}
    renamed: dict[str, str] = {}
    for name in list(table.colnames):
        if name.upper() not in ours:
            continue
        taken = {c.upper() for c in table.colnames} | ours
        new, k = f"{name}{CLASH_SUFFIX}", 1
        while new.upper() in taken:
            k += 1
            new = f"{name}{CLASH_SUFFIX}{k}"
        table.rename_column(name, new)
        renamed[name] = new
    return renamed


def add_results(
    table: Table,
    fr_class: np.ndarray,
    p_fri: np.ndarray,
    status: np.ndarray,
    uncertainty: np.ndarray | None = None,
    provenance: Mapping[str, str] | None = None,
    measures: np.ndarray | None = None,
    ood: np.ndarray | None = None,
) -> Table:
    """Return a copy of ``table`` with the FR_ columns and provenance added.

    ``measures`` (``(N, k)``, the first four values of
    :func:`frsurvey.morphology.measure`: S/N, LAS, deconvolved size, number
    of components; NaN where not measured) adds :data:`MEASURE_COLUMNS`;
    ``ood`` adds ``FR_OOD``.

    Columns of ``table`` that already carry frsurvey's names (an earlier run)
    are replaced, and a warning says so. Columns named like ours but for case
    (a labeled catalog's ``fr_class``), which TOPCAT and STILTS would not tell
    from ours, are kept in place as ``<name>_input``, with a warning. Every
    other column, its values, unit, description and UCD, is kept unchanged
    and in place.
    """
    out = table.copy(copy_data=True)
    existing = [c for c in OUTPUT_COLUMNS if c in out.colnames]
    if existing:
        log.warning("the catalog already has %s (an earlier run?): replacing them", ", ".join(existing))
        out.remove_columns(existing)
    renamed = _rename_clashes(out)
    if renamed:
        log.warning(
            "the catalog has column(s) named like frsurvey's but for case; TOPCAT, STILTS and FITS readers match "
            "column names without case and would take them for ours, so they are kept under other names: %s",
            ", ".join(f"{old} -> {new}" for old, new in renamed.items()),
        )
    for key in PROVENANCE_KEYS:
        out.meta.pop(key, None)
    n = len(out)
    p_fri = np.asarray(p_fri, dtype=np.float64).reshape(n)
    cols = {
        "FR_CLASS": np.asarray(fr_class, dtype="U4").reshape(n),
        "P_FRI": p_fri,
        "P_FRII": np.where(np.isnan(p_fri), np.nan, 1.0 - p_fri),
    }
    if uncertainty is not None:
        cols["FR_UNCERTAINTY"] = np.asarray(uncertainty, dtype=np.float64).reshape(n)
    width = max([12] + [len(str(s)) for s in status])
    cols["FR_STATUS"] = np.asarray(status, dtype=f"U{width}").reshape(n)
    if measures is not None:
        m = np.asarray(measures, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, len(MEASURE_COLUMNS)))
        for k, name in enumerate(MEASURE_COLUMNS):
            if name == "FR_NCOMP":
                blank = np.isnan(m[:, k])
                cols[name] = np.ma.MaskedArray(np.where(blank, 0, m[:, k]).astype(np.int16), mask=blank)
            else:
                cols[name] = m[:, k]
    if ood is not None:
        cols["FR_OOD"] = np.asarray(ood, dtype=np.float64).reshape(n)
    for name, values in cols.items():
        spec = OUTPUT_COLUMNS[name]
        unit = spec.get("unit") or (u.dimensionless_unscaled if values.dtype.kind == "f" else None)
        kind = MaskedColumn if isinstance(values, np.ma.MaskedArray) else Column
        col = kind(values, name=name, unit=unit, description=spec["description"])
        col.meta["ucd"] = spec["ucd"]
        out.add_column(col)
    if provenance:
        out.meta.update({k: str(v) for k, v in provenance.items()})
    return out


def write_catalog(table: Table, path: str | os.PathLike, format: str | None = None, overwrite: bool = True) -> Path:
    """Write ``table`` to ``path`` atomically and return the path.

    The format comes from the extension (``.vot``/``.xml`` VOTable, ``.fits``
    FITS binary table, ``.ecsv``, ``.csv``) unless ``format`` is given. The
    file is written beside its destination under a temporary name and then
    renamed, so that ``path`` is never left half written. VOTables carry the
    provenance as INFO elements and UCDs, units and descriptions on every
    column; FITS tables carry ``TUCDn``/``TCOMMn`` and the provenance as
    header keywords; ECSV keeps everything; CSV keeps values only.

    Raises
    ------
    CatalogError
        If the format is unknown, or ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    fmt = format_from_path(path, format)
    if path.exists() and not overwrite:
        raise CatalogError(f"{str(path)!r} exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                _write_votable(table, tmp)
            elif fmt == "fits":
                _write_fits(table, tmp)
            elif fmt in ("csv", "ecsv"):
                with open(tmp, "w", encoding="utf-8", newline="") as f:
                    f.write(text_table(table, fmt))
            else:
                table.write(tmp, format=_ASTROPY_FORMAT[fmt], overwrite=True)
        replace_atomically(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        work.write(buf, format=_ASTROPY_FORMAT[fmt])
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
            text = _text_column(col)
            text.description = col.description
            out.replace_column(name, text)
    return out


def _provenance_items(table: Table) -> list[tuple[str, str, str]]:
    return [(k, str(table.meta[k]), PROVENANCE_KEYS[k]) for k in PROVENANCE_KEYS if k in table.meta]


#: Characters XML 1.0 cannot carry at all (not even as character references).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Column meta keys carried into the written files (others are astropy's own bookkeeping).
_KEPT_COLUMN_META = ("ucd", "utype", "xtype", "width", "precision")
#: TABLE attributes kept in ``meta`` by astropy's VOTable reader; written back as attributes, not INFO.
_TABLE_ATTRIBUTES = ("ID", "name", "ref", "ucd", "utype", "description")
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _text_column(col) -> MaskedColumn:
    """Return a column of Python text for any column: bytes decoded as UTF-8, arrays as space-separated values.

    None and blank cells become blank (masked); blank elements of arrays are
    written ``--``; characters XML cannot carry become U+FFFD.
    """
    data = np.ma.getdata(col)
    full = np.ma.getmaskarray(col)
    if data.dtype.kind == "U" and data.ndim == 1 and not _XML_ILLEGAL.search("".join(data.tolist())):
        return MaskedColumn(data.copy(), mask=full.copy())  # the common case, without a loop over rows
    if full.ndim > 1:
        elements = full.reshape(full.shape[0], -1)
        mask = elements.all(axis=1) if elements.shape[1] else np.zeros(len(col), dtype=bool)
    else:
        elements, mask = None, full.copy()
    out = []
    for i, item in enumerate(data):
        if mask[i] or item is None or item is np.ma.masked:
            mask[i] = True
            out.append("")
            continue
        if isinstance(item, (bytes, np.bytes_)):
            item = bytes(item).decode("utf-8", "replace")
        elif isinstance(item, np.ndarray) and item.ndim:
            blank = elements[i] if elements is not None else np.ma.getmaskarray(item).ravel()
            item = " ".join("--" if b else str(x) for x, b in zip(np.ma.getdata(item).ravel(), blank))
        out.append(_XML_ILLEGAL.sub("\ufffd", str(item)))
    width = max([1] + [len(x) for x in out])
    return MaskedColumn(np.array(out, dtype=f"U{width}"), mask=mask)


def _free_integer(values: np.ndarray, dtype: np.dtype) -> int | None:
    """Return an integer of ``dtype`` that is not among ``values`` (a null value for it), or None."""
    info = np.iinfo(dtype)
    present = np.unique(values)
    for candidate in (info.min, info.max, -1, 0):
        if info.min <= candidate <= info.max and not np.isin(candidate, present):
            return int(candidate)
    if len(present) < info.max - info.min + 1:  # a gap somewhere: the first one after the minimum
        ints = present.astype(np.int64)
        gaps = np.flatnonzero(np.diff(ints) > 1)
        if len(gaps):
            return int(ints[gaps[0]] + 1)
    return None


def _variable_arrays(col, items: list[np.ndarray]) -> Column:
    """Return a variable-length array column as a plain object Column of plain arrays of one type.

    Blank cells become empty arrays; blank elements NaN (floats) or stay
    as they are (integers, booleans).
    """
    dtype = np.result_type(*[x.dtype for x in items])
    mask = np.ma.getmaskarray(col)
    cells = np.empty(len(col), dtype=object)
    for i, x in enumerate(np.ma.getdata(col)):
        if mask[i] or x is None or x is np.ma.masked:
            cells[i] = np.zeros(0, dtype=dtype)
        elif dtype.kind in "fc":
            cells[i] = np.ma.filled(np.ma.asarray(x).astype(dtype), np.nan)
        else:
            cells[i] = np.ma.getdata(x).astype(dtype)
    return Column(cells, dtype=object)


def _plain_column(col) -> Column:
    """Return ``col`` as a plain Column that both VOTable and FITS can hold as it is.

    Values, mask, unit, description and UCD are kept; types the formats lack
    become the nearest wider type (``int8`` -> ``int16``, ``uint16`` ->
    ``int32``, ``float16`` -> ``float32``, ...); bytes are decoded as UTF-8;
    object columns of text become text; characters XML cannot carry become
    U+FFFD. Masked integers get a null value (``meta['null']``) that no
    unmasked value takes, widening the type when every value is taken.
    """
    data = np.ma.getdata(col)
    masked = bool(np.any(np.ma.getmaskarray(col)))
    kind = data.dtype.kind
    if kind == "O":
        items = [x for x in data if x is not None and x is not np.ma.masked]
        if items and all(isinstance(x, np.ndarray) and x.dtype.kind in "biufc" for x in items):
            new = _variable_arrays(col, items)  # both formats have them
        else:
            new = _text_column(col)
    elif kind in "SUMmV":
        new = _text_column(col)
    else:
        target = data.dtype
        if kind == "i" and data.dtype.itemsize == 1:
            target = np.dtype(np.int16)
        elif kind == "u" and (data.dtype.itemsize > 1 or masked):
            target = np.dtype({1: np.int16, 2: np.int32}.get(data.dtype.itemsize, np.int64))
            if data.dtype.itemsize == 8 and data.size and data.max() > np.iinfo(np.int64).max:
                target = np.dtype(np.float64)
        elif kind == "f" and data.dtype.itemsize not in (4, 8):
            target = np.dtype(np.float32 if data.dtype.itemsize < 4 else np.float64)
        elif kind == "c" and data.dtype.itemsize not in (8, 16):
            target = np.dtype(np.complex128)
        cls = MaskedColumn if masked else Column
        kwargs = {"mask": np.ma.getmaskarray(col)} if masked else {}
        new = cls(np.asarray(data, dtype=target), **kwargs)
        declared = ((col.info.meta or {}).get("values") or {}).get("null")  # the input's own null value
        if target.kind == "i" and declared is not None and not masked:
            new.meta["null"] = int(declared)  # its nulls are still in the data, unmasked
        elif masked and target.kind == "i":
            good = np.asarray(new.data)[~np.ma.getmaskarray(new)]
            null = _free_integer(good, target)
            if declared is not None and not np.isin(int(declared), good):
                null = int(declared)
            while null is None:  # every value of the type is taken: widen it
                target = np.dtype({2: np.int32, 4: np.int64}.get(target.itemsize, np.int64))
                new = MaskedColumn(np.asarray(data, dtype=target), mask=np.ma.getmaskarray(col))
                null = _free_integer(good.astype(target), target)
            new.fill_value = null
            new.meta["null"] = null
    new.name = col.info.name
    new.unit = col.info.unit
    new.description = col.info.description
    for key in _KEPT_COLUMN_META:
        value = (col.info.meta or {}).get(key)
        if value is not None:
            new.meta[key] = value
    return new


def _plain_table(table: Table) -> Table:
    """Return ``table`` with plain columns only (see :func:`_plain_column`) and no meta.

    Times become ISO 8601 text (``xtype`` ``timestamp``); other mixin
    columns (quantities, coordinates) become the plain columns astropy
    represents them with.
    """
    from astropy.table.serialize import represent_mixins_as_columns
    from astropy.time import Time

    work = Table(table, copy=False)
    work.meta = {}
    for name in [n for n in work.colnames if isinstance(work[n], Time)]:
        t = work[name]
        text = MaskedColumn(
            np.array([str(x) for x in np.ma.getdata(t.isot)], dtype=str),
            mask=np.ma.getmaskarray(getattr(t, "mask", False)),
        )
        text.description = t.info.description
        text.meta["xtype"] = "timestamp"
        for key in ("ucd", "utype"):
            if (t.info.meta or {}).get(key):
                text.meta[key] = t.info.meta[key]
        work.replace_column(name, text)
    if work.has_mixin_columns:
        work = represent_mixins_as_columns(work)
    return Table([_plain_column(work[n]) for n in work.colnames], meta={})


def _extra_meta(table: Table) -> list[tuple[str, str]]:
    """Table meta other than provenance and TABLE attributes, as (key, text) pairs."""
    out = []
    for key, value in table.meta.items():
        if (
            key in PROVENANCE_KEYS
            or key in _TABLE_ATTRIBUTES
            or _COLUMN_KEYWORD.match(str(key))
            or not isinstance(value, (str, int, float, bool, np.number))
        ):
            continue
        out.append((str(key), str(value)))
    return out


def _never(*args) -> bool:
    return False


def _no_empty_cells(field) -> None:
    """Make astropy write the blank elements of a fixed-size array cell (``?``) rather than ``<TD/>``."""
    setup = field._setup

    def _setup(config, pos):  # astropy sets the converter up again when it writes the FIELD
        setup(config, pos)
        field.converter.supports_empty_values = _never

    field._setup = _setup
    _setup({}, None)


def _fill_fixed_cells(table: Table) -> None:
    """Write blanks of numeric arrays as values (NaN, the null value), and complex numbers as pairs, in place.

    An empty ``<TD/>`` is no value for a fixed-size array, and astropy
    writes one where every element of a cell is blank; NaN and the FIELD's
    null value say "blank" element by element. Complex numbers become
    (real, imaginary) pairs of floats, as STIL reads them anyway.
    """
    for name in table.colnames:
        col = table[name]
        mask = np.ma.getmaskarray(col)
        if col.dtype.kind == "c":
            # as STIL holds them: (real, imaginary) pairs; astropy writes complex NaN as 'nan', which is no VOTable
            data = np.ma.getdata(col)
            pairs = np.stack([data.real, data.imag], axis=-1)
            pairs[mask] = np.nan
            col = Column(pairs, unit=col.unit, description=col.description, meta=col.meta)
            table.replace_column(name, col)
            continue
        if not mask.any() or col.ndim < 2 or col.dtype.kind not in "iuf":
            continue
        fill = col.meta.get("null") if col.dtype.kind in "iu" else np.nan
        if fill is None:
            continue
        filled = Column(np.ma.filled(col, fill), unit=col.unit, description=col.description, meta=col.meta)
        table.replace_column(name, filled)


def _write_votable(table: Table, path: str, plain: Table | None = None) -> None:
    """Write a VOTable 1.4 (TABLEDATA) that ``stilts votlint`` accepts without errors or warnings.

    FIELDs carry name, datatype, unit, UCD and DESCRIPTION; integers with
    blanks a null value; booleans the ``boolean`` type (``bit`` has no null);
    text ``char`` when it is ASCII, ``unicodeChar`` otherwise, of variable
    length. IDs are written only where they are valid XML IDs, unique in the
    document. Provenance goes into INFO elements with their meaning as text.
    """
    from astropy.io.votable import converters
    from astropy.io.votable.tree import Info, VOTableFile

    plain = _plain_table(table) if plain is None else plain  # given: frsurvey.stream's chunks
    _fill_fixed_cells(plain)
    vot = VOTableFile.from_table(plain)
    resource = vot.resources[0]
    votab = resource.tables[0]
    ids: set[str] = set()
    for field, name in zip(votab.fields, plain.colnames):
        col = plain[name]
        kind = col.dtype.kind
        if _NCNAME.match(name) and name not in ids:
            field.ID = name
            ids.add(name)
        else:
            field.ID = None
        if kind == "b":
            field.datatype = "boolean"
        elif kind == "U":
            text = np.ma.getdata(col)
            field.datatype = "char" if "".join(str(x) for x in text).isascii() else "unicodeChar"
            field.arraysize = "*"
        elif kind in "iu" and "null" in col.meta:
            field.values.null = col.meta["null"]
        else:
            continue
        field.converter = converters.get_converter(field)
        if kind == "b" and col.ndim > 1 and np.any(np.ma.getmaskarray(col).all(axis=tuple(range(1, col.ndim)))):
            _no_empty_cells(field)
    for key in ("name", "description"):
        value = table.meta.get(key)
        if isinstance(value, str) and value.strip():
            setattr(votab, key, value)
    resource.description = (
        f"Catalog with Fanaroff-Riley classifications by frsurvey (columns {', '.join(OUTPUT_COLUMNS)})"
        if any(c in table.colnames for c in OUTPUT_COLUMNS)
        else None
    )
    for key, value, meaning in _provenance_items(table):
        info = Info(name=key, value=_XML_ILLEGAL.sub("\ufffd", value))
        info.ID = None
        info.content = meaning
        resource.infos.append(info)
    for key, value in _extra_meta(table):
        info = Info(name=_XML_ILLEGAL.sub("\ufffd", key), value=_XML_ILLEGAL.sub("\ufffd", value))
        info.ID = None
        resource.infos.append(info)
    vot.to_xml(path)
    if len(plain) == 0:  # astropy leaves DATA out, and STIL reads a TABLE without DATA as no table at all
        text = Path(path).read_text(encoding="utf-8")
        cut = text.rindex("</TABLE>")
        indent = text[:cut].rsplit("\n", 1)[1]
        data = f"{indent} <DATA>\n{indent}  <TABLEDATA/>\n{indent} </DATA>\n"
        Path(path).write_text(text[: cut - len(indent)] + data + text[cut - len(indent) :], encoding="utf-8")


def _write_fits(table: Table, path: str, plain: Table | None = None) -> None:
    """Write a FITS binary table TOPCAT and STILTS read as meant.

    ``TUNITn``, ``TUCDn`` and ``TCOMMn`` for every column that has them,
    ``TNULLn`` for integer columns with blanks (a value no row takes), FITS
    logical nulls for blank booleans, and the provenance as header keywords
    with comments. FITS text is ASCII: other characters become ``?`` (with a
    warning; a VOTable keeps them).
    """
    from astropy.io import fits

    plain = _plain_table(table) if plain is None else plain  # given: frsurvey.stream's chunks
    for name in plain.colnames:
        if not (name.isascii() and name.isprintable()):
            new_name = _fits_text(name)
            while new_name in plain.colnames:
                new_name += "_"
            log.warning("column %r is named %r in the FITS table (FITS names are ASCII)", name, new_name)
            plain.rename_column(name, new_name)
    null_booleans: dict[str, np.ndarray] = {}
    for name in plain.colnames:
        col = plain[name]
        if col.dtype.kind == "U":
            text = [str(x) for x in np.ma.getdata(col)]
            if not all(x.isascii() for x in text):
                log.warning(
                    "column %s has non-ASCII text: '?' stands for it in the FITS table (FITS text is ASCII)", name
                )
                fixed = MaskedColumn(
                    np.array([_fits_text(x) for x in text], dtype=col.dtype),  # one '?' a character: same width
                    mask=np.ma.getmaskarray(col),
                    unit=col.unit,
                    description=col.description,
                    meta=col.meta,
                )
                plain.replace_column(name, fixed)
        elif col.dtype.kind == "b" and np.any(np.ma.getmaskarray(col)):
            null_booleans[name] = np.ma.getmaskarray(col).copy()
        elif "null" in col.meta:  # blank integers hold the TNULL value
            filled = Column(col.filled(col.meta["null"]), unit=col.unit, description=col.description, meta=col.meta)
            plain.replace_column(name, filled)
    for key, value in _extra_meta(table):
        plain.meta[key] = _fits_text(value)
    if isinstance(table.meta.get("name"), str) and "EXTNAME" not in plain.meta:
        plain.meta["EXTNAME"] = _fits_text(table.meta["name"])
    hdu = fits.table_to_hdu(plain)
    header = hdu.header
    for n, col in enumerate(plain.itercols(), start=1):
        ucd = col.meta.get("ucd")
        if ucd:
            header[f"TUCD{n}"] = (str(ucd), f"UCD of {col.name}"[:46])
        if col.description:
            header[f"TCOMM{n}"] = _fits_text(col.description)
        if "null" in col.meta:
            header[f"TNULL{n}"] = (int(col.meta["null"]), "value of blank (null) entries")
    for key, value, meaning in _provenance_items(table):
        header[key] = (_fits_text(value), meaning)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    if null_booleans:
        _blank_fits_logicals(path, null_booleans)


def _blank_fits_logicals(path: str, masks: dict[str, np.ndarray]) -> None:
    """Set the bytes of blank booleans in the first table extension of ``path`` to 0, FITS's logical null.

    astropy writes a blank boolean as a value; the FITS standard's null for
    ``L`` columns is the byte 0, which it has no way to write.
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = hdul[1]
        offset = hdul.fileinfo(1)["datLoc"]
        rowlen = hdu.header["NAXIS1"]
        nrows = hdu.header["NAXIS2"]
        starts = {name: hdu.data.dtype.fields[name][1] for name in masks}
    raw = np.memmap(path, dtype=np.uint8, mode="r+", offset=offset, shape=(nrows, rowlen))
    try:
        for name, mask in masks.items():
            mask = mask.reshape(nrows, -1)
            for k in range(mask.shape[1]):
                raw[mask[:, k], starts[name] + k] = 0
        raw.flush()
    finally:
        del raw


def _fits_text(text: str) -> str:
    # FITS header values are printable ASCII.
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))
