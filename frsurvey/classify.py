"""Classify a catalog: positions -> cutouts -> canonical images -> model -> scores.

:func:`classify_table` is the whole pipeline, batched through a torch
DataLoader (worker processes cut and prepare images while the model runs).
Every input row comes out, in order, with ``FR_STATUS`` saying what
happened to it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from torch.utils.data import DataLoader

from .catalog import add_results, find_position_columns, parse_positions, read_catalog
from .models import CLASSES, FRClassifier, load_model
from .prepare import PreparedCutouts, collate_prepared
from .preprocess import PREPROCESSING, PREPROCESSING_VERSION
from .show import GalleryKeeper
from .sources import Cutout, ImageSource, make_source
from .status import Status, summarize

__all__ = ["classify_table", "resolve_device"]

log = logging.getLogger(__name__)

#: How many rows of each failing status are described in the log at WARNING level.
LOG_EXAMPLES = 5


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``.

    Raises
    ------
    ValueError
        If a GPU is asked for and none is available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return dev


def _model_name(model: FRClassifier) -> str:
    card = model.card
    return str(card.get("name") or card.get("arch") or type(model.net).__name__)


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
        Show a tqdm progress bar on stderr.
    gallery : path, optional
        Also draw the canonical images of the first ``gallery_max`` rows,
        with label, probability and status, into this PNG
        (:mod:`frsurvey.show`); the images are kept from the run, not read again.
    gallery_max : int
        How many rows the gallery shows.

    Returns
    -------
    astropy.table.Table
        Every input row in input order, every input column unchanged, plus
        ``FR_CLASS``, ``P_FRI``, ``P_FRII``, ``FR_UNCERTAINTY`` and
        ``FR_STATUS``, and provenance in ``meta`` (``FRS_*`` keys).

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
    if not isinstance(model, FRClassifier):
        model = load_model(model, device=dev)
    else:
        model = model.to(dev).eval()
    if not isinstance(source, ImageSource):
        source = make_source(images=images, source=source, **(source_options or {}))
    log.info("positions from columns %s, %s; images from %s", ra_name, dec_name, source.describe())

    n = len(table)
    ra, dec, status = parse_positions(table, ra_name, dec_name)
    message = np.full(n, "", dtype=object)
    p_fri = np.full(n, np.nan)
    spread = np.full(n, np.nan)

    rows = np.flatnonzero(status == Status.OK)
    located = source.locate(ra[rows], dec[rows]) if len(rows) else []
    # Each distinct key (image and pixel, or position) is prepared once.
    unique: dict[Any, int] = {}
    keys: list[Any] = []
    key_of_row = np.empty(len(rows), dtype=np.int64)
    for j, key in enumerate(located):
        h = ("failed", j) if isinstance(key, Cutout) else key
        if h not in unique:
            unique[h] = len(keys)
            keys.append(key)
        key_of_row[j] = unique[h]
    source.prefetch(keys)  # online sources download in the background from here on

    key_status = np.full(len(keys), Status.OK, dtype=object)
    key_message = np.full(len(keys), "", dtype=object)
    key_p = np.full(len(keys), np.nan)
    key_spread = np.full(len(keys), np.nan)
    keeper = GalleryKeeper(rows, key_of_row, gallery_max) if gallery is not None else None
    loader = DataLoader(
        PreparedCutouts(source, keys),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_prepared,
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(keys), unit="src", desc="classify", dynamic_ncols=True)
    try:
        for batch in loader:
            key_status[batch["index"]] = batch["status"]
            key_message[batch["index"]] = batch["message"]
            if batch["ok_index"]:
                x = batch["x"].to(dev, non_blocking=True)
                probs, sd = model.predict(x)
                key_p[batch["ok_index"]] = probs[:, 0].double().cpu().numpy()
                key_spread[batch["ok_index"]] = sd.double().cpu().numpy()
                if keeper is not None:
                    keeper.take(batch)
            if bar is not None:
                bar.update(len(batch["index"]))
    finally:
        if bar is not None:
            bar.close()
        source.close()

    status[rows] = key_status[key_of_row]
    message[rows] = key_message[key_of_row]
    p_fri[rows] = key_p[key_of_row]
    spread[rows] = key_spread[key_of_row]
    _log_failures(status, message)

    fr_class = np.where(np.isnan(p_fri), "", np.where(p_fri >= 0.5, CLASSES[0], CLASSES[1]))
    provenance = {
        "FRS_VER": _version(),
        "FRS_MOD": _model_name(model),
        "FRS_MSHA": getattr(model, "sha256", "") or "unsaved model",
        "FRS_PREP": f"{PREPROCESSING} v{PREPROCESSING_VERSION}",
        "FRS_SRC": source.describe(),
        "FRS_DATE": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "FRS_STAT": summarize(status),
    }
    result = add_results(table, fr_class, p_fri, status, uncertainty=spread, provenance=provenance)
    if keeper is not None:
        keeper.draw(result, gallery)
    return result


def _version() -> str:
    from . import __version__

    return __version__


def _log_failures(status: np.ndarray, message: np.ndarray) -> None:
    shown: dict[str, int] = {}
    for i, (s, m) in enumerate(zip(status, message)):
        if s == Status.OK:
            continue
        k = shown.get(s, 0)
        shown[s] = k + 1
        level = logging.WARNING if k < LOG_EXAMPLES else logging.DEBUG
        log.log(level, "row %d: %s%s", i, s, f": {m}" if m else "")
    for s, k in shown.items():
        if k > LOG_EXAMPLES:
            log.warning("... and %d more row(s) with status %s (--debug lists them)", k - LOG_EXAMPLES, s)
