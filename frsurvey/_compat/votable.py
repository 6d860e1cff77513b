"""Adapter over astropy.io.votable's writer: what frsurvey changes in, or relies on in, the XML it writes.

- :func:`write_blank_array_elements`: astropy writes an all-blank cell of a
  fixed-size boolean array as ``<TD/>``, which is no value for such a cell.
  Its converter decides that with ``supports_empty_values``, and a FIELD
  sets its converter up again when written (the private ``Field._setup``);
  this wraps both so that blank elements are written one by one (``?``).
- :func:`add_empty_data`: astropy writes a table of no rows without a
  ``DATA`` element, and STIL reads a ``TABLE`` without ``DATA`` as no table;
  this adds an empty ``TABLEDATA`` to the written text, unless there is one.
- :func:`split_tabledata`: astropy writes the TABLEDATA rows on lines of
  their own, between the lines of ``<TABLEDATA>`` and ``</TABLEDATA>``; the
  chunked VOTable writer joins the rows of several such files.

``tests/test_compat.py`` checks each promise against the installed astropy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["add_empty_data", "split_tabledata", "write_blank_array_elements"]


def _never(*args: Any) -> bool:
    return False


def write_blank_array_elements(field: Any) -> None:
    """Make astropy write each blank element of ``field``'s cells (``?``) rather than an empty ``<TD/>``.

    ``field`` is an ``astropy.io.votable.tree.Field`` whose converter is set.
    """
    setup = field._setup

    def _setup(config, pos):  # astropy sets the converter up again when it writes the FIELD
        setup(config, pos)
        field.converter.supports_empty_values = _never

    field._setup = _setup
    _setup({}, None)


def add_empty_data(path: str | Path) -> None:
    """Give the last ``TABLE`` of the VOTable file ``path`` an empty ``DATA``/``TABLEDATA`` if it has no ``DATA``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    cut = text.rindex("</TABLE>")
    table = max(m.start() for m in re.finditer(r"<TABLE[\s>]", text[:cut]))
    if "<DATA" in text[table:cut]:
        return
    indent = text[:cut].rsplit("\n", 1)[1]
    data = f"{indent} <DATA>\n{indent}  <TABLEDATA/>\n{indent} </DATA>\n"
    path.write_text(text[: cut - len(indent)] + data + text[cut - len(indent) :], encoding="utf-8")


def split_tabledata(text: str) -> tuple[str, str, str]:
    """Return (everything up to the TABLEDATA rows, the rows, everything after them) of a VOTable's text."""
    start = text.index("<TABLEDATA>")
    start = text.index("\n", start) + 1
    end = text.rindex("</TABLEDATA>")
    end = text.rindex("\n", 0, end) + 1
    return text[:start], text[start:end], text[end:]
