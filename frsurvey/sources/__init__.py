"""Image sources: where the FIRST cutouts come from.

One module per source, each a class with the :class:`~frsurvey.sources.base.ImageSource`
interface (``locate`` positions, ``load`` a cutout):

- :mod:`frsurvey.sources.local`: a local directory of FITS images.
"""

from __future__ import annotations

from .base import Cutout, ImageSource
from .local import LocalFITSSource

__all__ = ["Cutout", "ImageSource", "LocalFITSSource", "make_source"]


def make_source(images=None, source: str | None = None, **options) -> ImageSource:
    """Return the image source for the CLI's ``--images`` / ``--source`` options.

    Parameters
    ----------
    images : str or path-like, optional
        A directory of FITS images: a :class:`LocalFITSSource`.
    source : str, optional
        The name of a source (``local``); default ``local`` when ``images``
        is given.

    Raises
    ------
    ValueError
        If the combination names no source this installation has.
    """
    name = source or ("local" if images is not None else None)
    if name == "local":
        if images is None:
            raise ValueError("--source local needs --images DIR")
        return LocalFITSSource(images, **options)
    if name is None:
        raise ValueError("no image source: give --images DIR (a directory of FIRST FITS images)")
    raise ValueError(f"unknown image source {name!r}; known: local")
