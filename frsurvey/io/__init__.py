"""Catalogs in and out: the first and last steps of the pipeline.

Reading (:mod:`~frsurvey.io.read`: a whole table, or a file in chunks of
rows), finding and parsing positions (:mod:`~frsurvey.io.positions`), the
columns frsurvey adds (:mod:`~frsurvey.io.columns`), and writing
(:mod:`~frsurvey.io.write`: a whole table, or chunk by chunk). Each format
has a module of its own: :mod:`~frsurvey.io.votable`, :mod:`~frsurvey.io.fits`
and :mod:`~frsurvey.io.text` (CSV and ECSV); :mod:`~frsurvey.io.plain` makes
a table plain enough for the binary formats, :mod:`~frsurvey.io.streams`
writes each format a chunk at a time, and :mod:`~frsurvey.io.formats` tells
formats from file names.
"""

from __future__ import annotations

from .columns import MEASURE_COLUMNS, OUTPUT_COLUMNS, PROVENANCE_KEYS, add_results
from .fits import write_fits
from .formats import CatalogError, check_compressed_size, format_from_path
from .positions import NoPositionColumnsError, find_position_columns, parse_positions
from .read import DEFAULT_CHUNK_SIZE, CatalogChunks, read_catalog
from .votable import write_votable
from .write import ChunkWriter, write_catalog

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MEASURE_COLUMNS",
    "OUTPUT_COLUMNS",
    "PROVENANCE_KEYS",
    "CatalogChunks",
    "CatalogError",
    "ChunkWriter",
    "NoPositionColumnsError",
    "add_results",
    "check_compressed_size",
    "find_position_columns",
    "format_from_path",
    "parse_positions",
    "read_catalog",
    "write_catalog",
    "write_fits",
    "write_votable",
]
