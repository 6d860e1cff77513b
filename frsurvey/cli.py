"""The ``frsurvey`` command: a thin layer of argparse over the Python API.

Exit codes: 0 every row classified; 3 the run finished but some rows could
not be classified (see FR_STATUS); 2 unusable input (bad options, unreadable
catalog, no position columns, missing or refused model, missing data);
1 an unexpected error (a bug: please report it with ``--debug`` output).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3

log = logging.getLogger("frsurvey")


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


def _add_catalog_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="input catalog: FITS table, VOTable (.vot/.xml), ECSV or CSV")
    p.add_argument("--format", help="force the input format (fits, votable, ecsv, csv)")
    p.add_argument("--table", type=int, default=None, help="which table of a multi-table file (from 0)")
    p.add_argument("--ra-col", help="right ascension column (default: found by UCD or name)")
    p.add_argument("--dec-col", help="declination column (default: found by UCD or name)")


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="directory of FIRST FITS images (any names, with WCS)")
    p.add_argument("--source", choices=["local"], help="image source (default: local when --images is given)")


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
    c.add_argument("--model", help="model checkpoint (default: the shipped model)")
    c.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    c.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda (default auto)")
    c.add_argument("--workers", type=int, default=0, help="DataLoader processes preparing images (default 0)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(c)
    c.set_defaults(func=_cmd_classify)

    t = sub.add_parser("train", help="train a model on FRDEEP-F and/or a labeled catalog")
    t.add_argument("--dataset", choices=["frdeep-f"], help="a published training set")
    t.add_argument("--data-root", default="~/.frsurvey/data", help="where the dataset lives or is unpacked")
    t.add_argument("--download", action="store_true", help="fetch the dataset if it is not in --data-root")
    t.add_argument("--dataset-url", help="fetch the archive from here (URL, file:// or a path) instead")
    t.add_argument("--arch", default="cnn", help="architecture: lenet, cnn, d4cnn, resnet18 (default cnn)")
    t.add_argument("--width", type=int, help="channel width of cnn/d4cnn")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "adagrad"])
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--schedule", default="cosine", choices=["cosine", "none"])
    t.add_argument("--no-augment", action="store_true", help="no random rotations, flips and shifts")
    t.add_argument("--no-balance", action="store_true", help="do not balance the classes")
    t.add_argument("--val-fraction", type=float, default=0.15, help="validation split per class (default 0.15)")
    t.add_argument("--patience", type=int, default=15, help="early stopping patience in epochs (0: none)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--out", "-o", required=True, help="checkpoint to write")
    t.add_argument("--name", help="model name for the card (default: the architecture)")
    t.add_argument("--no-progress", action="store_true")
    _add_common(t)
    t.set_defaults(func=_cmd_train)
    return parser


def _cmd_classify(args: argparse.Namespace) -> int:
    from .catalog import write_catalog
    from .classify import classify_table
    from .status import Status, summarize

    result = classify_table(
        args.catalog,
        images=args.images,
        model=args.model,
        source=args.source,
        ra_col=args.ra_col,
        dec_col=args.dec_col,
        format=args.format,
        table_index=args.table,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    write_catalog(result, args.out, format=args.out_format)
    statuses = list(result["FR_STATUS"])
    print(f"frsurvey: {summarize(statuses)} -> {args.out}", file=sys.stderr)
    return EXIT_OK if all(s == Status.OK for s in statuses) else EXIT_PARTIAL


def _cmd_train(args: argparse.Namespace) -> int:
    from .datasets import FRDEEPF
    from .models import save_model
    from .train import TrainConfig, train_model

    if args.dataset is None:
        raise _UsageError("nothing to train on: give --dataset frdeep-f")
    ds = FRDEEPF(args.data_root, train=True, download=args.download, url=args.dataset_url)
    images, labels = ds.data, ds.targets
    arch_kwargs = {"width": args.width} if args.width else {}
    cfg = TrainConfig(
        arch=args.arch,
        arch_kwargs=arch_kwargs,
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
    card = {
        "name": args.name or args.arch,
        "training_data": [{"name": "FRDEEP-F", "split": "train", "n": len(labels), "archive_md5": FRDEEPF.tgz_md5}],
    }
    model, history = train_model(images, labels, cfg, progress=not args.no_progress and sys.stderr.isatty(), card=card)
    test = FRDEEPF(args.data_root, train=False)
    from .metrics import binary_metrics
    from .train import predict_proba

    test_metrics = binary_metrics(test.targets, predict_proba(model, test.data))
    model.card["metrics"]["frdeep_f_test"] = test_metrics
    save_model(model, args.out)
    v = model.card["metrics"]["validation"]
    print(
        f"frsurvey: trained {args.arch} for {len(history['train_loss'])} epochs (best {history['best_epoch']}): "
        f"validation accuracy {v.get('accuracy', float('nan')):.3f}, FRDEEP-F test accuracy "
        f"{test_metrics['accuracy']:.3f} -> {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK


class _UsageError(ValueError):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``frsurvey`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet, args.debug)
    from .catalog import CatalogError
    from .datasets import DatasetIntegrityError
    from .models import CheckpointError

    try:
        return int(args.func(args))
    except (CatalogError, CheckpointError, DatasetIntegrityError, FileNotFoundError, _UsageError, ValueError) as exc:
        if args.debug:
            raise
        print(f"frsurvey: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("frsurvey: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so briefly unless --debug
        if args.debug:
            raise
        print(f"frsurvey: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
