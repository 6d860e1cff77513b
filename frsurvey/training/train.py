"""Training: a DataLoader loop with validation, early stopping and calibration.

:func:`train_model` takes canonical uint8 images and labels, holds out a
stratified validation split, trains with random orientations (rotations over
the full circle, mirroring, small shifts), class balancing, a learning-rate
schedule and weight decay, keeps the epoch with the best validation loss,
and fits a temperature on the validation split so that the probabilities
mean what they say.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, SequentialLR
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from .._flags import Check, at_least, option
from .._utils import progress_bar, resolve_device
from ..image.preprocess import to_model_input
from ..metrics import binary_metrics
from ..model.classifier import FRClassifier
from ..model.networks import D4Average, Ensemble, build_model
from .augment import RandomOrientation

__all__ = [
    "CNN_DEFAULTS",
    "TrainConfig",
    "cnn_options",
    "fit_temperature",
    "learning_failure",
    "lr_schedule",
    "predict_proba",
    "seed_everything",
    "split_stratified",
    "train_model",
    "training_config",
    "uncertainty_method",
]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in the model card)."""

    arch: str = "cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = option(40, "--epochs", check=at_least(1), help="passes over the training images")
    batch_size: int = option(32, "--batch-size", check=at_least(1), help="images per training step")
    optimizer: str = option("adamw", "--optimizer", choices=["adamw", "sgd", "adagrad"], help="optimizer")
    lr: float = option(2e-3, "--lr", check=Check(float), help="peak learning rate")
    weight_decay: float = option(1e-4, "--weight-decay", check=Check(float), help="weight decay")
    schedule: str = option(
        "cosine",
        "--schedule",
        choices=["cosine", "none"],
        help="learning rate: 2 warm-up epochs then a cosine decay, or constant",
    )
    warmup_epochs: int = 2
    augment: bool = option(True, "--no-augment", action="store_false", help="no random rotations, flips and shifts")
    orientation: str = option(
        "continuous",
        "--orientation",
        choices=["continuous", "d4", "mixed"],
        help="augmentation: rotations by any angle, by multiples of 90 degrees and mirrorings (d4), or both",
    )
    max_shift: float = 3.0
    min_zoom: float = option(
        1.0, "--min-zoom", check=Check(float), help="augmentation: also shrink sources down to this factor"
    )
    balance: bool = option(True, "--no-balance", action="store_false", help="do not balance the classes")
    label_smoothing: float = 0.0
    val_fraction: float = option(0.15, "--val-fraction", check=Check(float), help="validation split per class")
    patience: int = option(15, "--patience", check=at_least(0), help="early stopping patience in epochs (0: none)")
    seed: int = option(0, "--seed", check=Check(int), help="seed of every random choice (same seed, same weights)")
    calibrate: bool = True
    tta: bool = True  # predict with the mean over the 8 dihedral views (see FRClassifier)
    device: str = "auto"  # the command line's --device is ClassifyOptions'
    workers: int = option(
        0,
        "--workers",
        check=at_least(0),
        help="DataLoader processes (0: in this process; the images are in memory already)",
    )
    distill_weight: float = 0.8  # with a teacher: weight of its probabilities against the labels
    bn_batches: int = 20  # batches that re-estimate the batch-norm statistics after each epoch (0: moving averages)


def cnn_options(
    width: int | None = None,
    stem_stride: int | None = None,
    stretch: str = "linear",
    radial: bool = False,
    center_zoom: int = 0,
    stem_pool: bool = False,
    align: bool = False,
    head_pool: int = 1,
) -> dict[str, Any]:
    """Return the ``arch_kwargs`` of a ``cnn``/``d4cnn`` with these options (those left at their defaults are left out).

    See :class:`frsurvey.model.networks.SmallCNN` and its input view for what each does.
    """
    kwargs: dict[str, Any] = {}
    if width is not None:
        kwargs["width"] = int(width)
    if stem_stride is not None:
        kwargs["stem_stride"] = int(stem_stride)
    if stretch != "linear":
        kwargs["stretch"] = stretch
    if radial:
        kwargs["radial"] = True
    if center_zoom:
        kwargs["center_zoom"] = int(center_zoom)
    if stem_pool:
        kwargs["stem_pool"] = True
    if align:
        kwargs["align"] = True
    if head_pool != 1:
        kwargs["head_pool"] = int(head_pool)
    return kwargs


