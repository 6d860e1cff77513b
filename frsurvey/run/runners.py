"""Where chunks of a catalog are classified: in this process, or on a Dask cluster.

Both runners take an iterator of ``(chunk, results from a resume journal or
None)`` and yield ``(chunk, results, classified now)`` in catalog order;
:mod:`frsurvey.run.driver` writes what they yield. Each keeps one
:class:`~frsurvey.run.engine.BatchClassifier` for the whole run (on a Dask
cluster, one per worker process), so that a source is prepared once however
many chunks name it.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
from astropy.table import Table

from ..gallery import GalleryKeeper
from ..io.positions import parse_positions
from ..options import ClassifyOptions, OptionError
from .engine import BatchClassifier, RowResults

__all__ = ["DaskRunner", "LocalRunner", "quiet"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet(name: str):
    """Silence a logger for a moment (the warnings of later chunks that repeat the first's)."""
    logger = logging.getLogger(name)
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def _positions(chunk: Table, ra_name: str, dec_name: str, first: bool):
    """Return parse_positions of a chunk with reasons; its warning logged only if ``first`` (the failure log counts all)."""
    with contextlib.nullcontext() if first else quiet("frsurvey.io.positions"):
        return parse_positions(chunk, ra_name, dec_name, with_reasons=True)


class LocalRunner:
    """Classifies chunks in this process, one classifier for the run."""

    def __init__(self, model, source, device, options: ClassifyOptions, bar=None) -> None:
        self.engine = BatchClassifier(model, source, device=device, **options.engine_options())
        self.gallery = options.gallery
        self.gallery_max = options.gallery_max
        self.bar = bar  # a RowProgress: told of each chunk, and of its sources as they are done
        self.parsed = False  # a chunk's positions parsed (its warning logged) by this run

    def run(self, chunks: Iterator[tuple[Table, Any]], ra_name: str, dec_name: str):
        """Yield (chunk, results, classified now) for (chunk, results from a journal or None)."""

        for k, (chunk, done) in enumerate(chunks):
            if done is not None:
                yield chunk, done, False
                continue
            ra, dec, status, reason = _positions(chunk, ra_name, dec_name, not self.parsed)
            self.parsed = True
            keep = None
            if k == 0 and self.gallery is not None:
                keep = functools.partial(GalleryKeeper, max_rows=self.gallery_max)
            if self.bar is not None:
                self.bar.start_chunk(len(chunk))
            yield chunk, self.engine.classify(ra, dec, status, keep=keep, reason=reason, bar=self.bar), True

    @property
    def prepared(self) -> int:
        return self.engine.prepared

    @property
    def remembered(self) -> int:
        return self.engine.remembered

    def close(self) -> None:
        self.engine.close()


#: Per worker process: the classifier of the run in hand (token, classifier, lock).
_WORKER: dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()


def _classify_on_worker(
    token: str, setup: dict, ra: np.ndarray, dec: np.ndarray, status: np.ndarray, reason: np.ndarray
) -> tuple:
    """Classify one chunk's positions on a Dask worker, with the run's classifier (made once per worker)."""
    with _WORKER_LOCK:
        if _WORKER.get("token") != token:
            old = _WORKER.get("engine")
            if old is not None:
                old.close()
            opts = dict(setup["options"])
            opts["workers"] = 0  # worker processes are daemons: no DataLoader processes of their own
            engine = BatchClassifier(setup["model"], setup["source"], device=setup["device"], **opts)
            _WORKER.update(token=token, engine=engine, lock=threading.Lock())
        engine, lock = _WORKER["engine"], _WORKER["lock"]
    with lock:
        before = (engine.prepared, engine.remembered)
        res = engine.classify(ra, dec, status, reason=reason)
        counts = (engine.prepared - before[0], engine.remembered - before[1])
    return res.status, res.message, res.p_fri, res.spread, res.measures, res.ood, counts


def _client(dask: Any):
    """Return (client, cluster to close or None) for ``local``, ``local:N``, an address or a Client."""
    from distributed import Client, LocalCluster

    if isinstance(dask, Client):
        return dask, None, False
    spec = str(dask)
    if spec == "local" or spec.startswith("local:"):
        n = int(spec.split(":", 1)[1]) if ":" in spec else (os.cpu_count() or 1)
        if n < 1:
            raise OptionError(f"--dask local:N needs N >= 1, not {n}")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster, True
    return Client(spec), None, True


class DaskRunner:
    """Sends each chunk's positions to Dask workers; results come back in catalog order."""

    def __init__(self, model, source, device, options: ClassifyOptions) -> None:
        dask = options.dask
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise OptionError("--dask needs dask.distributed: pip install 'frsurvey[dask]'") from exc
        self.client, self.cluster, self.own = _client(dask)
        nworkers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.in_flight = 2 * nworkers
        self.token = uuid.uuid4().hex
        setup = {
            "model": copy.deepcopy(model).cpu(),
            "source": source,
            "device": str(device),
            "options": options.engine_options(),
        }
        [self.setup] = self.client.scatter([setup], broadcast=True, hash=False)
        self.prepared = 0
        self.remembered = 0
        self.parsed = False  # a chunk's positions parsed (its warning logged) by this run
        log.info("classifying on Dask: %s (%d worker(s))", self.client.scheduler.address, nworkers)

    def run(self, chunks: Iterator[tuple[Table, Any]], ra_name: str, dec_name: str):
        """Yield (chunk, results, classified now) for (chunk, results from a journal or None), in order."""
        pending: collections.deque = collections.deque()
        for chunk, done in chunks:
            if done is not None:
                pending.append((chunk, done))
            else:
                ra, dec, status, reason = _positions(chunk, ra_name, dec_name, not self.parsed)
                self.parsed = True
                future = self.client.submit(
                    _classify_on_worker, self.token, self.setup, ra, dec, status, reason, pure=False
                )
                pending.append((chunk, future))
            while len(pending) >= self.in_flight:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    def _result(self, item):
        chunk, future = item
        if isinstance(future, RowResults):  # from the journal
            return chunk, future, False
        status, message, p_fri, spread, measures, ood, (prepared, remembered) = future.result()
        self.prepared += prepared
        self.remembered += remembered
        return chunk, RowResults(status, message, p_fri, spread, None, measures, ood), True

    def close(self) -> None:
        if self.own:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
