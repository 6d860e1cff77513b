"""Training for real (a few epochs on tiny data), checkpoints and their model card, and `frsurvey train`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import run_cli, synthetic_training_set

from frsurvey.image.preprocess import PREPROCESSING, PREPROCESSING_VERSION, to_model_input
from frsurvey.model.checkpoint import CheckpointError, load_model, save_model, weights_sha256
from frsurvey.model.classifier import FRClassifier
from frsurvey.model.networks import CLASSES
from frsurvey.training.train import TrainConfig, _optimizer, learning_failure, lr_schedule, train_model, training_config


@pytest.fixture(scope="module")
def easy_data():
    return synthetic_training_set(64, seed=11)


@pytest.fixture(scope="module")
def trained(easy_data):
    images, labels = easy_data
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 4}, epochs=3, batch_size=16, device="cpu", seed=3)
    return train_model(images, labels, cfg, card={"name": "tiny"})


@pytest.mark.slow
def test_training_lowers_the_loss(trained):
    model, history = trained
    losses = history["train_loss"]
    assert len(losses) == 3
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert set(history) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "best_epoch"}
    assert 1 <= history["best_epoch"] <= 3
    assert isinstance(model, FRClassifier)
    assert not any(m.training for m in model.net.modules())  # BN and dropout in evaluation mode


@pytest.mark.slow
def test_trained_model_reports_evaluation_mode(trained):
    model, _ = trained
    assert not model.training


@pytest.mark.slow
def test_checkpoint_reloads_with_identical_predictions(trained, easy_data, tmp_path):
    model, _ = trained
    path = save_model(model, tmp_path / "sub" / "m.pt")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left
    again = load_model(path)
    assert isinstance(again, FRClassifier) and not again.training
    x = torch.from_numpy(to_model_input(easy_data[0][:20]))
    p1, s1 = model.predict(x)
    p2, s2 = again.predict(x)
    np.testing.assert_array_equal(p1.numpy(), p2.numpy())
    np.testing.assert_array_equal(s1.numpy(), s2.numpy())
    assert p1.shape == (20, 2) and s1.shape == (20,)
    np.testing.assert_allclose(p1.sum(1).numpy(), 1.0, rtol=1e-6)
    assert float(again.temperature) == pytest.approx(float(model.temperature))


@pytest.mark.slow
def test_model_card(trained, tmp_path):
    model, _ = trained
    path = save_model(model, tmp_path / "m.pt")
    card = load_model(path).card
    assert card["arch"] == "cnn" and card["arch_kwargs"] == {"width": 4}
    assert card["name"] == "tiny"
    assert card["classes"] == list(CLASSES) == ["FRI", "FRII"]
    assert card["preprocessing"] == PREPROCESSING and card["preprocessing_version"] == PREPROCESSING_VERSION
    assert set(card["versions"]) >= {"frsurvey", "torch", "numpy", "astropy", "python"}
    assert card["versions"]["torch"] == torch.__version__
    assert card["seed"] == 3
    assert card["config"]["epochs"] == 3
    assert "validation" in card["metrics"] and "accuracy" in card["metrics"]["validation"]
    assert card["n_train"] + card["n_val"] == 64
    assert card["temperature"] > 0
    blob = torch.load(path, weights_only=True)
    assert card["weights_sha256"] == weights_sha256(blob["state_dict"])
    assert len(card["weights_sha256"]) == 64


@pytest.mark.slow
def test_same_seed_same_weights(easy_data):
    images, labels = easy_data
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 4}, epochs=1, batch_size=16, device="cpu", seed=5)
    a, _ = train_model(images[:32], labels[:32], cfg)
    b, _ = train_model(images[:32], labels[:32], cfg)
    assert weights_sha256(a.net.state_dict()) == weights_sha256(b.net.state_dict())


@pytest.mark.slow
def test_same_weights_with_a_progress_bar_or_without_and_with_workers_or_without(easy_data, capsys):
    """The bar once opened a second DataLoader iterator, which drew a seed from the RNGs and changed the weights."""
    images, labels = easy_data
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 4}, epochs=1, batch_size=16, device="cpu", seed=5)
    plain, _ = train_model(images[:48], labels[:48], cfg)
    with_bar, _ = train_model(images[:48], labels[:48], cfg, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err  # the bar was drawn
    workers, _ = train_model(images[:48], labels[:48], replace(cfg, workers=1), progress=True)
    expected = weights_sha256(plain.net.state_dict())
    assert weights_sha256(with_bar.net.state_dict()) == expected
    assert weights_sha256(workers.net.state_dict()) == expected


def _old_lr(epoch: int, cfg: TrainConfig) -> float:
    """The learning rate of an epoch as train_model once computed it by hand (before torch's schedulers)."""
    if cfg.schedule == "none":
        factor = 1.0
    elif epoch < cfg.warmup_epochs:
        factor = (epoch + 1) / (cfg.warmup_epochs + 1)
    else:
        t = (epoch - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1)
        factor = 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return cfg.lr * factor


@pytest.mark.parametrize("schedule", ["cosine", "none"])
@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "adagrad"])
def test_the_lr_schedule_gives_the_hand_written_rates_at_every_epoch(schedule, optimizer):
    """torch's schedulers give the formula's rates to the last bit (a rounding error would change the weights)."""
    for epochs in (1, 2, 3, 7, 30, 40):
        for warmup in (0, 1, 2, 5):
            for lr in (2e-3, 1e-3, 0.1, 3.7e-4):
                cfg = TrainConfig(epochs=epochs, warmup_epochs=warmup, lr=lr, schedule=schedule, optimizer=optimizer)
                opt = _optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
                schedule_ = lr_schedule(opt, cfg)
                for epoch in range(epochs):
                    got, want = opt.param_groups[0]["lr"], _old_lr(epoch, cfg)
                    assert abs(got - want) <= 1e-12 and got == want, (epochs, warmup, lr, epoch)
                    opt.step()
                    schedule_.step()


