"""The shipped model's recipe (scripts/train_default.py) runs end to end on the real data, in miniature."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from frsurvey.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_writes_a_loadable_model_its_metrics_and_clean_splits(tmp_path, shared_data):
    args = ["--epochs", "1", "--variants", "0", "--members", "1", "--cv", "0", "--width", "4"]
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_default.py"), "--data", str(shared_data),
         "--out-dir", str(tmp_path), *args],
        check=True, cwd=tmp_path, capture_output=True, timeout=900,
    )  # fmt: skip
    model = load_model(tmp_path / "frsurvey-default.pt")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for part in ("heldout_confident", "heldout_uncertain", "frdeep_f_test", "shipped_frdeep_f_test"):
        assert 0.0 <= metrics[part]["accuracy"] <= 1.0 and metrics[part]["n"] > 0
    assert model.card["metrics"]["heldout_confident"]["n"] == metrics["heldout_confident"]["n"]
    splits = json.loads((tmp_path / "splits.json").read_text())
    roles = [s["role"] for s in splits]
    # hybrids are not used; every other cutout has one role; the held-out ones are never FRDEEP-F's
    assert len(splits) == 295 and set(roles) <= {"train", "heldout", "in_frdeep_f", "in_frdeep_f_test"}
    held = [s for s in splits if s["role"] == "heldout"]
    assert len(held) == metrics["heldout_all"]["n"] and all(s["frdeep_overlap"] < 0.85 for s in held)
    assert np.isclose(len(held) / sum(r != "in_frdeep_f" and r != "in_frdeep_f_test" for r in roles), 0.35, atol=0.01)
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 0
