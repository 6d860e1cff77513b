"""Progress of a classification run, in catalog rows: a bar on a terminal, a line now and then elsewhere.

:class:`RowProgress` is given the run's row count when it is known (a total,
so that the bar shows an ETA) and is told of each chunk of rows before it is
classified; the classifier then reports its distinct sources as it finishes
them (:meth:`RowProgress.expect`, :meth:`RowProgress.update`), which the
progress turns into rows, so that the count moves during a chunk too.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ._utils import progress_bar

__all__ = ["LINE_INTERVAL", "RowProgress"]

#: Seconds between the progress lines of a run without a terminal.
LINE_INTERVAL = 60.0


def _duration(seconds: float) -> str:
    """Return ``seconds`` as ``42 s``, ``7 min`` or ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RowProgress:
    """Rows done of a run, shown as a tqdm bar, or as a line every ``interval`` seconds.

    Parameters
    ----------
    total : int, optional
        Rows in the run, when known (the bar shows the fraction and an ETA).
    mode : {"bar", "lines"}
        ``bar``: a tqdm bar on ``stream`` (a terminal); ``lines``: a line of
        text at most every ``interval`` seconds and one at the end (a log file).
    desc : str
        What is counted, at the start of the bar or line.
    interval : float
        Seconds between lines in ``lines`` mode.
    stream : file, optional
        Where to write (default ``sys.stderr``).
    """

    def __init__(
        self,
        total: int | None = None,
        mode: str = "bar",
        desc: str = "classify",
        interval: float = 60.0,
        stream: TextIO | None = None,
    ) -> None:
        if mode not in ("bar", "lines"):
            raise ValueError(f"progress mode must be 'bar' or 'lines', not {mode!r}")
        self.total = total
        self.mode = mode
        self.desc = desc
        self.interval = float(interval)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0  # rows counted so far
        self._chunk_start = 0
        self._chunk_rows = 0
        self._per_key = 0.0
        self._keys = 0.0
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._bar: Any = None
        if mode == "bar":
            self._bar = progress_bar(total, desc, "row", file=self.stream)

    def start_chunk(self, rows: int) -> None:
        """Say that the next ``rows`` rows are being classified now."""
        self._chunk_start = self.done
        self._chunk_rows = int(rows)
        self._per_key = 0.0
        self._keys = 0.0

    def expect(self, keys: int) -> None:
        """Say that the chunk's rows come from ``keys`` distinct sources, to be reported by :meth:`update`."""
        self._per_key = self._chunk_rows / keys if keys else 0.0
        self._keys = 0.0

    def update(self, keys: int) -> None:
        """Count ``keys`` more sources of the chunk as done (a share of its rows)."""
        self._keys += keys
        self._move_to(self._chunk_start + min(self._chunk_rows, int(self._keys * self._per_key)))

    def finish_chunk(self) -> None:
        """Count every row of the chunk as done."""
        self._move_to(self._chunk_start + self._chunk_rows)

    def _move_to(self, done: int) -> None:
        step = done - self.done
        if step <= 0:
            return
        self.done = done
        if self._bar is not None:
            self._bar.update(step)
        elif time.monotonic() - self._last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last_line = now = time.monotonic()
        elapsed = now - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"frsurvey: {self.desc}: {self.done}"
        if self.total:
            text += f"/{self.total} rows ({100 * self.done / self.total:.0f}%)"
        else:
            text += " rows"
        text += f" in {_duration(elapsed)}"
        if rate > 0:
            text += f", {rate:.1f} rows/s"
            if self.total and self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar; in ``lines`` mode write the last line if rows were counted since the previous one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done and self._last_line != self._t0 and self._last_line < time.monotonic():
            self._line()
