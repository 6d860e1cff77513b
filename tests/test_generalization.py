"""Issue 3's promises: augmentations, training from a catalog, metrics, calibration, architectures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from astropy.table import Table
from conftest import make_first_fits, run_cli, synthetic_cutout, synthetic_training_set

from frsurvey.image.preprocess import circle_mask, preprocess_first, to_model_input
from frsurvey.metrics import (
    binary_metrics,
    confusion_matrix,
    expected_calibration_error,
    reliability_curve,
    roc_auc,
)
from frsurvey.model.classifier import FRClassifier
from frsurvey.model.networks import ARCHITECTURES, D4Average, build_model, dihedral
from frsurvey.training.augment import RandomOrientation, perturb_cutout, rotate, source_extent
from frsurvey.training.datasets import LabeledCatalog, label_index
from frsurvey.training.train import TrainConfig, fit_temperature, train_model

# ----------------------------------------------------------------------------------------------
# Augmentations


@pytest.fixture(scope="module")
def batch():
    images, labels = synthetic_training_set(8, seed=3)
    return torch.from_numpy(to_model_input(images)), labels


@pytest.mark.parametrize("mode", ["continuous", "d4", "mixed"])
def test_orientation_keeps_shapes_labels_and_the_circle(batch, mode):
    x, labels = batch
    aug = RandomOrientation(max_shift=3, mode=mode, generator=torch.Generator().manual_seed(0))
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    outside = torch.from_numpy(~circle_mask())
    assert torch.all(y[:, 0][:, outside] == -1.0)  # background stays background
    assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    assert not torch.equal(x, y)  # it did something
    # labels are not the augmentation's business: the same images in the same order
    assert len(labels) == len(y)


def test_rotation_really_rotates(batch):
    x, _ = batch
    quarter = rotate(x, torch.full((len(x),), math.pi / 2))
    exact = {k: dihedral(x, k) for k in (1, 3)}
    # bilinear sampling at exactly 90 degrees lands on pixel centres: one of the exact quarter turns
    errors = {k: float((quarter - v).abs().max()) for k, v in exact.items()}
    assert min(errors.values()) < 1e-4, errors
    assert float((quarter - x).abs().max()) > 0.5
    # a full turn is the identity (up to interpolation at the very edge of the circle)
    full = rotate(x, torch.full((len(x),), 2 * math.pi))
    assert float((full - x).abs().mean()) < 1e-4


def test_d4_mode_only_permutes_pixels(batch):
    x, _ = batch
    aug = RandomOrientation(max_shift=0, mode="d4", generator=torch.Generator().manual_seed(1))
    y = aug(x)
    for a, b in zip(x, y):
        assert torch.equal(torch.sort(a.flatten()).values, torch.sort(b.flatten()).values)


def test_zoom_shrinks_but_not_below_the_floor(batch):
    x, _ = batch
    before = source_extent(x)
    aug = RandomOrientation(max_shift=0, mode="continuous", min_zoom=0.3, generator=torch.Generator().manual_seed(2))
    after = source_extent(aug(x))
    assert (after <= before + 3).all()  # never bigger (beyond a pixel or two of smoothing)
    assert (after < before - 1).any()  # and some really smaller
    assert (after >= 10).all()  # never shrunk to an unresolved blob


def test_perturbed_cutouts_are_fainter_or_shifted_but_still_canonical():
    rng = np.random.default_rng(0)
    raw = synthetic_cutout("FRII", np.random.default_rng(5))
    base = preprocess_first(raw)
    outs = [preprocess_first(perturb_cutout(raw, rng)) for _ in range(6)]
    for out in outs:
        assert out.shape == (150, 150) and out.dtype == np.uint8 and out.max() == 255
        assert (out[~circle_mask()] == 0).all()
    assert any(not np.array_equal(out, base) for out in outs)
    # fainter means fewer pixels above 3 sigma, on average
    assert np.mean([(o > 0).sum() for o in outs]) <= (base > 0).sum() * 1.05


# ----------------------------------------------------------------------------------------------
# Training from a labeled catalog: the same pixels as classify


def test_labeled_catalog_uses_classify_pixels(tmp_path):
    rng = np.random.default_rng(11)
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i, kind in enumerate(["FRI", "FRII", "FRII", "hybrid", ""]):
        ra, dec = 150.0 + i, 20.0 + i
        make_first_fits(images / f"x{rng.integers(1e9)}.fits", ra, dec, seed=i)
        rows.append((ra, dec, kind))
    rows.append((10.0, -60.0, "FRI"))  # no image there
    table = Table(rows=rows, names=["RA", "DEC", "label"])
    cat = tmp_path / "labeled.ecsv"
    table.write(cat)

    ds = LabeledCatalog(cat, images=images, label_column="label")
    assert len(ds) == 3
    assert ds.targets.tolist() == [0, 1, 1]
    assert ds.rows.tolist() == [0, 1, 2]
    assert ds.skipped == {"label:hybrid": 1, "label:": 1, "no_image": 1}

    # the images classify sees, through the same source and preprocessing
    from frsurvey.image.prepare import PreparedCutouts
    from frsurvey.sources import LocalFITSSource

    source = LocalFITSSource(images)
    keys = source.locate(np.array(table["RA"][:3], float), np.array(table["DEC"][:3], float))
    prepared = PreparedCutouts(source, keys)
    for k in range(3):
        _, img, status, _ = prepared[k]
        assert status == "ok"
        np.testing.assert_array_equal(img, ds.data[k])


def test_label_parsing():
    assert [label_index(v) for v in ["FRI", "fr ii", "FR2", "2", "I", " FRII ", "hybrid", "", None, b"FRI"]] == [
        0,
        1,
        1,
        1,
        0,
        1,
        None,
        None,
        None,
        0,
    ]


# ----------------------------------------------------------------------------------------------
# Metrics on tiny hand-made cases


def test_metrics_known_answers():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])  # one error each way
    m = binary_metrics(y, p)
    assert m["accuracy"] == 0.5
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["per_class"]["FRI"]["precision"] == 0.5 and m["per_class"]["FRII"]["recall"] == 0.5
    # AUC: pairs (pos, neg): (0.4,0.1) win, (0.4,0.6) lose, (0.9,0.1) win, (0.9,0.6) win -> 3/4
    assert roc_auc(y, p) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert confusion_matrix([0, 1, 1], [1, 1, 1]).tolist() == [[0, 1], [0, 2]]
    # calibration: confidences 0.9, 0.6, 0.6, 0.9; correct: yes, no, no, yes
    # bins (10 over 0.5..1): 0.6 -> acc 0 (conf 0.6), 0.9 -> acc 1 (conf 0.9)
    ece = expected_calibration_error(y, p)
    assert ece == pytest.approx(0.5 * abs(0 - 0.6) + 0.5 * abs(1 - 0.9))
    conf, acc, counts = reliability_curve(y, p)
    assert counts.sum() == 4
    assert acc[counts > 0].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(conf[counts > 0], [0.6, 0.9])
    # a perfectly calibrated, perfectly sure classifier has ECE 0
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_nll_and_per_class_support():
    m = binary_metrics(np.array([1, 1, 0]), np.array([0.5, 0.5, 0.5]))
    assert m["nll"] == pytest.approx(math.log(2))
    assert m["per_class"]["FRII"]["support"] == 2 and m["per_class"]["FRI"]["support"] == 1


# ----------------------------------------------------------------------------------------------
# Calibration


@pytest.mark.slow
def test_temperature_scaling_lowers_ece_on_an_overconfident_model():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 2, n)
    # true probability of class 1 is sigmoid(z); the model reports logits 4x too large
    z = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    logits = torch.tensor(np.stack([np.zeros(n), 4 * z], axis=1), dtype=torch.float32)
    before = expected_calibration_error(labels, torch.softmax(logits, 1)[:, 1].numpy())
    t = fit_temperature(logits, torch.from_numpy(labels))
    after = expected_calibration_error(labels, torch.softmax(logits / t, 1)[:, 1].numpy())
    assert t == pytest.approx(4.0, rel=0.15)
    assert after < before / 3 and after < 0.03


@pytest.mark.slow
def test_temperature_over_views():
    # 8 views that disagree: fitting on the averaged probabilities still lowers the NLL
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500)
    base = np.where(labels == 1, 2.0, -2.0)
    views = torch.tensor(
        np.stack([np.stack([np.zeros(500), 5 * (base + rng.normal(0, 2, 500))], 1) for _ in range(8)]),
        dtype=torch.float32,
    )
    t = fit_temperature(views, torch.from_numpy(labels))

    def nll(tt):
        p = torch.softmax(views / tt, -1).mean(0)[torch.arange(500), torch.from_numpy(labels)]
        return float(-torch.log(p).mean())

    assert nll(t) <= nll(1.0)


# ----------------------------------------------------------------------------------------------
# Architectures


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_runs(arch):
    kwargs = {"members": [{"arch": "cnn", "kwargs": {"width": 4}}] * 2} if arch == "ensemble" else {}
    net = build_model(arch, **kwargs).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 1, 150, 150))
    assert out.shape == (2, 2)


@pytest.mark.slow
def test_d4_model_is_exactly_invariant(batch):
    x, _ = batch
    net = build_model("d4cnn", width=4).eval()
    with torch.inference_mode():
        ref = net(x)
        for k in range(8):
            torch.testing.assert_close(net(dihedral(x, k)), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_tta_predictions_average_the_views(batch):
    x, _ = batch
    torch.manual_seed(0)
    net = build_model("cnn", width=4).eval()
    model = FRClassifier(net, {"tta": True, "temperature": 1.0}).eval()
    probs, spread = model.predict(x)
    with torch.inference_mode():
        views = torch.stack([torch.softmax(net(dihedral(x, k)), 1) for k in range(8)])
    torch.testing.assert_close(probs, views.mean(0))
    torch.testing.assert_close(spread, views[..., 1].std(0))
    torch.testing.assert_close(probs.sum(1), torch.ones(len(x)))
    # and the answer is the same for every orientation of the input
    for k in range(8):
        torch.testing.assert_close(model.predict(dihedral(x, k))[0], probs, atol=1e-5, rtol=1e-4)
    assert not isinstance(net, D4Average)


@pytest.mark.slow
def test_weights_steer_sampling():
    images, labels = synthetic_training_set(16, seed=4)
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 2, "stem_stride": 2}, epochs=1, batch_size=8, seed=0)
    weights = np.ones(len(labels))
    model, hist = train_model(images, labels, cfg, weights=weights)
    assert len(hist["train_loss"]) == 1 and model.card["n_train"] + model.card["n_val"] == 16


# ----------------------------------------------------------------------------------------------
# frsurvey evaluate


@pytest.mark.slow
def test_evaluate_cli_writes_json_and_figures(tmp_path, model_path, frdeep_root):
    out = tmp_path / "eval"
    r = run_cli(
        "evaluate", "--model", model_path, "--dataset", "frdeep-f", "--data-root", frdeep_root, "--out-dir", out
    )
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 50 and 0 <= metrics["accuracy"] <= 1
    assert len(metrics["prob"]) == 50
    for name in ("confusion", "roc", "reliability", "misclassified", "training"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy" in r.stderr


@pytest.mark.slow
def test_cross_validation_cli(tmp_path, first_cutouts):
    out = tmp_path / "cv"
    r = run_cli(
        "evaluate",
        "--catalog",
        first_cutouts / "catalog.csv",
        "--images",
        first_cutouts / "fits",
        "--cv",
        "2",
        "--epochs",
        "1",
        "--width",
        "2",
        "--out-dir",
        out,
    )
    assert r.returncode == 0, r.stderr
    cv = json.loads((out / "metrics.json").read_text())
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    assert set(cv["summary"]) >= {"accuracy", "roc_auc", "ece"}
    assert sum(f["n"] for f in cv["per_fold"]) == 295  # 301 rows less 6 hybrids
    assert "6 label:hybrid" in r.stderr or "label:hybrid" in r.stderr


@pytest.mark.slow
def test_ensemble_averages_its_members_and_reloads(tmp_path):
    from frsurvey.model.checkpoint import load_model, save_model
    from frsurvey.training.ensemble import train_ensemble

    images, labels = synthetic_training_set(24, seed=6)
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 2, "stem_stride": 2}, epochs=1, batch_size=8, seed=3)
    model, histories = train_ensemble(images, labels, cfg, members=2)
    assert len(histories) == 2 and model.card["arch"] == "ensemble"
    x = torch.from_numpy(to_model_input(images[:4]))
    with torch.inference_mode():
        members = torch.stack([torch.softmax(m(x), 1) for m in model.net.members]).mean(0)
        torch.testing.assert_close(torch.softmax(model.net(x), 1), members)
    path = save_model(model, tmp_path / "ens.pt")
    again = load_model(path)
    torch.testing.assert_close(again.predict(x)[0], model.predict(x)[0])
