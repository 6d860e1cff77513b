"""The ``frsurvey`` command: a thin layer of argparse over the Python API.

Exit codes: 0 every row classified; 3 the run finished but some rows could
not be classified (see FR_STATUS); 4 ``train`` finished but its model did
not learn (it predicts one class for the whole validation split, or is no
better than always answering the larger class); 2 unusable input (bad options, unreadable
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

from ._flags import OptionError, at_least

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_NOT_LEARNED = 4
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


class _Formatter(logging.Formatter):
    """``frsurvey: message`` for information (epoch lines), ``frsurvey: WARNING: message`` for the rest."""

    def __init__(self) -> None:
        super().__init__("frsurvey: %(levelname)s: %(message)s")
        self._info = logging.Formatter("frsurvey: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return self._info.format(record) if record.levelno == logging.INFO else super().format(record)


@contextlib.contextmanager
def _epoch_lines(quiet: bool):
    """While in the block, training logs one line per epoch (unless ``quiet``); the level as before after."""
    train_log = logging.getLogger("frsurvey.training.train")
    saved = train_log.level
    if not quiet and logging.getLogger("frsurvey").getEffectiveLevel() > logging.INFO:
        train_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        train_log.setLevel(saved)


def _progress_mode(args: argparse.Namespace) -> str | bool:
    """Return how to show progress: a bar on a terminal, lines now and then in a log, or none."""
    if args.no_progress:
        return False
    if sys.stderr.isatty():
        return "bar"
    return False if args.quiet else "lines"


def _setup_logging(verbose: int, quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    if quiet:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("frsurvey")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _HelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default (those whose help text does not already say it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or action.default is None
            or action.default is False
            or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))  # a switch says what it does
            or action.default == argparse.SUPPRESS
            or isinstance(action, argparse._VersionAction)
        ):
            return text
        default = str(action.default).replace("%", "%%")
        return f"{text} (default {default})" if text else f"(default {default})"


#: Architectures ``train --arch`` builds.
TRAIN_ARCHS = ("lenet", "cnn", "d4cnn", "resnet18")


def _arch(text: str) -> str:
    """Return a ``--arch`` value, or raise the argparse error that says what to give instead."""
    if text == "ensemble":
        raise argparse.ArgumentTypeError(
            "an ensemble is not an architecture: give --members N to train N networks of --arch (e.g. "
            "--arch cnn --members 5) and average them"
        )
    if text not in TRAIN_ARCHS:
        raise argparse.ArgumentTypeError(f"unknown architecture {text!r}: give one of {', '.join(TRAIN_ARCHS)}")
    return text


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary line")
    p.add_argument("--debug", action="store_true", help="debug log and Python tracebacks on errors")


def _add_progress_option(group, help: str = "no progress bar") -> None:
    group.add_argument("--no-progress", action="store_true", help=help)


def _add_device_option(group) -> None:
    from ._flags import add_flags
    from .options import ClassifyOptions

    add_flags(group, ClassifyOptions, ["device"])


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from ._flags import add_flags
    from .image.morphology import Thresholds
    from .options import ClassifyOptions

    p.add_argument(
        "--model",
        help="model checkpoint, or a shipped model by name: default (one network, one pass per source) or "
        "accurate (the 5-network ensemble it was distilled from); default: default",
    )
    add_flags(p, ClassifyOptions, ["batch_size", "device", "workers"])
    add_flags(p, Thresholds)


def _add_catalog_options(p: argparse.ArgumentParser) -> None:
    from ._flags import add_flags
    from .options import ClassifyOptions

    p.add_argument("catalog", help="input catalog: FITS table, VOTable (.vot/.xml), ECSV or CSV")
    add_flags(p, ClassifyOptions, ["format", "table_index", "ra_col", "dec_col"])
    p.add_argument(
        "--max-catalog-bytes",
        type=at_least(1).parse,
        metavar="N",
        help="largest decompressed size of a compressed (.gz, .bz2, .xz) catalog (default 2 GiB)",
    )


def _add_source_options(p: argparse.ArgumentParser) -> None:
    from ._flags import add_flags
    from .sources import SourceOptions

    add_flags(p, SourceOptions, prefix="source_")


def _source_options(args: argparse.Namespace):
    """Return the SourceOptions of the image source flags (``--images``, ``--source``, ``--cache``, ...)."""
    from ._flags import from_args
    from .sources import SourceOptions

    _check_images(getattr(args, "source_images", None))
    return from_args(SourceOptions, args, prefix="source_")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    from ._flags import add_flags
    from .options import ClassifyOptions
    from .sources import SourceOptions
    from .training.datasets import DATA_ENV, FRDEEPF, default_data_dir

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=["frdeep-f"], help="a published dataset (FRDEEP-F: 600 FIRST images)")
    g.add_argument(
        "--data-root",
        metavar="DIR",
        help=f"where the dataset is, or is unpacked (default: ${DATA_ENV}, else the platform's user data folder, "
        f"here {default_data_dir()})",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help=f"fetch the dataset into --data-root if it is not there yet (from {FRDEEPF.url}, 0.3 MB)",
    )
    g.add_argument(
        "--dataset-url",
        metavar="URL",
        help="fetch the dataset archive from here instead (http(s)://, file:// or a path; implies --download)",
    )
    g.add_argument("--catalog", help="a labeled catalog; its images come from --images like classify's")
    add_flags(g, SourceOptions, ["images"])
    g.add_argument("--label-column", default="fr_class", help="FRI/FRII label column of --catalog (default fr_class)")
    add_flags(g, ClassifyOptions, ["ra_col", "dec_col"])


def _add_training_options(p: argparse.ArgumentParser, title: str = "training") -> argparse._ArgumentGroup:
    from ._flags import add_flags
    from .training.train import TrainConfig

    g = p.add_argument_group(title)
    g.add_argument("--arch", type=_arch, default="cnn", help=f"architecture: {', '.join(TRAIN_ARCHS)} (default cnn)")
    g.add_argument("--width", type=at_least(1).parse, help="channel width of cnn/d4cnn (default: the network's, 16)")
    g.add_argument(
        "--stem-stride",
        type=at_least(1).parse,
        help="cnn/d4cnn: stride of the first convolution (2: a quarter the work; default 2 for cnn, 1 for d4cnn)",
    )
    g.add_argument("--stretch", default="linear", choices=["linear", "sqrt", "log"], help="cnn/d4cnn: input stretch")
    g.add_argument(
        "--radial",
        action=argparse.BooleanOptionalAction,
        help="cnn/d4cnn: also give the distance from the centre (default: on for cnn, off for d4cnn)",
    )
    g.add_argument(
        "--center-zoom",
        type=at_least(0).parse,
        help="cnn/d4cnn: also give the centre magnified N times (default 3 for cnn, 0 (not) for d4cnn)",
    )
    g.add_argument(
        "--stem-pool",
        action=argparse.BooleanOptionalAction,
        help="cnn/d4cnn: max-pool after the stem, 4x less work (default: on for cnn, off for d4cnn)",
    )
    g.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        help="cnn: turn each image into a standard orientation first: invariant to the 8 rotations by 90 degrees "
        "and mirror images in one pass (default: on for cnn, off for d4cnn)",
    )
    g.add_argument(
        "--head-pool",
        type=at_least(1).parse,
        help="cnn/d4cnn: the head sees the last feature maps in N x N cells (default 3 for cnn, 1 (their mean) "
        "for d4cnn)",
    )
    g.add_argument(
        "--members",
        type=at_least(1).parse,
        default=1,
        help="train N networks (seeds seed..seed+N-1) and average them: an ensemble (default 1)",
    )
    add_flags(g, TrainConfig)  # --epochs, --batch-size, --optimizer, --lr, ..., --workers
    _add_device_option(g)
    _add_progress_option(g, "no progress bar (epoch lines are still printed)")
    return g


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``frsurvey`` command."""
    from ._flags import add_flags
    from ._utils import __version__
    from .options import GALLERY_MAX, ClassifyOptions
    from .sources import SourceOptions

    parser = argparse.ArgumentParser(
        prog="frsurvey",
        formatter_class=_HelpFormatter,
        description="Fanaroff-Riley classification of radio sources in FIRST images, for whole catalogs.",
    )
    parser.add_argument("--version", action="version", version=f"frsurvey {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser(
        "classify", formatter_class=_HelpFormatter, help="add FR_CLASS, P_FRI, P_FRII, FR_STATUS to a catalog"
    )
    _add_catalog_options(c)
    c.add_argument("--out", "-o", required=True, help="output catalog; format from extension (.vot .fits .ecsv .csv)")
    _add_source_options(c)
    _add_model_options(c)
    add_flags(
        c, ClassifyOptions, ["out_format", "gallery", "gallery_max", "tta", "threads", "chunk_size", "dask", "restart"]
    )
    _add_progress_option(c)
    _add_common(c)
    c.set_defaults(func=_cmd_classify)

    f = sub.add_parser(
        "fetch", formatter_class=_HelpFormatter, help="download a catalog's cutouts into the cache, without classifying"
    )
    _add_catalog_options(f)
    f.add_argument(
        "--source", dest="source_source", choices=["skyview", "first"], default="skyview", help="online source"
    )
    add_flags(
        f, SourceOptions, [n for n in SourceOptions.field_names() if n not in ("images", "source")], prefix="source_"
    )
    _add_progress_option(f)
    _add_common(f)
    f.set_defaults(func=_cmd_fetch)

    t = sub.add_parser(
        "train", formatter_class=_HelpFormatter, help="train a model on FRDEEP-F and/or a labeled catalog"
    )
    _add_data_options(t)
    _add_training_options(t)
    t.add_argument("--out", "-o", required=True, help="checkpoint to write")
    t.add_argument("--name", help="model name for the card (default: the architecture)")
    t.add_argument("--report", metavar="DIR", help="also write training curves and validation figures here")
    t.add_argument(
        "--accept-chance",
        action="store_true",
        help="exit 0 even when the model did not learn (one class for all validation images, or accuracy at "
        "chance level; by default that is exit 4). For trying the plumbing with a few epochs",
    )
    _add_common(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser(
        "evaluate",
        formatter_class=_HelpFormatter,
        help="metrics and figures of a model on a dataset or labeled catalog",
    )
    _add_data_options(e)
    e.add_argument("--split", choices=["train", "test"], default="test", help="FRDEEP-F split (default test)")
    e.add_argument("--model", help="checkpoint to evaluate (default: the shipped model)")
    e.add_argument(
        "--cv",
        type=at_least(2).parse,
        metavar="K",
        help="instead: K-fold cross-validation of training on the data (the training options below apply)",
    )
    g = _add_training_options(e, "training (only with --cv: how each fold's model is trained)")
    e.set_defaults(
        cv_only={
            a.dest: (a.option_strings[0], a.default)
            for a in g._group_actions
            if a.dest not in ("device", "workers", "no_progress")
        }
    )
    e.add_argument("--out-dir", required=True, metavar="DIR", help="where metrics.json and the PNG figures go")
    _add_common(e)
    e.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser(
        "samp",
        formatter_class=_HelpFormatter,
        help="classify every table TOPCAT (or any SAMP client) sends, and send it back",
    )
    _add_source_options(s)
    _add_model_options(s)
    add_flags(s, ClassifyOptions, ["table_index", "ra_col", "dec_col"])
    s.add_argument("--allow-remote", action="store_true", help="also load tables from URLs on other machines")
    s.add_argument("--name", default="frsurvey", help="SAMP client name (default frsurvey)")
    s.add_argument(
        "--max-table-bytes",
        type=at_least(1).parse,
        default=None,
        metavar="N",
        help="largest table copied from a URL sent to the listener (default 2147483648, 2 GiB)",
    )
    _add_common(s)
    s.set_defaults(func=_cmd_samp)

    w = sub.add_parser(
        "show",
        formatter_class=_HelpFormatter,
        help="draw a labeled catalog's cutouts with label, probability and status (PNG)",
    )
    _add_catalog_options(w)
    w.add_argument("--out", "-o", required=True, metavar="PNG", help="the picture to write")
    w.add_argument("--select", metavar="EXPR", help='rows to show, e.g. "P_FRII > 0.9" or "FR_STATUS != \'ok\'"')
    w.add_argument("--max", type=at_least(1).parse, default=GALLERY_MAX, metavar="N", help="at most N panels")
    w.add_argument("--ncols", type=int, metavar="N", help="panels per row (default 6)")
    _add_source_options(w)
    _add_common(w)
    w.set_defaults(func=_cmd_show)
    return parser


def _check_images(images: str | None) -> None:
    """Refuse, up front, an ``--images`` folder that does not exist or holds no FITS file at all."""
    if images is None:
        return
    from pathlib import Path

    from .sources.local import FITS_SUFFIXES

    folder = Path(images)
    if not folder.is_dir():
        raise OptionError(f"--images {images!r} is not a folder: give the folder that holds the FITS images")
    if not any(p.name.lower().endswith(FITS_SUFFIXES) and p.is_file() for p in folder.rglob("*")):
        raise OptionError(
            f"--images {images!r} holds no FITS file (names ending {', '.join(FITS_SUFFIXES)}): give the folder "
            "of the images, or leave --images out to download the cutouts (needs the network)"
        )


def _classify_options(args: argparse.Namespace, **values):
    """Return the ClassifyOptions of the parsed flags (classify, samp), with ``values`` replaced."""
    from ._flags import from_args
    from .image.morphology import Thresholds
    from .options import ClassifyOptions

    return from_args(
        ClassifyOptions, args, source=_source_options(args), thresholds=from_args(Thresholds, args), **values
    )


def _cmd_classify(args: argparse.Namespace) -> int:
    from .run import classify_file
    from .run.engine import idle_cores

    _check_out_format(args.out, args.out_format)
    threads = args.threads if args.threads is not None else idle_cores(reserve=args.workers)
    log.info("model threads: %d%s", threads, "" if args.threads is not None else " (the cores not busy now)")
    options = _classify_options(args, threads=threads, progress=_progress_mode(args))
    with _terminate_as_interrupt():
        run = classify_file(args.catalog, args.out, model=args.model, options=options)
    print(f"frsurvey: {run.summary} -> {args.out}", file=sys.stderr)
    return EXIT_OK if run.all_ok else EXIT_PARTIAL


def _check_out_format(out: str, out_format: str | None) -> None:
    """Raise a usage error naming ``--out``/``--out-format`` when the output format cannot be told."""
    from .io import CatalogError, format_from_path

    try:
        format_from_path(out, out_format)
    except CatalogError:
        if out_format is not None:
            raise OptionError(
                f"--out-format {out_format!r} is not a catalog format: give fits, votable, ecsv or csv"
            ) from None
        raise OptionError(
            f"cannot tell the output format from the name {out!r}: end --out with .vot, .fits, .ecsv or .csv, "
            "or give --out-format (fits, votable, ecsv, csv)"
        ) from None


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch_catalog
    from .status import Status, summarize

    options = _classify_options(args)
    source = options.source.make()
    statuses, _ = fetch_catalog(
        args.catalog, source=source, options=options, progress=not args.no_progress and sys.stderr.isatty()
    )
    print(f"frsurvey: {summarize(statuses)} -> cache {source.cache.root}", file=sys.stderr)
    return EXIT_OK if all(s == Status.OK for s in statuses) else EXIT_PARTIAL


def _load_training_data(args: argparse.Namespace, split: str = "train"):
    """Return the labeled data (images, labels, names, data cards) of --dataset and/or --catalog."""
    from .training.data import catalog_data, combine

    if args.dataset is None and args.catalog is None:
        raise OptionError("no data: give --dataset frdeep-f and/or --catalog CAT --images DIR")
    parts = []
    if args.dataset == "frdeep-f":
        parts.append(_frdeep(args, split))
    if args.catalog is not None:
        if args.images is None:
            raise OptionError("--catalog needs --images DIR (where the catalog's FIRST images are)")
        _check_images(args.images)
        try:
            part = catalog_data(args.catalog, args.images, args.label_column, args.ra_col, args.dec_col)
        except KeyError as exc:  # the label column
            raise OptionError(f"{exc.args[0] if exc.args else exc}: name it with --label-column") from None
        parts.append(part)
        card = part.cards[0]
        print(
            f"frsurvey: {card['n']} labeled rows from {args.catalog}"
            + (f"; skipped {sum(card['skipped'].values())}: {card['skipped']}" if card["skipped"] else ""),
            file=sys.stderr,
        )
    return combine(parts)


def _data_root(args: argparse.Namespace):
    """Return ``--data-root``, or the default data directory."""
    from .training.datasets import default_data_dir

    return args.data_root if args.data_root is not None else default_data_dir()


def _frdeep(args: argparse.Namespace, split: str):
    """Return the FRDEEP-F split, downloaded first with ``--download`` or ``--dataset-url``; errors name the fix."""
    from .training.data import frdeep_data
    from .training.datasets import FRDEEPF, DatasetMissingError

    root = _data_root(args)
    download = args.download or args.dataset_url is not None
    try:
        return frdeep_data(root, split, download=download, url=args.dataset_url)
    except DatasetMissingError:
        if download:
            raise
        raise OptionError(
            f"FRDEEP-F is not in {str(root)!r} (--data-root): add --download to fetch it ({FRDEEPF.url}, 0.3 MB), "
            f"or --dataset-url PATH to unpack a copy of {FRDEEPF.filename} you have"
        ) from None


def _train_config(args: argparse.Namespace):
    from .training.train import training_config

    try:
        return training_config(
            args.arch,
            width=args.width,
            stem_stride=args.stem_stride,
            stretch=args.stretch,
            radial=args.radial,
            center_zoom=args.center_zoom,
            stem_pool=args.stem_pool,
            align=args.align,
            head_pool=args.head_pool,
            orientation=args.orientation,
            min_zoom=args.min_zoom,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            augment=args.augment,
            balance=args.balance,
            val_fraction=args.val_fraction,
            patience=args.patience,
            seed=args.seed,
            device=args.device,
            workers=args.workers,
        )
    except ValueError:  # options of the cnn given for another architecture
        raise OptionError(
            "--stem-stride, --stretch, --radial, --center-zoom, --stem-pool, --align and --head-pool are options of "
            "--arch cnn or d4cnn"
        ) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from .model.checkpoint import save_model
    from .training.pipeline import run_training

    data = _load_training_data(args, "train")
    cfg = _train_config(args)
    with _epoch_lines(args.quiet):
        run = run_training(
            data,
            cfg,
            members=args.members,
            name=args.name,
            frdeep_test_root=_data_root(args) if args.dataset == "frdeep-f" else None,
            accept_chance=args.accept_chance,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    model, history, failure = run.model, run.history, run.failure
    save_model(model, args.out)
    if args.report:
        from .training.evaluate import write_report

        write_report(args.report, model.card["metrics"], history=history)
    v = model.card["metrics"]["validation"]
    test_note = ""
    if "frdeep_f_test" in model.card["metrics"]:
        test_note = f", FRDEEP-F test accuracy {model.card['metrics']['frdeep_f_test']['accuracy']:.3f}"
    print(
        f"frsurvey: trained {args.arch if args.members == 1 else f'{args.members} x {args.arch}'} on {model.card['n_train']} images "
        f"(validated on {model.card['n_val']}) for {len(history['train_loss'])} epochs "
        f"(kept epoch {history['best_epoch']}): validation accuracy {v.get('accuracy', float('nan')):.3f}"
        f"{test_note} -> {args.out}",
        file=sys.stderr,
    )
    if failure is not None:
        print(
            f"frsurvey: error: the model did not learn: {failure}. Its checkpoint is in {args.out} only to be "
            "looked at; do not classify with it. Try more --epochs, another --lr or --seed, and look at the "
            "epoch lines (validation loss and accuracy) or the curves of --report",
            file=sys.stderr,
        )
        return EXIT_NOT_LEARNED
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import cross_validate_data, evaluate_data, write_report

    if not args.cv:
        given = [option for dest, (option, default) in args.cv_only.items() if getattr(args, dest) != default]
        if given:
            raise OptionError(
                f"{', '.join(given)}: training options, used only with --cv K (cross-validating a recipe); "
                "without --cv, evaluate scores --model as it is"
            )
    data = _load_training_data(args, args.split)
    if args.cv:
        with _epoch_lines(args.quiet):
            result = cross_validate_data(data, _train_config(args), folds=args.cv, seed=args.seed)
        paths = write_report(args.out_dir, result, images=data.images, labels=data.labels, names=data.names)
        s = result["summary"]
        print(
            f"frsurvey: {args.cv}-fold cross-validation of {args.arch}: accuracy {s['accuracy']['mean']:.3f} "
            f"± {s['accuracy']['std']:.3f}, ROC AUC {s['roc_auc']['mean']:.3f} ± {s['roc_auc']['std']:.3f}, "
            f"ECE {s['ece']['mean']:.3f} ± {s['ece']['std']:.3f} -> {paths['json']} and {len(paths) - 1} figures",
            file=sys.stderr,
        )
        return EXIT_OK
    from .model.checkpoint import load_model

    model = load_model(args.model)
    result = evaluate_data(model, data)
    paths = write_report(
        args.out_dir,
        result,
        images=data.images,
        labels=data.labels,
        history=model.card.get("history"),
        names=data.names,
    )
    print(
        f"frsurvey: {len(data.labels)} images: accuracy {result['accuracy']:.3f}, ROC AUC {result['roc_auc']:.3f}, "
        f"ECE {result['ece']:.3f} -> {paths['json']} and {len(paths) - 1} figures",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_samp(args: argparse.Namespace) -> int:
    from .samp import SampClassifier, SampError

    if not args.quiet and logging.getLogger("frsurvey").level > logging.INFO:
        logging.getLogger("frsurvey").setLevel(logging.INFO)  # a listener says what it does
    extra = {"max_table_bytes": args.max_table_bytes} if args.max_table_bytes is not None else {}
    listener = SampClassifier(
        model=args.model, options=_classify_options(args), allow_remote=args.allow_remote, name=args.name, **extra
    )
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
        options=_classify_options(args),
        select=args.select,
        max_images=args.max,
        ncols=args.ncols,
    )
    print(
        f"frsurvey: {gallery.panels} panel(s), {gallery.images} with an image, of {gallery.selected} matching row(s)"
        f" -> {gallery.path}",
        file=sys.stderr,
    )
    return EXIT_OK


@contextlib.contextmanager
def _catalog_cap(limit: int | None):
    """While in the block, compressed catalogs may inflate to ``limit`` bytes (``--max-catalog-bytes``)."""
    from .io import formats

    if limit is None:
        yield
        return
    before = formats.MAX_CATALOG_BYTES
    formats.MAX_CATALOG_BYTES = int(limit)
    try:
        yield
    finally:
        formats.MAX_CATALOG_BYTES = before


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
    from tqdm.contrib.logging import logging_redirect_tqdm

    parser = build_parser()
    args = parser.parse_args(argv)
    with _logging(args.verbose, args.quiet, args.debug):
        # log lines are written above a progress bar, never into its line
        with logging_redirect_tqdm(loggers=[logging.getLogger("frsurvey")]):
            return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; return its exit code (errors become messages and codes)."""
    from .io import CatalogError
    from .model.checkpoint import CheckpointError
    from .show import SelectError
    from .training.datasets import DatasetIntegrityError

    try:
        with _catalog_cap(getattr(args, "max_catalog_bytes", None)):
            return int(args.func(args))
    except MemoryError:
        if args.debug:
            raise
        print(
            "frsurvey: error: out of memory: the input is too big for this machine "
            "(a smaller --chunk-size, or lower caps: --max-image-pixels, --max-catalog-bytes)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except (CatalogError, CheckpointError, DatasetIntegrityError, OptionError, SelectError, OSError) as exc:
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
        print(
            f"frsurvey: internal error: {type(exc).__name__}: {exc} (a bug: rerun with --debug for the details "
            "and report them)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
