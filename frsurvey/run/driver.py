"""DRIVER"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from .._utils import __version__, resolve_device
from ..morphology import Thresholds
from ..preprocess import PREPROCESSING, PREPROCESSING_VERSION
from ..sources import ImageSource, make_source
from ..status import FailureLog, Status, summarize_counts

try:  # POSIX: a journal is locked by the run using it
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None
import torch

from ..gallery import GalleryKeeper
from ..io.formats import format_from_path
from ..io.positions import find_position_columns, parse_positions
from ..io.read import DEFAULT_CHUNK_SIZE, CatalogChunks, read_catalog
from ..io.write import ChunkWriter, write_catalog
from ..models import FRClassifier
from .engine import BatchClassifier, get_model, numeric_settings, provenance, with_results
from .journal import ResumeJournal, catalog_fingerprint, model_fingerprint
from .runners import DaskRunner, LocalRunner, quiet

__all__ = ["RunSummary", "classify_file", "classify_table"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What :func:`classify_file` did.

    Attributes
    ----------
    path : Path
        The output file.
    rows : int
        Rows read and written.
    counts : dict
        Rows per ``FR_STATUS``.
    chunks : int
        Chunks the catalog was read in.
    prepared, remembered : int
        Source keys cut and prepared, and those answered from earlier chunks.
    resumed, resumed_rows : int
        Chunks, and their rows, whose results came from the journal of an earlier, interrupted run.
    journal : Path or None
        The resume journal of the run (deleted when the run finished).
    """

    path: Path
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    prepared: int = 0
    remembered: int = 0
    resumed: int = 0
    resumed_rows: int = 0
    journal: Path | None = None

    @property
    def summary(self) -> str:
        """The one-line count of statuses, e.g. ``301 rows: 299 ok, 2 no_image``."""
        return summarize_counts(self.counts)

    @property
    def all_ok(self) -> bool:
        """True when every row was classified."""
        return set(self.counts) <= {Status.OK}


