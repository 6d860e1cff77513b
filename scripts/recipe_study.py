#!/usr/bin/env python
"""Compare training recipes by k-fold cross-validation on the data of ``scripts/train_default.py``.

The data, the held-out split and the pool are exactly the shipped recipe's
(:func:`train_default.prepare_pool`: FRDEEP-F train always in training, the
pool's MiraBest cutouts scored out of fold, the held-out split never read).
The data are loaded once and every recipe named runs its folds in this
process, one network per fold. For each recipe the table gives the pooled
out-of-fold accuracy of the confident and uncertain cutouts, ROC AUC and
ECE (confident), and the CPU-minutes it took (process time, all threads).

Recipes (:data:`RECIPES`):

- ``narrow-aligned``: the members' network and schedule of the shipped
  models (:data:`train_default.NARROW_ALIGNED_NET`: aligned ``cnn`` of
  width 16, 30 epochs);
- ``plain``: train_default.py's ``--recipe plain``
  (:data:`train_default.MEMBER`: :class:`frsurvey.model.networks.PlainCNN`,
  four double 3x3 blocks 24-128 channels on the image pooled 2x2, batch
  norm, global average pooling, dropout 0.3), 40 epochs, rotations by any
  angle plus flips, AdamW with warm-up and cosine decay, label smoothing
  0.05;
- ``plain-aligned``: the same on images turned to the standard orientation
  (invariant to the 8 dihedral transforms by construction);
- ``plain-long``: ``plain`` for 80 epochs;
- ``plain-soft``: ``plain`` with the uncertain cutouts as soft targets
  (label smoothing :data:`SOFT_TARGETS` in place of 0.05: 0.8 on their
  label, 0.2 on the other class).

Run from the repository root (``--workers 0`` and 2 threads on a 2-core CPU)::

    python scripts/recipe_study.py --recipes plain,plain-aligned --out recipe-study.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default import MEMBER, SHARED, prepare_pool
from train_default import RECIPES as TRAIN_DEFAULT_RECIPES

from frsurvey.training.evaluate import cross_validate, json_safe
from frsurvey.training.train import TrainConfig

log = logging.getLogger("recipe_study")

#: The recipes by name: the TrainConfig of one network (epochs, patience and seed are set per run).
RECIPES: dict[str, TrainConfig] = {
    **TRAIN_DEFAULT_RECIPES,
    "plain-aligned": replace(MEMBER, arch_kwargs={"align": True}),
    "plain-long": replace(MEMBER, epochs=80),
    "plain-soft": MEMBER,
}
#: Recipes whose uncertain cutouts are soft targets: their label smoothing.
SOFT_TARGETS: dict[str, float] = {"plain-soft": 0.4}
COLUMNS = ("confident", "uncertain")


def study(pool: dict, recipes: list[str], folds: int, seed: int, epochs: int | None, val_fraction: float) -> dict:
    """Return the cross-validation of each recipe on ``pool`` (from :func:`train_default.prepare_pool`)."""
    subsets = {"confident": pool["is_conf"], "uncertain": (pool["origin"] == 1) & ~pool["is_conf"]}
    out = {}
    for name in recipes:
        cfg = RECIPES[name]
        n_epochs = epochs or cfg.epochs
        cfg = replace(cfg, epochs=n_epochs, patience=n_epochs, seed=seed, val_fraction=val_fraction)
        smoothing = None
        if name in SOFT_TARGETS:
            smoothing = np.where(subsets["uncertain"], SOFT_TARGETS[name], cfg.label_smoothing)
        t_cpu, t_wall = time.process_time(), time.time()
        cv = cross_validate(
            pool["X"],
            pool["Y"],
            cfg,
            folds=folds,
            seed=seed,
            strata=pool["strata"],
            weights=pool["weights"],
            always_train=pool["origin"] == 0,
            subsets=subsets,
            smoothing=smoothing,
        )
        out[name] = {
            "config": {
                "arch": cfg.arch,
                "arch_kwargs": cfg.arch_kwargs,
                "epochs": n_epochs,
                "uncertain_smoothing": SOFT_TARGETS.get(name, cfg.label_smoothing),
            },
            "pooled": {
                k: {kk: v[kk] for kk in ("n", "accuracy", "accuracy_ci95", "roc_auc", "ece", "nll")}
                for k, v in cv["pooled"].items()
            },
            "summary": cv["summary"],
            "cpu_minutes": (time.process_time() - t_cpu) / 60,
            "wall_minutes": (time.time() - t_wall) / 60,
        }
        log.info("%s: %s", name, json.dumps(json_safe(out[name]["pooled"])))
    return out


def table(results: dict) -> str:
    """Return the study as a Markdown table."""
    lines = [
        "| recipe | confident acc. (95% CI) | uncertain acc. | ROC AUC (confident) | ECE (confident) | CPU-min |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c, u = r["pooled"]["confident"], r["pooled"]["uncertain"]
        lo, hi = c["accuracy_ci95"]
        lines.append(
            f"| {name} | {c['accuracy']:.3f} ({lo:.3f}-{hi:.3f}), n={c['n']} | {u['accuracy']:.3f} | "
            f"{c['roc_auc']:.3f} | {c['ece']:.3f} | {r['cpu_minutes']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data directory (default: %(default)s)")
    p.add_argument("--recipes", default="plain", help=f"comma-separated, of {', '.join(RECIPES)}")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override every recipe's epochs (a quick look)")
    p.add_argument("--variants", type=int, default=8, help="perturbed versions of each cutout (as the recipe)")
    p.add_argument("--heldout", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=20261202)
    p.add_argument("--cutout-weight", type=float, default=4.0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, help="write the results (JSON) and the table (.md beside it) here")
    args = p.parse_args(argv)
    names = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in names if r not in RECIPES]
    if unknown or not names:
        p.error(f"unknown recipe(s) {unknown}; choose of {', '.join(RECIPES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    pool = prepare_pool(args.data, args.variants, args.heldout, args.split_seed, args.cutout_weight)
    results = study(pool, names, args.folds, args.seed, args.epochs, args.val_fraction)
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(json_safe({"folds": args.folds, "recipes": results}), indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
