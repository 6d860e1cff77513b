"""Positions: finding a catalog's RA/Dec columns (by UCD or name) and reading them as degrees, with a reason for each bad row."""

from __future__ import annotations

import logging
import re

import numpy as np
from astropy import units as u
from astropy.table import Column, MaskedColumn, Table

from ..status import Status
from .formats import CatalogError

__all__ = ["RA_WRAP_LIMIT", "NoPositionColumnsError", "find_position_columns", "parse_positions"]

log = logging.getLogger(__name__)


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


class NoPositionColumnsError(CatalogError):
    """Raised when no right ascension / declination columns can be found."""


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
