"""Catalog file formats: the format of a file from its extension, compressed files, and the error catalogs raise."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ASTROPY_FORMAT",
    "MAX_CATALOG_BYTES",
    "CatalogError",
    "check_compressed_size",
    "check_exists",
    "compression",
    "format_from_path",
]


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


ASTROPY_FORMAT = {"fits": "fits", "votable": "votable", "ecsv": "ascii.ecsv", "csv": "ascii.csv"}


class CatalogError(ValueError):
    """Raised when a catalog cannot be read or written as asked."""


#: Largest decompressed size, in bytes, of a compressed catalog file (gzip, bzip2, xz): 2 GiB.
#: A compressed file is inflated in memory by its reader; a larger one is refused before it is
#: read (``--max-catalog-bytes``). Uncompressed files are not limited (FITS tables are read by
#: row ranges of the memory-mapped file).
MAX_CATALOG_BYTES = 2 * 1024**3


#: Magic numbers of the compressions astropy's readers open on their own.
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}


def compression(path: Path) -> str | None:
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
    kind = compression(path)
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
        if key not in ASTROPY_FORMAT:
            raise CatalogError(f"unknown catalog format {format!r}; use one of {sorted(ASTROPY_FORMAT)}")
        return key
    name = str(path).lower()
    for ext in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return _FORMATS[ext]
    raise CatalogError(
        f"cannot tell the catalog format of {str(path)!r} from its extension; "
        f"use one of {sorted(_FORMATS)} or give the format explicitly (--format)"
    )


def check_exists(path: Path) -> None:
    """Raise CatalogError if ``path`` is missing, not a file, or empty (no header: no table at all)."""
    if not path.exists():
        raise CatalogError(f"catalog {str(path)!r} does not exist")
    if not path.is_file():
        raise CatalogError(f"catalog {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CatalogError(f"catalog {str(path)!r} is an empty file (0 bytes): it holds no table, not even a header")
