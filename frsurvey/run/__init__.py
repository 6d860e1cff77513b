"""Running the model over a catalog: the middle of the pipeline, from positions to scores.

- :mod:`~frsurvey.run.engine`: :class:`BatchClassifier`, positions in,
  one :class:`RowResults` (status, probabilities, uncertainty, measurements)
  out, in batches, each distinct source prepared once;
- :mod:`~frsurvey.run.runners`: where chunks are classified: in this process
  (:class:`LocalRunner`) or on a Dask cluster (:class:`DaskRunner`);
- :mod:`~frsurvey.run.journal`: the resume journal of a file run;
- :mod:`~frsurvey.run.driver`: :func:`classify_table` (a table in memory)
  and :func:`classify_file` (a file, chunk by chunk, resumably), the two
  entry points, over one runner.
"""

from __future__ import annotations

from .driver import RunSummary, classify_file, classify_table

__all__ = ["RunSummary", "classify_file", "classify_table"]
