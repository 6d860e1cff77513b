"""The options of a classification run, in one object: :class:`ClassifyOptions`.

Their defaults, their checks and their command-line flags are stated once,
on the fields (:func:`frsurvey._flags.option`); the command line, the Python
API (:func:`frsurvey.classify_table`, :func:`frsurvey.classify_file`), the
SAMP listener, ``fetch`` and ``show`` all take this object (or its fields as
keywords). The image source's options are a :class:`~frsurvey.sources.SourceOptions`
inside it, the refusal thresholds a :class:`~frsurvey.image.morphology.Thresholds`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ._flags import Check, OptionError, at_least, check_fields, device_name, option
from .image.morphology import Thresholds
from .io.read import DEFAULT_CHUNK_SIZE
from .sources import SourceOptions

__all__ = ["DEFAULT_CHUNK_SIZE", "GALLERY_MAX", "ClassifyOptions", "OptionError"]

#: Rows a gallery shows, by default (``--gallery-max``, ``frsurvey show --max``).
GALLERY_MAX = 48

#: Titles of the command line's argument groups.
LARGE = "large catalogs and clusters"


@dataclass(frozen=True)
class ClassifyOptions:
    """How a catalog is classified: everything but the catalog, the model and where the output goes.

    Every field has a default; values are checked when the object is made
    (:class:`~frsurvey._flags.OptionError`, a ValueError, names the option).

    Attributes
    ----------
    format, table_index : optional
        The input's format (default: from the file name) and which table of
        a file holding several (from 0).
    ra_col, dec_col : str, optional
        Position columns, when they cannot be found by UCD or name.
    out_format : str, optional
        The output's format (default: from the file name).
    source : SourceOptions
        Where the images come from (``--images``, ``--source``, the cache and
        download options).
    batch_size : int
        Sources prepared per batch.
    device : str
        ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    workers : int
        DataLoader processes preparing images (0: in this process).
    threads : int, optional
        CPU threads of the model (the command line's default: the idle cores
        less ``workers``; None from Python: torch's setting as it is, less
        ``workers`` when there are any).
    tta : bool, optional
        Override the model card's test-time augmentation: False, one view per
        source; True, the 8 dihedral views averaged; None, as the card says.
    amp : bool, optional
        On a CUDA GPU, mixed precision and channels-last (default on).
    thresholds : Thresholds
        When a classified source gets no ``FR_CLASS``.
    gallery, gallery_max : optional
        Also draw the canonical images of the first ``gallery_max`` rows into
        this PNG.
    chunk_size : int
        Rows read, classified and written at a time by
        :func:`~frsurvey.classify_file` (0: the whole catalog in memory).
    dask : str or distributed.Client, optional
        Classify the chunks on a Dask cluster: an address, ``local[:N]`` or a Client.
    resume, restart : bool
        Keep a resume journal and use an earlier run's (default); start over.
    progress : bool or str
        ``"bar"`` (or True), a progress bar; ``"lines"``, a line a minute; False, none.
    """

    format: str | None = option(None, "--format", help="force the input format (fits, votable, ecsv, csv)")
    table_index: int | None = option(
        None, "--table", check=Check(int), help="which table of a multi-table file (from 0)"
    )
    ra_col: str | None = option(None, "--ra-col", help="right ascension column (default: found by UCD or name)")
    dec_col: str | None = option(None, "--dec-col", help="declination column (default: found by UCD or name)")
    out_format: str | None = option(None, "--out-format", help="force the output format (fits, votable, ecsv, csv)")
    source: SourceOptions = dataclasses.field(default_factory=SourceOptions)
    batch_size: int = option(
        64,
        "--batch-size",
        check=at_least(1),
        help="sources prepared per batch; on a GPU the model takes the whole batch at once, on a CPU "
        "32 images at a time (views included), where a CPU is fastest",
    )
    device: Any = option(
        "auto", "--device", check=device_name, help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps"
    )
    workers: int = option(
        0, "--workers", check=at_least(0), help="DataLoader processes preparing images (0: in this process)"
    )
    threads: int | None = option(
        None,
        "--threads",
        check=at_least(1),
        metavar="N",
        help="CPU threads of the model (torch's intra-op threads; default: the cores not busy with other work "
        "when the run starts: the cores less the load average and --workers, at least 1). Results are the same for any N",
    )
    tta: bool | None = option(
        None,
        "--no-tta",
        action="store_const",
        const=False,
        help="one view per source instead of the 8 rotations/mirrorings (~8x less work; FR_UNCERTAINTY is NaN)",
    )
    amp: bool | None = None
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    gallery: str | os.PathLike | None = option(
        None, "--gallery", metavar="PNG", help="also draw the first rows' cutouts with their labels (PNG)"
    )
    gallery_max: int = option(GALLERY_MAX, "--gallery-max", check=at_least(1), metavar="N", help="rows in the gallery")
    chunk_size: int = option(
        DEFAULT_CHUNK_SIZE,
        "--chunk-size",
        check=at_least(0),
        metavar="N",
        group=LARGE,
        help="rows read, classified and written at a time (0: the whole catalog in memory)",
    )
    dask: Any = option(
        None,
        "--dask",
        metavar="ADDRESS",
        group=LARGE,
        help="classify the chunks on a Dask cluster: a scheduler address (tcp://host:8786), or local[:N] "
        "(a local cluster of N worker processes)",
    )
    resume: bool = True
    restart: bool = option(
        False,
        "--restart",
        action="store_true",
        group=LARGE,
        help="do not resume from the journal an interrupted run left beside --out (<out>.frsurvey-partial); start over",
    )
    progress: bool | str = False

    def __post_init__(self) -> None:
        check_fields(self)
        if self.dask is not None and self.chunk_size == 0:
            raise OptionError("--dask sends chunks to the workers: give a --chunk-size above 0")
        if self.dask is not None and self.gallery is not None:
            raise OptionError("--gallery draws from the images in this process: it cannot be combined with --dask")

    @classmethod
    def build(cls, options: ClassifyOptions | None = None, **fields: Any) -> ClassifyOptions:
        """Return ``options`` (default: the defaults) with ``fields`` replaced.

        ``fields`` may also hold the image source's options by name (``images``,
        ``source``, ``cache``, ...), or as a dict ``source_options`` (the
        keywords of :func:`~frsurvey.sources.make_source`); ``source`` may be
        a :class:`SourceOptions` or a source's name. None leaves a source
        option as it is.

        Raises
        ------
        TypeError
            For a keyword that is no option.
        frsurvey._flags.OptionError
            For a value that fails its check.
        """
        base = options if options is not None else cls()
        mine = {f.name for f in dataclasses.fields(cls)}
        src = dict(fields.pop("source_options", None) or {})
        source = fields.pop("source", None)
        if isinstance(source, SourceOptions):
            base = dataclasses.replace(base, source=source)
        elif source is not None:
            src["source"] = source
        for name in set(SourceOptions.field_names()) - mine:
            if name in fields:
                src[name] = fields.pop(name)
        unknown = set(fields) - mine
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if fields.get("thresholds", 0) is None:
            fields["thresholds"] = Thresholds()
        src = {k: v for k, v in src.items() if v is not None}
        if src:
            fields["source"] = dataclasses.replace(base.source, **src)
        return dataclasses.replace(base, **fields) if fields else base

    def engine_options(self) -> dict[str, Any]:
        """Return the keywords of :class:`~frsurvey.run.engine.BatchClassifier` these options set."""
        return {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "tta": self.tta,
            "amp": self.amp,
            "thresholds": self.thresholds,
        }