def classify_file(
    catalog: str | os.PathLike,
    out: str | os.PathLike,
    images: str | os.PathLike | None = None,
    model: Any = None,
    *,
    source: ImageSource | str | None = None,
    source_options: dict[str, Any] | None = None,
    ra_col: str | None = None,
    dec_col: str | None = None,
    format: str | None = None,
    table_index: int | None = None,
    out_format: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    tta: bool | None = None,
    amp: bool | None = None,
    progress: bool = False,
    gallery: str | os.PathLike | None = None,
    gallery_max: int = 48,
    dask: str | Any | None = None,
    resume: bool = True,
    restart: bool = False,
    thresholds: Thresholds | None = None,
) -> RunSummary:
    """Classify a catalog file into an output file, ``chunk_size`` rows at a time, resumably.

    The output is the table :func:`frsurvey.classify_table` returns for the
    whole catalog, written as :func:`frsurvey.io.write_catalog` writes
    it (for one chunk, exactly that), but memory holds one chunk at a time.
    Each distinct source is prepared once over the whole run (up to
    :data:`frsurvey.run.engine.MEMORY` of them are remembered).

    Each finished chunk's results go to a :class:`ResumeJournal` beside the
    output (``<out>.frsurvey-partial``). A run that is interrupted (Ctrl-C,
    SIGTERM, SIGKILL, a crash of the machine, an OS error such as a full
    disk) and started again with the same arguments takes the finished
    chunks from there and classifies only the rest; its output is the one
    an uninterrupted run writes, row for row and value for value (only the
    date in ``FRS_DATE`` is that of the run that finished). The journal is
    deleted when the output is in place, and also when the run fails for a
    reason the same command would meet again (a bad catalog, a bug).

    Parameters
    ----------
    catalog, out : str or path-like
        Input and output catalog files (formats from the extensions unless
        ``format`` / ``out_format``).
    images, model, source, source_options, ra_col, dec_col, table_index, batch_size, device, workers, tta, amp
        As for :func:`frsurvey.classify_table`.
    thresholds : frsurvey.morphology.Thresholds, optional
        As for :func:`frsurvey.classify_table`; part of the journal's manifest.
    chunk_size : int
        Rows read, classified and written at a time; 0: the whole catalog
        at once, in memory (:func:`~frsurvey.classify_table`), without a journal.
    progress : bool or str
        Progress on stderr: True or ``"bar"``, a bar (rows, with an ETA when
        the row count is known); ``"lines"``, a line of text every minute
        (for runs without a terminal).
    gallery, gallery_max : optional
        Draw the first rows of the first chunk (see :func:`~frsurvey.classify_table`);
        not with ``dask``.
    dask : str or distributed.Client, optional
        Classify the chunks on a Dask cluster: a scheduler address
        (``tcp://host:8786``), ``local`` or ``local:N`` (a LocalCluster of N
        worker processes, default one per core), or a ``Client``. The images
        (and a model given as a path) must be readable by the workers.
    resume : bool
        Keep a journal and use an earlier run's (default). False: neither.
    restart : bool
        Do not use an earlier run's journal; start over.

    Returns
    -------
    RunSummary
        The output path, row count and status counts.

    Raises
    ------
    frsurvey.io.CatalogError
        If the catalog cannot be read or has no position columns, the output
        cannot be written, or another run is writing the same output.
    frsurvey.models.CheckpointError
        If the model cannot be loaded.
    KeyboardInterrupt
        On Ctrl-C (or SIGTERM made one), with ``run_summary`` (a RunSummary
        of the rows finished) and ``journal`` (the journal directory, or None
        when nothing was finished) as attributes.
    """
    if chunk_size == 0:
        if dask is not None:
            raise ValueError("--dask sends chunks to the workers: give a --chunk-size above 0")

        guard = ResumeJournal(out, {})
        guard.acquire()  # the same lock as chunked runs: two runs never write one output
        try:
            table = classify_table(
                catalog,
                images,
                model,
                source=source,
                source_options=source_options,
                ra_col=ra_col,
                dec_col=dec_col,
                format=format,
                table_index=table_index,
                batch_size=batch_size,
                device=device,
                workers=workers,
                tta=tta,
                amp=amp,
                progress=progress,
                gallery=gallery,
                gallery_max=gallery_max,
                thresholds=thresholds,
            )
            path = write_catalog(table, out, format=out_format)
        except BaseException:
            if guard._created:  # an earlier run's journal stays for it; ours is only a lock
                guard.discard()
            else:
                guard.release()
            raise
        guard.discard()  # also an earlier, unfinished run's journal: the output is complete
        statuses = collections.Counter(str(s) for s in table["FR_STATUS"])
        return RunSummary(path, len(table), dict(statuses), 1)
    if dask is not None and gallery is not None:
        raise ValueError("--gallery draws from the images in this process: it cannot be combined with --dask")

    reader = CatalogChunks(catalog, format=format, table=table_index, chunk_size=chunk_size)
    chunks = iter(reader)
    first = next(chunks)
    if reader.rows is None and progress:
        reader.count_rows()
    ra_name, dec_name = find_position_columns(first, ra_col, dec_col)
    dev = resolve_device(device)
    model = get_model(model, dev)
    if not isinstance(source, ImageSource):
        source = make_source(images=images, source=source, **(source_options or {}))
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())
    thresholds = Thresholds() if thresholds is None else thresholds
    options = {"batch_size": batch_size, "workers": workers, "tta": tta, "amp": amp, "thresholds": thresholds}

    writer = ChunkWriter(out, format=out_format)
    journal = None
    if resume:
        journal = ResumeJournal(
            writer.path,
            {
                "frsurvey": __version__,
                "catalog": catalog_fingerprint(catalog),
                "reading": {
                    "format": format_from_path(catalog, format),
                    "table": table_index,
                    "chunk_size": int(chunk_size),
                    "ra": ra_name,
                    "dec": dec_name,
                },
                "model": model_fingerprint(model),
                "preprocessing": f"{PREPROCESSING} v{PREPROCESSING_VERSION}",
                "source": source.fingerprint(),
                "settings": numeric_settings(model, dev, batch_size, tta, amp),
                "thresholds": thresholds.as_dict(),
            },
        )
        journal.open(restart=restart)
        writer.scratch = journal.path
    summary = RunSummary(writer.path, journal=journal.path if journal is not None else None)
    failures = FailureLog(logger=logging.getLogger("frsurvey.classify"))
    counts: collections.Counter = collections.Counter()
    bar = None
    if progress:
        from ..progress import LINE_INTERVAL, RowProgress

        bar = RowProgress(reader.rows, "lines" if progress == "lines" else "bar", interval=LINE_INTERVAL)
    runner = None
    try:
        runner = (
            DaskRunner(dask, model, source, device, options)
            if dask is not None
            else LocalRunner(model, source, dev, options, gallery, gallery_max, bar)
        )
        for k, (chunk, res, fresh) in enumerate(runner.run(_with_done(first, chunks, journal), ra_name, dec_name)):
            if fresh and journal is not None:
                journal.save(k, res)
            elif not fresh:
                summary.resumed += 1
                summary.resumed_rows += len(chunk)
            offset = summary.rows
            counts.update(str(s) for s in res.status)  # finished (and journaled): counted at once
            summary.rows += len(chunk)
            summary.chunks += 1
            failures.add(res.status, res.message, offset=offset)
            with quiet("frsurvey.io.columns") if k else contextlib.nullcontext():
                labeled = with_results(chunk, res)
            if res.keeper is not None:
                res.keeper.draw(labeled, gallery)
            elif k == 0 and gallery is not None and not fresh:
                _draw_again(labeled, gallery, gallery_max, source, ra_name, dec_name)
            writer.write(labeled)
            if bar is not None:
                if not fresh or dask is not None:  # not counted while it was classified
                    bar.start_chunk(len(chunk))
                bar.finish_chunk()
        failures.close()
        summary.prepared, summary.remembered = runner.prepared, runner.remembered
        summary.counts = dict(counts)
        statuses = summary.summary
        writer.close(provenance(model, source, statuses))
    except BaseException as exc:
        writer.abort()
        summary.counts = dict(counts)
        _keep_or_discard(journal, exc, summary)
        raise
    finally:
        if bar is not None:
            bar.close()
        if runner is not None:
            runner.close()
        else:
            source.close()
    if journal is not None:
        try:
            journal.discard()
        finally:
            journal.release()  # also when interrupted in there: the next run finds the journal and reassembles
        summary.journal = None
    log.info(
        "%d rows in %d chunk(s); %d source(s) prepared, %d remembered from earlier chunks%s",
        summary.rows,
        summary.chunks,
        summary.prepared,
        summary.remembered,
        f"; {summary.resumed} chunk(s) ({summary.resumed_rows} rows) from the journal of an earlier run"
        if summary.resumed
        else "",
    )
    return summary


