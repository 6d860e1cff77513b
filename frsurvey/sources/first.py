"""Cutouts from the FIRST survey's own cutout server (astroquery's ``image_cutouts.first``).

9 arcmin images on the survey's own 1.8"/px grid (300x300 px), centred on
the position to within half a pixel. They are cut with the same
:func:`~frsurvey.sources.local.cut_window` as local images, on the image's
own WCS, so a cutout is centred as SkyView centres its images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._compat import astroquery as astroquery_compat
from .http import PoliteSession, check_response
from .remote import RemoteSource

__all__ = ["FIRST_URL", "FIRSTSource"]

#: The FIRST cutout server (astroquery's ``astroquery.image_cutouts.first.conf.server`` default).
FIRST_URL = "https://sundog.stsci.edu/cgi-bin/firstcutout"


class FIRSTSource(RemoteSource):
    """FIRST cutouts from the survey's cutout server: 9' at 1.8"/px.

    Parameters
    ----------
    url : str, optional
        The cutout server's address (default :data:`FIRST_URL`).
    image_size : float
        Image side in arcmin (9: 300 px).
    **options
        The cache and politeness options of :class:`~frsurvey.sources.remote.RemoteSource`.
    """

    name = "first"
    service = "first"
    survey = "FIRST"
    URL = FIRST_URL
    IMAGE_SIZE = 9.0

    def __init__(self, url: str | None = None, *, image_size: float = IMAGE_SIZE, **options: Any) -> None:
        super().__init__(url, **options)
        self.image_size = float(image_size)
        if not (np.isfinite(self.image_size) and self.image_size > 0):
            raise ValueError(f"image_size must be a number of arcmin above 0, not {image_size!r}")

    def describe(self) -> str:
        """Return ``first:<url> size=9' (cache <dir>)``."""
        extra = ", offline" if self.offline else ""
        return f"first:{self.url} size={self.image_size:g}' (cache {self.cache.root}{extra})"

    def cache_size(self) -> str:
        """Return ``<size>arcmin``."""
        return f"{self.image_size:g}arcmin"

    def request_positions(self, ra: np.ndarray, dec: np.ndarray) -> list[str]:
        """Return ``"ra dec"`` in degrees to 1e-7 deg (0.4 mas) per position: the cache key."""
        return [f"{r:.7f} {d:+.7f}" for r, d in zip(np.atleast_1d(ra), np.atleast_1d(dec))]

    def query_payload(self, ra: float, dec: float, client=None) -> dict:
        """Build the request: the form astroquery's ``FirstClass`` posts for (ra, dec)."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        if client is None:
            client = self._client(self._runtime())
        coord = SkyCoord(ra, dec, unit="deg", frame="icrs")
        return astroquery_compat.first_payload(client, coord, self.image_size * u.arcmin)

    def _make_client(self, session: PoliteSession):
        from astroquery.image_cutouts.first import FirstClass

        client = FirstClass()
        client.URL = self.url
        client.TIMEOUT = self.timeout
        return astroquery_compat.use_session(client, session)

    def _download(self, ra: float, dec: float, client, session: PoliteSession) -> bytes:
        payload = self.query_payload(ra, dec, client)
        # sent here, not by astroquery (which would pickle every answer into astropy's cache):
        # the same POST astroquery's FirstClass sends, on the same session
        response = session.post(self.url, data=payload, timeout=self.timeout)
        check_response(response, self.url)
        return response.content
