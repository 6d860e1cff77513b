"""The shipped models' recipe (scripts/train_default.py) runs end to end on the real data, in miniature."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from frsurvey.model.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_recipe_writes_both_models_their_metrics_and_clean_splits(tmp_path, shared_data):
    # the default recipe (the shipped files'), with the cross-validation on and a smaller teacher
    args = [
        "--epochs",
        "1",
        "--distill-epochs",
        "1",
        "--variants",
        "0",
        "--cv",
        "2",
        "--members",
        "2",
        "--threads",
        "1",
    ]
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_default.py"), "--data", str(shared_data),
         "--out-dir", str(tmp_path), *args],
        check=True, cwd=tmp_path, capture_output=True, timeout=900,
    )  # fmt: skip
    default = load_model(tmp_path / "frsurvey-default.pt")
    accurate = load_model(tmp_path / "frsurvey-accurate.pt")
    assert default.views == 1 and default.uncertainty == "distilled"
    # the teacher: 2 aligned networks trained on the pool (invariant: one view each), calibrated on its validation split
    assert accurate.views == 1 and accurate.uncertainty == "members" and len(accurate.net.members) == 2
    assert accurate.net.members[0].view.align and default.net.view.align
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    cv = metrics["cross_validation"]
    assert cv["recipe"] == "narrow-aligned" and cv["folds"] == 2
    assert cv["pooled"]["all"]["n"] == metrics["splits"]["n_pool_cutouts"]
    assert cv["pooled"]["confident"]["n"] + cv["pooled"]["uncertain"]["n"] == cv["pooled"]["all"]["n"]
    assert accurate.card["metrics"]["validation"]["n"] > 0
    assert default.card["metrics"]["validation"]["n"] > 0
    for name in ("default", "accurate"):
        for part in ("heldout_confident", "heldout_uncertain", "heldout_all", "frdeep_f_test"):
            m = metrics["models"][name][part]
            assert 0.0 <= m["accuracy"] <= 1.0 and m["n"] > 0
            lo, hi = m["accuracy_ci95"]
            assert lo <= m["accuracy"] <= hi
    assert default.card["metrics"]["heldout_confident"]["n"] == metrics["models"]["default"]["heldout_confident"]["n"]
    assert 0.0 <= metrics["agreement_default_accurate"]["same_class"] <= 1.0
    splits = json.loads((tmp_path / "splits.json").read_text())
    roles = [s["role"] for s in splits]
    # hybrids are not used; every other cutout of both folders has one role; the held-out ones are never FRDEEP-F's
    assert len(splits) == 295 + 519 and set(roles) <= {"train", "heldout", "in_frdeep_f", "in_frdeep_f_test"}
    assert {s["folder"] for s in splits} == {"first-cutouts", "mirabest-more"}
    held = [s for s in splits if s["role"] == "heldout"]
    assert len(held) == metrics["models"]["default"]["heldout_all"]["n"] and all(
        s["frdeep_overlap"] < 0.85 for s in held
    )
    usable = sum(r in ("train", "heldout") for r in roles)
    assert np.isclose(len(held) / usable, 0.2, atol=0.02)
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 0


@pytest.mark.slow
def test_the_recipe_study_cross_validates_each_recipe_and_tabulates_it():
    """scripts/recipe_study.py on a small pool of synthetic images: real folds, real training, one epoch."""
    from conftest import synthetic_training_set

    sys.path.insert(0, str(ROOT / "scripts"))
    import recipe_study

    images, labels = synthetic_training_set(48, seed=5)
    origin = np.r_[np.zeros(12, int), np.ones(36, int)]
    pool = {
        "X": images,
        "Y": labels,
        "origin": origin,
        "is_conf": (origin == 1) & (np.arange(48) % 3 != 0),
        "weights": np.where(origin == 1, 4.0, 1.0),
        "strata": np.where(origin == 1, labels, -1),
    }
    results = recipe_study.study(
        pool, ["plain", "plain-aligned", "plain-soft"], folds=2, seed=0, epochs=1, val_fraction=0.2
    )
    assert list(results) == ["plain", "plain-aligned", "plain-soft"]
    for r in results.values():
        assert r["config"]["epochs"] == 1 and r["cpu_minutes"] > 0
        assert r["pooled"]["confident"]["n"] == 24 and r["pooled"]["uncertain"]["n"] == 12
        assert 0 <= r["pooled"]["confident"]["accuracy"] <= 1
    assert results["plain-soft"]["config"]["uncertain_smoothing"] == 0.4
    assert results["plain"]["config"]["uncertain_smoothing"] == 0.05
    text = recipe_study.table(results)
    assert text.count("\n") == 4 and "| plain-aligned |" in text