def test_the_recorded_lr_is_each_epochs_rate(easy_data):
    images, labels = easy_data
    cfg = TrainConfig(arch="lenet", epochs=4, warmup_epochs=2, batch_size=32, device="cpu", seed=1, bn_batches=0)
    _, history = train_model(images[:32], labels[:32], cfg)
    assert history["lr"] == [_old_lr(e, cfg) for e in range(4)]


def test_learning_failure_names_one_class_and_chance_level():
    assert learning_failure({"confusion_matrix": [[0, 36], [0, 46]]}) == "it predicts FRII for all 82 validation images"
    chance = learning_failure({"confusion_matrix": [[20, 16], [20, 26]]})
    assert "0.561" in chance and "chance level" in chance and "FRII" in chance
    assert learning_failure({"confusion_matrix": [[30, 6], [8, 38]]}) is None
    assert learning_failure({"confusion_matrix": [[0, 0], [0, 0]]}) is None  # no validation split: nothing to say
    assert learning_failure({}) is None


def test_training_config_is_the_commands_recipe():
    """What `frsurvey train` trains by default: the shipped models' aligned network, one pass per source."""
    shipped = {"stem_stride": 2, "radial": True, "center_zoom": 3, "stem_pool": True, "align": True, "head_pool": 3}
    cfg = training_config("cnn", width=4, epochs=3)
    assert cfg.arch == "cnn" and cfg.arch_kwargs == {"width": 4, **shipped} and not cfg.tta and cfg.epochs == 3
    plain = training_config("d4cnn", radial=True)
    assert plain.arch_kwargs == {"radial": True} and plain.tta
    assert training_config("cnn", align=False).tta
    assert training_config("lenet").arch_kwargs == {}
    assert training_config("resnet18", width=8).arch_kwargs == {"width": 8}
    with pytest.raises(ValueError, match="options of the cnn"):
        training_config("lenet", radial=True)


def _identical_images_catalog(tmp_path, n=12):
    """A labeled catalog whose FRI and FRII rows all have the same image: nothing to learn."""
    from astropy.table import Table
    from conftest import default_blobs, make_first_fits

    tmp_path.mkdir(parents=True, exist_ok=True)
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(n):
        ra, dec = 150.0 + 2 * i, 20.0
        make_first_fits(images / f"s{i}.fits", ra, dec, seed=0, sources=default_blobs(ra, dec, "FRII"))
        rows.append((ra, dec, ["FRI", "FRII"][i % 2]))
    Table(rows=rows, names=["RA", "DEC", "fr_class"]).write(tmp_path / "same.ecsv")
    return tmp_path / "same.ecsv", images


