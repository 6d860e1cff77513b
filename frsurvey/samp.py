"""SAMP: classify the tables TOPCAT (or any SAMP client) sends, and send them back labeled.

:class:`SampClassifier` registers with the running SAMP hub (found the
standard way: ``$SAMP_HUB``, else ``~/.samp``), subscribes to
``table.load.votable`` and ``table.load.fits``, and for every table it is
sent:

1. checks the URL: ``file://`` URLs and ``http(s)://`` URLs on this machine
   only, unless ``allow_remote`` (a refused URL is never fetched);
2. copies the table to a private work directory (right away, while the
   sender still serves it);
3. classifies it with :func:`frsurvey.classify_table` (the model and image
   source are set up once, at start), one table at a time in :meth:`run`;
4. writes the labeled table (VOTable, or FITS for ``table.load.fits``) and
   sends it, named ``<original name>-frsurvey``, back to the sender if it is
   still registered and takes tables, otherwise to every client that does;
5. replies to the call: ``samp.ok`` (every row classified), ``samp.warning``
   (some rows could not be, the count in ``samp.errortxt``) or
   ``samp.error`` with the reason. Progress goes to the sender as
   ``samp.msg.progress`` notifications where it subscribes to them, and to
   the log.

A bad table is answered with an error and the listener goes on. It stops
cleanly on Ctrl-C, SIGTERM, :meth:`SampClassifier.stop`, or when the hub
shuts down, and unregisters from the hub on the way out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import queue
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._compat.requests import shut_down
from ._flags import OptionError
from ._utils import __version__, resolve_device
from .options import ClassifyOptions
from .sources import ImageSource

__all__ = ["FORMAT_OF_MTYPE", "MTYPES", "SampClassifier", "SampError", "is_local_url", "samp_module"]

log = logging.getLogger(__name__)

#: The MTypes frsurvey receives tables with.
MTYPES = ("table.load.votable", "table.load.fits")
#: Catalog format of each table MType (and file name ending of its copies).
FORMAT_OF_MTYPE = {"table.load.votable": "votable", "table.load.fits": "fits"}
_SUFFIX = {"votable": ".vot", "fits": ".fits"}
#: The SAMP MType for reports on the progress of an earlier message.
PROGRESS_MTYPE = "samp.msg.progress"
#: Clients whose ``samp.name`` starts so are frsurvey listeners: their tables are labeled already.
NAME = "frsurvey"
#: Largest table copied from a URL into the listener's work folder (``--max-table-bytes``): 2 GiB.
MAX_TABLE_BYTES = 2 * 1024**3


class SampError(RuntimeError):
    """Raised when there is no SAMP hub to talk to, or the hub goes away."""


class _Refused(ValueError):
    """A table that will not be fetched or classified; the message says why."""


def samp_module():
    """Return the SAMP implementation: :mod:`pyvo.samp` when installed, else :mod:`astropy.samp`.

    astropy 8 deprecated :mod:`astropy.samp` in favour of :mod:`pyvo.samp`,
    which is the same code; both find the hub through ``$SAMP_HUB`` or
    ``~/.samp``.
    """
    try:
        import pyvo.samp as samp
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import astropy.samp as samp
    return samp


# --------------------------------------------------------------------------------------------------
# Which URLs are loaded


@lru_cache(maxsize=1)
def _local_names() -> frozenset[str]:
    names = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
    with contextlib.suppress(OSError):
        names.add(socket.gethostname().lower())
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    with contextlib.suppress(OSError):  # this host's own addresses, as /etc/hosts or the resolver give them
        for host in list(names):
            for info in socket.getaddrinfo(host, None):
                names.add(str(info[4][0]).lower())
    return frozenset(n for n in names if n)


def _is_local_host(host: str | None) -> bool:
    host = (host or "").strip("[]").lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host in _local_names()
    return address.is_loopback or str(address) in _local_names()


def is_local_url(url: str) -> bool:
    """Return True for a ``file://`` URL of this machine or an ``http(s)://`` URL served on it.

    "On this machine": ``localhost``, a loopback address (``127.0.0.1``,
    ``::1``), this host's name or one of its addresses. The decision is made
    on the URL's text; nothing is fetched or resolved but this host's own name.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return parts.netloc in ("", "localhost") or _is_local_host(parts.hostname)
    if scheme in ("http", "https"):
        return _is_local_host(parts.hostname)
    return False


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only where the URL policy allows the target too."""

    def __init__(self, allow_remote: bool) -> None:
        self.allow_remote = allow_remote

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise _Refused(f"refusing the redirect to {newurl!r}: only http(s) redirects are followed")
        if not self.allow_remote and not is_local_url(newurl):
            raise _Refused(
                f"refusing the redirect to {newurl!r}: it is not on this machine (frsurvey samp --allow-remote loads it)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# --------------------------------------------------------------------------------------------------
# The listener


@dataclass
class _Job:
    """One table received: who sent it, how, and where its copy is."""

    number: int
    sender: str
    msg_id: str | None
    mtype: str
    params: dict
    name: str
    path: Path | None = None


class SampClassifier:
    """A SAMP client that classifies every table sent to it and sends it back labeled.

    Parameters
    ----------
    images : path, optional
        A directory of FIRST FITS images (the ``local`` image source), as for
        :func:`frsurvey.classify_table`.
    model : FRClassifier or path, optional
        The model (default: the shipped one); loaded once, at :meth:`start`.
    allow_remote : bool
        Also load tables from URLs on other machines.
    name : str
        The client's ``samp.name`` (it should start with ``frsurvey``).
    hub_params : dict, optional
        Hub connection parameters; default: the standard discovery
        (``$SAMP_HUB``, else ``~/.samp``).
    addr : str
        Address this client's callback server listens on (loopback).
    fetch_timeout : float
        Seconds the copy of a table may take in all (``http(s)`` and ``file``).
    max_table_bytes : int
        Largest table copied, in bytes (default :data:`MAX_TABLE_BYTES`); a
        larger one, or a ``file:`` URL naming anything but a regular file
        (``/dev/zero``, a pipe), is refused with an error reply.
    options : ClassifyOptions, optional
        How to classify, as for :func:`frsurvey.classify_table` (the image
        source's options, ``ra_col``, ``dec_col``, ``table_index``,
        ``batch_size``, ``device``, ``workers``, thresholds, ...).
    source : ImageSource or str, optional
        An image source instance, or a source's name, instead of the options'.
    **fields
        Options by name instead (:meth:`ClassifyOptions.build`).

    Examples
    --------
    >>> with SampClassifier(images="cutouts/", model="model.pt") as listener:  # doctest: +SKIP
    ...     listener.run()  # until Ctrl-C, SIGTERM or listener.stop()
    """

    def __init__(
        self,
        images: str | os.PathLike | None = None,
        model: Any = None,
        *,
        allow_remote: bool = False,
        name: str = NAME,
        hub_params: dict | None = None,
        addr: str = "127.0.0.1",
        fetch_timeout: float = 60.0,
        max_table_bytes: int = MAX_TABLE_BYTES,
        options: ClassifyOptions | None = None,
        source: ImageSource | str | None = None,
        **fields: Any,
    ) -> None:
        self.options = ClassifyOptions.build(
            options, images=images, source=None if isinstance(source, ImageSource) else source, **fields
        )
        self.model_spec = model
        self.allow_remote = bool(allow_remote)
        self.name = name
        self.hub_params = hub_params
        self.addr = addr
        self.fetch_timeout = float(fetch_timeout)
        self.max_table_bytes = int(max_table_bytes)
        if self.max_table_bytes < 1 or not self.fetch_timeout > 0:
            raise OptionError("max_table_bytes must be at least 1 and fetch_timeout above 0")
        self.client = None
        self.model = None
        self.source = source if isinstance(source, ImageSource) else None
        self.work_dir: Path | None = None
        #: One dict per table handled: name, sender, status, summary, error, result path and recipients.
        self.history: list[dict] = []
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._stop = threading.Event()
        self._numbers = itertools.count(1)
        self._stop_reason = ""

    # ---------------------------------------------------------------------------------------------
    # Life cycle

    def start(self) -> None:
        """Load the model, set up the image source, register with the hub and subscribe.

        Raises
        ------
        SampError
            If no SAMP hub is running (or it cannot be reached).
        frsurvey.model.checkpoint.CheckpointError, ValueError
            If the model or image source options are unusable.
        """
        from .run.engine import get_model

        samp = samp_module()
        self._find_hub(samp)  # before the slow part: no hub, no need to load anything
        self.model = get_model(self.model_spec, resolve_device(self.options.device))
        if self.source is None:
            self.source = self.options.source.make()
        self.work_dir = Path(tempfile.mkdtemp(prefix="frsurvey-samp-"))
        metadata = {
            "samp.description.text": "Fanaroff-Riley classification of FIRST radio sources: send it a table, "
            "get the table back with FR_CLASS, P_FRI, P_FRII, FR_UNCERTAINTY and FR_STATUS",
            "author.name": "frsurvey",
            "frsurvey.version": __version__,
            "frsurvey.images": self.source.describe(),
        }
        with samp.conf.set_temp("use_internet", False):  # no probe of the internet for a host name
            client = samp.SAMPIntegratedClient(name=self.name, metadata=metadata, addr=self.addr)
        try:
            client.connect(hub_params=self.hub_params)
        except Exception as exc:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise self._no_hub(exc) from exc
        self.client = client
        with contextlib.suppress(Exception):  # no client may read our environment through SAMP
            client.unbind_receive_call("client.env.get", declare=False)
        for mtype in MTYPES:
            client.bind_receive_call(mtype, self._on_call, declare=False)
            client.bind_receive_notification(mtype, self._on_notification, declare=False)
        client.bind_receive_notification("samp.hub.event.shutdown", self._on_hub_shutdown, declare=False)
        client.bind_receive_notification("samp.hub.disconnect", self._on_hub_shutdown, declare=False)
        client.declare_subscriptions()
        log.info(
            "registered with the SAMP hub as %s (%s); waiting for tables (%s); images from %s",
            client.get_public_id(),
            self.name,
            ", ".join(MTYPES),
            self.source.describe(),
        )

    def _no_hub(self, exc: Exception) -> SampError:
        hub = os.environ.get("SAMP_HUB") or "~/.samp"
        why = str(exc).rstrip(". ") or type(exc).__name__
        return SampError(f"cannot register with a SAMP hub ({hub}): {why}. Start TOPCAT (or another hub) first.")

    def _find_hub(self, samp) -> None:
        """Raise SampError unless a hub answers where the standard discovery (or ``hub_params``) points."""
        proxy = samp.SAMPHubProxy()
        try:
            proxy.connect(hub_params=self.hub_params, pool_size=1)
        except Exception as exc:
            raise self._no_hub(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                proxy.disconnect()

    def close(self) -> None:
        """Unregister from the hub and remove the work directory (tables sent back included)."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            log.info("unregistered from the SAMP hub")
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def __enter__(self) -> SampClassifier:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def public_id(self) -> str | None:
        """This client's id at the hub (None when not registered)."""
        return self.client.get_public_id() if self.client is not None else None

    def stop(self, reason: str = "asked to stop") -> None:
        """Make :meth:`run` return after the table in hand (thread-safe; signal handlers call it)."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (or the hub went away)."""
        return self._stop.is_set()

    def run(self, install_signal_handlers: bool | None = None, hub_check_interval: float = 5.0) -> str:
        """Classify tables as they come, until stopped; return why it stopped.

        Parameters
        ----------
        install_signal_handlers : bool, optional
            Stop on SIGTERM (and SIGINT) instead of dying; default: when
            called from the main thread.
        hub_check_interval : float
            Seconds between checks that the hub is still there.
        """
        if self.client is None:
            self.start()
        main = threading.current_thread() is threading.main_thread()
        handlers = {}
        if install_signal_handlers if install_signal_handlers is not None else main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        next_check = time.monotonic() + hub_check_interval
        try:
            while not self._stop.is_set():
                try:
                    job = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + hub_check_interval
                        self._check_hub()
                    continue
                self.process(job)
        except KeyboardInterrupt:
            self.stop("interrupted (Ctrl-C)")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._answer_queued("frsurvey is stopping: this table was not classified")
        log.info("stopping: %s", self._stop_reason or "asked to stop")
        return self._stop_reason

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop even in the middle of a table
        self.stop(f"{name} received")
        log.warning("%s: stopping after the table in hand (Ctrl-C again to stop at once)", name)

    def _on_hub_shutdown(self, private_key, sender_id, mtype, params, extra) -> None:
        log.warning("the SAMP hub is going away (%s): stopping", mtype)
        self.stop("the SAMP hub shut down")

    def _check_hub(self) -> None:
        try:
            self.client.ping()
        except Exception as exc:
            log.error("lost the SAMP hub: %s", exc)
            self.stop("lost the SAMP hub")

    def _answer_queued(self, text: str) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            self._reply(job, self._error(text))

    # ---------------------------------------------------------------------------------------------
    # Receiving

    def _on_call(self, private_key, sender_id, msg_id, mtype, params, extra) -> None:
        self._receive(sender_id, msg_id, mtype, params)

    def _on_notification(self, private_key, sender_id, mtype, params, extra) -> None:
        self._receive(sender_id, None, mtype, params)

    def _receive(self, sender: str, msg_id: str | None, mtype: str, params: dict) -> None:
        """Check and copy a table sent to us, and queue it; answer at once when it is refused."""
        number = next(self._numbers)
        params = dict(params or {})
        url = str(params.get("url") or "")
        job = _Job(number, sender, msg_id, mtype, params, _table_name(params, url, number))
        log.info("table %d %r from %s (%s): %s", number, job.name, self._client_name(sender), mtype, url)
        try:
            if self._stop.is_set():
                raise _Refused("frsurvey is stopping")
            if self._client_name(sender).lower().startswith(NAME):
                raise _Refused("the table comes from another frsurvey listener: it is labeled already")
            if not url:
                raise _Refused(f"the {mtype} message has no url parameter")
            self._check_url(url)
            job.path = self._fetch(url, job)
        except _Refused as exc:
            log.warning("table %d refused: %s", number, exc)
            self.history.append(
                {"number": number, "name": job.name, "sender": sender, "status": "refused", "error": str(exc)}
            )
            self._reply(job, self._error(str(exc)))
            return
        except Exception as exc:  # the URL could not be read
            text = f"cannot read the table at {url}: {exc}"
            log.warning("table %d: %s", number, text)
            self.history.append(
                {"number": number, "name": job.name, "sender": sender, "status": "error", "error": text}
            )
            self._reply(job, self._error(text))
            return
        ahead = self._queue.qsize()
        self._queue.put(job)
        self._progress(job, f"received; {ahead} table(s) ahead of it" if ahead else "received; classifying")

    def _check_url(self, url: str) -> None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("file", "http", "https"):
            raise _Refused(f"refusing {url!r}: only file:, http: and https: URLs are loaded")
        if not self.allow_remote and not is_local_url(url):
            raise _Refused(
                f"refusing {url!r}: it is not on this machine, and frsurvey samp loads only local tables "
                "(file:// and http(s)://localhost URLs); start it with --allow-remote to load this one"
            )

    def _fetch(self, url: str, job: _Job) -> Path:
        """Copy the table at ``url`` into the work directory and return the copy's path."""
        fmt = FORMAT_OF_MTYPE[job.mtype]
        dest = self.work_dir / f"in-{job.number}{_SUFFIX[fmt]}"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() == "file":
            if parts.netloc not in ("", "localhost") and not _is_local_host(parts.hostname):
                raise _Refused(f"cannot read {url!r}: a file on another machine")
            source = urllib.request.url2pathname(parts.path)
            st = os.stat(source)
            if not stat.S_ISREG(st.st_mode):
                raise _Refused(f"refusing {url!r}: not a regular file (a device, pipe or directory)")
            if st.st_size > self.max_table_bytes:
                raise _Refused(
                    f"refusing {url!r}: {st.st_size} bytes, above the cap of {self.max_table_bytes} (--max-table-bytes)"
                )
            with open(source, "rb") as src:
                self._copy(src, dest, url, src.read)
            return dest
        handlers = [_CheckedRedirects(self.allow_remote)]
        if is_local_url(url):
            handlers.append(urllib.request.ProxyHandler({}))  # never through a proxy to this machine
        opener = urllib.request.build_opener(*handlers)
        with opener.open(url, timeout=self.fetch_timeout) as response:
            timer = threading.Timer(self.fetch_timeout, shut_down, (response,))  # a read blocked past it ends
            timer.daemon = True
            timer.start()
            try:
                self._copy(response, dest, url, getattr(response, "read1", response.read))
            except (OSError, ValueError, AttributeError) as exc:
                if isinstance(exc, _Refused):
                    raise
                if not timer.is_alive():
                    raise _Refused(f"copying {url!r} took longer than {self.fetch_timeout:g} s") from None
                raise
            finally:
                timer.cancel()
        return dest

    def _copy(self, src, dest: Path, url: str, read) -> None:
        """Copy ``src`` to ``dest`` with ``read(n)``, within the byte cap and the deadline; refuse it beyond them."""
        deadline = time.monotonic() + self.fetch_timeout
        total = 0
        try:
            with open(dest, "wb") as out:
                while True:
                    block = read(1 << 20)
                    if not block:
                        return
                    total += len(block)
                    if total > self.max_table_bytes:
                        raise _Refused(f"refusing {url!r}: more than {self.max_table_bytes} bytes (--max-table-bytes)")
                    if time.monotonic() > deadline:
                        raise _Refused(f"copying {url!r} took longer than {self.fetch_timeout:g} s")
                    out.write(block)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _client_name(self, client_id: str) -> str:
        try:
            return str(self.client.get_metadata(client_id).get("samp.name") or client_id)
        except Exception:
            return client_id

    # ---------------------------------------------------------------------------------------------
    # Classifying

    def process(self, job: _Job) -> dict:
        """Classify one received table, send it back, reply; return the SAMP response sent."""
        from .io import CatalogError, read_catalog, write_catalog
        from .model.checkpoint import CheckpointError
        from .run import classify_table
        from .status import Status, summarize

        fmt = FORMAT_OF_MTYPE[job.mtype]
        record = {"number": job.number, "name": job.name, "sender": job.sender}
        try:
            table = read_catalog(job.path, format=fmt, table=self.options.table_index)
            self._progress(job, f"classifying {len(table)} rows", 0)
            result = classify_table(table, model=self.model, source=self.source, options=self.options)
            statuses = [str(s) for s in result["FR_STATUS"]]
            summary = summarize(statuses)
            out = self.work_dir / f"{_file_stem(job.name)}-frsurvey-{job.number}{_SUFFIX[fmt]}"
            write_catalog(result, out, format=fmt)
            recipients = self._send_back(job, out, fmt)
        except KeyboardInterrupt:
            self._reply(job, self._error("frsurvey was interrupted while classifying this table"))
            raise
        except (CatalogError, CheckpointError, ValueError, KeyError, OSError) as exc:
            text = f"cannot classify table {job.name!r}: {exc}"
            log.warning("table %d: %s", job.number, text)
            record.update(status="error", error=text)
            self.history.append(record)
            return self._reply(job, self._error(text))
        except Exception as exc:  # a bug; the listener goes on
            text = f"internal error classifying table {job.name!r}: {type(exc).__name__}: {exc}"
            log.exception("table %d: %s", job.number, text)
            record.update(status="error", error=text)
            self.history.append(record)
            return self._reply(job, self._error(text))
        finally:
            if job.path is not None:
                job.path.unlink(missing_ok=True)
        n_ok = sum(s == Status.OK for s in statuses)
        result_map = {
            "url": out.as_uri(),
            "name": f"{job.name}-frsurvey",
            "rows": str(len(statuses)),
            "classified": str(n_ok),
            "summary": summary,
            "recipients": list(recipients),
        }
        if n_ok == len(statuses):
            response = {"samp.status": "samp.ok", "samp.result": result_map}
        else:
            response = {
                "samp.status": "samp.warning",
                "samp.result": result_map,
                "samp.error": {
                    "samp.errortxt": f"{len(statuses) - n_ok} of {len(statuses)} rows could not be classified "
                    f"({summary}); FR_STATUS says why"
                },
            }
        log.info("table %d %r: %s -> %s", job.number, job.name, summary, ", ".join(recipients) or "nobody")
        record.update(status="ok", summary=summary, result=str(out), recipients=list(recipients))
        self.history.append(record)
        self._progress(job, f"done: {summary}", 100)
        return self._reply(job, response)

    def _send_back(self, job: _Job, path: Path, fmt: str) -> list[str]:
        """Send the labeled table to the sender if it is registered and takes tables, else to every client that does."""
        from .io import write_catalog

        client = self.client
        me = client.get_public_id()
        name = f"{job.name}-frsurvey"
        mtype = job.mtype
        registered = set(client.get_registered_clients())
        if job.sender in registered and self._subscribed(job.sender, mtype):
            targets = {mtype: [job.sender]}
        else:
            targets = {}
            for candidate in (mtype, *[m for m in MTYPES if m != mtype]):
                ids = [
                    c
                    for c in client.get_subscribed_clients(candidate)
                    if c != me and not self._client_name(c).lower().startswith(NAME)
                ]
                if ids:
                    targets[candidate] = ids
                    break
        sent = []
        for target_mtype, ids in targets.items():
            target_fmt = FORMAT_OF_MTYPE[target_mtype]
            target_path = path
            if target_fmt != fmt:
                from .io import read_catalog

                target_path = path.with_suffix(_SUFFIX[target_fmt])
                write_catalog(read_catalog(path, format=fmt), target_path, format=target_fmt)
            params = {"url": target_path.as_uri(), "name": name, "table-id": f"{NAME}-{job.number}"}
            for client_id in ids:
                try:
                    client.notify(client_id, {"samp.mtype": target_mtype, "samp.params": params})
                    sent.append(client_id)
                except Exception as exc:
                    log.warning("could not send %r to %s: %s", name, self._client_name(client_id), exc)
        if not sent:
            log.warning(
                "no SAMP client takes tables: the labeled table %r is at %s only until this listener stops "
                "(its folder is removed then): copy it now, or start TOPCAT and send the table again",
                name,
                path,
            )
        return sent

    def _subscribed(self, client_id: str, mtype: str) -> bool:
        try:
            patterns = self.client.get_subscriptions(client_id)
        except Exception:
            return False
        return any(_mtype_matches(str(p), mtype) for p in patterns)

    # ---------------------------------------------------------------------------------------------
    # Talking back

    @staticmethod
    def _error(text: str) -> dict:
        return {"samp.status": "samp.error", "samp.error": {"samp.errortxt": text}}

    def _reply(self, job: _Job, response: dict) -> dict:
        if job.msg_id is not None and self.client is not None:
            try:
                self.client.reply(job.msg_id, response)
            except Exception as exc:
                log.warning("could not reply to %s about table %d: %s", job.sender, job.number, exc)
        return response

    def _progress(self, job: _Job, text: str, percent: float | None = None) -> None:
        log.info("table %d %r: %s", job.number, job.name, text)
        if job.msg_id is None or self.client is None or not self._subscribed(job.sender, PROGRESS_MTYPE):
            return
        params = {"msgid": job.msg_id, "txt": text}
        if percent is not None:
            params["percent"] = f"{percent:g}"
        with contextlib.suppress(Exception):
            self.client.notify(job.sender, {"samp.mtype": PROGRESS_MTYPE, "samp.params": params})


def _mtype_matches(pattern: str, mtype: str) -> bool:
    """SAMP subscription patterns: exact, ``*``, or ``a.b.*``."""
    if pattern == "*" or pattern == mtype:
        return True
    return pattern.endswith(".*") and mtype.startswith(pattern[:-1])


def _table_name(params: dict, url: str, number: int) -> str:
    name = str(params.get("name") or "").strip()
    if name:
        return name
    tail = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    for suffix in (".vot", ".xml", ".votable", ".fits", ".fit", ".fts"):
        if tail.lower().endswith(suffix):
            tail = tail[: -len(suffix)]
            break
    return tail or str(params.get("table-id") or f"table-{number}")


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^\w.+-]+", "_", Path(name).name).strip("._") or "table"
    return stem[:80]
