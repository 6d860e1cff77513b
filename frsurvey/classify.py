"""Classify a catalog: positions -> cutouts -> canonical images -> model -> scores.

:func:`classify_table` is the whole pipeline for a table in memory, batched
by :class:`frsurvey.engine.BatchClassifier` through a torch DataLoader
(worker processes cut and prepare images while the model runs). Every input
row comes out, in order, with ``FR_STATUS`` saying what happened to it.
Catalogs larger than memory, and Dask clusters: :mod:`frsurvey.stream`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from ._utils import resolve_device
from .catalog import add_results, find_position_columns, parse_positions, read_catalog
from .engine import BatchClassifier, FailureLog, fr_classes, get_model, provenance
from .models import FRClassifier
from .morphology import Thresholds
from .show import GalleryKeeper
from .sources import ImageSource, make_source

__all__ = ["classify_table"]

log = logging.getLogger(__name__)


def with_results(table: Table, res, provenance: dict[str, str] | None = None) -> Table:
    """Return ``table`` with the ``FR_*`` columns of a :class:`~frsurvey.engine.RowResults` (and provenance) added."""
    return add_results(
        table,
        fr_classes(res.p_fri, res.status),
        res.p_fri,
        res.status,
        uncertainty=res.spread,
        provenance=provenance,
        measures=res.measures,
        ood=res.ood,
    )


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
        The catalog, or a file :func:`frsurvey.catalog.read_catalog` reads.
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
        Passed to :func:`~frsurvey.catalog.read_catalog` for a path.
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
    frsurvey.catalog.CatalogError
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
        from .progress import LINE_INTERVAL, RowProgress

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
