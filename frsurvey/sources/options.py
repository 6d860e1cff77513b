"""The options of the image sources, in one object: :class:`SourceOptions`."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from .._flags import Check, OptionError, at_least, option
from ..image.preprocess import PIXEL_SCALE_ARCSEC
from .base import ImageSource
from .cache import CutoutCache
from .first import FIRSTSource
from .http import conf, fetch_settings
from .local import LocalFITSSource, image_caps
from .skyview import SkyViewSource

__all__ = ["SOURCES", "SourceOptions"]

#: The title of the online sources' options on the command line.
ONLINE = "online sources (skyview, first)"

#: The names ``--source`` takes.
SOURCES = ("local", "skyview", "first")

#: The options of the online sources (None: the default of :data:`frsurvey.sources.http.conf`).
FETCH_OPTIONS = ("workers", "max_rate", "timeout", "retries", "backoff", "backoff_max", "give_up_after", "max_bytes")


@dataclass(frozen=True)
class SourceOptions:
    """Every option of an image source (the CLI's ``--images``, ``--source``, ``--fetch-*``, ...).

    Options that do not apply to the chosen source are ignored (the cache
    and politeness options by ``local``; ``pixel_scale`` and the image caps
    by the online sources). None means the default, stated here.

    Parameters
    ----------
    images : str or path-like, optional
        A directory of FITS images: the ``local`` source.
    source : str, optional
        ``local``, ``skyview`` or ``first`` (:data:`SOURCES`); default
        ``local`` when ``images`` is given, else ``skyview``.
    skyview_url, first_url : str, optional
        Addresses of the services (mirrors, stand-ins); default
        :data:`~frsurvey.sources.skyview.SKYVIEW_URL`,
        :data:`~frsurvey.sources.first.FIRST_URL`.
    cache : str, path-like or CutoutCache, optional
        The online sources' cache directory; default
        :func:`~frsurvey.sources.cache.default_cache_dir`.
    offline : bool
        Use the cache only: never send a request.
    workers : int, optional
        Downloads in flight at once, at most (default ``conf.workers``, 4).
    max_rate : float, optional
        Requests started per second, at most (default ``conf.max_rate``, 5; 0: no limit).
    timeout : float, optional
        Seconds one download may take in all (default ``conf.timeout``, 60).
    retries : int, optional
        Further attempts after a failed download (default ``conf.retries``, 4).
    backoff, backoff_max : float, optional
        First and longest wait between attempts, in seconds (default
        ``conf.backoff``, 1, and ``conf.backoff_max``, 60).
    give_up_after : int, optional
        Downloads failed in a row after which the rest of a prefetch is not
        tried (default ``conf.give_up_after``, 20; 0: never).
    max_bytes : int, optional
        Largest body of one download, decompressed (default ``conf.max_bytes``, 64 MiB).
    pixel_scale : float
        The pixel scale, in arcsec, local images must have (FIRST's 1.8).
    max_image_pixels, max_image_bytes : int, optional
        Caps on a local image that must be decompressed whole (default
        :data:`~frsurvey.sources.local.MAX_IMAGE_PIXELS`,
        :data:`~frsurvey.sources.local.MAX_IMAGE_BYTES`).

    Raises
    ------
    ValueError
        On creation, if the combination names no source (``local`` without
        ``images``, ``images`` with an online source, an unknown name), or a
        value of the chosen source is out of range; the messages are those
        of :func:`~frsurvey.sources.make_source`.
    """

    images: str | os.PathLike | None = option(
        None, "--images", metavar="DIR", help="directory of FIRST FITS images (any names, with WCS)"
    )
    source: str | None = option(
        None,
        "--source",
        choices=SOURCES,
        help="image source (default: local when --images is given, else skyview)",
    )
    skyview_url: str | None = option(
        None, "--skyview-url", metavar="URL", group=ONLINE, help="SkyView query form address (a mirror or stand-in)"
    )
    first_url: str | None = option(
        None, "--first-url", metavar="URL", group=ONLINE, help="FIRST cutout server address (a mirror or stand-in)"
    )
    cache: str | os.PathLike | CutoutCache | None = option(
        None,
        "--cache",
        metavar="DIR",
        group=ONLINE,
        help="cutout cache (default: ~/.cache/frsurvey or $FRSURVEY_CACHE)",
    )
    offline: bool = option(
        False,
        "--offline",
        action="store_true",
        group=ONLINE,
        help="use the cache only; rows missing from it: not_cached",
    )
    workers: int | None = option(
        None,
        "--fetch-workers",
        check=Check(int),
        metavar="N",
        group=ONLINE,
        help=f"downloads at once (default {conf.workers})",
    )
    max_rate: float | None = option(
        None,
        "--max-rate",
        check=Check(float),
        metavar="R",
        group=ONLINE,
        help=f"requests/s, 0: no limit (default {conf.max_rate:g})",
    )
    timeout: float | None = option(
        None,
        "--fetch-timeout",
        check=Check(float),
        metavar="S",
        group=ONLINE,
        help=f"seconds one download may take in all (default {conf.timeout:g})",
    )
    retries: int | None = option(
        None,
        "--retries",
        check=Check(int),
        metavar="N",
        group=ONLINE,
        help=f"retries of a failed download (default {conf.retries})",
    )
    backoff: float | None = option(
        None,
        "--retry-backoff",
        check=Check(float),
        metavar="S",
        group=ONLINE,
        help=f"first retry wait (default {conf.backoff:g})",
    )
    backoff_max: float | None = None
    give_up_after: int | None = None
    max_bytes: int | None = option(
        None,
        "--max-download-bytes",
        check=at_least(1),
        metavar="N",
        group=ONLINE,
        help=f"largest body of one download, decompressed (default {conf.max_bytes}, 64 MiB)",
    )
    pixel_scale: float = PIXEL_SCALE_ARCSEC
    max_image_pixels: int | None = option(
        None,
        "--max-image-pixels",
        check=at_least(1),
        metavar="N",
        help="local images that must be decompressed whole (.gz, .fz, scaled): at most N pixels (default 100000000)",
    )
    max_image_bytes: int | None = option(
        None,
        "--max-image-bytes",
        check=at_least(1),
        metavar="N",
        help="... and at most N bytes of decoded pixels (default 536870912, 512 MiB)",
    )

    def __post_init__(self) -> None:
        # the values are checked for the source they make (as the sources check them), not field by field:
        # options of the other kind of source are ignored; the command line's flags check their own values
        name = self.name
        if name == "local":
            if self.images is None:
                raise OptionError("--source local needs --images DIR")
            image_caps(self.max_image_pixels, self.max_image_bytes)
            return
        if name in ("skyview", "first") and self.images is not None:
            raise OptionError(f"--images DIR is a local source: give --source local, or drop --images to use {name}")
        if name not in SOURCES:
            raise OptionError(f"unknown image source {name!r}; known: {', '.join(SOURCES)}")
        fetch_settings(**self.fetch_options())

    @property
    def name(self) -> str:
        """The source these options make: ``source``, or its default."""
        return self.source or ("local" if self.images is not None else "skyview")

    def fetch_options(self) -> dict[str, Any]:
        """Return the online sources' politeness options as given (None: the default)."""
        return {k: getattr(self, k) for k in FETCH_OPTIONS}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of the options, in order."""
        return tuple(f.name for f in fields(cls))

    def make(self) -> ImageSource:
        """Return the image source: a :class:`~frsurvey.sources.local.LocalFITSSource`,
        :class:`~frsurvey.sources.skyview.SkyViewSource` or :class:`~frsurvey.sources.first.FIRSTSource`.

        Raises
        ------
        FileNotFoundError
            If ``images`` is not a directory.
        """
        name = self.name
        if name == "local":
            return LocalFITSSource(
                self.images,  # type: ignore[arg-type]
                pixel_scale=self.pixel_scale,
                max_image_pixels=self.max_image_pixels,
                max_image_bytes=self.max_image_bytes,
            )
        cls, url = (SkyViewSource, self.skyview_url) if name == "skyview" else (FIRSTSource, self.first_url)
        return cls(url, cache=self.cache, offline=self.offline, **self.fetch_options())
