"""What frsurvey uses of astroquery beyond its public API, in one place.

astroquery's query classes send their requests through a private
``requests`` session (``BaseQuery._session``), and SkyView's client reads
its query form through a private hook (``SkyViewClass._generate_payload``)
on every query. frsurvey gives the clients its own session (rate limit,
concurrency bound, timeouts) and reads SkyView's form once per source and
process. Everything else is public: the payloads come from the clients'
``get_query_payload=True`` calls, and frsurvey sends its own requests with
``requests``.

``tests/test_compat.py`` checks every promise made here against the
installed astroquery and names its version when one no longer holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["first_payload", "form_defaults", "skyview_client", "use_session"]


def use_session(client: Any, session: Any) -> Any:
    """Make an astroquery query object send every request through ``session``; return the client.

    Wraps the private attribute ``BaseQuery._session`` (astroquery >= 0.4),
    the :class:`requests.Session` that ``BaseQuery._request`` sends with.

    Parameters
    ----------
    client : astroquery.query.BaseQuery
        A query object (``SkyViewClass()``, ``FirstClass()``, ...).
    session : requests.Session
        The session to use instead of the one astroquery made.

    Notes
    -----
    Promise: after this call, every request the client makes through its
    public methods goes through ``session.request`` (none through another
    session), with the arguments astroquery would have given its own.
    """
    client._session = session
    return client


def form_defaults(client: Any, form: Any) -> dict:
    """Return the values a SkyView query form sends when left as it is.

    Wraps the private method ``SkyViewClass._get_default_form_values``
    (astroquery >= 0.4), which astroquery uses to fill in every form field
    a query does not set.

    Parameters
    ----------
    client : astroquery.skyview.SkyViewClass
    form : bs4.element.Tag
        The page's ``<form>`` node (BeautifulSoup, ``html.parser``).

    Returns
    -------
    dict
        Field name to value, exactly as astroquery would send it.
    """
    return client._get_default_form_values(form)


_skyview_class: type | None = None


def skyview_client(url: str, session: Any, read_form: Callable[[Any], tuple[str, dict, dict]]) -> Any:
    """Return an astroquery SkyView client at ``url``, over ``session``, whose query form comes from ``read_form``.

    Wraps the private hook ``SkyViewClass._generate_payload(input)``
    (astroquery >= 0.4), which astroquery calls on every query to fetch the
    form and merge the query's values into its defaults, and the
    ``survey_dict`` property (which fetches the form too).

    Parameters
    ----------
    url : str
        The query form's address (astroquery reads ``conf.url`` at import:
        it is set on the instance).
    session : requests.Session
        Every request goes through it (:func:`use_session`).
    read_form : callable
        ``read_form(client)`` returns ``(action URL, default values, surveys)``
        of the form; it is called on every query and is expected to fetch the
        form once and remember it.

    Returns
    -------
    astroquery.skyview.SkyViewClass
        A client whose public ``get_image_list`` (and ``get_query_payload``)
        send and return exactly what astroquery's own would, except that the
        form is not fetched again: the payload is the form's defaults
        overridden by every query value that is not None, sent to the form's
        action URL.
    """
    global _skyview_class
    if _skyview_class is None:
        from astroquery.skyview import SkyViewClass

        class OnceFormSkyView(SkyViewClass):
            """astroquery's SkyView client whose form is read by a callable (once, by its contract)."""

            def __init__(self, url: str, session: Any, read_form: Callable) -> None:
                super().__init__()
                self.URL = url
                use_session(self, session)
                self._frsurvey_read_form = read_form

            @property
            def survey_dict(self) -> dict:
                return self._frsurvey_read_form(self)[2]

            def _generate_payload(self, input=None):
                action, defaults, _ = self._frsurvey_read_form(self)
                payload = dict(defaults)
                for k, v in (input or {}).items():
                    if v is not None:
                        payload[k] = v
                return action, payload

        _skyview_class = OnceFormSkyView
    return _skyview_class(url, session, read_form)


def first_payload(client: Any, coordinates: Any, image_size: Any) -> dict:
    """Return the form astroquery's ``FirstClass`` posts for a cutout (public API: ``get_query_payload=True``).

    No private API: ``FirstClass.get_images(..., get_query_payload=True)``
    returns the payload without sending anything. It is here so that the
    FIRST source, too, reaches astroquery only through this module.
    """
    return client.get_images(coordinates, image_size=image_size, get_query_payload=True)
