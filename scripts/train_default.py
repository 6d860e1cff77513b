#!/usr/bin/env python
"""Train frsurvey's shipped models, reproducibly, from the data in ../shared/data.

Two checkpoints come out of one run:

- ``frsurvey-accurate.pt`` (``--model accurate``): the teacher, an
  ensemble of networks of the ``--recipe`` (:data:`RECIPES`). By default
  (``--teacher members``, how the shipped files were made) ``--members``
  networks of the ``narrow-aligned`` recipe (:data:`NARROW_ALIGNED_NET`, the
  winner of the recipe study by cross-validation; 30 epochs) trained on the
  pool with seeds 0, 1, ..., calibrated on its validation split. With
  ``--teacher folds`` the teacher is the ensemble of the ``--cv`` fold
  networks of the cross-validation below, temperature fitted on their
  out-of-fold views (:func:`frsurvey.training.ensemble.fold_ensemble`), so the
  CV figure and the teacher come from one set of trainings. A recipe whose
  networks are not turned to the standard orientation (``plain``:
  :data:`MEMBER`) is averaged over the 8 dihedral views, and its
  ``FR_UNCERTAINTY`` is the spread over them; aligned networks are
  invariant and run once, and ``FR_UNCERTAINTY`` is their spread.
- ``frsurvey-default.pt`` (``--model default``, what ``classify`` uses): one
  network, one forward pass per source. It turns every image into a
  standard orientation first (:func:`frsurvey.model.networks.align_orientation`),
  so it is invariant to the 8 rotations by 90 degrees and mirror images by
  construction and needs no test-time augmentation. It is distilled from
  the teacher (its probabilities on heavily augmented cutouts, the
  ensemble run once per batch) and has a second output, trained to
  predict how much the teacher's networks disagree: its ``FR_UNCERTAINTY``.

The recipe:

1. FRDEEP-F (550 train / 50 test) from its published archive, md5-checked,
   with the canonical circular mask.
2. The labeled MiraBest FIRST cutouts of ``first-cutouts/`` and
   ``mirabest-more/`` (tile-compressed), through the same image source and
   canonical preprocessing as ``frsurvey classify`` (hybrids skipped), each
   also in ``--variants`` physically perturbed versions (fainter by up to
   3x, shifted by up to 4 px, before the preprocessing).
3. Cutouts that are also in FRDEEP-F (the same source: overlap of the
   above-3-sigma pixels >= 0.85, allowing shifts of 4 px) are found; they
   never train and are never held out (their FRDEEP-F copies train).
4. The held-out split: ``--heldout`` (20%) of the other cutouts, stratified
   by MiraBest class code (class, confidence, morphology), with a fixed
   seed. Never used for training, for choosing anything, or for calibration;
   reported once, at the end.
5. The pool (FRDEEP-F train + the other cutouts): with ``--cv`` (off by
   default), a cross-validation of the recipe over the pool's cutouts
   (FRDEEP-F always trains), the figure every recipe choice was made on
   (``scripts/recipe_study.py``). A stratified validation split of the pool
   chooses the epochs and calibrates the temperatures; the teacher's
   members (``--teacher members``) and the student train on the rest.
6. Metrics of both models on the held-out split (confident, uncertain, all,
   with 95% intervals) and on FRDEEP-F test, their agreement, and the
   checkpoints, ``metrics.json``, ``splits.json`` and figures (reliability
   diagram of the default on the held-out confident sources) in ``--out-dir``.

The shipped models are the ones trained here on the pool, so the held-out
figures are their own. Run from the repository root:
``python scripts/train_default.py`` (see ``checkpoints/README.md`` for the
time it takes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from frsurvey.model.checkpoint import file_sha256, save_model
from frsurvey.model.classifier import FRClassifier
from frsurvey.training.data import frdeep_data
from frsurvey.training.datasets import LabeledCatalog, find_duplicates
from frsurvey.training.ensemble import fold_ensemble, train_ensemble
from frsurvey.training.evaluate import cross_validate, evaluate_model, json_safe, predict, write_report
from frsurvey.training.train import TrainConfig, split_stratified, train_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FOLDERS = ("first-cutouts", "mirabest-more")
log = logging.getLogger("train_default")

#: The members' network of the shipped models (aligned ``cnn`` of width 16; 30 epochs).
NARROW_ALIGNED_NET = {
    "width": 16,
    "stem_stride": 2,
    "stem_pool": True,
    "radial": True,
    "center_zoom": 3,
    "align": True,
    "head_pool": 3,
}
#: The plain recipe of issue 19 (epochs, patience, seed and validation share are set per run).
MEMBER = TrainConfig(
    arch="plain",
    epochs=40,
    lr=2e-3,
    weight_decay=5e-4,
    warmup_epochs=3,
    orientation="mixed",
    label_smoothing=0.05,
    tta=False,
)
#: The recipes of the teacher's networks by name (``--recipe``); the first is the default, the CV winner.
RECIPES: dict[str, TrainConfig] = {
    "narrow-aligned": TrainConfig(arch="cnn", arch_kwargs=NARROW_ALIGNED_NET, epochs=30, lr=2e-3, tta=False),
    "plain": MEMBER,
}
#: The student's network per recipe: the members' turned to the standard orientation, with the spread head.
STUDENT_NETS: dict[str, dict] = {
    "narrow-aligned": {**NARROW_ALIGNED_NET, "spread_head": True},
    "plain": {"align": True, "spread_head": True},
}


def load_cutouts(data: Path, variants: int, seed: int) -> dict[str, np.ndarray]:
    """Return the labeled MiraBest cutouts of every folder, prepared as ``classify`` prepares them."""
    parts: dict[str, list] = {
        k: [] for k in ("data", "variants", "y", "confident", "code", "las", "ra", "dec", "folder")
    }
    for i, folder in enumerate(FOLDERS):
        path = data / folder / "catalog.csv"
        if not path.exists():
            raise SystemExit(f"{path} is missing: this recipe needs ../shared/data/{folder}")
        catalog = Table.read(path)
        mb = LabeledCatalog(
            catalog, images=data / folder / "fits", label_column="fr_class", variants=variants, seed=seed + i
        )
        rows = mb.rows
        parts["data"].append(mb.data)
        parts["variants"].append(mb.variants if variants else np.zeros((len(rows), 0, *mb.data.shape[1:]), np.uint8))
        parts["y"].append(mb.targets)
        parts["confident"].append(np.array([catalog["confidence"][r] == "confident" for r in rows]))
        parts["code"].append(np.array([int(catalog["mirabest_class"][r]) for r in rows]))
        parts["las"].append(np.array([float(catalog["las_arcsec"][r]) for r in rows]))
        parts["ra"].append(np.array([float(catalog["ra_deg"][r]) for r in rows]))
        parts["dec"].append(np.array([float(catalog["dec_deg"][r]) for r in rows]))
        parts["folder"].append(np.full(len(rows), folder))
        log.info("%s: %d labeled cutouts (%s skipped)", folder, len(rows), mb.skipped)
    return {k: np.concatenate(v) for k, v in parts.items()}


def agreement(p_a: np.ndarray, p_b: np.ndarray) -> dict[str, float]:
    """Return how two models' P(FRII) agree: same class, largest and mean absolute difference."""
    return {
        "n": len(p_a),
        "same_class": float(np.mean((p_a >= 0.5) == (p_b >= 0.5))) if len(p_a) else float("nan"),
        "max_abs_diff": float(np.max(np.abs(p_a - p_b))) if len(p_a) else float("nan"),
        "mean_abs_diff": float(np.mean(np.abs(p_a - p_b))) if len(p_a) else float("nan"),
    }


