"""Polite HTTP for the online image sources: limits, retries and checking what came back.

Every request an online source makes goes through one :class:`PoliteSession`
per source and process. The session

- never has more than ``workers`` requests in flight at once (a semaphore,
  whatever thread asks),
- starts requests no closer together than ``1 / max_rate`` seconds
  (:class:`RateLimiter`, shared by all threads),
- gives every request a timeout unless the caller gave one.

Retrying is the caller's loop (:func:`retry_delay`, :func:`as_fetch_error`):
server errors (5xx, 408, 429), timeouts, dropped connections and bodies that
are not a complete FITS file (:func:`validate_fits`) are retried with
exponential backoff and jitter; other client errors are not.
"""

from __future__ import annotations

import io
import random
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import requests

from .._compat.requests import set_content, shut_down, shut_socket
from .._flags import OptionError

__all__ = [
    "FetchConf",
    "FetchError",
    "PoliteSession",
    "RateLimiter",
    "as_fetch_error",
    "check_response",
    "conf",
    "fetch_settings",
    "read_body",
    "retry_delay",
    "validate_fits",
]

#: HTTP statuses worth retrying: the server is busy or failed, not the request.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class FetchConf:
    """Defaults of the online sources (the command line's ``--fetch-*`` options).

    Attributes
    ----------
    timeout : float
        Seconds one download may take in all (connection, headers and the
        whole body); also the limit on each read from the connection.
    max_bytes : int
        Largest body, in bytes, a download may bring, counted after
        decompression (``Content-Encoding: gzip``): 64 MiB. A FIRST cutout
        is about 0.4 MB.
    retries : int
        Further attempts after a failed one (so ``retries + 1`` in all).
    backoff : float
        Seconds before the first retry; doubled for each later one, with jitter.
    backoff_max : float
        Longest wait between two attempts, in seconds.
    workers : int
        Requests in flight at once, at most.
    max_rate : float
        Requests started per second, at most, by all threads together
        (0: no limit).
    give_up_after : int
        After this many downloads in a row failed for good (the service is
        down or unreachable), the rest of a prefetch is not tried: those rows
        get ``fetch_failed`` at once (0: never give up).
    """

    timeout: float = 60.0
    max_bytes: int = 64 * 1024**2
    retries: int = 4
    backoff: float = 1.0
    backoff_max: float = 60.0
    workers: int = 4
    max_rate: float = 5.0
    give_up_after: int = 20


#: The defaults every online source starts from.
conf = FetchConf()


