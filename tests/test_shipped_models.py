"""The one-pass default model and the ensemble it is distilled from: alignment, distillation,
batch-norm statistics, named checkpoints, and the shipped checkpoints on real FIRST cutouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import synthetic_training_set

from frsurvey.image.preprocess import preprocess_first, to_model_input
from frsurvey.metrics import wilson_interval
from frsurvey.model.checkpoint import CheckpointError, default_model_path, load_model, save_model
from frsurvey.model.networks import align_orientation, build_model, dihedral, orientation_moments
from frsurvey.run.engine import numeric_settings
from frsurvey.training.augment import rotate
from frsurvey.training.datasets import LabeledCatalog
from frsurvey.training.ensemble import train_ensemble
from frsurvey.training.evaluate import predict
from frsurvey.training.train import TrainConfig, _recompute_batch_norm, train_model

#: Largest change of P(FRII) allowed between the 8 dihedral transforms of an image, for an aligned model:
#: the alignment resamples the same pixels at positions that agree to ~1e-12 pixel, so only float32
#: rounding in the resampling (~1e-5 of a pixel value) and in the network remains.
INVARIANCE_TOLERANCE = 1e-4

ALIGNED = {"width": 4, "stem_stride": 2, "stem_pool": True, "radial": True, "center_zoom": 3, "align": True}


@pytest.fixture(scope="module")
def images():
    return synthetic_training_set(48, seed=5)


@pytest.fixture(scope="module")
def teacher_and_student(images):
    x, y = images
    cfg = TrainConfig(arch="cnn", arch_kwargs=ALIGNED, epochs=2, batch_size=16, tta=False, seed=1, bn_batches=2)
    teacher, _ = train_ensemble(x, y, cfg, members=2)
    student_cfg = TrainConfig(
        arch="cnn", arch_kwargs={**ALIGNED, "spread_head": True}, epochs=2, batch_size=16, tta=False, seed=4
    )
    student, history = train_model(x, y, student_cfg, teacher=teacher)
    return teacher, student, history


def test_alignment_turns_the_major_axis_onto_x_and_the_bright_side_to_positive_x():
    size = 150
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    angle = math.radians(30)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    # a jet along 30 degrees, brighter on its negative side
    img = np.exp(-0.5 * ((along + 20) / 8) ** 2 - 0.5 * (across / 3) ** 2)
    img += 0.5 * np.exp(-0.5 * ((along - 20) / 8) ** 2 - 0.5 * (across / 3) ** 2)
    x = torch.from_numpy((img / img.max() * 2 - 1)[None, None].astype(np.float32))
    theta, flip_x, _ = orientation_moments(x)
    assert math.degrees(float(theta[0])) == pytest.approx(30.0, abs=0.5)
    assert bool(flip_x[0])  # the brighter blob is on the negative side of the axis
    aligned = align_orientation(x)
    u = (aligned[0, 0].double() + 1) / 2
    row, col = u.sum(1), u.sum(0)
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    assert float(col @ t) > 0  # brightness now on the positive x side
    assert float(col @ t**2) > 5 * float(row @ t**2)  # elongated along x
    new_theta, new_flip_x, new_flip_y = orientation_moments(aligned)
    assert abs(float(new_theta[0])) < 0.02 and not bool(new_flip_x[0]) and not bool(new_flip_y[0])


@pytest.mark.slow
def test_alignment_is_the_same_for_all_8_dihedral_transforms(images):
    x = torch.from_numpy(to_model_input(images[0][:16]))
    base = align_orientation(x)
    for k in range(1, 8):
        other = align_orientation(dihedral(x, k))
        assert float((other - base).abs().max()) < 1e-4, k
    # and nearly the same for any rotation (bilinear resampling blurs a little)
    turned = align_orientation(rotate(x, torch.full((16,), 0.6)))
    assert float((turned - base).abs().mean()) < 0.01
    # background stays background outside the circle
    from frsurvey.image.preprocess import circle_mask

    assert torch.all(base[..., ~torch.from_numpy(circle_mask(150))] == -1)


def test_aligned_network_is_invariant_in_one_pass(images):
    net = build_model("cnn", **ALIGNED).eval()
    x = torch.from_numpy(to_model_input(images[0][:8]))
    with torch.no_grad():
        base = torch.softmax(net(x), -1)
        for k in range(8):
            assert float((torch.softmax(net(dihedral(x, k)), -1) - base).abs().max()) < INVARIANCE_TOLERANCE


@pytest.mark.slow
def test_batch_norm_statistics_are_those_of_the_final_weights(images):
    torch.manual_seed(0)
    net = build_model("cnn", width=4, stem_stride=2)
    x = torch.from_numpy(to_model_input(images[0][:32]))
    # statistics that lag behind: a few steps of training with a large learning rate
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        net.head[1].p = 0.0  # no dropout, to compare train- and eval-mode outputs
        net.train()
        train_mode = net(x)
        net.eval()
        lagging = net(x)
        loader = [(torch.arange(32), torch.zeros(32))]  # one batch: all 32 images
        _recompute_batch_norm(net, loader, torch.from_numpy(images[0][:32]), None, torch.Generator(), "cpu", 1)
        net.eval()
        fresh = net(x)
    assert float((lagging - train_mode).abs().max()) > 1e-3  # the moving averages were off
    torch.testing.assert_close(fresh, train_mode, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_distilled_student_is_one_pass_with_its_own_uncertainty(teacher_and_student, images, tmp_path):
    teacher, student, history = teacher_and_student
    assert teacher.uncertainty == "members" and teacher.views == 1 and not teacher.tta
    assert student.uncertainty == "distilled" and student.views == 1
    assert numeric_settings(student, "cpu")["pass_size"] == numeric_settings(teacher, "cpu")["pass_size"]
    calls = []
    hook = student.net.features.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    x = torch.from_numpy(to_model_input(images[0][:10]))
    probs, spread = student.predict(x)
    hook.remove()
    assert calls == [10]  # one network evaluation per source
    assert probs.shape == (10, 2) and torch.all((spread >= 0) & (spread <= 0.5))
    assert all(np.isfinite(history["train_loss"]))
    # a saved and reloaded student gives identical scores
    again = load_model(save_model(student, tmp_path / "student.pt"))
    assert again.uncertainty == "distilled"
    p1, s1 = predict(student, images[0])
    p2, s2 = predict(again, images[0])
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)
    # aligned members share one alignment of the input: the same numbers as each aligning it itself
    with torch.no_grad():
        one_by_one = torch.stack([m(x).float() for m in teacher.net.members])
        assert torch.equal(teacher.net.member_logits(x), one_by_one)
    # the teacher's spread is that of its members
    with torch.no_grad():
        members = teacher.net.member_probs(x)[..., 1]
    torch.testing.assert_close(teacher.predict(x)[1], members.std(dim=0))


@pytest.mark.slow
def test_shipped_models_by_name(tmp_path, monkeypatch):
    assert default_model_path("accurate").name == "frsurvey-accurate.pt"
    assert default_model_path().name == "frsurvey-default.pt"
    with pytest.raises(CheckpointError, match="accurate"):
        default_model_path("fastest")
    monkeypatch.chdir(tmp_path)
    assert load_model("accurate").path == str(default_model_path("accurate"))


def test_wilson_interval():
    lo, hi = wilson_interval(50, 53)
    assert lo == pytest.approx(0.8463, abs=1e-3) and hi == pytest.approx(0.9806, abs=1e-3)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# ---------------------------------------------------------------------------------------------- shipped models


@pytest.fixture(scope="module")
def real_cutouts(first_cutouts):
    """The canonical images of the 301 real FIRST cutouts, as classify prepares them, and their labels."""
    from astropy.table import Table

    catalog = Table.read(first_cutouts / "catalog.csv")
    ds = LabeledCatalog(catalog, images=first_cutouts / "fits", label_column="fr_class")
    return ds.data, ds.targets


@pytest.mark.slow
def test_shipped_default_is_invariant_to_the_8_dihedral_transforms(real_cutouts):
    model = load_model()
    assert model.views == 1 and model.uncertainty == "distilled"
    x = torch.from_numpy(to_model_input(real_cutouts[0][:64]))
    base, base_spread = model.predict(x)
    for k in range(1, 8):
        p, s = model.predict(dihedral(x, k))
        assert float((p - base).abs().max()) < INVARIANCE_TOLERANCE, k
        assert float((s - base_spread).abs().max()) < INVARIANCE_TOLERANCE, k


@pytest.mark.slow
def test_shipped_default_agrees_with_the_accurate_ensemble_on_real_cutouts(real_cutouts):
    images, _ = real_cutouts
    p_default, spread = predict(load_model("default"), images)
    p_accurate, _ = predict(load_model("accurate"), images)
    same = np.mean((p_default >= 0.5) == (p_accurate >= 0.5))
    # measured when the models were trained: see checkpoints/README.md
    assert same >= 0.95, same
    assert np.median(np.abs(p_default - p_accurate)) < 0.05
    assert np.all((spread >= 0) & (spread <= 0.5))


@pytest.mark.slow
def test_compressed_cutouts_train_on_the_pixels_classify_sees(shared_data, tmp_path):
    """Training data from the tile-compressed cutouts goes through classify's source and preprocessing."""
    from astropy.table import Table

    from frsurvey.image.prepare import PreparedCutouts
    from frsurvey.sources import LocalFITSSource

    folder = shared_data / "mirabest-more"
    catalog = Table.read(folder / "catalog.csv")[:6]
    ds = LabeledCatalog(catalog, images=folder / "fits", label_column="fr_class")
    assert len(ds) >= 5
    source = LocalFITSSource(folder / "fits")
    keys = source.locate(np.asarray(catalog["ra_deg"], float)[ds.rows], np.asarray(catalog["dec_deg"], float)[ds.rows])
    for k in range(len(ds)):
        _, img, status, _ = PreparedCutouts(source, keys)[k]
        assert status == "ok"
        np.testing.assert_array_equal(img, ds.data[k])
        # and an independent reading: the compressed image in extension 1, through the canonical recipe
        name = catalog["name"][int(ds.rows[k])]
        with fits.open(folder / "fits" / f"{name}.fits") as hdul:
            np.testing.assert_array_equal(preprocess_first(hdul[1].data), ds.data[k])
