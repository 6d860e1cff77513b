"""The columns frsurvey adds (names, UCDs, units, descriptions), its provenance keys, and :func:`add_results`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from astropy import units as u
from astropy.table import Column, MaskedColumn, Table

__all__ = ["CLASH_SUFFIX", "MEASURE_COLUMNS", "OUTPUT_COLUMNS", "PROVENANCE_KEYS", "add_results"]

log = logging.getLogger(__name__)


#: Names, UCDs and descriptions of the columns frsurvey adds.
OUTPUT_COLUMNS: dict[str, dict[str, str]] = {
    "FR_CLASS": {
        "ucd": "src.morph.type",
        "description": "Fanaroff-Riley class predicted by frsurvey (FRI or FRII; empty when not classified)",
    },
    "P_FRI": {
        "ucd": "stat.probability",
        "description": "Calibrated probability that the source is FRI (NaN when the model did not see the image; "
        "also written for unresolved, too_large and out_of_domain rows, which have no FR_CLASS)",
    },
    "P_FRII": {
        "ucd": "stat.probability",
        "description": "Calibrated probability that the source is FRII, 1 - P_FRI (NaN when P_FRI is)",
    },
    "FR_UNCERTAINTY": {
        "ucd": "stat.stdev;stat.probability",
        "description": "Uncertainty of P_FRII, a standard deviation: over the 8 rotations and flips of the image, "
        "over an ensemble's networks, or a distilled network's own estimate of the latter, as the model "
        "makes it (FRS_UNC says which; NaN when not classified)",
    },
    "FR_STATUS": {
        "ucd": "meta.code.status",
        "description": "What happened to this row: ok, or why it has no classification (see the frsurvey README)",
    },
    "FR_SNR": {
        "ucd": "stat.snr",
        "description": "Peak S/N of the source at the position (of the brightest pixel inside the 75 px circle "
        "when no component reaches the position); blank when the image could not be prepared",
    },
    "FR_LAS": {
        "ucd": "phys.angSize;src",
        "unit": "arcsec",
        "description": "Largest angular size of the source at the position: the component within 3 px of it, "
        "components within 5 px of that one, and lobes on opposite sides of it (blank when there is none)",
    },
    "FR_SIZE_DECONV": {
        "ucd": "phys.angSize.smajAxis",
        "unit": "arcsec",
        "description": "FWHM major axis of the component at the position deconvolved from FIRST's beam "
        "(0: no larger than the beam; blank when no component reaches the position)",
    },
    "FR_NCOMP": {
        "ucd": "meta.number",
        "description": "Number of >3 sigma components peaking above 5 sigma in the source at the position "
        "(0 when none reaches it; blank when the image could not be prepared)",
    },
    "FR_OOD": {
        "ucd": "stat.value",
        "description": "Out-of-distribution score: energy -log(sum exp(logits)) of the model on the image; "
        "higher is less like the training images (blank when the model did not see the row)",
    },
}


#: The measurement columns, in the order of :data:`frsurvey.image.morphology.MEASURES`'s first four.
MEASURE_COLUMNS: tuple[str, ...] = ("FR_SNR", "FR_LAS", "FR_SIZE_DECONV", "FR_NCOMP")


#: Keys of the provenance written into table metadata, with their meaning.
PROVENANCE_KEYS: dict[str, str] = {
    "FRS_VER": "frsurvey version that wrote the FR_ columns",
    "FRS_MOD": "model name (architecture and training tag)",
    "FRS_MSHA": "sha256 of the model checkpoint file",
    "FRS_PREP": "image preprocessing (name and version)",
    "FRS_SRC": "image source the cutouts came from",
    "FRS_DATE": "UTC date and time of the classification",
    "FRS_STAT": "count of rows for each FR_STATUS",
    "FRS_UNC": "what FR_UNCERTAINTY is for this model",
}


#: Suffix given to an input column named like one of :data:`OUTPUT_COLUMNS` but for case.
CLASH_SUFFIX = "_input"


def _rename_clashes(table: Table) -> dict[str, str]:
    """Rename, in place, the columns of ``table`` whose names equal an output column's without case.

    TOPCAT, STILTS and FITS readers match column names case-insensitively:
    beside our ``FR_CLASS`` an input ``fr_class`` would be taken for ours
    (``keepcols FR_CLASS`` picks the first). Each such column becomes
    ``<name>_input`` (``_input2``, ... when that is taken too, again without
    case). Returns ``{old name: new name}``.
    """
    ours = {c.upper() for c in OUTPUT_COLUMNS}
    renamed: dict[str, str] = {}
    for name in list(table.colnames):
        if name.upper() not in ours:
            continue
        taken = {c.upper() for c in table.colnames} | ours
        new, k = f"{name}{CLASH_SUFFIX}", 1
        while new.upper() in taken:
            k += 1
            new = f"{name}{CLASH_SUFFIX}{k}"
        table.rename_column(name, new)
        renamed[name] = new
    return renamed


def add_results(
    table: Table,
    fr_class: np.ndarray,
    p_fri: np.ndarray,
    status: np.ndarray,
    uncertainty: np.ndarray | None = None,
    provenance: Mapping[str, str] | None = None,
    measures: np.ndarray | None = None,
    ood: np.ndarray | None = None,
) -> Table:
    """Return a copy of ``table`` with the FR_ columns and provenance added.

    ``measures`` (``(N, k)``, the first four values of
    :func:`frsurvey.image.morphology.measure`: S/N, LAS, deconvolved size, number
    of components; NaN where not measured) adds :data:`MEASURE_COLUMNS`;
    ``ood`` adds ``FR_OOD``.

    Columns of ``table`` that already carry frsurvey's names (an earlier run)
    are replaced, and a warning says so. Columns named like ours but for case
    (a labeled catalog's ``fr_class``), which TOPCAT and STILTS would not tell
    from ours, are kept in place as ``<name>_input``, with a warning. Every
    other column, its values, unit, description and UCD, is kept unchanged
    and in place.
    """
    out = table.copy(copy_data=True)
    existing = [c for c in OUTPUT_COLUMNS if c in out.colnames]
    if existing:
        log.warning("the catalog already has %s (an earlier run?): replacing them", ", ".join(existing))
        out.remove_columns(existing)
    renamed = _rename_clashes(out)
    if renamed:
        log.warning(
            "the catalog has column(s) named like frsurvey's but for case; TOPCAT, STILTS and FITS readers match "
            "column names without case and would take them for ours, so they are kept under other names: %s",
            ", ".join(f"{old} -> {new}" for old, new in renamed.items()),
        )
    for key in PROVENANCE_KEYS:
        out.meta.pop(key, None)
    n = len(out)
    p_fri = np.asarray(p_fri, dtype=np.float64).reshape(n)
    cols = {
        "FR_CLASS": np.asarray(fr_class, dtype="U4").reshape(n),
        "P_FRI": p_fri,
        "P_FRII": np.where(np.isnan(p_fri), np.nan, 1.0 - p_fri),
    }
    if uncertainty is not None:
        cols["FR_UNCERTAINTY"] = np.asarray(uncertainty, dtype=np.float64).reshape(n)
    width = max([12] + [len(str(s)) for s in status])
    cols["FR_STATUS"] = np.asarray(status, dtype=f"U{width}").reshape(n)
    if measures is not None:
        m = np.asarray(measures, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, len(MEASURE_COLUMNS)))
        for k, name in enumerate(MEASURE_COLUMNS):
            if name == "FR_NCOMP":
                blank = np.isnan(m[:, k])
                cols[name] = np.ma.MaskedArray(np.where(blank, 0, m[:, k]).astype(np.int16), mask=blank)
            else:
                cols[name] = m[:, k]
    if ood is not None:
        cols["FR_OOD"] = np.asarray(ood, dtype=np.float64).reshape(n)
    for name, values in cols.items():
        spec = OUTPUT_COLUMNS[name]
        unit = spec.get("unit") or (u.dimensionless_unscaled if values.dtype.kind == "f" else None)
        kind = MaskedColumn if isinstance(values, np.ma.MaskedArray) else Column
        col = kind(values, name=name, unit=unit, description=spec["description"])
        col.meta["ucd"] = spec["ucd"]
        out.add_column(col)
    if provenance:
        out.meta.update({k: str(v) for k, v in provenance.items()})
    return out