#: What ``training_config`` gives the network options of ``cnn`` and ``d4cnn`` left unset: the cnn's are the
#: shipped models' network (aligned: one pass per source); d4cnn's the plain network it averages over the 8 views.
CNN_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"stem_stride": 2, "radial": True, "center_zoom": 3, "stem_pool": True, "align": True, "head_pool": 3},
    "d4cnn": {
        "stem_stride": None,
        "radial": False,
        "center_zoom": 0,
        "stem_pool": False,
        "align": False,
        "head_pool": 1,
    },
}


def training_config(
    arch: str = "cnn",
    *,
    width: int | None = None,
    stem_stride: int | None = None,
    stretch: str = "linear",
    radial: bool | None = None,
    center_zoom: int | None = None,
    stem_pool: bool | None = None,
    align: bool | None = None,
    head_pool: int | None = None,
    **settings: Any,
) -> TrainConfig:
    """Return the training recipe of ``frsurvey train`` for a network: its ``TrainConfig``.

    Parameters
    ----------
    arch : str
        The architecture (:data:`frsurvey.model.networks.ARCHITECTURES`).
    width : int, optional
        Channel width (0 or None: the network's own).
    stem_stride, stretch, radial, center_zoom, stem_pool, align, head_pool
        Options of ``cnn`` and ``d4cnn`` (see :class:`frsurvey.model.networks.SmallCNN`);
        those left at None take :data:`CNN_DEFAULTS`.
    **settings
        Other :class:`TrainConfig` fields (``epochs``, ``lr``, ``seed``, ...).

    Returns
    -------
    TrainConfig
        With the network's ``arch_kwargs`` (:func:`cnn_options`) and, unless
        ``settings`` says otherwise, test-time augmentation only for a network
        that does not align its input (an aligned network is already
        invariant to the 8 views: one pass per source).

    Raises
    ------
    ValueError
        If options of ``cnn``/``d4cnn`` are given for another architecture.
    """
    small_cnn = {
        "stem_stride": stem_stride,
        "radial": radial,
        "center_zoom": center_zoom,
        "stem_pool": stem_pool,
        "align": align,
        "head_pool": head_pool,
    }
    aligned = False
    if arch in CNN_DEFAULTS:
        o = {k: CNN_DEFAULTS[arch][k] if v is None else v for k, v in small_cnn.items()}
        aligned = bool(o["align"])
        arch_kwargs = cnn_options(
            width or None,
            o["stem_stride"],
            stretch,
            o["radial"],
            o["center_zoom"],
            o["stem_pool"],
            o["align"],
            o["head_pool"],
        )
    elif stretch != "linear" or any(v is not None for v in small_cnn.values()):
        raise ValueError(
            f"stem_stride, stretch, radial, center_zoom, stem_pool, align and head_pool are options of the cnn "
            f"and d4cnn architectures, not of {arch}"
        )
    else:
        arch_kwargs = {"width": width} if width else {}
    return TrainConfig(**{"arch": arch, "arch_kwargs": arch_kwargs, "tta": not aligned, **settings})


