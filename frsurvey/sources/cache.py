"""The on-disk cache of downloaded cutouts.

One file per request, holding the bytes exactly as the service sent them
(SkyView's headers carry tab characters astropy would refuse to write back),
at a path made of what identifies the request: service, survey, size and
position::

    <root>/skyview/VLA_FIRST_1.4_GHz/300px/ra010/10.4509_-9.28422.fits
    <root>/first/FIRST/9arcmin/ra162/162.7500000_+30.7600000.fits

(one directory per degree of right ascension keeps directories small for
catalogs of millions of rows). Files are written under a temporary name in
the same directory and renamed into place, so that a killed run never leaves
a half file under a real name; a file that is there is complete.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .._utils import umask, user_dir

__all__ = ["CutoutCache", "check_path_part", "default_cache_dir"]

#: Environment variable that overrides the default cache directory.
CACHE_ENV = "FRSURVEY_CACHE"


def default_cache_dir() -> Path:
    """Return the user's cache directory for frsurvey.

    ``$FRSURVEY_CACHE`` if set; else ``$XDG_CACHE_HOME/frsurvey`` or
    ``~/.cache/frsurvey`` (Linux and other Unixes), ``~/Library/Caches/frsurvey``
    (macOS), ``%LOCALAPPDATA%\\frsurvey\\Cache`` (Windows), as platformdirs
    would say.
    """
    return user_dir("cache", CACHE_ENV)


def _slug(text: str) -> str:
    """Return ``text`` as a file-name part: runs of other characters become ``_``.

    Raises
    ------
    ValueError
        If the part would name no file of its own (``.``, ``..``, or only dots).
    """
    part = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(text)).strip("_") or "_"
    if part.strip(".") == "":
        raise ValueError(f"{text!r} cannot be part of a cache path (it would name a directory above)")
    return part


def check_path_part(text: str, what: str) -> str:
    """Return ``text`` if it can be one part of a cache path, else raise ValueError.

    A part holds no path separator, NUL or other control character, and is
    not empty, ``.`` or ``..`` (nor only dots): it cannot lead outside its
    folder of the cache.
    """
    text = str(text)
    if not text or text.strip(".") == "" or re.search(r"[/\\\x00-\x1f]", text) or (os.altsep and os.altsep in text):
        raise ValueError(f"{what} {text!r} cannot be part of a cache path: no separators, no '..', not empty")
    return text


class CutoutCache:
    """A directory of downloaded cutouts, keyed by service, survey, size and position.

    Parameters
    ----------
    root : str or path-like, optional
        The cache directory (created on first write); default
        :func:`default_cache_dir`.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self._mode = 0o666 & ~umask()

    def __repr__(self) -> str:
        return f"CutoutCache({str(self.root)!r})"

    def path(self, service: str, survey: str, size: str, position: str) -> Path:
        """Return where the cutout of one request lives (whether or not it is there).

        ``position`` is the request's position as it is sent to the service
        (``"10.4509 -9.28422"``), or decimal degrees ``"ra dec"``; its first
        number (right ascension, degrees) picks the subdirectory.
        """
        try:
            shard = f"ra{int(float(position.split()[0])) % 360:03d}"
        except (ValueError, IndexError, OverflowError):
            shard = "other"
        parts = [check_path_part(v, w) for v, w in ((service, "service"), (survey, "survey"), (size, "size"))]
        return self.root / _slug(parts[0]) / _slug(parts[1]) / _slug(parts[2]) / shard / f"{_slug(position)}.fits"

    def write(self, path: str | os.PathLike, content: bytes) -> Path:
        """Write ``content`` to ``path`` atomically (temporary file, then rename) and return the path.

        Raises
        ------
        OSError
            If the directory cannot be created or written; no file is left
            behind under a temporary or a real name.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(tmp, self._mode)  # mkstemp made it private
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
