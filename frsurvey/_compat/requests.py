"""Adapter over the private parts of requests, urllib3 and http.client that frsurvey relies on.

- :func:`set_content`: a body read by hand (streamed, capped, under a
  deadline) is put where ``response.content`` finds it (the private
  ``Response._content`` and ``_content_consumed`` of requests).
- :func:`response_sockets`: the sockets under a streamed response, a
  ``requests.Response`` (urllib3's private ``HTTPResponse._connection`` and
  ``_fp``) or an ``http.client.HTTPResponse`` from urllib (its ``fp.raw._sock``);
  :func:`shut_down` ends a read blocked on them in another thread.
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["response_sockets", "set_content", "shut_down", "shut_socket"]


def set_content(response: Any, content: bytes) -> None:
    """Make ``response.content`` (a ``requests.Response`` whose body was streamed) return ``content``."""
    response._content = content
    response._content_consumed = True


def response_sockets(response: Any) -> list:
    """Return the sockets a streamed response reads from (those that can be found; maybe none).

    ``response`` is a ``requests.Response`` or an ``http.client.HTTPResponse``.
    """
    raw = getattr(response, "raw", None)  # requests: the urllib3 response
    found = []
    if raw is not None:
        found.append(getattr(getattr(raw, "_connection", None), "sock", None))
        response = getattr(raw, "_fp", None)  # the http.client response under it
    found.append(getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None))
    return [sock for sock in found if sock is not None]


def shut_socket(sock: Any) -> None:
    """Shut a socket down for reading and writing: a read blocked on it in another thread returns at once."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def shut_down(response: Any) -> None:
    """Shut a streamed response's sockets down (a read blocked in another thread returns), then close it."""
    for sock in response_sockets(response):
        shut_socket(sock)
    try:
        response.close()
    except Exception:  # closing a response another thread reads from: best effort
        pass
