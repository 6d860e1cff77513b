"""Galleries: a PNG grid of the canonical cutouts the model saw, with label, probability and status.

:func:`draw_gallery` draws rows of a labeled table from their canonical
images; :class:`GalleryKeeper` is what a classification run uses to keep
the images of its first rows while it classifies them, so that
``classify --gallery`` needs not read them twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from . import plots
from .image.prepare import PreparedCutouts
from .io.positions import find_position_columns, parse_positions
from .options import GALLERY_MAX
from .status import Status

__all__ = [
    "DEFAULT_MAX",
    "Gallery",
    "GalleryKeeper",
    "cell_value",
    "draw_gallery",
    "draw_rows",
    "from_model_input",
    "recut",
]

log = logging.getLogger(__name__)


DEFAULT_MAX = GALLERY_MAX  # rows drawn by default


#: Columns whose values name a row, looked for (without case) when no column has the UCD meta.id;meta.main.
_NAME_COLUMNS = ("name", "source_name", "designation", "id", "source_id", "source", "object", "objname", "iau_name")


@dataclass
class Gallery:
    """What :func:`draw_gallery` drew.

    Attributes
    ----------
    path : pathlib.Path
        The PNG file.
    rows : list of int
        The catalog rows shown, one panel each, in order.
    images : int
        How many panels show an image (the others show only a status).
    selected : int
        How many rows the selection matched (``len(rows)`` or more when
        capped by the maximum).
    """

    path: Path
    rows: list[int]
    images: int
    selected: int
    statuses: list[str] = field(default_factory=list)

    @property
    def panels(self) -> int:
        """Number of panels drawn (one per row shown)."""
        return len(self.rows)


def _name_column(table: Table) -> str | None:
    for name in table.colnames:
        ucd = str(table[name].meta.get("ucd", "") or "").lower()
        if "meta.id" in ucd and "meta.main" in ucd:
            return name
    lower = {c.lower(): c for c in table.colnames}
    for candidate in _NAME_COLUMNS:
        if candidate in lower and getattr(table[lower[candidate]], "ndim", 1) == 1:
            return lower[candidate]
    return None


def cell_value(table: Table, name: str, row: int):
    col = table[name]
    if np.ma.getmaskarray(col)[row]:
        return None
    value = np.ma.getdata(col)[row]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def _panel_text(table: Table, row: int, name_col: str | None, status_override: str | None) -> tuple[str, str, str]:
    """Return (title, label line, colour key) of one row's panel."""
    ident = f"row {row}"
    if name_col is not None:
        value = cell_value(table, name_col, row)
        if value is not None and str(value).strip():
            text = str(value).strip()
            ident = f"{text[:24]}{'…' if len(text) > 24 else ''} (row {row})"
    status = str(cell_value(table, "FR_STATUS", row) or "") if "FR_STATUS" in table.colnames else ""
    fr_class = str(cell_value(table, "FR_CLASS", row) or "") if "FR_CLASS" in table.colnames else ""
    if status == Status.OK and fr_class in ("FRI", "FRII"):
        p_col = "P_FRI" if fr_class == "FRI" else "P_FRII"
        p = cell_value(table, p_col, row) if p_col in table.colnames else None
        label = fr_class + (f"  P={float(p):.2f}" if p is not None and np.isfinite(float(p)) else "")
        sd = cell_value(table, "FR_UNCERTAINTY", row) if "FR_UNCERTAINTY" in table.colnames else None
        if sd is not None and np.isfinite(float(sd)):
            label += f" ±{float(sd):.2f}"
        if status_override:
            label += f"\n(image now: {status_override})"
        return ident, label, fr_class
    return ident, status or "not classified", "failed"


def draw_gallery(
    table: Table,
    images: dict[int, np.ndarray | None],
    rows: Sequence[int],
    path: str | os.PathLike,
    *,
    selected: int | None = None,
    select: str | None = None,
    ncols: int | None = None,
    recut_status: dict[int, str] | None = None,
) -> Gallery:
    """Draw the canonical images of ``rows`` of a labeled ``table`` in a grid and write a PNG.

    Each panel shows the 150x150 image the model saw (north up when the
    image is), the row's name (a ``meta.id;meta.main`` or usual name
    column) and number, and its label: ``FRII  P=0.97 ±0.02`` in red for
    FRII, blue for FRI; a row that was not classified gets a grey panel
    with its ``FR_STATUS``. ``images`` maps rows to images (a row missing
    or None: no image). ``selected`` (how many rows matched) and ``select``
    (the selection) go into the heading.

    Returns
    -------
    Gallery
        The path, the rows drawn (one panel each) and how many panels hold
        an image.
    """
    rows = [int(r) for r in rows]
    recut_status = recut_status or {}
    name_col = _name_column(table)
    panels = []
    for r in rows:
        status_now = recut_status.get(r)
        ident, label, key = _panel_text(table, r, name_col, status_now if images.get(r) is None else None)
        panels.append((images.get(r), ident, label, key))
    matched = len(rows) if selected is None else selected
    if matched == len(rows):
        heading = f"{len(rows)} of {len(table)} rows"
    else:
        heading = f"first {len(rows)} of {matched} {'selected rows' if select else 'rows'}"
    if select:
        heading += f" where {select}"
    path, drawn = plots.labeled_gallery(panels, path, ncols=ncols, suptitle=heading)
    return Gallery(Path(path), rows, drawn, matched, [p[3] for p in panels])


