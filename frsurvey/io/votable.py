"""VOTables: reading one table of a file, and writing one (whole or assembled from chunks)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Column, Table

from .._compat.votable import add_empty_data, write_blank_array_elements
from .columns import OUTPUT_COLUMNS
from .formats import CatalogError
from .plain import XML_ILLEGAL, extra_meta, plain_table, provenance_items

__all__ = ["read_votable_table", "write_votable"]

log = logging.getLogger(__name__)


def read_votable_table(path: Path, index: int | None) -> Table:
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


_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


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


def write_votable(table: Table, path: str, plain: Table | None = None) -> None:
    """Write a VOTable 1.4 (TABLEDATA) that ``stilts votlint`` accepts without errors or warnings.

    FIELDs carry name, datatype, unit, UCD and DESCRIPTION; integers with
    blanks a null value; booleans the ``boolean`` type (``bit`` has no null);
    text ``char`` when it is ASCII, ``unicodeChar`` otherwise, of variable
    length. IDs are written only where they are valid XML IDs, unique in the
    document. Provenance goes into INFO elements with their meaning as text.
    """
    from astropy.io.votable import converters
    from astropy.io.votable.tree import Info, VOTableFile

    plain = plain_table(table) if plain is None else plain  # given: the chunked writers
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
            write_blank_array_elements(field)
    for key in ("name", "description"):
        value = table.meta.get(key)
        if isinstance(value, str) and value.strip():
            setattr(votab, key, value)
    resource.description = (
        f"Catalog with Fanaroff-Riley classifications by frsurvey (columns {', '.join(OUTPUT_COLUMNS)})"
        if any(c in table.colnames for c in OUTPUT_COLUMNS)
        else None
    )
    for key, value, meaning in provenance_items(table):
        info = Info(name=key, value=XML_ILLEGAL.sub("\ufffd", value))
        info.ID = None
        info.content = meaning
        resource.infos.append(info)
    for key, value in extra_meta(table):
        info = Info(name=XML_ILLEGAL.sub("\ufffd", key), value=XML_ILLEGAL.sub("\ufffd", value))
        info.ID = None
        resource.infos.append(info)
    vot.to_xml(path)
    if len(plain) == 0:  # astropy leaves DATA out, and STIL reads a TABLE without DATA as no table at all
        add_empty_data(path)
