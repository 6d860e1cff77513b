"""What every online image source shares: the cache, background fetching, retries.

A :class:`RemoteSource` subclass knows one service (its URL, how to build a
request, how to read the answer); this class does the rest:

- :meth:`~RemoteSource.locate` gives each position a key (the position
  itself); the cache file of a key comes from the request the service would
  be sent (:meth:`~RemoteSource.request_positions`), so equal requests share
  one download.
- :meth:`~RemoteSource.prefetch` starts downloading every key that is not in
  the cache in a pool of background threads, in catalog order, as soon as the
  catalog is located; :meth:`~RemoteSource.load` waits only for its own key,
  so preprocessing and the model run while the rest downloads.
- Each download is retried with exponential backoff and jitter on transient
  failures, checked to be a complete FITS file, and written to the cache
  atomically; a key whose download finally fails becomes a ``fetch_failed``
  cutout carrying the reason.
- With ``offline=True`` nothing is downloaded: keys missing from the cache
  become ``not_cached``.

Sources are picklable: sessions, threads and locks belong to the process
that made them and are recreated lazily elsewhere. DataLoader worker
processes of a run whose parent is prefetching do not download: they wait
for the parent's file (or its failure note) to appear. They poll files (the
cache file, a note per failure, a ``finished`` marker in a run directory)
because they are other processes, forked or spawned by torch after the
prefetch started: no in-process primitive reaches them, and the cache file
is what they read anyway.

The background threads are daemon threads of this module's own small pool
rather than a :class:`concurrent.futures.ThreadPoolExecutor`: at interpreter
exit, concurrent.futures joins its worker threads after they have run every
task still queued (and waited out their retries), so a run ended without
:meth:`~RemoteSource.close` would go on downloading the rest of its catalog;
daemon threads end with the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from .._utils import __version__, atomic_write, progress_bar
from ..status import Status
from .base import Cutout, ImageSource
from .cache import CutoutCache
from .http import PoliteSession, as_fetch_error, conf, fetch_settings, retry_delay, validate_fits
from .local import cutout_from_file

__all__ = ["RemoteSource", "ServiceUnreachableError"]

log = logging.getLogger(__name__)

_UNKNOWN = object()

#: How to go on without network, for messages.
WAYS_OUT = (
    "without network, classify FITS images you have with --images DIR, or the cutouts already in the cache "
    "with --offline (rows not in it become not_cached)"
)


class ServiceUnreachableError(ConnectionError):
    """Raised before anything is queued when no connection to the service can be made.

    No network, a wrong address, a name that does not resolve: every row
    would fail the same way, so the run stops at once instead.
    """


def _connect_probe(url: str, timeout: float) -> str | None:
    """Open (and close) one TCP connection to the host of ``url``, or its proxy; return None, or why it failed.

    Only the connection is tried, no request is sent: it tells "no network,
    a name that does not resolve, nothing listening" from everything else.
    """
    import socket
    import urllib.parse

    import requests

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxy = requests.utils.get_environ_proxies(url).get(parts.scheme)
    where = urllib.parse.urlsplit(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else parts
    host = where.hostname or parts.hostname
    try:
        port = where.port or (443 if where.scheme == "https" else 80)
    except ValueError:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"the name {host!r} does not resolve ({exc.strerror or exc})"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})" + (f" (the proxy {proxy})" if proxy else "")


class _Runtime:
    """The per-process, unpicklable state of a source: session, client, fetch threads."""

    def __init__(self, session: PoliteSession) -> None:
        self.pid = os.getpid()
        self.session = session
        self.client = None
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.queue: deque = deque()
        self.pending: set[str] = set()  # cache paths queued or being fetched
        self.failures: dict[str, str] = {}  # cache path -> why its download failed
        self.threads: list[threading.Thread] = []
        self.running = 0
        self.streak = 0  # downloads in a row that failed for good
        self.probed = False  # one connection to the service was tried (see RemoteSource.prefetch)
        self.stop = threading.Event()


class RemoteSource(ImageSource):
    """Base class of the online image sources (:class:`SkyViewSource`, :class:`FIRSTSource`).

    Parameters
    ----------
    url : str, optional
        The service's address (a mirror, a proxy, a local stand-in); default
        the class's ``URL``.
    cache : str, path-like or CutoutCache, optional
        The cache directory; default :func:`frsurvey.sources.cache.default_cache_dir`.
    offline : bool
        Use the cache only: never send a request.
    workers : int, optional
        Downloads in flight at once, at most (default ``conf.workers``).
    max_rate : float, optional
        Requests started per second, at most, over all threads (default
        ``conf.max_rate``; 0: no limit).
    timeout : float, optional
        Seconds one download may take in all, and each read (default ``conf.timeout``).
    max_bytes : int, optional
        Largest body of one download, decompressed (default ``conf.max_bytes``, 64 MiB).
    retries : int, optional
        Further attempts after a failed one (default ``conf.retries``).
    backoff, backoff_max : float, optional
        First and longest wait between attempts, in seconds.
    give_up_after : int, optional
        After this many downloads in a row failed for good, the rest of the
        prefetch is not tried (default ``conf.give_up_after``; 0: never).
    """

    name = "remote"
    #: Subdirectory of the cache for this service.
    service = "remote"
    #: The service's address.
    URL = ""
    #: Survey name as the cache spells it.
    survey = ""

    def __init__(
        self,
        url: str | None = None,
        *,
        cache: str | os.PathLike | CutoutCache | None = None,
        offline: bool = False,
        workers: int | None = None,
        max_rate: float | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        backoff_max: float | None = None,
        give_up_after: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.url = str(url or self.URL)
        settings = fetch_settings(
            workers=workers,
            max_rate=max_rate,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            backoff_max=backoff_max,
            give_up_after=give_up_after,
            max_bytes=max_bytes,
        )
        self.cache = cache if isinstance(cache, CutoutCache) else CutoutCache(cache)
        self.offline = bool(offline)
        self.max_bytes: int = settings["max_bytes"]
        self.workers: int = settings["workers"]
        self.max_rate: float = settings["max_rate"]
        self.timeout: float = settings["timeout"]
        self.retries: int = settings["retries"]
        self.backoff: float = settings["backoff"]
        self.backoff_max: float = settings["backoff_max"]
        self.give_up_after: int = settings["give_up_after"]
        self._rt: _Runtime | None = None
        self._run_dir: str | None = None  # where a prefetching process notes failures for its children
        self._run_pid: int | None = None

    # ------------------------------------------------------------------ what a service defines

    def cache_size(self) -> str:
        """Return the size part of the cache key, e.g. ``300px``."""
        raise NotImplementedError

    def request_positions(self, ra: np.ndarray, dec: np.ndarray) -> list[str]:
        """Return, per position (degrees), the position as the request states it (the cache key)."""
        raise NotImplementedError

    def _make_client(self, session: PoliteSession):
        """Return the service's client (an astroquery query class) using ``session``."""
        raise NotImplementedError

    def _download(self, ra: float, dec: float, client, session: PoliteSession) -> bytes:
        """Make one attempt at the cutout of (ra, dec) and return the file's bytes as sent.

        Raises an exception (requests', or :class:`FetchError`) on failure.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_rt"] = None
        return state

    def _runtime(self) -> _Runtime:
        rt = self._rt
        if rt is None or rt.pid != os.getpid():  # first use, or a forked child: never reuse the parent's locks
            session = PoliteSession(
                self.timeout,
                self.workers,
                self.max_rate,
                user_agent=f"frsurvey/{__version__}",
                max_bytes=getattr(self, "max_bytes", conf.max_bytes),
            )
            rt = self._rt = _Runtime(session)
        return rt

    def _client(self, rt: _Runtime):
        with rt.lock:
            if rt.client is None:
                rt.client = self._make_client(rt.session)
            return rt.client

    def describe(self) -> str:
        """Return ``<name>:<url> (cache <dir>[, offline])``."""
        return f"{self.name}:{self.url} (cache {self.cache.root}{', offline' if self.offline else ''})"

    def cache_paths(self, ra: Sequence[float], dec: Sequence[float]) -> list[Path]:
        """Return the cache file of the cutout of each position (whether or not it is there)."""
        ra = np.atleast_1d(np.asarray(ra, dtype=float))
        dec = np.atleast_1d(np.asarray(dec, dtype=float))
        if len(ra) == 0:
            return []
        size = self.cache_size()
        return [self.cache.path(self.service, self.survey, size, p) for p in self.request_positions(ra, dec)]

    def cache_path(self, key: tuple[float, float]) -> Path:
        """Return the cache file of one key from :meth:`locate`."""
        return self.cache_paths([key[0]], [key[1]])[0]

    @property
    def requests_sent(self) -> int:
        """Requests sent by this process for this source so far."""
        return self._rt.session.requests_sent if self._rt is not None else 0

    # ------------------------------------------------------------------ the ImageSource interface

    def locate(self, ra: np.ndarray, dec: np.ndarray) -> list[Hashable | Cutout]:
        """Return per position the key ``(ra, dec)``, or a ``bad_position`` Cutout."""
        out: list[Hashable | Cutout] = []
        for r, d in zip(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)):
            if not (np.isfinite(r) and np.isfinite(d)) or abs(d) > 90:
                out.append(Cutout.failed(Status.BAD_POSITION, "no valid position"))
            else:
                out.append((float(r), float(d)))
        return out

    def prefetch(self, keys: Sequence[Hashable | Cutout]) -> None:
        """Start downloading, in the background, the cutouts of ``keys`` missing from the cache.

        Returns at once. ``workers`` threads take the keys in order; keys
        whose request is the same are downloaded once. Offline, does nothing.

        The first time a key is missing from the cache, before it is
        queued, one connection to the service is tried: when it cannot be
        made (no network, a name that does not resolve, nothing listening),
        every row would fail the same way after its retries, so
        :class:`ServiceUnreachableError` is raised at once instead. Keys
        already in the cache need no service: a run whose cutouts are all
        cached makes no connection and no request, as ``offline`` does.

        Raises
        ------
        ServiceUnreachableError
            If the first key missing from the cache cannot be fetched because
            the service cannot be connected to.
        """
        if self.offline:
            return
        todo = [k for k in keys if not isinstance(k, Cutout)]
        if not todo:
            return
        paths = self.cache_paths([k[0] for k in todo], [k[1] for k in todo])
        missing = [(key, path) for key, path in zip(todo, paths) if not path.exists()]
        if not missing:
            return
        rt = self._runtime()
        if not rt.probed:
            self._probe(rt)
        if self._run_dir is None or self._run_pid != os.getpid():
            self._run_dir = tempfile.mkdtemp(prefix="frsurvey-fetch-")
            self._run_pid = os.getpid()
        queued = 0
        with rt.cond:
            Path(self._run_dir, "finished").unlink(missing_ok=True)
            for key, path in missing:
                p = str(path)
                if p in rt.pending or p in rt.failures or path.exists():
                    continue
                rt.pending.add(p)
                rt.queue.append((p, key))
                queued += 1
            if not queued:
                Path(self._run_dir, "finished").touch()
                return
            start = min(self.workers, len(rt.queue)) - rt.running
            for _ in range(max(0, start)):
                t = threading.Thread(target=self._fetch_loop, args=(rt,), name="frsurvey-fetch", daemon=True)
                rt.threads.append(t)
                rt.running += 1
                t.start()
        log.info("%s: fetching %d cutout(s) missing from the cache %s", self.name, queued, self.cache.root)

    def _probe(self, rt: _Runtime) -> None:
        """Try one connection to the service; raise ServiceUnreachableError if it cannot be made."""
        rt.probed = True
        why = _connect_probe(self.url, min(self.timeout, 30.0))
        if why is not None:
            raise ServiceUnreachableError(
                f"{self.name} at {self.url} cannot be reached: {why}. Nothing was downloaded; check the network "
                f"or the address (--{self.name}-url), or, {WAYS_OUT}"
            )

    def _fetch_loop(self, rt: _Runtime) -> None:
        while True:
            with rt.cond:
                if rt.stop.is_set() or not rt.queue:
                    rt.running -= 1
                    if rt.running == 0 and self._run_dir and not rt.stop.is_set():
                        Path(self._run_dir, "finished").touch()
                    return
                path, key = rt.queue.popleft()
            try:
                reason = self._fetch_to_cache(Path(path), key, rt)
            except BaseException as exc:  # never leave a waiter hanging
                log.exception("%s: unexpected error fetching %s", self.name, key)
                reason = f"internal error: {type(exc).__name__}: {exc}"
            dropped: list[str] = []
            with rt.cond:
                rt.pending.discard(path)
                if reason is None:
                    rt.streak = 0
                else:
                    rt.failures[path] = reason
                    rt.streak += 1
                    if self.give_up_after and rt.streak >= self.give_up_after and rt.queue:
                        dropped = [p for p, _ in rt.queue]
                        rt.queue.clear()
                        given_up = f"not tried: the last {rt.streak} downloads from {self.url} failed (last: {reason})"
                        for p in dropped:
                            rt.pending.discard(p)
                            rt.failures[p] = given_up
                        log.warning(
                            "%s: %d downloads in a row failed (last: %s); not trying the %d still queued "
                            "(those already started finish); %s",
                            self.name,
                            rt.streak,
                            reason,
                            len(dropped),
                            WAYS_OUT,
                        )
                rt.cond.notify_all()
            if reason is not None and self._run_dir:
                self._note_failure(path, reason)
                for p in dropped:
                    self._note_failure(p, rt.failures[p])

    def _failure_note(self, path: str) -> Path:
        return Path(self._run_dir or ".", hashlib.sha1(path.encode()).hexdigest() + ".failed")

    def _note_failure(self, path: str, reason: str) -> None:
        try:
            atomic_write(self._failure_note(path), reason.encode("utf-8", "backslashreplace"))
        except OSError:  # the run directory is gone: the run is over
            pass

    def _fetch_to_cache(self, path: Path, key: tuple[float, float], rt: _Runtime) -> str | None:
        """Download the cutout of ``key`` into ``path`` with retries; return None, or why it failed."""
        ra, dec = key
        attempts = self.retries + 1
        for attempt in range(attempts):
            if rt.stop.is_set():
                return "cancelled"
            try:
                content = self._download(ra, dec, self._client(rt), rt.session)
                validate_fits(content)
            except Exception as exc:
                err = as_fetch_error(exc)
                if not err.retryable or attempt + 1 >= attempts:
                    why = f"{self.name} {self.url}: {err} (attempt {attempt + 1} of {attempts}, giving up)"
                    log.info("fetch failed for (%.6f, %.6f): %s", ra, dec, why)
                    return why
                delay = retry_delay(attempt, self.backoff, self.backoff_max, err.retry_after)
                log.info(
                    "%s: (%.6f, %.6f): %s; retry %d of %d in %.2f s",
                    self.name,
                    ra,
                    dec,
                    err,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                if rt.stop.wait(delay):
                    return "cancelled"
                continue
            try:
                self.cache.write(path, content)
            except OSError as exc:
                return f"cannot write the cache file {path}: {exc}"
            return None
        return "no attempt made"  # pragma: no cover (attempts >= 1)

    def _await_parent(self, path: Path) -> str | object | None:
        """In a child of a prefetching process: wait for the parent's file or failure note."""
        run_dir = Path(self._run_dir or "")
        note = self._failure_note(str(path))
        delay = 0.005
        while True:
            if path.exists():
                return None
            if note.exists():
                return note.read_text(encoding="utf-8")
            if not run_dir.is_dir() or (run_dir / "finished").exists():
                if path.exists():
                    return None
                return note.read_text(encoding="utf-8") if note.exists() else _UNKNOWN
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def _ensure(self, key: tuple[float, float], path: Path) -> str | None:
        """Make sure ``path`` holds the cutout of ``key``; return None, or why not."""
        if path.exists():
            return None
        if self._run_dir and self._run_pid is not None and self._run_pid != os.getpid():
            outcome = self._await_parent(path)
            if outcome is not _UNKNOWN:
                return outcome  # type: ignore[return-value]
        rt = self._runtime()
        p = str(path)
        with rt.cond:
            while p in rt.pending:
                rt.cond.wait()
            if p in rt.failures:
                return rt.failures[p]
        if path.exists():
            return None
        return self._fetch_to_cache(path, key, rt)

    def load(self, key: Hashable | Cutout) -> Cutout:
        """Return the cutout of a key from :meth:`locate`, downloading it first if need be.

        Waits for a background download of this key if there is one. Never
        raises for bad data: failures come back as ``fetch_failed``,
        ``not_cached``, ``bad_image`` (and the other local statuses) cutouts.
        """
        if isinstance(key, Cutout):
            return key
        ra, dec = key  # type: ignore[misc]
        path = self.cache_path((ra, dec))
        if not path.exists():
            if self.offline:
                return Cutout.failed(Status.NOT_CACHED, f"not in the cache {self.cache.root} (offline)", str(path))
            reason = self._ensure((ra, dec), path)
            if reason is not None:
                return Cutout.failed(Status.FETCH_FAILED, reason, self.url)
        return cutout_from_file(path, ra, dec)

    def fetch(self, keys: Sequence[Hashable | Cutout], progress: bool = False) -> list[tuple[str, str]]:
        """Put the cutouts of ``keys`` in the cache; return ``(status, message)`` per key.

        ``ok`` for a cutout in the cache (now or already), ``fetch_failed``
        with the reason, ``not_cached`` offline, or the status of a failed
        Cutout key. The files are checked when downloaded, not cut.
        """
        self.prefetch(keys)
        bar = progress_bar(len(keys), f"fetch ({self.name})", "src") if progress else None
        out: list[tuple[str, str]] = []
        try:
            for key in keys:
                if isinstance(key, Cutout):
                    out.append((key.status, key.message))
                else:
                    path = self.cache_path(key)  # type: ignore[arg-type]
                    if path.exists():
                        out.append((Status.OK, ""))
                    elif self.offline:
                        out.append((Status.NOT_CACHED, f"not in the cache {self.cache.root} (offline)"))
                    else:
                        reason = self._ensure(key, path)  # type: ignore[arg-type]
                        out.append((Status.OK, "") if reason is None else (Status.FETCH_FAILED, reason))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return out

    def close(self) -> None:
        """Stop background downloads (those in flight finish into the cache) and forget the run.

        The source stays usable: a later :meth:`load` downloads what it needs.
        """
        rt, self._rt = self._rt, None
        if rt is not None and rt.pid == os.getpid():
            rt.stop.set()
            with rt.cond:
                rt.queue.clear()
                rt.pending.clear()
                rt.cond.notify_all()
            for t in rt.threads:
                t.join(timeout=0.05)
            rt.session.close()
        if self._run_dir and self._run_pid == os.getpid():
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
            self._run_pid = None
