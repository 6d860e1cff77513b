"""What frsurvey uses of astropy.io.fits beyond its public API, in one place.

The local source reads FIRST's plain float images straight from the file
(only the rows of a cutout), which needs where an HDU's data start (public:
``hdu.fileinfo()['datLoc']``) and whether astropy decompressed the file on
opening (private: the file object's ``compression``). It also tells
astropy's refusal to memory-map scaled data from other errors by its
message.

``tests/test_compat.py`` checks every promise made here against the
installed astropy and names its version when one no longer holds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MEMMAP_REFUSAL", "compression", "data_offset", "refuses_memmap"]

#: Part of the message of the ValueError astropy raises when asked to memory-map scaled data.
MEMMAP_REFUSAL = "memory-mapped"


def data_offset(hdul: Any, index: int) -> int:
    """Return where the data of HDU ``index`` start in its file, in bytes from the file's start.

    Public API: the ``datLoc`` of the HDU's own ``fileinfo()`` (which
    formats no header card; ``HDUList.fileinfo(index)``, which does, is
    asked only when the HDU has no file of its own). Replaces the private ``hdu._data_offset``, which holds the
    same number.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        Opened from a file (``fits.open``).
    index : int
        The HDU's position in ``hdul``.

    Returns
    -------
    int
        The offset of the first data byte (a multiple of 2880 for a
        standard file); the HDU's pixels are the ``NAXIS1 * NAXIS2 * ...``
        values that follow, big-endian.

    Raises
    ------
    TypeError
        If the HDU is associated with no file.
    """
    info = hdul[index].fileinfo()
    if info is None or info.get("datLoc") is None:
        info = hdul.fileinfo(index)
    return int(info["datLoc"])


def compression(hdul: Any) -> str | None:
    """Return how astropy decompressed the file of ``hdul`` on opening (``gzip``, ``bzip2``, ...), or None.

    Wraps the private attribute ``HDUList._file.compression`` (astropy
    >= 4): astropy opens a compressed file whatever its name, told by its
    first bytes. No public API says so.

    Returns
    -------
    str or None
        A true value exactly when astropy decompresses the file to read it
        (so its bytes on disk are not the FITS bytes); None for a plain
        file, and for an HDUList without a file.
    """
    return getattr(getattr(hdul, "_file", None), "compression", None)


def refuses_memmap(exc: BaseException) -> bool:
    """Return True if ``exc`` is astropy's refusal to memory-map scaled data (BSCALE, BZERO, BLANK).

    astropy raises a ValueError whose message says the data "cannot be
    memory-mapped" when ``hdu.data`` is read from a file opened with
    ``memmap=True``; the data are then read with ``memmap=False``. Relies
    on the message's wording (no exception class of its own).
    """
    return isinstance(exc, ValueError) and MEMMAP_REFUSAL in str(exc)
