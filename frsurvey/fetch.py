"""Fill the cutout cache for a catalog without classifying it (``frsurvey fetch``).

Downloads run exactly as during ``frsurvey classify`` (same source, cache,
limits and retries), so a later ``classify --offline`` over the same
catalog finds every cutout that could be fetched. No torch needed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from astropy.table import Table

from ._flags import OptionError
from .io import find_position_columns, parse_positions, read_catalog
from .options import ClassifyOptions
from .sources import ImageSource, RemoteSource
from .status import FailureLog, Status

__all__ = ["fetch_catalog"]

log = logging.getLogger(__name__)


def fetch_catalog(
    table: Table | str | os.PathLike,
    *,
    options: ClassifyOptions | None = None,
    source: ImageSource | str | None = None,
    progress: bool = False,
    **fields: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Download into the cache the cutout of every row of a catalog; return per-row statuses.

    Parameters
    ----------
    table : astropy.table.Table or path
        The catalog, or a file :func:`frsurvey.io.read_catalog` reads.
    options : ClassifyOptions, optional
        The image source's options (an online source: ``skyview``, the
        default, or ``first``; cache, download politeness) and the catalog's
        (``ra_col``, ``dec_col``, ``format``, ``table_index``).
    source : RemoteSource or str, optional
        An online source, or its name, instead of the options'.
    progress : bool
        Show a progress bar on stderr.
    **fields
        Options by name instead (:meth:`ClassifyOptions.build`).

    Returns
    -------
    status, message : numpy.ndarray
        Per row: ``ok`` (the cutout is in the cache), ``bad_position``,
        ``fetch_failed`` or ``not_cached`` (offline), and why.

    Raises
    ------
    frsurvey._flags.OptionError
        If the source is not an online one.
    frsurvey.io.CatalogError
        If the catalog cannot be read or has no position columns.
    """
    opts = ClassifyOptions.build(options, source=None if isinstance(source, ImageSource) else source, **fields)
    if not isinstance(table, Table):
        table = read_catalog(table, format=opts.format, table=opts.table_index)
    ra_name, dec_name = find_position_columns(table, opts.ra_col, opts.dec_col)
    if not isinstance(source, ImageSource):
        source = opts.source.make()
    if not isinstance(source, RemoteSource):
        raise OptionError(f"fetching needs an online source (skyview, first), not {source.name}")
    ra, dec, status, message = parse_positions(table, ra_name, dec_name, with_reasons=True)
    rows = np.flatnonzero(status == Status.OK)
    log.info("fetching %d position(s) from %s", len(rows), source.describe())
    try:
        keys = source.locate(ra[rows], dec[rows])
        for row, (s, m) in zip(rows, source.fetch(keys, progress=progress)):
            status[row] = s
            message[row] = m
    finally:
        source.close()
    failures = FailureLog(logger=log)
    failures.add(status, message)
    failures.close()
    return status, message