def fetch_settings(
    *,
    workers: int | None = None,
    max_rate: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    backoff_max: float | None = None,
    give_up_after: int | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Return the settings of an online source: each None replaced by its :data:`conf` default, all checked.

    The one place where those defaults are applied and the values checked
    (:class:`~frsurvey.sources.remote.RemoteSource` and
    :class:`~frsurvey.sources.options.SourceOptions` both use it).

    Returns
    -------
    dict
        ``max_bytes``, ``workers``, ``max_rate``, ``timeout``, ``retries``,
        ``backoff``, ``backoff_max``, ``give_up_after`` as int or float.

    Raises
    ------
    ValueError
        If ``max_bytes`` or ``workers`` is below 1, ``max_rate``,
        ``retries`` or ``backoff`` below 0, or ``timeout`` not above 0.
    """
    out: dict[str, Any] = {"max_bytes": int(conf.max_bytes if max_bytes is None else max_bytes)}
    if out["max_bytes"] < 1:
        raise OptionError(f"max_bytes must be at least 1, not {out['max_bytes']}")
    out["workers"] = int(conf.workers if workers is None else workers)
    out["max_rate"] = float(conf.max_rate if max_rate is None else max_rate)
    out["timeout"] = float(conf.timeout if timeout is None else timeout)
    out["retries"] = int(conf.retries if retries is None else retries)
    out["backoff"] = float(conf.backoff if backoff is None else backoff)
    out["backoff_max"] = float(conf.backoff_max if backoff_max is None else backoff_max)
    out["give_up_after"] = int(conf.give_up_after if give_up_after is None else give_up_after)
    if out["workers"] < 1:
        raise OptionError(f"fetch workers must be at least 1, not {out['workers']}")
    if out["max_rate"] < 0 or out["timeout"] <= 0 or out["retries"] < 0 or out["backoff"] < 0:
        raise OptionError("max_rate, retries and backoff must be >= 0 and timeout > 0")
    return out


class FetchError(Exception):
    """A download attempt failed; ``retryable`` says whether trying again may help.

    Parameters
    ----------
    message : str
        What went wrong, for the log and the row's message.
    retryable : bool
        True for transient failures (server errors, timeouts, dropped
        connections, incomplete bodies).
    retry_after : float, optional
        Seconds the server asked to wait (``Retry-After``).
    """

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class RateLimiter:
    """Spaces the starts of calls to :meth:`acquire` at least ``1 / rate`` seconds apart.

    Thread-safe: callers are given consecutive time slots in the order they
    ask, and each sleeps (outside the lock) until its slot. ``rate`` of None
    or 0 means no limit. Picklable (the lock is recreated).
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = float(rate) if rate else 0.0
        self.interval = 1.0 / self.rate if self.rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_next"] = 0.0
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for the next free slot and return its time (``time.monotonic()`` clock)."""
        if self.interval <= 0:
            return time.monotonic()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return slot


class PoliteSession(requests.Session):
    """A :class:`requests.Session` with a concurrency bound, a rate limit and a default timeout.

    Give it to astroquery clients as their ``_session`` so that every request
    they make, and every download made here, obeys the same limits.

    Parameters
    ----------
    timeout : float
        Seconds (connect and read) for requests that do not give their own.
    workers : int
        Requests in flight at once, at most (from any thread).
    max_rate : float or None
        Request starts per second, at most (None or 0: no limit).
    user_agent : str, optional
        Prepended to the ``User-Agent`` header.
    max_bytes : int
        Largest body of a response, decompressed (default ``conf.max_bytes``).

    Notes
    -----
    A request that does not ask to stream has its body read here, counted
    as it is decompressed, and given up (:class:`FetchError`) when it grows
    past ``max_bytes`` or the whole request takes longer than ``timeout``
    seconds: a slow or endless body cannot hold a row longer than that, nor
    fill the memory.
    """

    def __init__(
        self,
        timeout: float = conf.timeout,
        workers: int = conf.workers,
        max_rate: float | None = conf.max_rate,
        user_agent: str = "",
        max_bytes: int = conf.max_bytes,
    ) -> None:
        super().__init__()
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self.workers = max(1, int(workers))
        self.limiter = RateLimiter(max_rate)
        self._slots = threading.BoundedSemaphore(self.workers)
        self._count_lock = threading.Lock()
        #: Requests sent so far by this session.
        self.requests_sent = 0
        adapter = _TrackingAdapter(pool_connections=4, pool_maxsize=max(10, self.workers))
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        if user_agent:
            self.headers["User-Agent"] = f"{user_agent} {self.headers['User-Agent']}"

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        """Send a request once a worker slot and a rate slot are free (see :class:`requests.Session`).

        Unless ``stream=True``, the body is read within the byte cap and the
        deadline (``timeout`` seconds for the whole request).
        """
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        stream = bool(kwargs.pop("stream", False))
        with self._slots:
            self.limiter.acquire()
            with self._count_lock:
                self.requests_sent += 1
            # the body is read inside, so the slot covers the whole transfer
            deadline = time.monotonic() + self.timeout
            me = threading.get_ident()
            late = threading.Event()

            def cut_off() -> None:  # headers still not in at the deadline: end the connection's reads
                late.set()
                conn = _IN_USE.get(me)
                if conn is not None:
                    shut_socket(getattr(conn, "sock", None))

            timer = threading.Timer(self.timeout, cut_off)
            timer.daemon = True
            timer.start()
            try:
                response = super().request(method, url, *args, stream=True, **kwargs)
            except Exception:
                if late.is_set():
                    raise FetchError(
                        f"the download from {url} took longer than {self.timeout:g} s (--fetch-timeout)"
                    ) from None
                raise
            finally:
                timer.cancel()
                _IN_USE.pop(me, None)
            if not stream:
                read_body(response, self.max_bytes, deadline, self.timeout)
            return response


def read_body(response: requests.Response, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """Read a streamed response's body (decompressed) into ``response.content``, within limits.

    Raises
    ------
    FetchError
        When the body grows past ``max_bytes`` (not retryable: the same
        request would bring the same body) or is not complete at
        ``deadline`` (``time.monotonic()``; retryable). The connection is
        closed in both cases.
    """
    parts: list[bytes] = []
    total = 0
    late = threading.Event()

    def cut_off() -> None:  # a read blocked past the deadline: shutting the socket down ends it
        late.set()
        shut_down(response)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
    timer.daemon = True
    timer.start()
    try:
        for part in response.iter_content(1 << 16):
            total += len(part)
            if total > max_bytes:
                response.close()
                raise FetchError(
                    f"the body from {response.url} is larger than {max_bytes} bytes (decompressed; "
                    "the cap on one download, --max-download-bytes)",
                    retryable=False,
                )
            if time.monotonic() > deadline:
                raise FetchError(f"the download from {response.url} took longer than {timeout:g} s (--fetch-timeout)")
            parts.append(part)
    except FetchError:
        response.close()
        raise
    except Exception:
        response.close()
        if late.is_set() or time.monotonic() > deadline:
            raise FetchError(
                f"the download from {response.url} took longer than {timeout:g} s (--fetch-timeout)"
            ) from None
        raise
    finally:
        timer.cancel()
    if late.is_set():
        raise FetchError(f"the download from {response.url} took longer than {timeout:g} s (--fetch-timeout)")
    content = b"".join(parts)
    set_content(response, content)
    return content


#: The connection each thread is sending a request on (thread id -> urllib3 connection).
_IN_USE: dict[int, Any] = {}


def _tracked(cls):
    """Return a urllib3 connection class that notes, per thread, the connection a request is sent on."""

    class Tracked(cls):
        def request(self, *args, **kwargs):  # type: ignore[override]
            _IN_USE[threading.get_ident()] = self
            return super().request(*args, **kwargs)

    Tracked.__name__ = f"Tracked{cls.__name__}"
    return Tracked


def _tracking_pools() -> dict:
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    http = type("TrackedHTTPConnectionPool", (HTTPConnectionPool,), {})
    http.ConnectionCls = _tracked(HTTPConnectionPool.ConnectionCls)
    https = type("TrackedHTTPSConnectionPool", (HTTPSConnectionPool,), {})
    https.ConnectionCls = _tracked(HTTPSConnectionPool.ConnectionCls)
    return {"http": http, "https": https}


class _TrackingAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections can be found (and shut down) by the thread that sends on them."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _tracking_pools()


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignore it, the backoff applies


def check_response(response: requests.Response, what: str = "") -> None:
    """Raise :class:`FetchError` unless ``response`` has a 2xx status.

    5xx, 408, 425 and 429 are retryable (with the server's ``Retry-After``);
    other statuses are not.
    """
    if response.status_code < 400:
        return
    reason = f"HTTP {response.status_code} {response.reason or ''}".strip()
    retryable = response.status_code in RETRY_STATUSES or response.status_code >= 500
    raise FetchError(f"{reason} from {what or response.url}", retryable, _retry_after(response))


def as_fetch_error(exc: BaseException) -> FetchError:
    """Return ``exc`` as a :class:`FetchError`, deciding whether it is worth retrying.

    Timeouts, connection errors (refused, dropped, reset), incomplete bodies
    and HTTP errors with a retryable status are retryable; anything else
    (another client error, a bug) is not.
    """
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        try:
            check_response(exc.response)
        except FetchError as err:
            return err
    if isinstance(exc, requests.Timeout):
        return FetchError(f"timed out ({exc})", True)
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return FetchError(f"connection failed or dropped ({type(exc).__name__}: {exc})", True)
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return FetchError(f"body could not be decoded ({exc})", True)
    if isinstance(exc, requests.RequestException):
        return FetchError(f"{type(exc).__name__}: {exc}", False)
    return FetchError(f"{type(exc).__name__}: {exc}", False)


def retry_delay(
    attempt: int, backoff: float, backoff_max: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Return the seconds to wait before retry number ``attempt + 1`` (``attempt`` from 0).

    Exponential backoff with "equal jitter": the nominal delay
    ``backoff * 2**attempt`` (at most ``backoff_max``) is halved and a random
    part of up to the other half added, so that clients that failed together
    do not retry together. A server's ``Retry-After`` is honoured up to
    ``backoff_max``.
    """
    rng = rng or random
    nominal = min(backoff_max, backoff * (2.0**attempt))
    delay = nominal / 2.0 + rng.uniform(0.0, nominal / 2.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, backoff_max))
    return delay


def _snippet(content: bytes, n: int = 80) -> str:
    text = content[:n].decode("ascii", "replace")
    return " ".join(text.split())


def validate_fits(content: bytes) -> None:
    """Raise :class:`FetchError` (retryable) unless ``content`` is a complete FITS image file.

    The file is parsed in full: every HDU's header, and every data array
    read, so an HTML error page, an empty body or a truncated download is
    caught before it reaches the cache. Header cards astropy would refuse to
    write (SkyView's tab characters) are accepted: they are read, not written.
    """
    from astropy.io import fits

    if not content:
        raise FetchError("empty body instead of a FITS file")
    if not content.startswith(b"SIMPLE  ="):
        raise FetchError(f"not a FITS file ({len(content)} bytes starting {_snippet(content)!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(content), memmap=False, lazy_load_hdus=False) as hdul:
                images = 0
                for i, hdu in enumerate(hdul):
                    info = hdu.fileinfo()
                    end = info["datLoc"] + hdu.size
                    if end > len(content):
                        raise FetchError(f"truncated FITS file: HDU {i} needs {end} bytes, got {len(content)}")
                    data = hdu.data
                    if data is not None and getattr(data, "ndim", 0) >= 2:
                        images += 1
    except FetchError:
        raise
    except Exception as exc:
        raise FetchError(f"unreadable FITS file ({type(exc).__name__}: {exc})") from None
    if images == 0:
        raise FetchError("FITS file without an image")
