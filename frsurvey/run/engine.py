"""The batched classifier behind :func:`~frsurvey.classify_table`, :func:`~frsurvey.classify_file` and Dask.

:class:`BatchClassifier` holds a model, an image source and the run's
settings, and turns positions into per-row results (status, message,
probability, spread):

1. each distinct position is located once, and each distinct source key
   (image and pixel, or position) is cut and prepared once; keys already
   classified by the same classifier (an earlier chunk of a catalog) are
   not prepared again;
2. the keys are cut and prepared by a torch DataLoader (``workers``
   processes while the model runs), batch by batch;
3. the model sees a fixed number of sources per forward pass (the whole
   batch on a GPU; on the CPU 32 images' worth, views included, which stay
   in the cache), the last pass padded, so that a source's scores do not
   depend on which other sources share its batch: a catalog gives the same
   numbers, to the last bit, whole or in chunks, in one process or on Dask
   workers;
4. the network runs with its batch norms folded into the convolutions
   before them and channels-last (NHWC), which together take about half
   the time of the plain network on a CPU for frsurvey's small CNN; on a GPU the
   batches also travel from pinned memory with non-blocking copies and the
   network runs under mixed precision (autocast).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from torch.utils.data import DataLoader

from .._utils import __version__, resolve_device
from ..image.morphology import MEASURES, Thresholds, decide
from ..image.prepare import PreparedCutouts, collate_prepared
from ..image.preprocess import PREPROCESSING, PREPROCESSING_VERSION
from ..io.columns import add_results
from ..model.checkpoint import load_model
from ..model.classifier import UNCERTAINTY_SHORT, FRClassifier, fused_for_inference
from ..model.networks import CLASSES, D4Average
from ..options import ClassifyOptions
from ..sources import Cutout, ImageSource
from ..status import Status, summarize

__all__ = [
    "CPU_PASS_IMAGES",
    "MEMORY",
    "BatchClassifier",
    "RowResults",
    "fr_classes",
    "get_model",
    "idle_cores",
    "numeric_settings",
    "provenance",
    "with_results",
]

log = logging.getLogger(__name__)


#: Source keys whose results a classifier remembers across calls (chunks), at most.
MEMORY = 200_000


#: Images per forward pass on the CPU (views included): a CPU runs small CNNs fastest on passes that
#: stay in its cache; a GPU takes the whole batch at once.
CPU_PASS_IMAGES = 32


def idle_cores(reserve: int = 0) -> int:
    """Return the CPU cores not busy with other work now: at least 1, at most torch's thread count.

    That is torch's default thread count (one per physical core) less the
    1-minute load average of the machine (rounded) and less ``reserve``
    (the DataLoader workers the run will start), at least 1. Model threads
    that must share a core with another busy process wait for each other at
    every layer: on a 2-core machine running other work, 2 threads made
    ``classify`` 5.5x slower than 1 (``scripts/bench_defaults.py``).
    Where the load average is not available (Windows), torch's count.
    """
    cores = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return max(1, cores - reserve)
    return max(1, min(cores, (os.cpu_count() or cores) - round(load) - reserve))


def get_model(model: FRClassifier | str | None, device: torch.device) -> FRClassifier:
    """Return ``model`` (an FRClassifier, as it is), or load a checkpoint path (None: the shipped model) onto ``device``.

    A :class:`BatchClassifier` runs its own copy of the model on its device: the caller's is never moved or changed.
    """
    if isinstance(model, FRClassifier):
        return model
    return load_model(model, device=device)


@dataclass
class RowResults:
    """What happened to each row of a call of :meth:`BatchClassifier.classify`.

    Attributes
    ----------
    status, message : numpy.ndarray
        Object arrays of str: the ``FR_STATUS`` and why.
    p_fri, spread : numpy.ndarray
        float64; NaN where the row was not classified (``spread`` also with ``tta=False``).
    keeper : object or None
        What ``keep`` returned (the gallery's image keeper), if given.
    measures : numpy.ndarray or None
        ``(N, len(MEASURES))`` float64 from :func:`frsurvey.image.morphology.measure`, NaN where not measured.
    ood : numpy.ndarray or None
        ``FR_OOD`` (:func:`frsurvey.model.ood.energy`), NaN where the model did not see the row.
    """

    status: np.ndarray
    message: np.ndarray
    p_fri: np.ndarray
    spread: np.ndarray
    keeper: Any = None
    measures: np.ndarray | None = None
    ood: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.status)
        if self.measures is None:
            self.measures = np.full((n, len(MEASURES)), np.nan)
        if self.ood is None:
            self.ood = np.full(n, np.nan)


def _unusable(p: np.ndarray, spread: np.ndarray, one_view: bool) -> np.ndarray:
    """Return which of a batch's scores no classified row may carry: non-finite or outside [0, 1]."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0))
        if not one_view:
            bad |= ~(np.isfinite(spread) & (spread >= 0.0) & (spread <= 0.5))
    return bad


def fr_classes(p_fri: np.ndarray, status: np.ndarray | None = None) -> np.ndarray:
    """Return ``FR_CLASS`` for probabilities of FRI: FRI at 0.5 and above, FRII below, empty for NaN.

    With ``status``, rows whose status is not ``ok`` (``unresolved``, ``too_large``, ...) are empty too.
    """
    p_fri = np.asarray(p_fri, dtype=float)
    out = np.where(np.isnan(p_fri), "", np.where(p_fri >= 0.5, CLASSES[0], CLASSES[1]))
    if status is not None:
        out = np.where(np.asarray(status, dtype=object) == Status.OK, out, "")
    return out


def provenance(model: FRClassifier, source: ImageSource, statuses) -> dict[str, str]:
    """Return the ``FRS_*`` provenance of a run: version, model, checksum, preprocessing, source, date, statuses."""
    card = model.card
    name = str(card.get("name") or card.get("arch") or type(model.net).__name__)
    return {
        "FRS_VER": __version__,
        "FRS_MOD": name,
        "FRS_MSHA": getattr(model, "sha256", "") or "unsaved model",
        "FRS_PREP": f"{PREPROCESSING} v{PREPROCESSING_VERSION}",
        "FRS_SRC": source.describe(),
        "FRS_DATE": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "FRS_STAT": statuses if isinstance(statuses, str) else summarize(statuses),
        "FRS_UNC": UNCERTAINTY_SHORT[model.uncertainty],
    }


def numeric_settings(
    model: FRClassifier,
    device: str | torch.device,
    batch_size: int = ClassifyOptions.batch_size,
    tta: bool | None = None,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Return what decides a :class:`BatchClassifier`'s numbers, to the last bit, besides model and pixels.

    The device type, mixed precision, test-time augmentation (the model's,
    or ``tta``), one view or eight, and the sources per forward pass. Two
    runs with equal settings give equal probabilities for equal cutouts
    (resume journals compare them).
    """
    dev = resolve_device(device)
    use_amp = dev.type == "cuda" and amp is not False
    one_view = tta is False
    views = 1 if one_view and not isinstance(model.net, D4Average) else model.views
    pass_size = int(batch_size) if dev.type != "cpu" else max(1, CPU_PASS_IMAGES // views)
    return {
        "device": dev.type,
        "amp": bool(use_amp),
        "tta": bool(model.tta if tta is None else tta),
        "one_view": bool(one_view),
        "pass_size": pass_size,
        "memory_format": "channels_last",
        "batch_norm": "folded",
    }


class BatchClassifier:
    """A model and an image source, classifying positions batch by batch.

    Parameters
    ----------
    model : FRClassifier
        The model; the classifier runs its own copy of it on ``device`` (see :func:`~frsurvey.model.classifier.fused_for_inference`).
    source : ImageSource
        Where the cutouts come from; closed by :meth:`close`.
    device : str or torch.device
        ``auto`` (GPU when there is one), ``cpu``, ``cuda``.
    batch_size : int
        Sources per batch: prepared together, and sent to the model together
        on a GPU; on the CPU the model takes them :data:`CPU_PASS_IMAGES`
        images (views included) at a time. Every forward pass has the same
        size (the last one is padded), so that a source's scores do not
        depend on the other sources in its batch.
    workers : int
        DataLoader worker processes cutting and preparing images (0: in this process).
    tta : bool, optional
        Override the model card's test-time augmentation: False computes one
        view per source (``spread`` is then NaN), True averages the 8
        dihedral views; None (default) does what the model does, which
        computes the 8 views for the spread in any case.
    amp : bool, optional
        Mixed precision (autocast, float16) on a CUDA GPU;
        default: on for CUDA. Ignored on other devices.
    memory : int
        How many source keys' results are remembered across calls (chunks).
    thresholds : Thresholds, optional
        When a measured and classified source gets no label (``unresolved``,
        ``too_large``, ``out_of_domain``); default: :class:`~frsurvey.image.morphology.Thresholds`'s defaults.
    """

    def __init__(
        self,
        model: FRClassifier,
        source: ImageSource,
        *,
        device: str | torch.device = "auto",
        batch_size: int = ClassifyOptions.batch_size,
        workers: int = 0,
        tta: bool | None = None,
        amp: bool | None = None,
        memory: int = MEMORY,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.thresholds = Thresholds() if thresholds is None else thresholds
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        self.device = resolve_device(device)
        # the engine's own copy, batch norms folded into the convolutions (same function, one layer less
        # per stage) and channels-last: the caller's model is left as it is
        self.model = fused_for_inference(model).to(self.device)
        self.source = source
        self.batch_size = int(batch_size)
        self.workers = int(workers)
        self.cuda = self.device.type == "cuda"
        plan = numeric_settings(model, self.device, batch_size, tta, amp)
        self.amp = plan["amp"]
        if tta is not None:
            self.model.tta = bool(tta)
        self.one_view = plan["one_view"]
        self.model.to(memory_format=torch.channels_last)
        #: Sources per forward pass: the whole batch on a GPU; on the CPU, CPU_PASS_IMAGES images'
        #: worth (8 views of 4 sources), where a CPU is fastest (larger passes spill out of the cache).
        self.pass_size = plan["pass_size"]
        self.memory = int(memory)
        self._known: OrderedDict[Hashable, tuple[str, str, float, float, np.ndarray, float]] = OrderedDict()
        self.prepared = 0  # source keys cut, prepared and classified (or failed) by this classifier
        self.remembered = 0  # source keys answered from memory
        self._warned_model = False  # the model's NaN scores logged once

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the image source."""
        self.source.close()

    def __enter__(self) -> BatchClassifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the work

    def classify(
        self,
        ra: np.ndarray,
        dec: np.ndarray,
        status: np.ndarray,
        keep: Callable[[np.ndarray, np.ndarray], Any] | None = None,
        bar: Any = None,
        reason: np.ndarray | None = None,
    ) -> RowResults:
        """Classify the rows whose ``status`` is ``ok``; return every row's results.

        Parameters
        ----------
        ra, dec : numpy.ndarray
            Degrees (from :func:`frsurvey.io.parse_positions`).
        status : numpy.ndarray
            ``ok``, or the status a row already has (``bad_position``).
        keep : callable, optional
            ``keep(rows, key_of_row)`` returns an object whose ``take(batch)``
            sees every batch (the gallery's :class:`~frsurvey.show.GalleryKeeper`);
            ``key_of_row`` numbers the prepared keys as the batches do (-1 for a
            row whose key was not prepared in this call).
        bar : tqdm or frsurvey.progress.RowProgress, optional
            Updated with the number of keys of each batch (told their number
            first when it has an ``expect`` method).
        reason : numpy.ndarray, optional
            Why the rows given a failing ``status`` have it (``parse_positions(..., with_reasons=True)``):
            their ``message``.
        """
        n = len(status)
        status = np.array(status, dtype=object)
        message = np.full(n, "", dtype=object) if reason is None else np.array(reason, dtype=object)
        message[status == Status.OK] = ""
        p_fri = np.full(n, np.nan)
        spread = np.full(n, np.nan)
        measures = np.full((n, len(MEASURES)), np.nan)
        ood = np.full(n, np.nan)
        rows = np.flatnonzero(status == Status.OK)
        if not len(rows):
            return RowResults(status, message, p_fri, spread, keep(rows, rows) if keep else None, measures, ood)

        # each distinct position is located once, in order of first appearance
        pos = np.column_stack([np.asarray(ra, dtype=float)[rows], np.asarray(dec, dtype=float)[rows]])
        _, first, inverse = np.unique(pos, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        pos_of_row = rank[np.asarray(inverse).reshape(-1)]
        located = self.source.locate(pos[first[order], 0], pos[first[order], 1])

        # each distinct key is prepared once: entries are the keys' results
        entries: dict[Hashable, int] = {}
        e_status: list[str] = []
        e_message: list[str] = []
        e_p: list[float] = []
        e_spread: list[float] = []
        e_meas: list[np.ndarray] = []
        e_ood: list[float] = []
        blank = np.full(len(MEASURES), np.nan)
        todo: list[Hashable] = []
        todo_dec: list[float] = []
        todo_entry: list[int] = []
        entry_of_pos = np.empty(len(located), dtype=np.intp)
        for j, key in enumerate(located):
            if isinstance(key, Cutout):  # located nowhere: a failure of its own
                entry_of_pos[j] = len(e_status)
                e_status.append(key.status)
                e_message.append(key.message)
                e_p.append(np.nan)
                e_spread.append(np.nan)
                e_meas.append(blank)
                e_ood.append(np.nan)
                continue
            e = entries.get(key)
            if e is None:
                e = entries[key] = len(e_status)
                known = self._known.get(key)
                if known is not None:
                    self._known.move_to_end(key)
                    self.remembered += 1
                    s, m, p, sd, me, od = known
                else:
                    s, m, p, sd, me, od = Status.OK, "", np.nan, np.nan, blank, np.nan
                    todo.append(key)
                    todo_entry.append(e)
                    todo_dec.append(float(pos[first[order[j]], 1]))
                e_status.append(s)
                e_message.append(m)
                e_p.append(p)
                e_spread.append(sd)
                e_meas.append(me)
                e_ood.append(od)
            entry_of_pos[j] = e
        e_status_a = np.array(e_status, dtype=object)
        e_message_a = np.array(e_message, dtype=object)
        e_p_a = np.array(e_p, dtype=float)
        e_spread_a = np.array(e_spread, dtype=float)
        e_meas_a = np.array(e_meas, dtype=float).reshape(len(e_status), len(MEASURES))
        e_ood_a = np.array(e_ood, dtype=float)
        todo_entry_a = np.asarray(todo_entry, dtype=np.intp)

        entry_of_row = entry_of_pos[pos_of_row]
        keeper = None
        if keep is not None:
            dataset_index = np.full(len(e_status), -1, dtype=np.intp)
            dataset_index[todo_entry_a] = np.arange(len(todo_entry_a))
            keeper = keep(rows, dataset_index[entry_of_row])

        if todo:
            self.source.prefetch(todo)  # online sources download in the background from here on
            if bar is not None and hasattr(bar, "expect"):
                bar.expect(len(todo))  # a RowProgress turns the sources done into rows
            for batch in self._batches(todo, todo_dec):
                where = todo_entry_a[batch["index"]]
                e_status_a[where] = batch["status"]
                e_message_a[where] = batch["message"]
                e_meas_a[where] = batch["measures"]
                if batch["ok_index"]:
                    p, sd, en = self.forward(batch["x"], with_energy=True)
                    ok_where = todo_entry_a[batch["ok_index"]]
                    broken = _unusable(p, sd, self.one_view or self.model.uncertainty == "none")
                    if broken.any():  # a diverged or damaged model: never "ok" with NaN scores
                        if not self._warned_model:
                            log.error("the model gives NaN or infinite probabilities: rows get %s", Status.MODEL_ERROR)
                            self._warned_model = True
                        e_status_a[ok_where[broken]] = Status.MODEL_ERROR
                        e_message_a[ok_where[broken]] = "the model's probability is NaN or infinite"
                        p = np.where(broken, np.nan, p)
                        sd = np.where(broken, np.nan, sd)
                    e_p_a[ok_where] = p
                    e_spread_a[ok_where] = sd
                    e_ood_a[ok_where] = en
                    if keeper is not None:
                        keeper.take(batch)
                if bar is not None:
                    bar.update(len(batch["index"]))
            self._refuse(todo_entry_a, e_status_a, e_message_a, e_meas_a, e_ood_a)
            self.prepared += len(todo)
            self._remember(todo, todo_entry_a, e_status_a, e_message_a, e_p_a, e_spread_a, e_meas_a, e_ood_a)

        status[rows] = e_status_a[entry_of_row]
        message[rows] = e_message_a[entry_of_row]
        p_fri[rows] = e_p_a[entry_of_row]
        spread[rows] = e_spread_a[entry_of_row]
        measures[rows] = e_meas_a[entry_of_row]
        ood[rows] = e_ood_a[entry_of_row]
        return RowResults(status, message, p_fri, spread, keeper, measures, ood)

    def _refuse(self, entry, status, message, measures, ood) -> None:
        """Give the classified entries the status their measurements earn (``unresolved``, ``too_large``, ...)."""
        entry = entry[status[entry] == Status.OK]
        if not len(entry):
            return
        verdict = decide(measures[entry], self.thresholds, ood[entry])
        limit = self.thresholds.size_limit(measures[entry, 0])
        for e, v, lim in zip(entry, verdict, limit):
            if v == Status.OK:
                continue
            status[e] = v
            snr, las, size = measures[e, :3]
            if v == Status.UNRESOLVED:
                message[e] = f'one component: FR_SIZE_DECONV {size:.1f}" < {lim:.1f}" at FR_SNR {snr:.0f}'
            elif v == Status.TOO_LARGE:
                message[e] = f'the component at the position runs off the image (FR_LAS >= {las:.0f}")'
            else:
                message[e] = f"FR_OOD {ood[e]:.2f} > {self.thresholds.ood_threshold}"

    def _batches(self, keys: list[Hashable], decs: list[float] | None = None):
        loader = DataLoader(
            PreparedCutouts(self.source, keys, measured=True, decs=decs),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=collate_prepared,
            pin_memory=self.cuda,
            persistent_workers=False,
            prefetch_factor=4 if self.workers else None,
        )
        yield from loader

    def _remember(self, keys, entry, status, message, p, spread, measures, ood) -> None:
        if self.memory <= 0:
            return
        known = self._known
        for key, e in zip(keys, entry):
            known[key] = (status[e], message[e], float(p[e]), float(spread[e]), measures[e].copy(), float(ood[e]))
        while len(known) > self.memory:
            known.popitem(last=False)

    def forward(self, x: torch.Tensor, with_energy: bool = False) -> tuple[np.ndarray, ...]:
        """Return (probability of FRI, spread) as float64 arrays for a batch of model input.

        The model sees :attr:`pass_size` sources at a time, the last pass
        padded, so that every pass has the same shape and a source's scores
        do not depend on the others in its batch. ``with_energy``: also the
        energy score ``FR_OOD`` (:func:`frsurvey.model.ood.energy`).
        """
        n = x.shape[0]
        step = self.pass_size
        if n % step:
            x = torch.cat([x, x.new_zeros((step - n % step, *x.shape[1:]))])
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        p_parts, sd_parts, en_parts = [], [], []
        mixed = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with torch.inference_mode(), mixed:
            for i in range(0, x.shape[0], step):
                part = x[i : i + step]
                # probabilities, spread and energy from the same passes (one for the shipped models)
                probs, sd, en = self.model.scores(part, one_view=self.one_view)
                p_parts.append(probs[:, 0].float())
                sd_parts.append(sd.float())
                en_parts.append(en.float())
        p, sd = torch.cat(p_parts)[:n], torch.cat(sd_parts)[:n]
        if with_energy:
            return p.double().cpu().numpy(), sd.double().cpu().numpy(), torch.cat(en_parts)[:n].double().cpu().numpy()
        return p.double().cpu().numpy(), sd.double().cpu().numpy()


def with_results(table: Table, res, provenance: dict[str, str] | None = None) -> Table:
    """Return ``table`` with the ``FR_*`` columns of a :class:`~frsurvey.run.engine.RowResults` (and provenance) added."""
    return add_results(
        table,
        fr_classes(res.p_fri, res.status),
        res.p_fri,
        res.status,
        uncertainty=res.spread,
        provenance=provenance,
        measures=res.measures,
        ood=res.ood,
    )