@pytest.mark.slow
def test_train_cli_that_learns_nothing_is_not_a_success(tmp_path, capsys):
    from frsurvey.cli import main

    catalog, images = _identical_images_catalog(tmp_path)
    args = ["train", "--catalog", catalog, "--images", images, "--epochs", "1", "--width", "2", "--device", "cpu"]
    args += ["--val-fraction", "0.35", "--out", tmp_path / "m.pt"]
    assert main([str(a) for a in args]) == 4
    err = capsys.readouterr().err
    assert "error: the model did not learn: it predicts" in err and "for all 4 validation images" in err
    assert "do not classify with it" in err and "--epochs" in err
    assert "predicts" in load_model(tmp_path / "m.pt").card["learning_failure"]
    assert main([str(a) for a in [*args, "--accept-chance"]]) == 0
    assert "did not learn" not in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_warns_when_the_data_was_the_models_training_data(tmp_path, capsys):
    from frsurvey.cli import main

    catalog, images = _identical_images_catalog(tmp_path)
    model = tmp_path / "m.pt"
    args = ["train", "--catalog", catalog, "--images", images, "--epochs", "1", "--width", "2", "--device", "cpu"]
    assert main([str(a) for a in [*args, "--accept-chance", "--no-progress", "--out", model]]) == 0
    capsys.readouterr()
    report = tmp_path / "report"
    argv = ["evaluate", "--catalog", catalog, "--images", images, "--model", model, "--out-dir", report]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert f"WARNING: the model was trained on {catalog}" in err and "not a measure" in err
    assert "trained on" in json.loads((report / "metrics.json").read_text())["warning"]
    # data it has not seen: no warning
    from astropy.table import Table

    other = tmp_path / "other.ecsv"
    Table.read(catalog)[::-1].write(other)  # the same images, another catalog file
    argv = ["evaluate", "--catalog", other, "--images", images, "--model", model, "--out-dir", tmp_path / "r2"]
    assert main([str(a) for a in argv]) == 0
    assert "trained on" not in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_cv_writes_figures(tmp_path, capsys):
    from frsurvey.cli import main

    catalog, images = _identical_images_catalog(tmp_path, n=8)
    argv = ["evaluate", "--catalog", catalog, "--images", images, "--cv", "2", "--epochs", "1", "--width", "2"]
    assert (
        main([str(a) for a in [*argv, "--val-fraction", "0.25", "--device", "cpu", "--out-dir", tmp_path / "cv"]]) == 0
    )
    assert "figures" in capsys.readouterr().err
    assert {"confusion.png", "roc.png", "reliability.png", "misclassified.png"} <= {
        p.name for p in (tmp_path / "cv").iterdir()
    }


@pytest.mark.slow
def test_tampered_checkpoint_is_refused(trained, tmp_path):
    model, _ = trained
    path = save_model(model, tmp_path / "m.pt")
    blob = torch.load(path, weights_only=True)
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name] = blob["state_dict"][name] + 1e-3
    torch.save(blob, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="tampered"):
        load_model(tmp_path / "tampered.pt")


@pytest.mark.slow
def test_checkpoint_for_other_preprocessing_is_refused(trained, tmp_path):
    model, _ = trained
    path = save_model(model, tmp_path / "m.pt")
    blob = torch.load(path, weights_only=True)
    blob["card"]["preprocessing_version"] = PREPROCESSING_VERSION + 1
    torch.save(blob, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"preprocessing|trained on images"):
        load_model(tmp_path / "other.pt")


def test_missing_and_non_checkpoint_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(junk)


