"""frsurvey: Fanaroff-Riley classification of radio sources in FIRST images, for whole catalogs.

The Python API:

- :func:`classify_table`: a catalog (table or file) in, the same catalog with
  ``FR_CLASS``, ``P_FRI``, ``P_FRII``, ``FR_UNCERTAINTY``, ``FR_STATUS`` and
  the measurements out;
- :func:`classify_file`: a catalog file in, a labeled file out, in chunks of
  rows (any length, flat memory), resumably, or on a Dask cluster; what
  ``frsurvey classify`` runs;
- :class:`ClassifyOptions` (with :class:`SourceOptions` and
  :class:`Thresholds` inside): every option of a run, with its default;
- :func:`load_model`: a trained model (the shipped one by default);
- :func:`preprocess_first`: the canonical FIRST image preprocessing;
- :func:`read_catalog`, :func:`write_catalog`: VOTable, FITS, ECSV, CSV
  with units, UCDs and provenance.

Also: :func:`frsurvey.show.show_catalog` (a PNG of a labeled catalog's
cutouts), :func:`frsurvey.fetch.fetch_catalog` (fill the cutout cache) and
:class:`frsurvey.samp.SampClassifier` (the SAMP listener behind
``frsurvey samp``). How the package is laid out: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from ._utils import __version__

#: The public names, and the module each comes from (imported on first use, so `import frsurvey` stays light).
_PUBLIC = {
    "classify_table": "frsurvey.run",
    "classify_file": "frsurvey.run",
    "RunSummary": "frsurvey.run",
    "ClassifyOptions": "frsurvey.options",
    "SourceOptions": "frsurvey.sources",
    "Thresholds": "frsurvey.image.morphology",
    "load_model": "frsurvey.model",
    "preprocess_first": "frsurvey.image.preprocess",
    "read_catalog": "frsurvey.io",
    "write_catalog": "frsurvey.io",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'frsurvey' has no attribute {name!r}")
