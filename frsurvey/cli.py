"""The ``frsurvey`` command: a thin layer of argparse over the Python API.

Exit codes: 0 every row classified; 3 the run finished but some rows could
not be classified (see FR_STATUS); 2 unusable input (bad options, unreadable
catalog, no position columns, missing or refused model, missing data, an
output that cannot be written); 130 interrupted by Ctrl-C and 143 by SIGTERM
(``classify`` can be resumed: the same command again); 1 an unexpected error
(a bug: please report it with ``--debug`` output).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

log = logging.getLogger("frsurvey")


@contextlib.contextmanager
def _logging(verbose: int, quiet: bool, debug: bool):
    """While in the block, the ``frsurvey`` logger writes to stderr at the level asked for; as before after.

    (``main`` may be called from Python: the caller's logging is theirs.)
    """
    root = logging.getLogger("frsurvey")
    saved = (root.handlers[:], root.level, root.propagate)
    _setup_logging(verbose, quiet, debug)
    try:
        yield
    finally:
        root.handlers[:], root.level, root.propagate = saved


def _setup_logging(verbose: int, quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    if quiet:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("frsurvey: %(levelname)s: %(message)s"))
    root = logging.getLogger("frsurvey")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary line")
    p.add_argument("--debug", action="store_true", help="debug log and Python tracebacks on errors")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model checkpoint (default: the shipped model)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda (default auto)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes preparing images (default 0)")
    from .morphology import Thresholds

    d = Thresholds()
    g = p.add_argument_group("what is not classified (see the README)")
    g.add_argument(
        "--unresolved-size",
        type=float,
        default=d.unresolved_size,
        metavar="ARCSEC",
        help="a central component whose deconvolved size (FR_SIZE_DECONV) is below max(this, "
        f"--unresolved-snr-size / sqrt(FR_SNR)) and has no lobes around it is 'unresolved' (default {d.unresolved_size:g})",
    )
    g.add_argument(
        "--unresolved-snr-size",
        type=float,
        default=d.unresolved_snr_size,
        metavar="ARCSEC",
        help=f"the part of the size limit that shrinks as 1/sqrt(S/N) (default {d.unresolved_snr_size:g}; "
        "0 and --unresolved-size 0: no 'unresolved')",
    )
    g.add_argument(
        "--keep-too-large",
        action="store_true",
        help="label sources whose emission runs off the image instead of giving them 'too_large'",
    )
    g.add_argument(
        "--ood-threshold",
        type=float,
        metavar="E",
        help="give 'out_of_domain' (no FR_CLASS) to rows whose FR_OOD is above E (default: off)",
    )


def _add_catalog_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="input catalog: FITS table, VOTable (.vot/.xml), ECSV or CSV")
    p.add_argument("--format", help="force the input format (fits, votable, ecsv, csv)")
    p.add_argument("--table", type=int, default=None, help="which table of a multi-table file (from 0)")
    p.add_argument("--ra-col", help="right ascension column (default: found by UCD or name)")
    p.add_argument("--dec-col", help="declination column (default: found by UCD or name)")


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="directory of FIRST FITS images (any names, with WCS)")
    p.add_argument(
        "--source",
        choices=["local", "skyview", "first"],
        help="image source (default: local when --images is given, else skyview)",
    )
    _add_fetch_options(p)


def _add_fetch_options(p: argparse.ArgumentParser) -> None:
    from .sources.http import conf

    g = p.add_argument_group("online sources (skyview, first)")
    g.add_argument("--skyview-url", metavar="URL", help="SkyView query form address (a mirror or stand-in)")
    g.add_argument("--first-url", metavar="URL", help="FIRST cutout server address (a mirror or stand-in)")
    g.add_argument("--cache", metavar="DIR", help="cutout cache (default: ~/.cache/frsurvey or $FRSURVEY_CACHE)")
    g.add_argument("--offline", action="store_true", help="use the cache only; rows missing from it: not_cached")
    g.add_argument("--fetch-workers", type=int, metavar="N", help=f"downloads at once (default {conf.workers})")
    g.add_argument("--max-rate", type=float, metavar="R", help=f"requests/s, 0: no limit (default {conf.max_rate:g})")
    g.add_argument("--fetch-timeout", type=float, metavar="S", help=f"seconds per read (default {conf.timeout:g})")
    g.add_argument("--retries", type=int, metavar="N", help=f"retries of a failed download (default {conf.retries})")
    g.add_argument("--retry-backoff", type=float, metavar="S", help=f"first retry wait (default {conf.backoff:g})")


def _fetch_options(args: argparse.Namespace) -> dict:
    """Return the make_source keywords of the online-source options."""
    return {
        "skyview_url": args.skyview_url,
        "first_url": args.first_url,
        "cache": args.cache,
        "offline": args.offline,
        "workers": args.fetch_workers,
        "max_rate": args.max_rate,
        "timeout": args.fetch_timeout,
        "retries": args.retries,
        "backoff": args.retry_backoff,
    }


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=["frdeep-f"], help="a published dataset")
    g.add_argument("--data-root", default="~/.frsurvey/data", help="where the dataset lives or is unpacked")
    g.add_argument("--download", action="store_true", help="fetch the dataset if it is not in --data-root")
    g.add_argument("--dataset-url", help="fetch the archive from here (URL, file:// or a path) instead")
    g.add_argument("--catalog", help="a labeled catalog; its images come from --images like classify's")
    g.add_argument("--images", metavar="DIR", help="directory of FIRST FITS images for --catalog")
    g.add_argument("--label-column", default="fr_class", help="FRI/FRII label column of --catalog")
    g.add_argument("--ra-col", help="right ascension column of --catalog")
    g.add_argument("--dec-col", help="declination column of --catalog")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--arch", default="cnn", help="architecture: lenet, cnn, d4cnn, resnet18 (default cnn)")
    g.add_argument("--width", type=int, help="channel width of cnn/d4cnn")
    g.add_argument("--stem-stride", type=int, help="cnn/d4cnn: stride of the first convolution (2: a quarter the work)")
    g.add_argument("--stretch", default="linear", choices=["linear", "sqrt", "log"], help="cnn/d4cnn: input stretch")
    g.add_argument("--radial", action="store_true", help="cnn/d4cnn: also give the distance from the centre")
    g.add_argument("--center-zoom", type=int, default=0, help="cnn/d4cnn: also give the centre magnified N times")
    g.add_argument("--members", type=int, default=1, help="train N networks (seeds seed..seed+N-1): an ensemble")
    g.add_argument("--orientation", default="continuous", choices=["continuous", "d4", "mixed"], help="rotations")
    g.add_argument("--min-zoom", type=float, default=1.0, help="augmentation: also shrink sources down to this")
    g.add_argument("--epochs", type=int, default=40)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "adagrad"])
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--schedule", default="cosine", choices=["cosine", "none"])
    g.add_argument("--no-augment", action="store_true", help="no random rotations, flips and shifts")
    g.add_argument("--no-balance", action="store_true", help="do not balance the classes")
    g.add_argument("--val-fraction", type=float, default=0.15, help="validation split per class (default 0.15)")
    g.add_argument("--patience", type=int, default=15, help="early stopping patience in epochs (0: none)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.add_argument("--workers", type=int, default=0)
    g.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``frsurvey`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="frsurvey",
        description="Fanaroff-Riley classification of radio sources in FIRST images, for whole catalogs.",
    )
    parser.add_argument("--version", action="version", version=f"frsurvey {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("classify", help="add FR_CLASS, P_FRI, P_FRII, FR_STATUS to a catalog")
    _add_catalog_options(c)
    c.add_argument("--out", "-o", required=True, help="output catalog; format from extension (.vot .fits .ecsv .csv)")
    c.add_argument("--out-format", help="force the output format")
    _add_source_options(c)
    _add_model_options(c)
    c.add_argument("--gallery", metavar="PNG", help="also draw the first rows' cutouts with their labels (PNG)")
    c.add_argument("--gallery-max", type=int, default=48, metavar="N", help="rows in the gallery (default 48)")
    c.add_argument(
        "--no-tta",
        action="store_true",
        help="one view per source instead of the 8 rotations/mirrorings (~8x less work; FR_UNCERTAINTY is NaN)",
    )
    c.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads of the model (torch's intra-op threads; default: torch's, one per core). "
        "On a machine shared with other work, 1 is often fastest",
    )
    g = c.add_argument_group("large catalogs and clusters")
    g.add_argument(
        "--chunk-size",
        type=int,
        default=50_000,
        metavar="N",
        help="rows read, classified and written at a time (default 50000; 0: the whole catalog in memory)",
    )
    g.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="classify the chunks on a Dask cluster: a scheduler address (tcp://host:8786), or local[:N] "
        "(a local cluster of N worker processes)",
    )
    g.add_argument(
        "--restart",
        action="store_true",
        help="do not resume from the journal an interrupted run left beside --out (<out>.frsurvey-partial); start over",
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(c)
    c.set_defaults(func=_cmd_classify)

    f = sub.add_parser("fetch", help="download a catalog's cutouts into the cache, without classifying")
    _add_catalog_options(f)
    f.add_argument("--source", choices=["skyview", "first"], default="skyview", help="online source (default skyview)")
    _add_fetch_options(f)
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(f)
    f.set_defaults(func=_cmd_fetch)

    t = sub.add_parser("train", help="train a model on FRDEEP-F and/or a labeled catalog")
    _add_data_options(t)
    _add_training_options(t)
    t.add_argument("--out", "-o", required=True, help="checkpoint to write")
    t.add_argument("--name", help="model name for the card (default: the architecture)")
    t.add_argument("--report", metavar="DIR", help="also write training curves and validation figures here")
    _add_common(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="metrics and figures of a model on a dataset or labeled catalog")
    _add_data_options(e)
    e.add_argument("--split", choices=["train", "test"], default="test", help="FRDEEP-F split (default test)")
    e.add_argument("--model", help="checkpoint to evaluate (default: the shipped model)")
    e.add_argument("--cv", type=int, metavar="K", help="instead: K-fold cross-validation of training on the data")
    _add_training_options(e)
    e.add_argument("--out-dir", required=True, help="where metrics.json and the PNG figures go")
    _add_common(e)
    e.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("samp", help="classify every table TOPCAT (or any SAMP client) sends, and send it back")
    _add_source_options(s)
    _add_model_options(s)
    s.add_argument("--table", type=int, default=None, help="which table of a multi-table file sent (from 0)")
    s.add_argument("--ra-col", help="right ascension column (default: found by UCD or name)")
    s.add_argument("--dec-col", help="declination column (default: found by UCD or name)")
    s.add_argument("--allow-remote", action="store_true", help="also load tables from URLs on other machines")
    s.add_argument("--name", default="frsurvey", help="SAMP client name (default frsurvey)")
    _add_common(s)
    s.set_defaults(func=_cmd_samp)

    w = sub.add_parser("show", help="draw a labeled catalog's cutouts with label, probability and status (PNG)")
    _add_catalog_options(w)
    w.add_argument("--out", "-o", required=True, metavar="PNG", help="the picture to write")
    w.add_argument("--select", metavar="EXPR", help='rows to show, e.g. "P_FRII > 0.9" or "FR_STATUS != \'ok\'"')
    w.add_argument("--max", type=int, default=48, metavar="N", help="at most N panels (default 48)")
    w.add_argument("--ncols", type=int, metavar="N", help="panels per row (default 6)")
    _add_source_options(w)
    _add_common(w)
    w.set_defaults(func=_cmd_show)
    return parser


def _classify_options(args: argparse.Namespace) -> dict:
    """Return the classify_table keywords of the image source, model and position options (classify, samp)."""
    return {
        "images": args.images,
        "model": args.model,
        "source": args.source,
        "source_options": _fetch_options(args),
        "ra_col": args.ra_col,
        "dec_col": args.dec_col,
        "batch_size": args.batch_size,
        "device": args.device,
        "workers": args.workers,
        "thresholds": _thresholds(args),
    }


def _thresholds(args: argparse.Namespace):
    """Return the Thresholds of the --unresolved-*, --keep-too-large and --ood-threshold options."""
    from .morphology import Thresholds

    if args.unresolved_size < 0 or args.unresolved_snr_size < 0:
        raise _UsageError("--unresolved-size and --unresolved-snr-size must be 0 or more")
    return Thresholds(
        unresolved_size=args.unresolved_size,
        unresolved_snr_size=args.unresolved_snr_size,
        too_large=not args.keep_too_large,
        ood_threshold=args.ood_threshold,
    )


def _cmd_classify(args: argparse.Namespace) -> int:
    from .stream import classify_file

    if args.chunk_size < 0:
        raise _UsageError(f"--chunk-size must be 0 or more, not {args.chunk_size}")
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise _UsageError(f"--threads must be 1 or more, not {args.threads}")
        torch.set_num_threads(args.threads)
    with _terminate_as_interrupt():
        run = classify_file(
            args.catalog,
            args.out,
            format=args.format,
            table_index=args.table,
            out_format=args.out_format,
            chunk_size=args.chunk_size,
            dask=args.dask,
            tta=False if args.no_tta else None,
            progress=not args.no_progress and sys.stderr.isatty(),
            gallery=args.gallery,
            gallery_max=args.gallery_max,
            restart=args.restart,
            **_classify_options(args),
        )
    print(f"frsurvey: {run.summary} -> {args.out}", file=sys.stderr)
    return EXIT_OK if run.all_ok else EXIT_PARTIAL


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch_catalog
    from .sources import make_source
    from .status import Status, summarize

    source = make_source(source=args.source, **_fetch_options(args))
    statuses, _ = fetch_catalog(
        args.catalog,
        source=source,
        ra_col=args.ra_col,
        dec_col=args.dec_col,
        format=args.format,
        table_index=args.table,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(f"frsurvey: {summarize(statuses)} -> cache {source.cache.root}", file=sys.stderr)
    return EXIT_OK if all(s == Status.OK for s in statuses) else EXIT_PARTIAL


def _load_training_data(args: argparse.Namespace, split: str = "train"):
    """Return (images, labels, names, data cards) from --dataset and/or --catalog."""
    import numpy as np

    from .datasets import FRDEEPF, LabeledCatalog

    if args.dataset is None and args.catalog is None:
        raise _UsageError("no data: give --dataset frdeep-f and/or --catalog CAT --images DIR")
    images, labels, names, cards = [], [], [], []
    if args.dataset == "frdeep-f":
        ds = FRDEEPF(args.data_root, train=split == "train", download=args.download, url=args.dataset_url)
        images.append(ds.data)
        labels.append(ds.targets)
        names += ds.names
        cards.append({"name": "FRDEEP-F", "split": split, "n": len(ds), "archive_md5": FRDEEPF.tgz_md5})
    if args.catalog is not None:
        from .models import file_sha256

        if args.images is None:
            raise _UsageError("--catalog needs --images DIR (where the catalog's FIRST images are)")
        cat = LabeledCatalog(
            args.catalog,
            images=args.images,
            label_column=args.label_column,
            ra_col=args.ra_col,
            dec_col=args.dec_col,
        )
        images.append(cat.data)
        labels.append(cat.targets)
        names += [f"row {r}" for r in cat.rows]
        cards.append(
            {
                "name": str(args.catalog),
                "label_column": args.label_column,
                "n": len(cat),
                "skipped": dict(cat.skipped),
                "sha256": file_sha256(args.catalog),
            }
        )
        print(
            f"frsurvey: {len(cat)} labeled rows from {args.catalog}"
            + (f"; skipped {sum(cat.skipped.values())}: {cat.skipped}" if cat.skipped else ""),
            file=sys.stderr,
        )
    return np.concatenate(images), np.concatenate(labels), names, cards


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig, cnn_options

    if args.arch in ("cnn", "d4cnn"):
        arch_kwargs = cnn_options(args.width or None, args.stem_stride, args.stretch, args.radial, args.center_zoom)
    elif args.stem_stride is not None or args.stretch != "linear" or args.radial or args.center_zoom:
        raise _UsageError("--stem-stride, --stretch, --radial and --center-zoom are options of --arch cnn or d4cnn")
    else:
        arch_kwargs = {"width": args.width} if args.width else {}
    if args.members < 1:
        raise _UsageError(f"--members must be 1 or more, not {args.members}")
    return TrainConfig(
        arch=args.arch,
        arch_kwargs=arch_kwargs,
        orientation=args.orientation,
        min_zoom=args.min_zoom,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        augment=not args.no_augment,
        balance=not args.no_balance,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .models import save_model
    from .train import train_ensemble, train_model

    images, labels, _, cards = _load_training_data(args, "train")
    cfg = _train_config(args)
    card = {"name": args.name or args.arch, "training_data": cards}
    show = not args.no_progress and sys.stderr.isatty()
    if args.members > 1:
        model, histories = train_ensemble(images, labels, cfg, members=args.members, progress=show, card=card)
        history = histories[0]  # the curves of the first network
    else:
        model, history = train_model(images, labels, cfg, progress=show, card=card)
    if args.dataset == "frdeep-f":
        from .datasets import FRDEEPF
        from .evaluate import evaluate_model

        test = FRDEEPF(args.data_root, train=False)
        m = evaluate_model(model, test.data, test.targets)
        m.pop("prob")
        m.pop("spread")
        model.card["metrics"]["frdeep_f_test"] = m
    save_model(model, args.out)
    if args.report:
        from .evaluate import write_report

        write_report(args.report, model.card["metrics"], history=history)
    v = model.card["metrics"]["validation"]
    test_note = ""
    if "frdeep_f_test" in model.card["metrics"]:
        test_note = f", FRDEEP-F test accuracy {model.card['metrics']['frdeep_f_test']['accuracy']:.3f}"
    print(
        f"frsurvey: trained {args.arch if args.members == 1 else f'{args.members} x {args.arch}'} on {len(labels)} images for {len(history['train_loss'])} epochs "
        f"(kept epoch {history['best_epoch']}): validation accuracy {v.get('accuracy', float('nan')):.3f}"
        f"{test_note} -> {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import cross_validate, evaluate_model, write_report

    images, labels, names, cards = _load_training_data(args, args.split)
    if args.cv:
        result = cross_validate(images, labels, _train_config(args), folds=args.cv, seed=args.seed)
        result["data"] = cards
        paths = write_report(args.out_dir, result)
        s = result["summary"]
        print(
            f"frsurvey: {args.cv}-fold cross-validation of {args.arch}: accuracy {s['accuracy']['mean']:.3f} "
            f"± {s['accuracy']['std']:.3f}, ROC AUC {s['roc_auc']['mean']:.3f} ± {s['roc_auc']['std']:.3f}, "
            f"ECE {s['ece']['mean']:.3f} ± {s['ece']['std']:.3f} -> {paths['json']}",
            file=sys.stderr,
        )
        return EXIT_OK
    from .models import load_model

    model = load_model(args.model)
    result = evaluate_model(model, images, labels)
    result["data"] = cards
    result["model"] = {"path": model.path, "sha256": model.sha256, "name": model.card.get("name")}
    paths = write_report(
        args.out_dir, result, images=images, labels=labels, history=model.card.get("history"), names=names
    )
    print(
        f"frsurvey: {len(labels)} images: accuracy {result['accuracy']:.3f}, ROC AUC {result['roc_auc']:.3f}, "
        f"ECE {result['ece']:.3f} -> {paths['json']} and {len(paths) - 1} figures",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_samp(args: argparse.Namespace) -> int:
    from .samp import SampClassifier, SampError

    if not args.quiet and logging.getLogger("frsurvey").level > logging.INFO:
        logging.getLogger("frsurvey").setLevel(logging.INFO)  # a listener says what it does
    options = _classify_options(args)
    listener = SampClassifier(allow_remote=args.allow_remote, name=args.name, table_index=args.table, **options)
    try:
        listener.start()
    except SampError as exc:
        print(f"frsurvey: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(
            f"frsurvey samp: listening as {listener.public_id}; send tables from TOPCAT (Ctrl-C stops)",
            file=sys.stderr,
        )
        reason = listener.run()
    finally:
        listener.close()
    print(f"frsurvey samp: stopped ({reason}); {len(listener.history)} table(s) handled", file=sys.stderr)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from .show import show_catalog

    gallery = show_catalog(
        args.catalog,
        args.out,
        images=args.images,
        source=args.source,
        source_options=_fetch_options(args),
        select=args.select,
        max_images=args.max,
        ra_col=args.ra_col,
        dec_col=args.dec_col,
        format=args.format,
        table_index=args.table,
        ncols=args.ncols,
    )
    print(
        f"frsurvey: {gallery.panels} panel(s), {gallery.images} with an image, of {gallery.selected} matching row(s)"
        f" -> {gallery.path}",
        file=sys.stderr,
    )
    return EXIT_OK


class _UsageError(ValueError):
    pass


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops as on Ctrl-C (cleaning up, keeping the journal)."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While in the block, SIGTERM raises :class:`_Terminated` (in the main thread); the old handler after."""
    import signal
    import threading

    def raise_terminated(signum, frame):
        raise _Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Say what an interrupted run leaves behind; return the exit code (130 for SIGINT, 143 for SIGTERM)."""
    what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
    run = getattr(exc, "run_summary", None)
    journal = getattr(exc, "journal", None)
    done = f"; finished so far: {run.summary}" if run is not None and run.rows else ""
    if journal is not None:
        print(
            f"frsurvey: {what}{done}; kept in {journal}: run the same command again to resume (--restart starts over)",
            file=sys.stderr,
        )
    else:
        print(f"frsurvey: {what}{done}; nothing to resume: run the command again", file=sys.stderr)
    return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``frsurvey`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with _logging(args.verbose, args.quiet, args.debug):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; return its exit code (errors become messages and codes)."""
    from .catalog import CatalogError
    from .datasets import DatasetIntegrityError
    from .models import CheckpointError

    try:
        return int(args.func(args))
    except (
        CatalogError,
        CheckpointError,
        DatasetIntegrityError,
        OSError,
        KeyError,
        _UsageError,
        ValueError,
    ) as exc:
        if args.debug:
            raise
        print(f"frsurvey: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        return _interrupted(exc)
    except Exception as exc:  # a bug: say so briefly unless --debug
        if args.debug:
            raise
        print(f"frsurvey: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