@pytest.mark.slow
def test_train_cli_end_to_end(tmp_path, frdeep_archive):
    out = tmp_path / "ckpt" / "cli.pt"
    proc = run_cli(
        "train",
        "--dataset",
        "frdeep-f",
        "--data-root",
        tmp_path / "data",
        "--download",
        "--dataset-url",
        frdeep_archive,
        "--epochs",
        "1",
        "--arch",
        "cnn",
        "--width",
        "4",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--no-progress",
        "--accept-chance",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"-> {out}" in proc.stderr and "1 epochs" in proc.stderr
    model = load_model(out)
    card = model.card
    # the cnn's defaults are the shipped models' network: aligned, one pass per source
    shipped = {"stem_stride": 2, "radial": True, "center_zoom": 3, "stem_pool": True, "align": True, "head_pool": 3}
    assert card["arch"] == "cnn" and card["arch_kwargs"] == {"width": 4, **shipped}
    assert not card["tta"] and model.views == 1
    assert card["training_data"][0]["name"] == "FRDEEP-F"
    assert card["training_data"][0]["archive_md5"] == "2f39461e6c62fb45289559915106013a"
    assert card["metrics"]["frdeep_f_test"]["n"] == 50
    assert card["n_train"] + card["n_val"] == 550
    assert len(card["history"]["train_loss"]) == 1
    # the dataset was installed under --data-root, nowhere else
    assert (tmp_path / "data" / "FIRST_PNG_dataset" / "test_batch").is_file()


@pytest.mark.slow
def test_train_cli_without_dataset_is_a_usage_error(tmp_path):
    proc = run_cli("train", "--out", tmp_path / "x.pt")
    assert proc.returncode == 2
    assert "frsurvey: error:" in proc.stderr and "--dataset" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_train_cli_with_a_missing_dataset(tmp_path):
    proc = run_cli("train", "--dataset", "frdeep-f", "--data-root", tmp_path / "d", "--out", tmp_path / "x.pt")
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_cli_builds_the_shipped_kind_of_model_from_a_labeled_catalog(tmp_path, capsys):
    from astropy.table import Table
    from conftest import default_blobs, make_first_fits

    from frsurvey.cli import main

    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i, kind in enumerate(["FRI", "FRII"] * 4):
        ra, dec = 150.0 + 2 * i, 20.0
        make_first_fits(images / f"s{i}.fits", ra, dec, seed=i, sources=default_blobs(ra, dec, kind))
        rows.append((ra, dec, kind))
    Table(rows=rows, names=["RA", "DEC", "fr_class"]).write(tmp_path / "labeled.ecsv")
    out = tmp_path / "ens.pt"
    args = ["train", "--catalog", tmp_path / "labeled.ecsv", "--images", images, "--epochs", "1", "--width", "2"]
    args += ["--stem-stride", "2", "--radial", "--center-zoom", "3", "--members", "2", "--val-fraction", "0.25"]
    args += ["--stem-pool", "--align", "--head-pool", "3"]
    assert main([str(a) for a in [*args, "--device", "cpu", "--no-progress", "--accept-chance", "--out", out]]) == 0
    err = capsys.readouterr().err
    assert "trained 2 x cnn on 6 images (validated on 2)" in err
    assert err.count("frsurvey: epoch 1/1: train loss") == 2  # one line per epoch of each network, by default
    card = load_model(out).card
    kwargs = {"width": 2, "stem_stride": 2, "radial": True, "center_zoom": 3, "stem_pool": True, "align": True}
    member = {"arch": "cnn", "kwargs": {**kwargs, "head_pool": 3}}
    assert card["arch"] == "ensemble" and card["arch_kwargs"]["members"] == [member, member]
    # like the shipped `accurate` model: one pass per source, the spread over its members
    assert not card["tta"] and card["uncertainty"] == "members" and load_model(out).views == 1
    # the options of the small CNN are refused for other architectures, with a message
    assert main([str(a) for a in [*args[:9], "--arch", "lenet", "--radial", "--out", tmp_path / "x.pt"]]) == 2
    assert "options of --arch cnn or d4cnn" in capsys.readouterr().err


@pytest.mark.slow
def test_the_plain_network_learns_and_reloads_and_aligned_is_dihedral_invariant(easy_data, tmp_path):
    """The recipe study's PlainCNN: real training for a few epochs, a checkpoint, and the aligned variant's invariance."""
    from frsurvey.model.networks import PlainCNN, build_model, dihedral

    images, labels = easy_data
    cfg = TrainConfig(
        arch="plain",
        arch_kwargs={"widths": [4, 8, 8, 8], "align": True},
        epochs=4,
        batch_size=16,
        device="cpu",
        seed=2,
        label_smoothing=0.05,
    )
    model, history = train_model(images, labels, cfg, card={"name": "tiny-plain"})
    assert isinstance(model.net, PlainCNN) and all(np.isfinite(history["train_loss"]))
    assert history["train_loss"][-1] < history["train_loss"][0], history["train_loss"]
    again = load_model(save_model(model, tmp_path / "plain.pt"))
    x = torch.from_numpy(to_model_input(images[:8]))
    np.testing.assert_array_equal(model.predict(x)[0].numpy(), again.predict(x)[0].numpy())
    # aligned: the same logits, to float rounding, for every rotation by 90 degrees and mirror image
    net = again.net.eval()
    with torch.no_grad():
        ref = net(x)
        for k in range(1, 8):
            torch.testing.assert_close(net(dihedral(x, k)), ref, rtol=1e-4, atol=1e-4)
    # the default widths, the spread head and the 8-view average build and give (N, 2)
    assert build_model("plain", spread_head=True).forward_spread(x)[0].shape == (8, 2)
    assert build_model("d4plain").eval()(x).shape == (8, 2)


def test_the_fold_ensemble_holds_the_cross_validations_networks_calibrated_out_of_fold(easy_data, tmp_path):
    """The teacher made of a cross-validation's fold networks: their mean, 8-view, and a temperature fitted out of fold."""
    from frsurvey.training.ensemble import fold_ensemble
    from frsurvey.training.evaluate import binary_metrics, cross_validate
    from frsurvey.training.train import fit_temperature

    images, labels = easy_data
    cfg = TrainConfig(arch="cnn", arch_kwargs={"width": 4}, epochs=2, batch_size=16, device="cpu", seed=5, tta=False)
    cv = cross_validate(images, labels, cfg, folds=3, seed=1, keep_models=True)
    assert len(cv["models"]) == 3 and sorted(set(cv["fold_of"].tolist())) == [0, 1, 2]
    first = np.arange(len(labels)) < 20
    model = fold_ensemble(cv, images, labels, cfg, card={"name": "tiny-teacher"}, subsets={"first": first})
    assert model.tta and model.views == 8 and model.card["arch"] == "ensemble"
    assert model.card["metrics"]["out_of_fold"]["n"] == len(labels)
    # by subset: the same out-of-fold probabilities of the items in it
    assert model.card["metrics"]["out_of_fold_first"]["n"] == 20
    # the temperature is the one of the out-of-fold views: fold k's network on the items of fold k only
    views = torch.cat(
        [
            cv["models"][k].view_logits(torch.from_numpy(to_model_input(images[cv["fold_of"] == k]))).detach()
            for k in range(3)
        ],
        dim=1,
    )
    y = torch.from_numpy(np.concatenate([labels[cv["fold_of"] == k] for k in range(3)]).astype(np.int64))
    assert float(model.temperature) == pytest.approx(fit_temperature(views, y), rel=1e-4)
    p = torch.softmax(views / model.temperature, dim=-1).mean(dim=0)[:, 1].numpy()
    sel = first[np.concatenate([np.flatnonzero(cv["fold_of"] == k) for k in range(3)])]
    expected = binary_metrics(y.numpy()[sel], p[sel])
    assert model.card["metrics"]["out_of_fold_first"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert model.card["metrics"]["out_of_fold_first"]["nll"] == pytest.approx(expected["nll"], rel=1e-4)
    # without test-time augmentation: the unturned view only (view 0 of the 8), one pass per item
    one_view = fold_ensemble(cv, images, labels, cfg, tta=False)
    assert not one_view.tta and one_view.uncertainty == "members" and one_view.views == 1
    assert float(one_view.temperature) == pytest.approx(fit_temperature(views[:1], y), rel=1e-4)
    # its members are the fold networks, and the ensemble reloads from its checkpoint with the same answers
    x = torch.from_numpy(to_model_input(images[:6]))
    with torch.no_grad():
        for member, fold_model in zip(model.net.members, cv["models"]):
            torch.testing.assert_close(member(x), fold_model.net(x))
    again = load_model(save_model(model, tmp_path / "teacher.pt"))
    np.testing.assert_array_equal(model.predict(x)[0].numpy(), again.predict(x)[0].numpy())


def test_per_item_label_smoothing_is_torchs_label_smoothing_item_by_item():
    """The soft-target loss: one value throughout is torch's label_smoothing; 0 and 1 are the label and uniform."""
    import torch.nn.functional as F

    from frsurvey.training.train import _smoothed_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(10, 2, generator=g), torch.randint(0, 2, (10,), generator=g)
    for s in (0.0, 0.05, 0.4):
        expected = F.cross_entropy(logits, y, label_smoothing=s)
        assert torch.allclose(_smoothed_cross_entropy(logits, y, torch.full((10,), s)), expected, atol=1e-6)
    s = torch.tensor([0.0] * 5 + [1.0] * 5)
    by_item = torch.cat([F.cross_entropy(logits[:5], y[:5], reduction="none"), -F.log_softmax(logits[5:], -1).mean(-1)])
    assert torch.allclose(_smoothed_cross_entropy(logits, y, s), by_item.mean(), atol=1e-6)


@pytest.mark.slow
def test_soft_targets_train_as_the_configs_smoothing_where_equal_and_differently_where_not(easy_data):
    images, labels = easy_data
    cfg = TrainConfig(
        arch="cnn", arch_kwargs={"width": 4}, epochs=1, batch_size=16, device="cpu", seed=5, label_smoothing=0.05
    )
    a, _ = train_model(images[:32], labels[:32], cfg)
    b, _ = train_model(images[:32], labels[:32], cfg, smoothing=np.full(32, 0.05))
    c, _ = train_model(images[:32], labels[:32], cfg, smoothing=np.r_[np.full(16, 0.05), np.full(16, 0.4)])
    assert weights_sha256(a.net.state_dict()) == weights_sha256(b.net.state_dict())
    assert weights_sha256(a.net.state_dict()) != weights_sha256(c.net.state_dict())
    with pytest.raises(ValueError, match="smoothing must be"):
        train_model(images[:32], labels[:32], cfg, smoothing=np.full(31, 0.05))
