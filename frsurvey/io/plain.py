"""Tables made plain for the binary formats: text columns, integer nulls, variable-length arrays, kept meta."""

from __future__ import annotations

import re

import numpy as np
from astropy.table import Column, MaskedColumn, Table

from .columns import PROVENANCE_KEYS
from .formats import CatalogError

#: FITS column keywords frsurvey writes from the columns themselves (never from table meta).
COLUMN_KEYWORD = re.compile(r"^T(UCD|COMM)\d+$", re.IGNORECASE)

#: TABLE attributes kept in ``meta`` by astropy's VOTable reader; written back as attributes, not INFO.
_TABLE_ATTRIBUTES = ("ID", "name", "ref", "ucd", "utype", "description")

#: Characters XML 1.0 cannot carry at all (not even as character references).
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

__all__ = [
    "COLUMN_KEYWORD",
    "XML_ILLEGAL",
    "coerce_like",
    "extra_meta",
    "plain_table",
    "provenance_items",
    "representative_rows",
    "text_column",
]


def provenance_items(table: Table) -> list[tuple[str, str, str]]:
    return [(k, str(table.meta[k]), PROVENANCE_KEYS[k]) for k in PROVENANCE_KEYS if k in table.meta]


#: Column meta keys carried into the written files (others are astropy's own bookkeeping).
_KEPT_COLUMN_META = ("ucd", "utype", "xtype", "width", "precision")


def text_column(col) -> MaskedColumn:
    """Return a column of Python text for any column: bytes decoded as UTF-8, arrays as space-separated values.

    None and blank cells become blank (masked); blank elements of arrays are
    written ``--``; characters XML cannot carry become U+FFFD.
    """
    data = np.ma.getdata(col)
    full = np.ma.getmaskarray(col)
    if data.dtype.kind == "U" and data.ndim == 1 and not XML_ILLEGAL.search("".join(data.tolist())):
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
        out.append(XML_ILLEGAL.sub("\ufffd", str(item)))
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
            new = text_column(col)
    elif kind in "SUMmV":
        new = text_column(col)
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


def plain_table(table: Table) -> Table:
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


def extra_meta(table: Table) -> list[tuple[str, str]]:
    """Table meta other than provenance and TABLE attributes, as (key, text) pairs."""
    out = []
    for key, value in table.meta.items():
        if (
            key in PROVENANCE_KEYS
            or key in _TABLE_ATTRIBUTES
            or COLUMN_KEYWORD.match(str(key))
            or not isinstance(value, (str, int, float, bool, np.number))
        ):
            continue
        out.append((str(key), str(value)))
    return out


#: Integer values a null value may be chosen from, besides a column's own (see _free_integer).
_NULL_CANDIDATES = sorted(
    {-1, 0}
    | {int(np.iinfo(t).min) for t in (np.int8, np.int16, np.int32, np.int64)}
    | {int(np.iinfo(t).max) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)}
)


def representative_rows(plain: Table, raw: Table) -> np.ndarray:
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


def coerce_like(plain: Table, merged: Table) -> Table:
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
