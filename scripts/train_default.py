#!/usr/bin/env python
"""Train frsurvey's shipped model, reproducibly, from the data in ../shared/data.

The recipe:

1. FRDEEP-F (550 train / 50 test) from its published archive, md5-checked,
   with the canonical circular mask.
2. The 301 labeled FIRST cutouts of ../shared/data/first-cutouts, through the
   same image source and canonical preprocessing as ``frsurvey classify``
   (hybrids skipped), each also in ``--variants`` physically perturbed
   versions (fainter by up to 3x, shifted by up to 4 px, before the
   preprocessing).
3. Cutouts that are also in FRDEEP-F (the same source: overlap of the
   above-3-sigma pixels >= 0.85, allowing shifts of 4 px) are found; they
   never enter the held-out split, and those in FRDEEP-F's test set never
   enter training.
4. The held-out split: ``--heldout`` (35%) of the other cutouts, stratified
   by class and confidence, with a fixed seed. Never used for training or for
   choosing anything; reported once, at the end.
5. Training pool: FRDEEP-F train + the remaining cutouts; a stratified
   validation split of it chooses the epoch and calibrates the temperature.
6. Metrics on the held-out split (confident, uncertain, all), on FRDEEP-F
   test, optionally a k-fold cross-validation over the pool for spreads;
   the checkpoint, ``metrics.json``, ``splits.json`` and figures are written to
   ``--out-dir``.

Run from the repository root: ``python scripts/train_default.py`` (about 5-15
minutes on a 2-core CPU; ``--cv 5`` adds 5 more trainings).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from frsurvey.datasets import FRDEEPF, LabeledCatalog, find_duplicates
from frsurvey.evaluate import cross_validate, evaluate_model, json_safe, write_report
from frsurvey.models import file_sha256, save_model
from frsurvey.train import TrainConfig, cnn_options, split_stratified, train_ensemble, train_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
log = logging.getLogger("train_default")


def heldout_split(labels: np.ndarray, confident: np.ndarray, eligible: np.ndarray, fraction: float, seed: int):
    """Return sorted indices of the held-out items: ``fraction`` of each eligible (class, confidence) stratum."""
    items = np.flatnonzero(eligible)
    strata = labels[items] * 2 + confident[items].astype(int)
    return items[split_stratified(strata, fraction, seed)[1]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED), help="the shared data directory")
    p.add_argument("--out-dir", default=str(ROOT / "checkpoints"))
    p.add_argument("--name", default="frsurvey-default")
    p.add_argument("--arch", default="cnn")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--stem-stride", type=int, default=2)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--orientation", default="continuous")
    p.add_argument("--stretch", default="linear", choices=["linear", "sqrt", "log"])
    p.add_argument(
        "--radial",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the network the distance from the centre",
    )
    p.add_argument("--center-zoom", type=int, default=3)
    p.add_argument("--min-zoom", type=float, default=1.0, help="zoom augmentation: shrink sources down to this")
    p.add_argument("--cutout-weight", type=float, default=4.0, help="sampling weight of a cutout vs a FRDEEP-F image")
    p.add_argument("--variants", type=int, default=8)
    p.add_argument("--heldout", type=float, default=0.35)
    p.add_argument("--split-seed", type=int, default=12345)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv", type=int, default=5, help="also k-fold cross-validate the recipe on the pool")
    p.add_argument("--members", type=int, default=3, help="networks in the ensemble")
    p.add_argument(
        "--ship",
        choices=["all", "pool"],
        default="all",
        help="ship the recipe retrained on all usable cutouts (default) or the evaluation model itself",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.time()
    data = Path(args.data)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        archive = data / "frdeep-f" / "FIRST_PNG_dataset.tar.gz"
        fd_train = FRDEEPF(tmp, train=True, download=True, url=str(archive))
        fd_test = FRDEEPF(tmp, train=False)
    catalog_path = data / "first-cutouts" / "catalog.csv"
    catalog = Table.read(catalog_path)
    mb = LabeledCatalog(
        catalog, images=data / "first-cutouts" / "fits", label_column="fr_class", variants=args.variants, seed=1
    )
    confident = np.array([catalog["confidence"][r] == "confident" for r in mb.rows])

    reference = np.concatenate([fd_train.data, fd_test.data])
    in_test = np.r_[np.zeros(len(fd_train), bool), np.ones(len(fd_test), bool)]
    dup, match, overlap = find_duplicates(mb.data, reference)
    dup_of_test = dup & in_test[match]
    log.info("%d cutouts are also in FRDEEP-F (%d of them in its test set)", dup.sum(), dup_of_test.sum())

    held = heldout_split(mb.targets, confident, ~dup, args.heldout, args.split_seed)
    log.info("held out %d cutouts (%d confident) from the evaluation model", len(held), confident[held].sum())

    # Items: FRDEEP-F train (one version each) + every usable cutout (the image and its variants).
    versions = 1 + args.variants
    fd_versions = np.repeat(fd_train.data[:, None], versions, axis=1)
    mb_versions = np.concatenate([mb.data[:, None], mb.variants], axis=1) if args.variants else mb.data[:, None]
    X = np.concatenate([fd_versions, mb_versions])
    Y = np.concatenate([fd_train.targets, mb.targets])
    origin = np.r_[np.zeros(len(fd_train), int), np.ones(len(mb), int)]
    cutout = np.r_[np.full(len(fd_train), -1), np.arange(len(mb))]  # cutout number, -1 for FRDEEP-F
    is_conf = np.r_[np.zeros(len(fd_train), bool), confident]
    weights = np.where(origin == 1, args.cutout_weight, 1.0)
    # never trained on: cutouts that are FRDEEP-F's own images (its train copies are in already),
    # and of course nothing of FRDEEP-F test
    usable = np.r_[np.ones(len(fd_train), bool), ~dup]
    in_pool = usable & ~np.isin(cutout, held)

    arch_kwargs = {}
    if args.arch in ("cnn", "d4cnn"):
        arch_kwargs = cnn_options(args.width, args.stem_stride, args.stretch, args.radial, args.center_zoom)
    cfg = TrainConfig(
        arch=args.arch,
        arch_kwargs=arch_kwargs,
        min_zoom=args.min_zoom,
        epochs=args.epochs,
        patience=args.epochs,
        lr=args.lr,
        orientation=args.orientation,
        seed=args.seed,
        val_fraction=args.val_fraction,
    )

    def fit(items: np.ndarray, data_note: str, n_cutouts: int):
        """Train the recipe's model (an ensemble of --members networks) on the given items."""
        strata = Y[items] * 2 + origin[items]
        tr, va = split_stratified(strata, args.val_fraction, args.seed)
        tr, va = items[tr], items[va]
        card = {
            "name": args.name,
            "training_data": [
                {"name": "FRDEEP-F", "split": "train", "n": len(fd_train), "archive_md5": FRDEEPF.tgz_md5},
                {
                    "name": "MiraBest FIRST cutouts (../shared/data/first-cutouts)",
                    "n": n_cutouts,
                    "variants_per_image": args.variants,
                    "sampling_weight": args.cutout_weight,
                    "catalog_sha256": file_sha256(catalog_path),
                    "excluded": data_note,
                },
            ],
            "recipe": "scripts/train_default.py " + " ".join(sys.argv[1:] if argv is None else argv),
        }
        common = {"val_images": X[va][:, 0], "val_labels": Y[va], "card": card, "weights": weights[tr]}
        if args.members > 1:
            model, histories = train_ensemble(X[tr], Y[tr], cfg, members=args.members, **common)
            return model, histories[0]
        return train_model(X[tr], Y[tr], cfg, **common)

    # 1. The evaluation model: the recipe without the held-out split; its metrics are the ones reported.
    eval_model, history = fit(
        np.flatnonzero(in_pool),
        "hybrids; the held-out split; cutouts also in FRDEEP-F",
        int((in_pool & (origin == 1)).sum()),
    )
    metrics = {"validation": eval_model.card["metrics"]["validation"]}
    report = {}
    held_conf = held[confident[held]]
    held_unc = held[~confident[held]]
    for key, idx in (("heldout_confident", held_conf), ("heldout_uncertain", held_unc), ("heldout_all", held)):
        report[key] = evaluate_model(eval_model, mb.data[idx], mb.targets[idx])
    report["frdeep_f_test"] = evaluate_model(eval_model, fd_test.data, fd_test.targets)
    for key, m in report.items():
        metrics[key] = {k: v for k, v in m.items() if k not in ("prob", "spread")}
        log.info("%s: n=%d accuracy %.3f AUC %.3f ECE %.3f", key, m["n"], m["accuracy"], m["roc_auc"], m["ece"])
    if args.cv:
        # folds over the pool's cutouts (FRDEEP-F always trains), scored on them: the recipe's spread
        # (one network per fold, even when the shipped model is an ensemble)
        pool = np.flatnonzero(in_pool)
        cv = cross_validate(
            X[pool],
            Y[pool],
            cfg,
            folds=args.cv,
            seed=args.seed,
            strata=Y[pool] * 3 + origin[pool] + is_conf[pool],
            weights=weights[pool],
            always_train=origin[pool] == 0,
            subsets={"confident": is_conf[pool], "uncertain": (origin[pool] == 1) & ~is_conf[pool]},
        )
        metrics["cross_validation"] = {
            "folds": cv["folds"],
            "scored": "the training pool's cutouts (FRDEEP-F always in training); one network per fold",
            "summary": cv["summary"],
            "pooled": {k: {kk: v[kk] for kk in ("n", "accuracy", "roc_auc", "ece")} for k, v in cv["pooled"].items()},
        }
        log.info("cross-validation: %s", metrics["cross_validation"])

    # 2. The shipped model: the same recipe on every usable cutout, held-out split included.
    if args.ship == "all":
        model, history = fit(
            np.flatnonzero(usable), "hybrids; cutouts also in FRDEEP-F", int((usable & (origin == 1)).sum())
        )
        shipped_test = evaluate_model(model, fd_test.data, fd_test.targets)
        metrics["shipped_frdeep_f_test"] = {k: v for k, v in shipped_test.items() if k not in ("prob", "spread")}
        metrics["shipped_validation"] = model.card["metrics"]["validation"]
        log.info("shipped model: FRDEEP-F test accuracy %.3f", shipped_test["accuracy"])
    else:
        model = eval_model
    model.card["metrics"] = metrics
    model.card["metrics_note"] = (
        "heldout_* and frdeep_f_test: the recipe trained without the held-out split (the evaluation model); "
        + (
            "the shipped model is the same recipe retrained with the held-out cutouts included"
            if args.ship == "all"
            else "the shipped model is that model"
        )
    )
    model.card["splits"] = {
        "heldout_seed": args.split_seed,
        "heldout_fraction": args.heldout,
        "n_heldout": len(held),
        "n_heldout_confident": len(held_conf),
        "n_cutouts_in_frdeep_f": int(dup.sum()),
    }
    ckpt = save_model(model, out / f"{args.name}.pt")

    rows = mb.rows
    role = np.full(len(rows), "train", dtype=object)
    role[held] = "heldout"
    role[dup] = "in_frdeep_f"
    role[dup_of_test] = "in_frdeep_f_test"
    splits = [
        {
            "ra_deg": float(catalog["ra_deg"][r]),
            "dec_deg": float(catalog["dec_deg"][r]),
            "fr_class": str(catalog["fr_class"][r]),
            "confidence": str(catalog["confidence"][r]),
            "role": role[i],
            "frdeep_overlap": round(float(overlap[i]), 3),
        }
        for i, r in enumerate(rows)
    ]
    (out / "splits.json").write_text(json.dumps(splits, indent=0) + "\n")
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    held_report = dict(report["heldout_confident"])
    write_report(out / "report", held_report, images=mb.data[held_conf], labels=mb.targets[held_conf], history=history)
    log.info("wrote %s in %.1f min", ckpt, (time.time() - t0) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
