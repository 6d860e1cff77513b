"""The values of the ``FR_STATUS`` column: what happened to each row."""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "DESCRIPTIONS",
    "LOG_EXAMPLES",
    "REFUSED",
    "FailureLog",
    "Status",
    "summarize",
    "summarize_counts",
]


class Status:
    """Short lowercase words, one per outcome; :data:`DESCRIPTIONS` explains each."""

    OK = "ok"
    BAD_POSITION = "bad_position"
    NO_IMAGE = "no_image"
    OUTSIDE_IMAGE = "outside_image"
    BAD_IMAGE = "bad_image"
    BLANK_IMAGE = "blank_image"
    WRONG_SCALE = "wrong_scale"
    FETCH_FAILED = "fetch_failed"
    NOT_CACHED = "not_cached"
    MODEL_ERROR = "model_error"
    UNRESOLVED = "unresolved"
    TOO_LARGE = "too_large"
    OUT_OF_DOMAIN = "out_of_domain"


#: One line per status, in the order of the README's table.
DESCRIPTIONS: dict[str, str] = {
    Status.OK: "classified: FR_CLASS, P_FRI, P_FRII hold the prediction",
    Status.BAD_POSITION: "the row's RA/Dec is blank, masked, NaN, infinite or unparsable, |Dec| > 90 deg, "
    "or |RA| > 3600 deg (no angle in degrees; smaller values are wrapped into [0, 360))",
    Status.NO_IMAGE: "no image in the image source covers the position",
    Status.OUTSIDE_IMAGE: "the position is in an image but within 75 px (2.25') of its edge, "
    "so the central 150x150 px would leave the image",
    Status.BAD_IMAGE: "the image covering the position cannot be read, or has no usable celestial WCS",
    Status.BLANK_IMAGE: "the cutout holds no signal above 3 sigma inside the 75 px circle "
    "(all NaN, all zero or constant): nothing to classify",
    Status.WRONG_SCALE: "the image is not at FIRST's 1.8\"/px, so it would not be the image the model knows",
    Status.FETCH_FAILED: "downloading the cutout failed after every retry (the reason is in the log)",
    Status.NOT_CACHED: "--offline was given and the cutout is not in the cache",
    Status.MODEL_ERROR: "the model gave no usable probability for the cutout (NaN or infinite): "
    "a diverged or damaged model, not a property of the source",
    Status.UNRESOLVED: "the source at the position is one component no larger than FIRST's beam (FR_NCOMP 1, "
    "FR_SIZE_DECONV below the limit): the FR class is not defined for it; P_FRI/P_FRII are still written",
    Status.TOO_LARGE: "the component at the position runs off the 150x150 px image the model sees "
    "(the lobes are cut): P_FRI/P_FRII are still written, but no FR_CLASS",
    Status.OUT_OF_DOMAIN: "FR_OOD is above --ood-threshold: the image is unlike the training images; "
    "P_FRI/P_FRII are still written, but no FR_CLASS",
}


#: Statuses of rows that were measured and scored, but refused a label (P_FRI/P_FRII are written).
REFUSED = frozenset({Status.UNRESOLVED, Status.TOO_LARGE, Status.OUT_OF_DOMAIN})


def summarize(statuses) -> str:
    """Return a one-line count of statuses, e.g. ``"301 rows: 299 ok, 2 no_image"``."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return summarize_counts(counts)


def summarize_counts(counts: dict[str, int]) -> str:
    """Return the one-line summary of :func:`summarize` from the number of rows of each status."""
    counts = {str(s): int(k) for s, k in counts.items() if k}
    order = sorted(counts, key=lambda s: (s != Status.OK, -counts[s], s))
    total = sum(counts.values())
    parts = ", ".join(f"{counts[s]} {s}" for s in order)
    return f"{total} rows" + (f": {parts}" if parts else "")


#: How many rows of each failing status are described in the log at WARNING level.
LOG_EXAMPLES = 5


class FailureLog:
    """Logs the rows that could not be classified: a few per status at WARNING, the rest at DEBUG.

    One instance spans a run, so that a catalog read in chunks logs as many
    examples as one read whole; ``offset`` numbers the rows of later chunks.
    """

    def __init__(self, examples: int = LOG_EXAMPLES, logger: logging.Logger | None = None) -> None:
        self.examples = examples
        self.log = logger or logging.getLogger("frsurvey.classify")
        self.shown: dict[str, int] = {}

    def add(self, status: np.ndarray, message: np.ndarray, offset: int = 0) -> None:
        """Log the failed rows of one table or chunk whose first row is row ``offset``."""
        for i in np.flatnonzero(np.asarray(status) != Status.OK):
            s, m = status[i], message[i]
            k = self.shown.get(s, 0)
            self.shown[s] = k + 1
            level = logging.WARNING if k < self.examples else logging.DEBUG
            self.log.log(level, "row %d: %s%s", offset + i, s, f": {m}" if m else "")

    def close(self) -> None:
        """Say how many rows of each status were not described at WARNING level."""
        for s, k in self.shown.items():
            if k > self.examples:
                self.log.warning("... and %d more row(s) with status %s (--debug lists them)", k - self.examples, s)