def prepare_pool(data: Path, variants: int, heldout: float, split_seed: int, cutout_weight: float) -> dict:
    """Return the recipe's data: FRDEEP-F, the MiraBest cutouts, the held-out split and the pool's items.

    Keys: ``fd_train``, ``fd_test``, ``mb`` (:func:`load_cutouts`), ``dup``,
    ``match``, ``overlap``, ``dup_of_test`` (cutouts also in FRDEEP-F),
    ``usable``, ``held``, ``pool_mb`` (indices into ``mb``), and the pool's
    items ``X`` (FRDEEP-F train repeated, then the pool's cutouts with their
    variants), ``Y``, ``origin`` (0 FRDEEP-F, 1 cutout), ``is_conf``,
    ``weights`` and ``strata`` (-1 for FRDEEP-F, else the MiraBest class code).
    """
    with tempfile.TemporaryDirectory() as tmp:
        archive = data / "frdeep-f" / "FIRST_PNG_dataset.tar.gz"
        fd_train = frdeep_data(tmp, "train", download=True, url=str(archive))
        fd_test = frdeep_data(tmp, "test")
    mb = load_cutouts(data, variants, seed=1)

    reference = np.concatenate([fd_train.images, fd_test.images])
    in_test = np.r_[np.zeros(len(fd_train.labels), bool), np.ones(len(fd_test.labels), bool)]
    dup, match, overlap = find_duplicates(mb["data"], reference)
    dup_of_test = dup & in_test[match]
    log.info("%d cutouts are also in FRDEEP-F (%d of them in its test set)", dup.sum(), dup_of_test.sum())

    usable = np.flatnonzero(~dup)
    held = usable[split_stratified(mb["code"][usable], heldout, split_seed)[1]]
    pool_mb = np.setdiff1d(usable, held)
    log.info(
        "held out %d cutouts (%d confident); pool %d cutouts", len(held), mb["confident"][held].sum(), len(pool_mb)
    )

    # Items: FRDEEP-F train (one version, repeated) + the pool's cutouts (the image and its variants).
    versions = 1 + variants
    X = np.concatenate(
        [
            np.repeat(fd_train.images[:, None], versions, axis=1),
            np.concatenate([mb["data"][:, None], mb["variants"]], 1)[pool_mb],
        ]
    )
    Y = np.concatenate([fd_train.labels, mb["y"][pool_mb]])
    origin = np.r_[np.zeros(len(fd_train.labels), int), np.ones(len(pool_mb), int)]
    is_conf = np.r_[np.zeros(len(fd_train.labels), bool), mb["confident"][pool_mb]]
    weights = np.where(origin == 1, cutout_weight, 1.0)
    strata = np.r_[np.full(len(fd_train.labels), -1), mb["code"][pool_mb]]
    return {
        "fd_train": fd_train,
        "fd_test": fd_test,
        "mb": mb,
        "dup": dup,
        "match": match,
        "overlap": overlap,
        "dup_of_test": dup_of_test,
        "usable": usable,
        "held": held,
        "pool_mb": pool_mb,
        "X": X,
        "Y": Y,
        "origin": origin,
        "is_conf": is_conf,
        "weights": weights,
        "strata": strata,
    }


