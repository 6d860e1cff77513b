"""FITS binary tables: reading one table of a file, and writing one (whole or assembled from chunks)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.table import Column, MaskedColumn, Table

from .formats import CatalogError
from .plain import COLUMN_KEYWORD, extra_meta, plain_table, provenance_items

__all__ = ["fits_hdu_table", "fits_layout", "fits_table_choice", "read_fits_table", "write_fits"]

log = logging.getLogger(__name__)


def fits_table_choice(hdul, path: Path, index: int | None) -> tuple[int, str | None]:
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


def read_fits_table(path: Path, index: int | None) -> Table:
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu, note = fits_table_choice(hdul, path, index)
        result = fits_hdu_table(hdul[hdu])
        if note:
            result.meta["frsurvey_table_note"] = note
    return result


def fits_hdu_table(hdu) -> Table:
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
    for key in [k for k in result.meta if COLUMN_KEYWORD.match(str(k))]:
        del result.meta[key]
    return result


def write_fits(table: Table, path: str, plain: Table | None = None) -> None:
    """Write a FITS binary table TOPCAT and STILTS read as meant.

    ``TUNITn``, ``TUCDn`` and ``TCOMMn`` for every column that has them,
    ``TNULLn`` for integer columns with blanks (a value no row takes), FITS
    logical nulls for blank booleans, and the provenance as header keywords
    with comments. FITS text is ASCII: other characters become ``?`` (with a
    warning; a VOTable keeps them).
    """
    from astropy.io import fits

    plain = plain_table(table) if plain is None else plain  # given: the chunked writers
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
    for key, value in extra_meta(table):
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
    for key, value, meaning in provenance_items(table):
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


#: FITS header keywords that describe the row layout; every chunk must have the same.
_LAYOUT = ("NAXIS1", "TFIELDS", "PCOUNT", "GCOUNT")


_COLUMN_LAYOUT = ("TTYPE", "TFORM", "TDIM", "TNULL", "TSCAL", "TZERO")


def fits_layout(header) -> tuple:
    n = int(header.get("TFIELDS", 0))
    return tuple(header.get(k) for k in _LAYOUT) + tuple(
        header.get(f"{k}{i}") for i in range(1, n + 1) for k in _COLUMN_LAYOUT
    )
