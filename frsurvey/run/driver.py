"""The two entry points of a classification run: a table in memory, or a file chunk by chunk.

:func:`classify_table` and :func:`classify_file` are one pipeline: the file
is read in chunks (:class:`~frsurvey.io.read.CatalogChunks`), each chunk's
positions are classified by a runner (:mod:`frsurvey.run.runners`: in this
process or on a Dask cluster) and the labeled chunk is written
(:class:`~frsurvey.io.write.ChunkWriter`), with a resume journal
(:mod:`frsurvey.run.journal`) between the two; a table in memory is the
same runner over one chunk. Options: :class:`~frsurvey.options.ClassifyOptions`.
"""

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

from astropy.table import Table

from .. import progress as _progress
from .._utils import __version__, resolve_device
from ..gallery import draw_rows
from ..image.preprocess import PREPROCESSING, PREPROCESSING_VERSION
from ..io.formats import format_from_path
from ..io.positions import find_position_columns
from ..io.read import CatalogChunks, read_catalog
from ..io.write import ChunkWriter, write_catalog
from ..model.classifier import FRClassifier
from ..options import ClassifyOptions
from ..progress import RowProgress
from ..sources import ImageSource
from ..status import FailureLog, Status, summarize_counts
from .engine import get_model, numeric_settings, provenance, with_results
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
    model: FRClassifier | str | os.PathLike | None = None,
    *,
    options: ClassifyOptions | None = None,
    source: ImageSource | str | None = None,
    **fields: Any,
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
    images, model, source
        As for :func:`classify_table`.
    options : ClassifyOptions, optional
        How to classify (default: the defaults). ``chunk_size`` rows are read,
        classified and written at a time (0: the whole catalog at once, in
        memory, without a journal); ``dask`` sends the chunks to a Dask
        cluster (a scheduler address, ``local``, ``local:N`` or a
        ``Client``; the images, and a model given as a path, must be readable
        by the workers); ``resume`` keeps a journal and uses an earlier run's,
        ``restart`` does not use it; the gallery draws the first chunk's rows
        (not with ``dask``); the thresholds are part of the journal's manifest.
    **fields
        Options by name instead (:meth:`ClassifyOptions.build`), e.g.
        ``chunk_size=10_000, dask="local:4", cache=...``.

    Returns
    -------
    RunSummary
        The output path, row count and status counts.

    Raises
    ------
    frsurvey.io.CatalogError
        If the catalog cannot be read or has no position columns, the output
        cannot be written, or another run is writing the same output.
    frsurvey.model.checkpoint.CheckpointError
        If the model cannot be loaded.
    KeyboardInterrupt
        On Ctrl-C (or SIGTERM made one), with ``run_summary`` (a RunSummary
        of the rows finished) and ``journal`` (the journal directory, or None
        when nothing was finished) as attributes.
    """
    opts = ClassifyOptions.build(
        options, images=images, source=None if isinstance(source, ImageSource) else source, **fields
    )
    source = source if isinstance(source, ImageSource) else None
    with _threads(_model_threads(opts)):
        if opts.chunk_size == 0:
            return _classify_whole(catalog, out, model, source, opts)
        return _classify_chunks(catalog, out, model, source, opts)


def _classify_chunks(catalog, out, model, source: ImageSource | None, opts: ClassifyOptions) -> RunSummary:
    """:func:`classify_file` with ``chunk_size`` above 0."""
    reader = CatalogChunks(catalog, format=opts.format, table=opts.table_index, chunk_size=opts.chunk_size)
    chunks = iter(reader)
    first = next(chunks)
    if reader.rows is None and opts.progress:
        reader.count_rows()
    model, source, dev, ra_name, dec_name = _set_up(first, model, source, opts)

    writer = ChunkWriter(out, format=opts.out_format)
    journal = None
    if opts.resume:
        journal = ResumeJournal(
            writer.path,
            {
                "frsurvey": __version__,
                "catalog": catalog_fingerprint(catalog),
                "reading": {
                    "format": format_from_path(catalog, opts.format),
                    "table": opts.table_index,
                    "chunk_size": int(opts.chunk_size),
                    "ra": ra_name,
                    "dec": dec_name,
                },
                "model": model_fingerprint(model),
                "preprocessing": f"{PREPROCESSING} v{PREPROCESSING_VERSION}",
                "source": source.fingerprint(),
                "settings": numeric_settings(model, dev, opts.batch_size, opts.tta, opts.amp),
                "thresholds": opts.thresholds.as_dict(),
            },
        )
        journal.open(restart=opts.restart)
        writer.scratch = journal.path
    summary = RunSummary(writer.path, journal=journal.path if journal is not None else None)
    failures = FailureLog()
    counts: collections.Counter = collections.Counter()
    bar = _progress_bar(opts.progress, reader.rows)
    runner = None
    try:
        runner = _runner(model, source, dev, opts, bar)
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
                res.keeper.draw(labeled, opts.gallery)
            elif k == 0 and opts.gallery is not None and not fresh:
                _draw_again(labeled, opts, source, ra_name, dec_name)
            writer.write(labeled)
            if bar is not None:
                if not fresh or opts.dask is not None:  # not counted while it was classified
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


def _classify_whole(catalog, out, model, source: ImageSource | None, opts: ClassifyOptions) -> RunSummary:
    """``chunk_size=0``: classify the whole catalog in memory and write it, under the same lock as chunked runs."""
    guard = ResumeJournal(out, {})
    guard.acquire()  # two runs never write one output
    try:
        table = _classify_table(catalog, model, source, opts)
        path = write_catalog(table, out, format=opts.out_format)
    except BaseException:
        if guard._created:  # an earlier run's journal stays for it; ours is only a lock
            guard.discard()
        else:
            guard.release()
        raise
    guard.discard()  # also an earlier, unfinished run's journal: the output is complete
    statuses = collections.Counter(str(s) for s in table["FR_STATUS"])
    return RunSummary(path, len(table), dict(statuses), 1)


def _model_threads(opts: ClassifyOptions) -> int | None:
    """Return the model's CPU threads for a run: ``opts.threads``; unset, torch's less the DataLoader workers.

    Unset with no workers: None (torch's setting as it is). Worker processes
    preparing images take a core each; model threads sharing those cores
    wait for them at every layer (2 threads beside 1 worker on 2 cores ran
    the whole pipeline 1.3x slower than 1 thread: ``scripts/bench_classify.py``).
    """
    if opts.threads is not None or not opts.workers:
        return opts.threads
    import torch

    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - opts.workers))


@contextlib.contextmanager
def _threads(n: int | None):
    """While in the block, the model runs on ``n`` CPU threads (None: torch's setting as it is)."""
    if n is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _set_up(first: Table, model, source: ImageSource | None, opts: ClassifyOptions):
    """Return (model, image source, device, RA column, Dec column) of a run whose first chunk is ``first``."""
    ra_name, dec_name = find_position_columns(first, opts.ra_col, opts.dec_col)
    dev = resolve_device(opts.device)
    model = get_model(model, dev)
    if source is None:
        source = opts.source.make()
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())
    return model, source, dev, ra_name, dec_name


def _progress_bar(progress: bool | str, rows: int | None) -> RowProgress | None:
    """Return the progress display of a run of ``rows`` rows (None: unknown), or None for none."""
    if not progress:
        return None
    return RowProgress(rows, "lines" if progress == "lines" else "bar", interval=_progress.LINE_INTERVAL)


def _runner(model, source: ImageSource, dev, opts: ClassifyOptions, bar) -> LocalRunner | DaskRunner:
    """Return the runner of the chunks: on the Dask cluster of ``opts.dask``, or in this process."""
    if opts.dask is not None:
        return DaskRunner(model, source, dev, opts)
    return LocalRunner(model, source, dev, opts, bar)


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


def _draw_again(labeled: Table, opts: ClassifyOptions, source: ImageSource, ra_name: str, dec_name: str) -> None:
    """Draw the gallery of a first chunk whose results came from a journal: its images are cut again."""
    rows = list(range(min(len(labeled), opts.gallery_max)))
    try:
        draw_rows(labeled, rows, opts.gallery, source, selected=len(labeled), ra_col=ra_name, dec_col=dec_name)
    except (OSError, ValueError) as exc:
        log.error("cannot write the gallery %s: %s", opts.gallery, exc)


def classify_table(
    table: Table | str | os.PathLike,
    images: str | os.PathLike | None = None,
    model: FRClassifier | str | os.PathLike | None = None,
    *,
    options: ClassifyOptions | None = None,
    source: ImageSource | str | None = None,
    **fields: Any,
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
        An image source instance (used as it is, and closed at the end), or
        a source's name (``local``, ``skyview``, ``first``; default:
        ``local`` with ``images``, else ``skyview``).
    options : ClassifyOptions, optional
        How to classify (default: the defaults): the image source's options
        (cache, offline, download politeness), ``ra_col``/``dec_col``,
        ``format``/``table_index`` for a path, ``batch_size``, ``device``,
        ``workers``, ``tta`` (override the model card's test-time
        augmentation: False, one view per source, then ``FR_UNCERTAINTY`` is
        NaN for a model whose spread comes from the views), ``amp``,
        ``thresholds`` (when a classified source gets no ``FR_CLASS``:
        ``unresolved``, ``too_large``, ``out_of_domain``), ``progress`` and
        ``gallery``/``gallery_max`` (the canonical images of the first rows,
        kept from the run, drawn into a PNG).
    **fields
        Options by name instead (:meth:`ClassifyOptions.build`), e.g.
        ``device="cpu", tta=False, cache="/data/cutouts"``, or
        ``source_options={...}`` (the keywords of :func:`frsurvey.sources.make_source`).

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
    frsurvey.model.checkpoint.CheckpointError
        If the model cannot be loaded.
    """
    opts = ClassifyOptions.build(
        options, images=images, source=None if isinstance(source, ImageSource) else source, **fields
    )
    with _threads(_model_threads(opts)):
        return _classify_table(table, model, source if isinstance(source, ImageSource) else None, opts)


def _classify_table(table, model, source: ImageSource | None, opts: ClassifyOptions) -> Table:
    """:func:`classify_table` with its options made."""
    if not isinstance(table, Table):
        table = read_catalog(table, format=opts.format, table=opts.table_index)
    model, source, dev, ra_name, dec_name = _set_up(table, model, source, opts)
    bar = _progress_bar(opts.progress, len(table))
    runner = LocalRunner(model, source, dev, opts, bar)
    try:
        [(_, res, _)] = runner.run(iter([(table, None)]), ra_name, dec_name)
        if bar is not None:
            bar.finish_chunk()
    finally:
        if bar is not None:
            bar.close()
        runner.close()
    failures = FailureLog()
    failures.add(res.status, res.message)
    failures.close()
    result = with_results(table, res, provenance(model, source, res.status))
    if res.keeper is not None:
        res.keeper.draw(result, opts.gallery)
    return result
