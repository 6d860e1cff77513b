"""Adapter over the private parts of requests and urllib3 that the online sources rely on.

- :func:`set_content`: a body read by hand (streamed, capped, under a
  deadline) is put where ``response.content`` finds it (the private
  ``Response._content`` and ``_content_consumed``).
- :func:`response_sockets`: the sockets under a streamed response (urllib3's
  private ``HTTPResponse._connection`` and ``_fp``), so that a read blocked
  in another thread can be ended by shutting them down.
"""

from __future__ import annotations

from typing import Any

__all__ = ["response_sockets", "set_content"]


def set_content(response: Any, content: bytes) -> None:
    """Make ``response.content`` (a ``requests.Response`` whose body was streamed) return ``content``."""
    response._content = content
    response._content_consumed = True


def response_sockets(response: Any) -> list:
    """Return the sockets a streamed ``requests.Response`` reads from (those that can be found; maybe none)."""
    raw = response.raw
    found = (
        getattr(getattr(raw, "_connection", None), "sock", None),
        getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None),
    )
    return [sock for sock in found if sock is not None]