def _keep_or_discard(journal: ResumeJournal | None, exc: BaseException, summary: RunSummary) -> None:
    """After a failed run: keep the journal when the same command may well succeed, else delete it.

    Kept after an interruption (Ctrl-C, SIGTERM) and OS errors (a full disk,
    a lost mount); deleted after other errors (an unreadable row, a bug),
    which a rerun would meet again, and when no chunk was finished.
    """
    if journal is None:
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit, OSError)) and journal.finished:
        journal.release()
    else:
        journal.discard()
        summary.journal = None
    if isinstance(exc, KeyboardInterrupt):
        if summary.journal is not None:  # what is on disk, whenever the interruption came
            summary.rows, summary.counts = journal.counts()
        exc.run_summary = summary  # type: ignore[attr-defined]
        exc.journal = summary.journal  # type: ignore[attr-defined]


def _with_done(first: Table, rest: Iterator[Table], journal: ResumeJournal | None) -> Iterator[tuple[Table, Any]]:
    """Yield (chunk, its results from the journal or None), chunk by chunk."""
    for k, chunk in enumerate(itertools.chain([first], rest)):
        yield chunk, journal.load(k, len(chunk)) if journal is not None else None


def _draw_again(labeled: Table, gallery, gallery_max: int, source, ra_name: str, dec_name: str) -> None:
    """Draw the gallery of a first chunk whose results came from a journal: its images are cut again."""
    from ..show import show_catalog

    try:
        show_catalog(labeled, gallery, source=source, max_images=gallery_max, ra_col=ra_name, dec_col=dec_name)
    except (OSError, ValueError) as exc:
        log.error("cannot write the gallery %s: %s", gallery, exc)