def from_model_input(x) -> np.ndarray:
    """Return the uint8 canonical image(s) of model input made by :func:`frsurvey.image.preprocess.to_model_input`."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    return np.rint((x * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)


class GalleryKeeper:
    """Keeps the canonical images of the first ``max_rows`` rows while a catalog is classified.

    ``classify_table(..., gallery=PNG)`` hands it every batch
    (:meth:`take`), and it keeps the images of the sources those rows need,
    from the model input itself; :meth:`draw` then draws them with the
    results. Nothing is read twice.
    """

    def __init__(self, rows: np.ndarray, key_of_row: np.ndarray, max_rows: int = DEFAULT_MAX) -> None:
        self.max_rows = int(max_rows)
        rows = np.asarray(rows)
        first = rows < self.max_rows
        self.key_of_row = {int(r): int(k) for r, k in zip(rows[first], np.asarray(key_of_row)[first])}
        self.wanted = set(self.key_of_row.values())
        self.images: dict[int, np.ndarray] = {}

    def take(self, batch: dict) -> None:
        """Keep the images of wanted sources from one batch of :func:`frsurvey.image.prepare.collate_prepared`."""
        for pos, key in enumerate(batch["ok_index"]):
            if key in self.wanted:
                self.images[int(key)] = from_model_input(batch["x"][pos, 0])

    def draw(self, result: Table, path: str | os.PathLike) -> Gallery | None:
        """Draw the first rows of the classified ``result`` with the kept images.

        A picture that cannot be written is logged as an error and None is
        returned: the classification itself is not lost over it.
        """
        rows = list(range(min(self.max_rows, len(result))))
        images = {r: self.images.get(k) for r, k in self.key_of_row.items()}
        try:
            gallery = draw_gallery(result, images, rows, path, selected=len(result))
        except (OSError, ValueError) as exc:
            log.error("cannot write the gallery %s: %s", path, exc)
            return None
        log.info("gallery of %d rows -> %s", gallery.panels, gallery.path)
        return gallery


def recut(table: Table, rows: list[int], source, ra_col: str | None, dec_col: str | None):
    """Return ({row: canonical image or None}, {row: status of the new cut}) for ``rows``."""
    images: dict[int, np.ndarray | None] = {}
    statuses: dict[int, str] = {}
    if not rows:
        return images, statuses
    sub = table[rows]
    ra_name, dec_name = find_position_columns(sub, ra_col, dec_col)
    ra, dec, status = parse_positions(sub, ra_name, dec_name)
    good = np.flatnonzero(status == Status.OK)
    keys: list = list(source.locate(ra[good], dec[good])) if len(good) else []
    source.prefetch(keys)  # online sources: downloaded concurrently, as classify does
    prepared = PreparedCutouts(source, keys)
    try:
        for j, k in enumerate(good):
            _, image, st, _ = prepared[j]
            images[rows[k]], statuses[rows[k]] = image, st
    finally:
        source.close()
    for k in np.flatnonzero(status != Status.OK):
        images[rows[k]], statuses[rows[k]] = None, str(status[k])
    return images, statuses


def draw_rows(
    table: Table,
    rows: list[int],
    out: str | os.PathLike,
    source,
    *,
    selected: int | None = None,
    select: str | None = None,
    ncols: int | None = None,
    ra_col: str | None = None,
    dec_col: str | None = None,
) -> Gallery:
    """Cut and prepare the images of ``rows`` again from ``source`` and draw them (:func:`draw_gallery`).

    A row that was classified but whose image cannot be cut now is drawn
    with the status of the new cut, and a warning says so.
    """
    cut, statuses = recut(table, rows, source, ra_col, dec_col)
    mismatched = {
        r: s for r, s in statuses.items() if cut.get(r) is None and str(cell_value(table, "FR_STATUS", r)) == Status.OK
    }
    for r, s in mismatched.items():
        log.warning("row %d was classified, but its image cannot be cut now: %s", r, s)
    if not rows:
        log.warning("no row matches the selection %r: the picture says so", select)
    return draw_gallery(
        table,
        cut,
        rows,
        out,
        selected=len(rows) if selected is None else selected,
        select=select,
        ncols=ncols,
        recut_status=mismatched,
    )
