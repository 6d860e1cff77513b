"""Writing catalogs: a whole table (:func:`write_catalog`) or a file chunk by chunk (:class:`ChunkWriter`), atomically."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from astropy.table import Table

from .._utils import replace_atomically
from .fits import write_fits
from .formats import ASTROPY_FORMAT, CatalogError, format_from_path
from .streams import STREAMS, Stream
from .text import text_table
from .votable import write_votable

__all__ = ["ChunkWriter", "write_catalog"]


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
                write_votable(table, tmp)
            elif fmt == "fits":
                write_fits(table, tmp)
            elif fmt in ("csv", "ecsv"):
                with open(tmp, "w", encoding="utf-8", newline="") as f:
                    f.write(text_table(table, fmt))
            else:
                table.write(tmp, format=ASTROPY_FORMAT[fmt], overwrite=True)
        replace_atomically(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ChunkWriter:
    """Write a catalog chunk by chunk; :meth:`close` puts the finished file in place.

    The output is what :func:`frsurvey.io.write_catalog` writes for the
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
        self._stream: Stream | None = None

    def write(self, chunk: Table) -> None:
        """Add the next rows (a table with the same columns as the ones before)."""
        self.rows += len(chunk)
        if self._first is None and self._stream is None:
            self._first = chunk
            return
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = STREAMS[self.format](self.path, self.scratch)
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
