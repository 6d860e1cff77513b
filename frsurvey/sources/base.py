"""The interface every image source offers, and the cutout it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..image.preprocess import CUTOUT_SIZE
from ..status import Status

__all__ = ["Cutout", "ImageSource"]


@dataclass
class Cutout:
    """A 300x300 FIRST cutout centred on a position, or the reason there is none.

    Attributes
    ----------
    image : numpy.ndarray or None
        float32 ``(300, 300)`` in the source's units (Jy/beam for FIRST),
        row 0 the FITS file's first row; NaN where the image has no data.
        None unless ``status`` is ``ok``.
    status : str
        One of :class:`frsurvey.status.Status`.
    message : str
        Human-readable detail (which file, what went wrong).
    origin : str
        Where the pixels came from (file path, URL), for logs.
    """

    image: np.ndarray | None
    status: str = Status.OK
    message: str = ""
    origin: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def failed(cls, status: str, message: str, origin: str = "") -> Cutout:
        """Return a cutout without an image, carrying ``status`` and ``message``."""
        return cls(None, status, message, origin)

    @property
    def ok(self) -> bool:
        """True when :attr:`image` holds a cutout."""
        return self.status == Status.OK and self.image is not None


class ImageSource(ABC):
    """Where cutouts come from: a directory of FITS files, SkyView, a cache.

    Sources work in two steps so that a catalog can be planned at once and
    cut out in parallel (DataLoader workers, threads): :meth:`locate` maps
    every position to a picklable key (or to a failed :class:`Cutout`), and
    :meth:`load` turns one key into a :class:`Cutout`. Sources are picklable.
    """

    #: Short name of the kind of source, e.g. ``local`` or ``skyview``.
    name: str = "source"
    #: Side of the cutouts :meth:`load` returns, in pixels.
    size: int = CUTOUT_SIZE

    def locate(self, ra: np.ndarray, dec: np.ndarray) -> list[Hashable | Cutout]:
        """Return, per position (degrees), a key for :meth:`load` or a failed Cutout.

        Equal positions give equal keys, so that a caller can load each once.
        The default key is the position itself.
        """
        return [(float(r), float(d)) for r, d in zip(np.asarray(ra), np.asarray(dec))]

    def prefetch(self, keys: Sequence[Hashable | Cutout]) -> None:
        """Start getting the cutouts of ``keys`` ahead of :meth:`load`, in the background.

        Called by :func:`frsurvey.classify_table` once the catalog is located,
        with the keys in the order they will be loaded; returns at once. Does
        nothing by default; online sources start downloading. :meth:`load`
        works with or without it.
        """

    @abstractmethod
    def load(self, key: Hashable) -> Cutout:
        """Return the cutout for a key from :meth:`locate`; never raises for bad data."""

    def describe(self) -> str:
        """Return a one-line description for provenance."""
        return self.name

    def fingerprint(self) -> str:
        """Return a text that changes whenever the cutouts this source gives might change.

        A resume journal (:mod:`frsurvey.run.journal`) is used only by a run whose
        source has the same fingerprint. Default: :meth:`describe` (for the
        online sources: service address, cache and ``offline``).
        """
        return self.describe()

    def get(self, ra: Sequence[float], dec: Sequence[float]) -> Iterator[tuple[int, Cutout]]:
        """Yield ``(index, cutout)`` for every position, in order."""
        keys = self.locate(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        for i, key in enumerate(keys):
            yield i, key if isinstance(key, Cutout) else self.load(key)

    def close(self) -> None:
        """Release open files and connections (the source stays usable)."""
