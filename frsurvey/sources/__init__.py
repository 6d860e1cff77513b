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

import os
from dataclasses import replace
from typing import Any

from .base import Cutout, ImageSource
from .cache import CutoutCache, default_cache_dir
from .first import FIRSTSource
from .local import LocalFITSSource
from .options import SOURCES, SourceOptions
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
    "SourceOptions",
    "default_cache_dir",
    "make_source",
]


def make_source(
    options: SourceOptions | str | os.PathLike | None = None,
    /,
    *args: Any,
    **fields: Any,
) -> ImageSource:
    """Return the image source for the CLI's ``--images`` / ``--source`` options.

    ``make_source(SourceOptions(...))``, or the same options as keywords:
    ``make_source(images=..., source=..., cache=..., workers=...)`` (the
    fields of :class:`SourceOptions`; keywords given with an options object
    replace its fields). The older positional form ``make_source(images,
    source, **options)`` still works.

    Parameters
    ----------
    options : SourceOptions, optional
        All the options at once.
    **fields
        ``images``, ``source``, ``skyview_url``, ``first_url``, and for the
        online sources ``cache``, ``offline``, ``workers``, ``max_rate``,
        ``timeout``, ``retries``, ``backoff``, ``backoff_max``,
        ``give_up_after``, ``max_bytes`` (None values take the defaults;
        ignored by ``local``); for ``local``: ``pixel_scale``,
        ``max_image_pixels``, ``max_image_bytes`` (ignored by the online
        sources). See :class:`SourceOptions`.

    Raises
    ------
    ValueError
        If the combination names no source this installation has, or a
        value is out of range.
    TypeError
        For a keyword that is no option.
    """
    if isinstance(options, SourceOptions):
        if args:
            raise TypeError("make_source(SourceOptions) takes no other positional argument")
        return (replace(options, **fields) if fields else options).make()
    if len(args) > 1:
        raise TypeError(f"make_source takes at most 2 positional arguments (images, source), not {1 + len(args)}")
    positional = dict(zip(("images", "source"), (options, *args)))
    if options is None and "images" in fields:
        del positional["images"]
    for name in positional:
        if name in fields:
            raise TypeError(f"make_source got multiple values for {name!r}")
    return SourceOptions(**positional, **fields).make()