def learning_failure(validation: dict) -> str | None:
    """Return why a model's validation metrics show that it learned nothing, or None when they do not.

    Parameters
    ----------
    validation : dict
        :func:`frsurvey.metrics.binary_metrics` of the validation split
        (its ``confusion_matrix`` is used).

    Returns
    -------
    str or None
        A sentence when the model predicts one class for every validation
        image, or when its accuracy is no better than always answering the
        larger class (chance level); None otherwise, and when there is no
        validation split.
    """
    cm = np.asarray(validation.get("confusion_matrix", []), dtype=int)
    if cm.ndim != 2 or cm.sum() == 0:
        return None
    n = int(cm.sum())
    predicted = cm.sum(axis=0)
    truth = cm.sum(axis=1)
    names = ("FRI", "FRII")
    if (predicted > 0).sum() <= 1:
        one = names[int(np.argmax(predicted))]
        return f"it predicts {one} for all {n} validation images"
    acc = float(np.trace(cm)) / n
    chance = float(truth.max()) / n
    if acc <= chance:
        return (
            f"its validation accuracy {acc:.3f} is no better than {chance:.3f}, that of always answering "
            f"{names[int(np.argmax(truth))]} (chance level)"
        )
    return None


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a torch generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - code that uses the legacy global RNG
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def split_stratified(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (train indices, held-out indices), holding out ``fraction`` of each class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = round(fraction * len(idx))
        held.extend(idx[:k])
    held = np.sort(np.asarray(held, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rest, held


def _optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw, sgd or adagrad")


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRScheduler:
    """Return the learning-rate schedule of ``cfg`` for ``optimizer``, stepped once at the end of each epoch.

    ``cfg.schedule == "none"``: ``cfg.lr`` throughout. Otherwise
    (``"cosine"``): ``cfg.warmup_epochs`` epochs of linear warm-up (epoch
    ``e`` at ``(e + 1) / (warmup_epochs + 1)`` of ``cfg.lr``), then a cosine
    decay from ``cfg.lr`` towards 0 over the remaining epochs (epoch ``e`` of
    them at ``(1 + cos(pi e / (epochs - warmup_epochs))) / 2`` of it).
    Creating the schedule sets the first epoch's rate.

    Both phases are :class:`~torch.optim.lr_scheduler.LambdaLR` factors, in
    sequence (:class:`~torch.optim.lr_scheduler.SequentialLR`), rather than
    ``LinearLR`` and ``CosineAnnealingLR``: those update the rate recursively
    and land a rounding error away from the closed form, which changes the
    trained weights; these give every epoch's rate as the closed form, to
    the last bit.
    """
    if cfg.schedule == "none":
        return LambdaLR(optimizer, _constant)
    warmup = int(cfg.warmup_epochs)
    cosine = LambdaLR(optimizer, _Cosine(max(cfg.epochs - warmup, 1)))
    if warmup <= 0:
        return cosine
    return SequentialLR(optimizer, [LambdaLR(optimizer, _Warmup(warmup)), cosine], milestones=[warmup])


def _constant(epoch: int) -> float:
    return 1.0


@dataclass(frozen=True)
class _Warmup:
    """Linear warm-up factor: ``(epoch + 1) / (epochs + 1)``."""

    epochs: int

    def __call__(self, epoch: int) -> float:
        return (epoch + 1) / (self.epochs + 1)


@dataclass(frozen=True)
class _Cosine:
    """Cosine decay factor from 1 towards 0 over ``epochs`` epochs (0 after them)."""

    epochs: int

    def __call__(self, epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(epoch / self.epochs, 1.0)))


def _distillation_loss(net, teacher: FRClassifier, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    """Return (logits, loss) of a student ``net`` on a batch, taught by ``teacher`` and the labels ``y``."""
    target, teacher_spread = (t.clone() for t in teacher.predict(x))  # out of inference mode
    spread = None
    if getattr(net, "spread", None) is not None:
        logits, spread = net.forward_spread(x)
    else:
        logits = net(x)
    log_p = F.log_softmax(logits.float(), dim=-1)
    soft = -(target.float() * log_p).sum(dim=-1).mean()
    hard = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    loss = cfg.distill_weight * soft + (1 - cfg.distill_weight) * hard
    if spread is not None:
        # the spread is a few hundredths: its squared error is scaled to weigh like the class loss
        loss = loss + 100.0 * F.mse_loss(spread, teacher_spread.float())
    return logits, loss


def _smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """Return the mean cross-entropy with label smoothing ``smoothing[i]`` for item ``i``.

    For one value throughout it is ``F.cross_entropy(logits, y, label_smoothing=s)``.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    nll = -log_p.gather(1, y[:, None])[:, 0]
    uniform = -log_p.mean(dim=-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def _batch_of(images_t: torch.Tensor, ib: torch.Tensor, gen: torch.Generator) -> np.ndarray:
    """Return the uint8 images of the items ``ib``: one of each item's versions, at random, when there are several."""
    if images_t.ndim == 4:  # (N, V, H, W)
        pick = torch.randint(images_t.shape[1], (len(ib),), generator=gen)
        return images_t[ib, pick].numpy()
    return images_t[ib].numpy()


@torch.no_grad()
def _recompute_batch_norm(net, loader, images_t, augment, gen, device, batches: int) -> None:
    """Set every batch norm's running statistics to their average over ``batches`` training batches.

    With the moving averages that training keeps, the statistics lag behind
    weights that change quickly, and on FIRST images (a few bright pixels on
    a constant background, so that each channel's variance is small) a small
    lag shifts every activation of the evaluation-mode network: validation
    then collapses to one class while training accuracy climbs. Averaging
    fresh statistics of the final weights over augmented training batches
    ("precise batch norm") gives the evaluation-mode network the statistics
    it was trained with. Nothing is done when ``batches`` is 0 or the network
    has no batch norm.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    for i, (ib, _) in enumerate(loader):
        if i >= batches:
            break
        x = torch.from_numpy(to_model_input(_batch_of(images_t, ib, gen))).to(device)
        net(augment(x) if augment is not None else x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.inference_mode()
def predict_logits(net: torch.nn.Module, images: np.ndarray, device, batch_size: int = 256) -> torch.Tensor:
    """Return the logits of ``net`` for uint8 canonical images, in order (on the CPU)."""
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(to_model_input(images[i : i + batch_size])).to(device)
        out.append(net(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)


def predict_proba(model: torch.nn.Module, images: np.ndarray, device="cpu", batch_size: int = 256) -> np.ndarray:
    """Return P(FRII) of ``model`` for uint8 canonical images."""
    return torch.softmax(predict_logits(model, images, device, batch_size), dim=1)[:, 1].numpy()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Return the temperature T > 0 minimising the NLL of ``softmax(logits / T)``.

    ``logits`` is ``(N, classes)``, or ``(V, N, classes)`` for V views of each
    item whose probabilities are averaged (test-time augmentation).
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    logits = logits.detach().float().clone()  # a normal tensor, even from inference mode
    if logits.ndim == 2:
        logits = logits[None]
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        probs = torch.softmax(logits / log_t.exp(), dim=-1).mean(dim=0)
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp().item())
    return float(min(max(t, 0.05), 20.0)) if math.isfinite(t) else 1.0


@torch.inference_mode()
def _view_logits(model: FRClassifier, images: np.ndarray, batch_size: int = 128) -> torch.Tensor:
    out = [
        model.view_logits(torch.from_numpy(to_model_input(images[i : i + batch_size])))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out, dim=1) if out else torch.zeros(8, 0, 2)


def train_model(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: bool = False,
    card: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
    teacher: FRClassifier | None = None,
    smoothing: np.ndarray | None = None,
) -> tuple[FRClassifier, dict[str, Any]]:
    """Train a model on canonical images and return it with its training history.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(N, 150, 150)`` canonical images (see :mod:`frsurvey.image.preprocess`),
        or ``(N, V, 150, 150)``: V versions of each (e.g. the image and its
        physically perturbed variants), one drawn at random each time.
    labels : numpy.ndarray
        ``(N,)`` class indices, 0 = FRI, 1 = FRII.
    config : TrainConfig
        Architecture and optimisation settings.
    val_images, val_labels : numpy.ndarray, optional
        The validation split; when omitted, ``config.val_fraction`` of each
        class is held out of ``images``.
    progress : bool
        Show a tqdm bar per epoch on stderr.
    card : dict, optional
        Extra model-card entries (training data and checksums).
    weights : numpy.ndarray, optional
        ``(N,)`` relative sampling weight of each training image (e.g. to
        draw images like those to be classified more often); combined with
        class balancing.
    teacher : FRClassifier, optional
        Distil this model (typically an ensemble) into the network: on every
        augmented training batch the loss is ``config.distill_weight`` times
        the cross-entropy against the teacher's calibrated probabilities plus
        the rest times the cross-entropy against the labels; a network built
        with ``spread_head=True`` also learns to predict the spread of the
        teacher's members (:meth:`frsurvey.model.networks.SmallCNN.forward_spread`),
        its ``FR_UNCERTAINTY``.
    smoothing : numpy.ndarray, optional
        ``(N,)`` label smoothing of each training image in place of
        ``config.label_smoothing``: its target puts ``1 - s/2`` on its label
        and ``s/2`` on the other class (e.g. a larger ``s`` for sources whose
        label is uncertain: soft targets). Not used with a ``teacher``.

    Returns
    -------
    model : FRClassifier
        In evaluation mode on the CPU, weights of the epoch with the lowest
        validation loss, calibrated by temperature on the validation split;
        ``model.card`` holds the config, history and validation metrics.
    history : dict
        Per-epoch ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
        ``lr`` and ``seconds``, and ``best_epoch``.
    """
    cfg = config or TrainConfig()
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    gen = seed_everything(cfg.seed)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    if smoothing is None:
        smoothing = np.full(len(labels), cfg.label_smoothing)
    smoothing = np.asarray(smoothing, dtype=np.float32)
    if smoothing.shape != labels.shape or not np.all((smoothing >= 0) & (smoothing <= 1)):
        raise ValueError(f"smoothing must be ({len(labels)},) values in [0, 1]")
    if val_images is None:
        tr, va = split_stratified(labels, cfg.val_fraction, cfg.seed)
        val_images, val_labels = images[va], labels[va]
        if val_images.ndim == 4:
            val_images = val_images[:, 0]
        images, labels, weights, smoothing = images[tr], labels[tr], weights[tr], smoothing[tr]
    val_labels = np.asarray(val_labels, dtype=np.int64)
    device = resolve_device(cfg.device)
    net = build_model(cfg.arch, **cfg.arch_kwargs).to(device)
    if teacher is not None:
        teacher = teacher.to(device).eval()
    opt = _optimizer(net.parameters(), cfg)
    schedule = lr_schedule(opt, cfg)
    augment = (
        RandomOrientation(cfg.max_shift, cfg.orientation, generator=gen, min_zoom=cfg.min_zoom) if cfg.augment else None
    )

    # the loader draws indices; a batch's images are taken from the array (one version each) only then
    images_t = torch.from_numpy(images)
    smoothing_t = torch.from_numpy(smoothing)
    data = TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    counts = np.bincount(labels, weights=weights, minlength=2).astype(float)
    if (cfg.balance and counts.min() > 0) or np.ptp(weights) > 0:
        draw = weights / counts[labels] if cfg.balance and counts.min() > 0 else weights
        sampler = WeightedRandomSampler(torch.from_numpy(draw), len(labels), replacement=True, generator=gen)
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers)
    else:
        loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.workers)

    history: dict[str, list] = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")}
    best = (math.inf, -1, None)
    bad_epochs = 0
    val_t = torch.from_numpy(val_labels)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        total, correct, loss_sum = 0, 0, 0.0
        # the bar is only told how far the loop is: it never touches the loader, whose iterators draw
        # their seeds from the random generators (tqdm.auto's bar opens an extra iterator of what it wraps)
        bar = progress_bar(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", "batch", leave=False) if progress else None
        for ib, yb in loader:
            x = torch.from_numpy(to_model_input(_batch_of(images_t, ib, gen))).to(device)
            y = yb.to(device)
            if augment is not None:
                x = augment(x)
            if teacher is None:
                logits = net(x)
                loss = _smoothed_cross_entropy(logits, y, smoothing_t[ib].to(device))
            else:
                logits, loss = _distillation_loss(net, teacher, x, y, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        _recompute_batch_norm(net, loader, images_t, augment, gen, device, cfg.bn_batches)
        val_logits = predict_logits(net, val_images, device)
        val_loss = float(F.cross_entropy(val_logits, val_t)) if len(val_t) else float("nan")
        val_acc = float((val_logits.argmax(1) == val_t).float().mean()) if len(val_t) else float("nan")
        for k, v in (
            ("train_loss", loss_sum / max(total, 1)),
            ("train_acc", correct / max(total, 1)),
            ("val_loss", val_loss),
            ("val_acc", val_acc),
            ("lr", opt.param_groups[0]["lr"]),
            ("seconds", time.perf_counter() - t0),
        ):
            history[k].append(float(v))
        schedule.step()  # the next epoch's learning rate
        log.info(
            "epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f | lr %.2e | %.1fs",
            epoch + 1,
            cfg.epochs,
            history["train_loss"][-1],
            history["train_acc"][-1],
            val_loss,
            val_acc,
            history["lr"][-1],
            history["seconds"][-1],
        )
        score = val_loss if math.isfinite(val_loss) else history["train_loss"][-1]
        if score < best[0]:
            best = (score, epoch, copy.deepcopy(net.state_dict()))
            bad_epochs = 0
        else:
            bad_epochs += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                log.info("early stop after epoch %d: no better validation loss in %d epochs", epoch + 1, bad_epochs)
                break
    if best[2] is None:
        raise ValueError(
            f"training diverged: the loss was NaN or infinite in every one of {len(history['train_loss'])} epoch(s); "
            "try a smaller --lr"
        )
    net.load_state_dict(best[2])
    out_hist: dict[str, Any] = dict(history)
    out_hist["best_epoch"] = best[1] + 1
    model = _finish(net.cpu().eval(), cfg, val_images, val_labels, card)
    model.card.update(
        {
            "arch": cfg.arch,
            "arch_kwargs": dict(cfg.arch_kwargs),
            "n_train": len(labels),
            "history": out_hist,
        }
    )
    return model, out_hist


def uncertainty_method(net: torch.nn.Module, tta: bool) -> str:
    """Return how a model of ``net`` makes its ``FR_UNCERTAINTY`` (see :data:`frsurvey.model.classifier.UNCERTAINTY_METHODS`).

    A network with a spread head: its own (distilled) estimate; an ensemble
    without test-time augmentation: the spread over its members; one aligned
    network without test-time augmentation: none (NaN); otherwise the spread
    over the 8 dihedral views.
    """
    if getattr(net, "spread", None) is not None:
        return "distilled"
    if isinstance(net, Ensemble) and not tta:
        return "members"
    view = getattr(net, "view", None)
    if not tta and getattr(view, "align", False):
        return "none"  # one aligned network: the 8 views give the same answer, and there is no other spread
    return "views"


def _finish(net: torch.nn.Module, cfg: TrainConfig, val_images, val_labels, card) -> FRClassifier:
    """Wrap a trained network, calibrate its temperature on the validation split, and write its card."""
    val_t = torch.from_numpy(np.asarray(val_labels, dtype=np.int64))
    model = FRClassifier(net, {"tta": cfg.tta, "uncertainty": uncertainty_method(net, cfg.tta)}).eval()
    temperature = 1.0
    if cfg.calibrate and len(val_t):
        views = _view_logits(model, val_images)
        if isinstance(net, D4Average):
            views = views.mean(dim=0)
        elif not cfg.tta:
            views = views[0]
        temperature = fit_temperature(views, val_t)
    val_prob_raw = predict_proba(model, val_images)
    model.temperature.fill_(temperature)
    val_prob = predict_proba(model, val_images)
    model.card.update(card or {})
    model.card.update(
        {
            **_recipe_card(cfg, model, temperature),
            "n_val": len(val_t),
            "metrics": {
                "validation": binary_metrics(val_labels, val_prob) if len(val_t) else {},
                "validation_uncalibrated_ece": binary_metrics(val_labels, val_prob_raw)["ece"]
                if len(val_t)
                else float("nan"),
            },
        }
    )
    return model


def _recipe_card(cfg: TrainConfig, model: FRClassifier, temperature: float) -> dict[str, Any]:
    """Return the card entries every trained model has: its recipe, seed, temperature and how it predicts."""
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("device", "workers")},
        "seed": cfg.seed,
        "temperature": temperature,
        "tta": model.tta,
        "uncertainty": model.uncertainty,
    }
