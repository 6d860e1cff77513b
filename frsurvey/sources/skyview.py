"""Cutouts from NASA's SkyView, the way the FRDEEP-F and MiraBest images were made.

astroquery's :class:`~astroquery.skyview.SkyViewClass` with
``survey='VLA FIRST (1.4 GHz)'``, ``pixels=300`` and the service's default
projection (gnomonic, centred on the position), scale and sampler: SkyView
returns a 300x300 image at FIRST's 1.8"/px centred on the position as
astroquery states it. The position always goes to astroquery as a
:class:`~astropy.coordinates.SkyCoord` (a string would be sent to a name
resolver first).

Two departures from a plain ``SkyView.get_images`` call, both about being a
good client of the service, neither changing what is asked for:

- the query form is read once per source and process, not once per image;
- the FITS file is downloaded with the same HTTP session, straight into the
  frsurvey cache, byte for byte: astroquery's download helper would keep a
  second copy of every image in astropy's cache.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urljoin

import numpy as np

from .._compat import astroquery as astroquery_compat
from .cache import check_path_part
from .http import FetchError, PoliteSession, check_response
from .remote import RemoteSource

__all__ = ["SKYVIEW_URL", "SkyViewSource"]

#: SkyView's query form (astroquery's ``astroquery.skyview.conf.url`` default).
SKYVIEW_URL = "https://skyview.gsfc.nasa.gov/current/cgi/basicform.pl"


class _QueryForm:
    """SkyView's query form, fetched once (per source and process) over the source's session."""

    def __init__(self, url: str, session: PoliteSession) -> None:
        self.url = url
        self.session = session
        self.lock = threading.Lock()
        self.form: tuple[str, dict, dict] | None = None

    def __call__(self, client) -> tuple[str, dict, dict]:
        """Return the form's action URL, default values and survey lists (fetched on the first call)."""
        with self.lock:
            if self.form is None:
                from bs4 import BeautifulSoup

                response = self.session.get(self.url)
                check_response(response, self.url)
                page = BeautifulSoup(response.content, "html.parser")
                form = page.find("form")
                if form is None:
                    raise FetchError(f"no query form in the page at {self.url}")
                surveys = {
                    sel.get("id", str(i)): [x.text for x in sel.find_all("option")]
                    for i, sel in enumerate(page.find_all("select", {"name": "survey"}))
                    if "overlay" not in sel.get("id", "")
                }
                defaults = astroquery_compat.form_defaults(client, form)
                self.form = (urljoin(self.url, form.get("action")), defaults, surveys)
            return self.form


class SkyViewSource(RemoteSource):
    """FIRST cutouts from SkyView: ``survey='VLA FIRST (1.4 GHz)'``, ``pixels=300``.

    Parameters
    ----------
    url : str, optional
        The query form's address (default :data:`SKYVIEW_URL`); a mirror or a
        local stand-in speaking the same protocol.
    survey : str
        SkyView's survey name.
    pixels : int
        Image side in pixels.
    **options
        The cache and politeness options of :class:`~frsurvey.sources.remote.RemoteSource`.
    """

    name = "skyview"
    service = "skyview"
    URL = SKYVIEW_URL
    SURVEY = "VLA FIRST (1.4 GHz)"
    PIXELS = 300

    def __init__(self, url: str | None = None, *, survey: str = SURVEY, pixels: int = PIXELS, **options: Any) -> None:
        super().__init__(url, **options)
        self.survey = check_path_part(str(survey), "survey")
        self.pixels = int(pixels)
        if self.pixels < 1:
            raise ValueError(f"pixels must be at least 1, not {self.pixels}")

    def describe(self) -> str:
        """Return ``skyview:<url> survey=... pixels=... (cache <dir>)``."""
        extra = ", offline" if self.offline else ""
        return f"skyview:{self.url} survey={self.survey!r} pixels={self.pixels} (cache {self.cache.root}{extra})"

    def cache_size(self) -> str:
        """Return ``<pixels>px``."""
        return f"{self.pixels}px"

    def request_positions(self, ra: np.ndarray, dec: np.ndarray) -> list[str]:
        """Return the ``Position`` astroquery sends for each position (FK5, decimal degrees).

        The same strings as ``astroquery.skyview.core.parse_coordinates(SkyCoord(ra, dec))``,
        computed for all positions at once.
        """
        from astropy.coordinates import SkyCoord

        coords = SkyCoord(np.atleast_1d(ra), np.atleast_1d(dec), unit="deg", frame="icrs")
        return [str(s) for s in np.atleast_1d(coords.fk5.to_string())]

    def query_args(self, ra: float, dec: float) -> dict:
        """Build the request: the arguments of astroquery's ``SkyViewClass.get_image_list``."""
        from astropy.coordinates import SkyCoord

        return {
            "position": SkyCoord(ra, dec, unit="deg", frame="icrs"),
            "survey": self.survey,
            "pixels": str(self.pixels),
            "cache": False,  # no copy of the answer in astroquery's cache
        }

    def query_payload(self, ra: float, dec: float) -> dict:
        """Return the form values sent to SkyView for (ra, dec) (reads the form if not yet read)."""
        rt = self._runtime()
        return self._client(rt).get_image_list(**self.query_args(ra, dec), get_query_payload=True)

    @staticmethod
    def parse_result(urls: list[str]) -> str:
        """Parse the answer: the FITS file's URL among the links of SkyView's results page."""
        fits_urls = [u for u in urls if u.split("?")[0].lower().endswith((".fits", ".fit", ".fits.gz"))] or urls
        if not fits_urls:
            raise FetchError("SkyView's results page links no FITS file")
        return fits_urls[0]

    def _make_client(self, session: PoliteSession):
        return astroquery_compat.skyview_client(self.url, session, _QueryForm(self.url, session))

    def _download(self, ra: float, dec: float, client, session: PoliteSession) -> bytes:
        urls = client.get_image_list(**self.query_args(ra, dec))  # form (once), query, results page
        url = self.parse_result(urls)
        response = session.get(url)
        check_response(response, url)
        return response.content
