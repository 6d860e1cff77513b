"""Image sources: where the FIRST cutouts come from.

One module per source, each a class with the :class:`~frsurvey.sources.base.ImageSource`
interface (``locate`` positions, ``load`` a cutout):

- :mod:`frsurvey.sources.local`: a local directory of FITS images.
- :mod:`frsurvey.sources.skyview`: NASA's SkyView (``VLA FIRST (1.4 GHz)``, 300 px),
  as the FRDEEP-F and MiraBest images were made.
- :mod:`frsurvey.sources.first`: the FIRST survey's own cutout server.

The online sources share :mod:`~frsurvey.sources.remote` (background
fetching, retries), :mod:`~frsurvey.sources.http` (rate limit, bounded
concurrency, checking downloads) and :mod:`~frsurvey.sources.cache`.
"""

from __future__ import annotations

from typing import Any

from .base import Cutout, ImageSource
from .cache import CutoutCache, default_cache_dir
from .first import FIRSTSource
from .local import LocalFITSSource
from .remote import RemoteSource
from .skyview import SkyViewSource

__all__ = [
    "SOURCES",
    "Cutout",
    "CutoutCache",
    "FIRSTSource",
    "ImageSource",
    "LocalFITSSource",
    "RemoteSource",
    "SkyViewSource",
    "default_cache_dir",
    "make_source",
]

#: The names ``--source`` takes.
SOURCES = ("local", "skyview", "first")

#: Options of the online sources (``None`` means the default of :data:`frsurvey.sources.http.conf`).
_REMOTE_OPTIONS = (
    "cache",
    "offline",
    "workers",
    "max_rate",
    "timeout",
    "retries",
    "backoff",
    "backoff_max",
    "give_up_after",
    "max_bytes",
)
#: Options of the local source only.
_LOCAL_OPTIONS = ("max_image_pixels", "max_image_bytes")


def make_source(
    images=None,
    source: str | None = None,
    *,
    skyview_url: str | None = None,
    first_url: str | None = None,
    **options: Any,
) -> ImageSource:
    """Return the image source for the CLI's ``--images`` / ``--source`` options.

    Parameters
    ----------
    images : str or path-like, optional
        A directory of FITS images: a :class:`LocalFITSSource`.
    source : str, optional
        ``local``, ``skyview`` or ``first``; default ``local`` when ``images``
        is given, else ``skyview``.
    skyview_url, first_url : str, optional
        Addresses of the services (mirrors, stand-ins).
    **options
        For the online sources: ``cache``, ``offline``, ``workers``,
        ``max_rate``, ``timeout``, ``retries``, ``backoff``, ``backoff_max``,
        ``give_up_after``, ``max_bytes`` (None values take the defaults); ignored by ``local``.
        For ``local``: ``pixel_scale``, ``max_image_pixels``, ``max_image_bytes`` (ignored by the
        online sources).

    Raises
    ------
    ValueError
        If the combination names no source this installation has.
    """
    name = source or ("local" if images is not None else "skyview")
    remote = {k: v for k, v in options.items() if k in _REMOTE_OPTIONS and v is not None}
    local = {k: v for k, v in options.items() if k in _LOCAL_OPTIONS and v is not None}
    other = {k: v for k, v in options.items() if k not in _REMOTE_OPTIONS and k not in _LOCAL_OPTIONS}
    if name == "local":
        if images is None:
            raise ValueError("--source local needs --images DIR")
        return LocalFITSSource(images, **other, **local)
    if name in ("skyview", "first") and images is not None:
        raise ValueError(f"--images DIR is a local source: give --source local, or drop --images to use {name}")
    if name == "skyview":
        return SkyViewSource(skyview_url, **remote, **other)
    if name == "first":
        return FIRSTSource(first_url, **remote, **other)
    raise ValueError(f"unknown image source {name!r}; known: {', '.join(SOURCES)}")