def classify_table(
    table: Table | str | os.PathLike,
    images: str | os.PathLike | None = None,
    model: FRClassifier | str | os.PathLike | None = None,
    *,
    source: ImageSource | str | None = None,
    source_options: dict[str, Any] | None = None,
    ra_col: str | None = None,
    dec_col: str | None = None,
    format: str | None = None,
    table_index: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    workers: int = 0,
    progress: bool = False,
    gallery: str | os.PathLike | None = None,
    gallery_max: int = 48,
    tta: bool | None = None,
    amp: bool | None = None,
    thresholds: Thresholds | None = None,
) -> Table:
    """Return the catalog with Fanaroff-Riley classifications added.

    Parameters
    ----------
    table : astropy.table.Table or path
        The catalog, or a file :func:`frsurvey.io.read_catalog` reads.
    images : path, optional
        A directory of FIRST FITS images (the ``local`` image source).
    model : FRClassifier or path, optional
        A model from :func:`frsurvey.load_model` or a checkpoint path;
        default: the shipped model.
    source : ImageSource or str, optional
        An image source instance, or a source name for
        :func:`frsurvey.sources.make_source` (default: ``local`` with
        ``images``, else ``skyview``).
    source_options : dict, optional
        Keyword arguments of :func:`frsurvey.sources.make_source` for a source
        given by name (``cache``, ``offline``, ``skyview_url``, ``workers``,
        ``max_rate``, ``timeout``, ``retries``, ...).
    ra_col, dec_col : str, optional
        Position columns, when they cannot be found by UCD or name.
    format, table_index : optional
        Passed to :func:`~frsurvey.io.read_catalog` for a path.
    batch_size : int
        Images per forward pass.
    device : str
        ``auto`` (GPU when there is one), ``cpu``, ``cuda``.
    workers : int
        DataLoader worker processes preparing images (0: in this process).
    progress : bool
        Show progress on stderr: True or ``"bar"``, a bar (rows, with an
        ETA); ``"lines"``, a line of text every minute (no terminal).
    gallery : path, optional
        Also draw the canonical images of the first ``gallery_max`` rows,
        with label, probability and status, into this PNG
        (:mod:`frsurvey.show`); the images are kept from the run, not read again.
    gallery_max : int
        How many rows the gallery shows.
    tta : bool, optional
        Override the model card's test-time augmentation for this run:
        ``False`` computes one view per source (about 8x less work; then
        ``FR_UNCERTAINTY`` is NaN), ``True`` averages the 8 dihedral views.
        Default: as the model card says (the 8 views are computed either
        way, for ``FR_UNCERTAINTY``).
    amp : bool, optional
        On a CUDA GPU, mixed precision (float16 autocast) and channels-last;
        default on. No effect on the CPU.
    thresholds : frsurvey.morphology.Thresholds, optional
        When a classified source gets no ``FR_CLASS``: ``unresolved`` (a
        point source at FIRST's beam), ``too_large`` (runs off the image),
        ``out_of_domain`` (``FR_OOD`` above a threshold, off by default).
        Default: ``Thresholds()``, the documented defaults.

    Returns
    -------
    astropy.table.Table
        Every input row in input order, every input column unchanged, plus
        ``FR_CLASS``, ``P_FRI``, ``P_FRII``, ``FR_UNCERTAINTY``,
        ``FR_STATUS``, ``FR_SNR``, ``FR_LAS``, ``FR_SIZE_DECONV``,
        ``FR_NCOMP`` and ``FR_OOD``, and provenance in ``meta`` (``FRS_*`` keys).

    Raises
    ------
    frsurvey.io.CatalogError
        If the catalog cannot be read or has no position columns.
    frsurvey.models.CheckpointError
        If the model cannot be loaded.
    """
    if not isinstance(table, Table):
        table = read_catalog(table, format=format, table=table_index)
    ra_name, dec_name = find_position_columns(table, ra_col, dec_col)
    dev = resolve_device(device)
    model = get_model(model, dev)
    if not isinstance(source, ImageSource):
        source = make_source(images=images, source=source, **(source_options or {}))
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())

    ra, dec, status, reason = parse_positions(table, ra_name, dec_name, with_reasons=True)
    engine = BatchClassifier(
        model,
        source,
        device=dev,
        batch_size=batch_size,
        workers=workers,
        tta=tta,
        amp=amp,
        thresholds=thresholds,
    )
    keep = (lambda rows, key_of_row: GalleryKeeper(rows, key_of_row, gallery_max)) if gallery is not None else None
    bar = None
    if progress:
        from ..progress import LINE_INTERVAL, RowProgress

        bar = RowProgress(len(table), "lines" if progress == "lines" else "bar", interval=LINE_INTERVAL)
        bar.start_chunk(len(table))
    try:
        res = engine.classify(ra, dec, status, keep=keep, bar=bar, reason=reason)
        if bar is not None:
            bar.finish_chunk()
    finally:
        if bar is not None:
            bar.close()
        engine.close()
    _log_failures(res.status, res.message)

    result = with_results(table, res, provenance(model, source, res.status))
    if res.keeper is not None:
        res.keeper.draw(result, gallery)
    return result


def _log_failures(status: np.ndarray, message: np.ndarray) -> None:
    failures = FailureLog(logger=log)
    failures.add(status, message)
    failures.close()
