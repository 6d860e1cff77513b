"""frsurvey: Fanaroff-Riley classification of radio sources in FIRST images, for whole catalogs.

The Python API:

- :func:`classify_table`: a catalog (table or file) in, the same catalog with
  ``FR_CLASS``, ``P_FRI``, ``P_FRII``, ``FR_UNCERTAINTY`` and ``FR_STATUS`` out;
- :func:`load_model`: a trained model (the shipped one by default);
- :func:`frsurvey.preprocess.preprocess_first`: the canonical FIRST image
  preprocessing;
- :func:`frsurvey.classify_file`: a catalog file in, a labeled file
  out, in chunks of rows (any length, flat memory) or on a Dask cluster.

Also: :func:`frsurvey.io.write_catalog` (VOTable, FITS, ECSV, CSV with
units, UCDs and provenance), :func:`frsurvey.show.show_catalog` (a PNG of a
labeled catalog's cutouts) and :class:`frsurvey.samp.SampClassifier` (the
SAMP listener behind ``frsurvey samp``).
"""

from __future__ import annotations

from ._utils import __version__

__all__ = ["__version__", "classify_table", "load_model", "preprocess_first"]


def __getattr__(name: str):
    # Import torch-dependent parts on first use, so `import frsurvey` stays light.
    if name == "classify_table":
        from .run import classify_table

        return classify_table
    if name == "load_model":
        from .models import load_model

        return load_model
    if name == "preprocess_first":
        from .preprocess import preprocess_first

        return preprocess_first
    raise AttributeError(f"module 'frsurvey' has no attribute {name!r}")