def cross_validation(
    X: np.ndarray, Y: np.ndarray, cfg: TrainConfig, args, pool: dict, subsets: dict, keep_models: bool
) -> dict:
    """Return :func:`cross_validate` of ``cfg`` over the pool's cutouts, with ``metrics`` for the model card."""
    cv = cross_validate(
        X,
        Y,
        cfg,
        folds=args.cv,
        seed=args.seed,
        strata=pool["strata"],
        weights=pool["weights"],
        always_train=pool["origin"] == 0,
        subsets=subsets,
        keep_models=keep_models,
    )
    cv["metrics"] = {
        "folds": cv["folds"],
        "recipe": args.recipe,
        "scored": "the pool's cutouts (FRDEEP-F always in training); one network of the recipe per fold, one view",
        "summary": cv["summary"],
        "pooled": {
            k: {kk: v[kk] for kk in ("n", "accuracy", "accuracy_ci95", "roc_auc", "ece", "nll")}
            for k, v in cv["pooled"].items()
        },
    }
    log.info("cross-validation: %s", json.dumps(json_safe(cv["metrics"]["pooled"])))
    return cv


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED), help="the shared data directory (default: %(default)s)")
    p.add_argument("--out-dir", default=str(ROOT / "checkpoints"), help="where to write (default: %(default)s)")
    p.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default=next(iter(RECIPES)),
        help="the teacher's networks (default: %(default)s, the winner of the recipe study by CV)",
    )
    p.add_argument("--epochs", type=int, help="epochs per network (default: the recipe's)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    p.add_argument("--cutout-weight", type=float, default=4.0, help="sampling weight of a cutout vs a FRDEEP-F image")
    p.add_argument("--variants", type=int, default=8, help="perturbed versions of each cutout (default: %(default)s)")
    p.add_argument("--heldout", type=float, default=0.2, help="held-out share of the cutouts (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=20261202, help="seed of the held-out split")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of the pool")
    p.add_argument("--seed", type=int, default=0, help="seed of the first network (default: %(default)s)")
    p.add_argument(
        "--teacher",
        choices=["members", "folds"],
        default="members",
        help="members: --members networks trained on the pool (how the shipped files were made); "
        "folds: the cross-validation's fold networks, calibrated out of fold (default: %(default)s)",
    )
    p.add_argument("--members", type=int, default=5, help="networks of a members teacher (default: %(default)s)")
    p.add_argument("--cv", type=int, default=0, help="folds of the cross-validation (0: none; default: %(default)s)")
    p.add_argument("--distill-epochs", type=int, default=30, help="epochs of the student (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.cv == 1 or args.cv < 0:
        p.error("--cv must be 0 (none) or at least 2")
    if args.teacher == "folds" and not args.cv:
        p.error("--teacher folds needs --cv (at least 2): the teacher is the cross-validation's fold networks")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    data = Path(args.data)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    pool = prepare_pool(data, args.variants, args.heldout, args.split_seed, args.cutout_weight)
    fd_train, fd_test, mb = pool["fd_train"], pool["fd_test"], pool["mb"]
    dup, overlap, dup_of_test = pool["dup"], pool["overlap"], pool["dup_of_test"]
    usable, held, pool_mb = pool["usable"], pool["held"], pool["pool_mb"]
    X, Y, origin, is_conf, weights = pool["X"], pool["Y"], pool["origin"], pool["is_conf"], pool["weights"]
    n_mb = len(mb["y"])

    recipe = RECIPES[args.recipe]
    epochs = args.epochs or recipe.epochs
    cfg = replace(recipe, epochs=epochs, patience=epochs, lr=args.lr, seed=args.seed, val_fraction=args.val_fraction)
    invariant = bool(cfg.arch_kwargs.get("align"))  # aligned networks see the 8 views alike: no TTA
    metrics: dict = {}
    subsets = {"confident": is_conf, "uncertain": (origin == 1) & ~is_conf}
    cv = {}
    if args.cv:
        cv = cross_validation(X, Y, cfg, args, pool, subsets, keep_models=args.teacher == "folds")
        metrics["cross_validation"] = cv["metrics"]
        log.info("cross-validation done (%.1f min)", (time.time() - t0) / 60)
    tr, va = split_stratified(Y * 2 + origin, args.val_fraction, args.seed)
    card = {
        "training_data": [
            *fd_train.cards,
            {
                "name": "MiraBest FIRST cutouts (../shared/data/first-cutouts and mirabest-more)",
                "n": int((origin == 1).sum()),
                "variants_per_image": args.variants,
                "sampling_weight": args.cutout_weight,
                "catalog_sha256": {f: file_sha256(data / f / "catalog.csv") for f in FOLDERS},
                "excluded": "hybrids; the held-out split; cutouts also in FRDEEP-F",
            },
        ],
        "recipe": "scripts/train_default.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.teacher == "folds":
        teacher = fold_ensemble(
            cv, X, Y, cfg, tta=not invariant, card={**card, "name": "frsurvey-accurate"}, subsets=subsets
        )
        for name in subsets:
            m = teacher.card["metrics"][f"out_of_fold_{name}"]
            log.info("out of fold, as the teacher sees them, %s: n=%d accuracy %.3f", name, m["n"], m["accuracy"])
    else:
        teacher, _ = train_ensemble(
            X[tr],
            Y[tr],
            replace(cfg, tta=not invariant),
            members=args.members,
            val_images=X[va][:, 0],
            val_labels=Y[va],
            weights=weights[tr],
            card={**card, "name": "frsurvey-accurate"},
        )
    log.info("teacher trained (%.1f min)", (time.time() - t0) / 60)
    # The same networks, run once per (already randomly turned) training batch: 5 forwards, not 40.
    one_pass_teacher = FRClassifier(teacher.net, {"tta": False, "uncertainty": "members"}).eval()
    one_pass_teacher.temperature.copy_(teacher.temperature)
    student_cfg = replace(
        cfg,
        arch_kwargs=dict(STUDENT_NETS[args.recipe]),
        epochs=args.distill_epochs,
        patience=args.distill_epochs,
    )
    student, history = train_model(
        X[tr],
        Y[tr],
        student_cfg,
        val_images=X[va][:, 0],
        val_labels=Y[va],
        weights=weights[tr],
        card={**card, "name": "frsurvey-default"},
        teacher=one_pass_teacher,
    )
    log.info("student trained (%.1f min)", (time.time() - t0) / 60)

    held_conf = held[mb["confident"][held]]
    held_unc = held[~mb["confident"][held]]
    results: dict[str, dict] = {"default": {}, "accurate": {}}
    for name, model in (("default", student), ("accurate", teacher)):
        for key, idx in (("heldout_confident", held_conf), ("heldout_uncertain", held_unc), ("heldout_all", held)):
            results[name][key] = evaluate_model(model, mb["data"][idx], mb["y"][idx])
        results[name]["frdeep_f_test"] = evaluate_model(model, fd_test.images, fd_test.labels)
        for key, m in results[name].items():
            log.info(
                "%s %s: n=%d accuracy %.3f AUC %.3f ECE %.3f", name, key, m["n"], m["accuracy"], m["roc_auc"], m["ece"]
            )
    p_student, _ = predict(student, mb["data"][usable])
    p_teacher, _ = predict(teacher, mb["data"][usable])
    metrics["agreement_default_accurate"] = agreement(p_student, p_teacher)
    metrics["agreement_default_accurate"]["on"] = "every usable cutout (held-out and pool)"
    metrics["splits"] = {
        "heldout_seed": args.split_seed,
        "heldout_fraction": args.heldout,
        "n_heldout": len(held),
        "n_heldout_confident": len(held_conf),
        "n_pool_cutouts": len(pool_mb),
        "n_cutouts_in_frdeep_f": int(dup.sum()),
    }
    metrics["minutes"] = (time.time() - t0) / 60
    for name, model in (("default", student), ("accurate", teacher)):
        own = {key: {k: v for k, v in m.items() if k not in ("prob", "spread")} for key, m in results[name].items()}
        model.card["metrics"] = {**model.card["metrics"], **metrics, **own}  # + validation or out_of_fold
        model.card["metrics_note"] = "heldout_*: the held-out split, never used for training or for any choice"
        save_model(model, out / f"frsurvey-{name}.pt")
    all_metrics = {"default": {}, "accurate": {}}
    for name in all_metrics:
        all_metrics[name] = {
            key: {k: v for k, v in m.items() if k not in ("prob",)} for key, m in results[name].items()
        }
    (out / "metrics.json").write_text(json.dumps(json_safe({**metrics, "models": all_metrics}), indent=2) + "\n")

    role = np.full(n_mb, "train", dtype=object)
    role[held] = "heldout"
    role[dup] = "in_frdeep_f"
    role[dup_of_test] = "in_frdeep_f_test"
    splits = [
        {
            "folder": str(mb["folder"][i]),
            "ra_deg": float(mb["ra"][i]),
            "dec_deg": float(mb["dec"][i]),
            "mirabest_class": int(mb["code"][i]),
            "role": role[i],
            "frdeep_overlap": round(float(overlap[i]), 3),
        }
        for i in range(n_mb)
    ]
    (out / "splits.json").write_text(json.dumps(splits, indent=0) + "\n")
    write_report(
        out / "report",
        dict(results["default"]["heldout_confident"]),
        images=mb["data"][held_conf],
        labels=mb["y"][held_conf],
        history=history,
    )
    log.info(
        "wrote %s and %s in %.1f min",
        out / "frsurvey-default.pt",
        out / "frsurvey-accurate.pt",
        (time.time() - t0) / 60,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
