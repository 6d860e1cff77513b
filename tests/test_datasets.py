"""FRDEEP-F: installing it from the published archive, checking its integrity, reading it."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

import numpy as np
import pytest

from frsurvey.image.preprocess import circle_mask
from frsurvey.training.datasets import FRDEEPF, DatasetIntegrityError, md5sum


def copy_of(root, tmp_path):
    """A private copy of an installed data root (the session's one is shared)."""
    dest = tmp_path / "root"
    shutil.copytree(root, dest)
    return dest


def test_install_from_local_archive_path(frdeep_root, frdeep_archive):
    folder = frdeep_root / FRDEEPF.base_folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, _ in FRDEEPF.files())
    for name, md5 in FRDEEPF.files():
        assert md5sum(folder / name) == md5
    assert md5sum(frdeep_root / FRDEEPF.filename) == md5sum(frdeep_archive) == FRDEEPF.tgz_md5


def test_install_from_file_url(tmp_path, frdeep_archive):
    ds = FRDEEPF(tmp_path, train=False, download=True, url=frdeep_archive.resolve().as_uri())
    assert len(ds) == 50
    assert ds.root == tmp_path


def test_splits_labels_and_images(frdeep_root):
    train = FRDEEPF(frdeep_root, train=True)
    test = FRDEEPF(frdeep_root, train=False)
    assert len(train) == 550 and len(test) == 50
    assert train.data.shape == (550, 150, 150) and train.data.dtype == np.uint8
    assert test.data.shape == (50, 150, 150)
    labels = np.concatenate([train.targets, test.targets])
    assert set(labels.tolist()) == {0, 1}
    assert (labels == 0).sum() == 264 and (labels == 1).sum() == 336
    assert len(train.names) == 550 and all(n.startswith("data_batch_") for n in train.names)
    assert all(n.startswith("test_batch/") for n in test.names)
    assert train.classes == ["FRI", "FRII"]
    img, target = train[3]
    assert img.shape == (150, 150) and target in (0, 1)
    assert "n=550" in repr(train)


def test_images_are_masked_outside_the_circle(frdeep_root):
    outside = ~circle_mask()
    masked = FRDEEPF(frdeep_root, train=True)
    assert (masked.data[:, outside] == 0).all()
    raw = FRDEEPF(frdeep_root, train=True, mask=False)
    assert (raw.data[:, outside] > 0).any()  # so the mask did something
    inside_raw, inside = raw.data[:, ~outside], masked.data[:, ~outside]
    kept = inside_raw.max(axis=1) == 255
    assert kept.sum() >= 540  # most images: masking the corners is all there is to do
    np.testing.assert_array_equal(inside_raw[kept], inside[kept])
    # The few whose brightest pixel lay in a corner are re-scaled inside the circle, as
    # preprocess_first scales: maximum 255, order of pixel values kept.
    rescaled = ~kept & (inside_raw.max(axis=1) > inside_raw.min(axis=1))
    assert rescaled.any()
    assert (inside[rescaled].max(axis=1) == 255).all()
    for a, b in zip(inside_raw[rescaled], inside[rescaled]):
        order = np.argsort(a, kind="stable")
        assert (np.diff(b[order].astype(int)) >= 0).all()


def test_transforms(frdeep_root):
    ds = FRDEEPF(frdeep_root, train=False, transform=lambda im: im.sum(), target_transform=lambda t: ["FRI", "FRII"][t])
    value, label = ds[0]
    assert value == ds.data[0].sum()
    assert label in ("FRI", "FRII")


def test_corrupted_batch_file(frdeep_root, tmp_path):
    root = copy_of(frdeep_root, tmp_path)
    batch = root / FRDEEPF.base_folder / "data_batch_3"
    raw = bytearray(batch.read_bytes())
    raw[5000] ^= 0x01  # one bit flipped in the image data
    batch.write_bytes(bytes(raw))
    with pytest.raises(DatasetIntegrityError, match=r"data_batch_3.*corrupt") as err:
        FRDEEPF(root, train=True)
    assert FRDEEPF.train_list[2][1] in str(err.value)  # the published md5
    # the test split reads the same files' checksums: refused too
    with pytest.raises(DatasetIntegrityError, match="data_batch_3"):
        FRDEEPF(root, train=False)


def test_download_repairs_a_corrupted_file_from_the_archive(frdeep_root, tmp_path):
    root = copy_of(frdeep_root, tmp_path)
    batch = root / FRDEEPF.base_folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-10])
    ds = FRDEEPF(root, train=False, download=True, url=str(tmp_path / "not-needed.tar.gz"))
    assert len(ds) == 50
    assert md5sum(batch) == FRDEEPF.test_list[0][1]


def test_missing_file(frdeep_root, tmp_path):
    root = copy_of(frdeep_root, tmp_path)
    (root / FRDEEPF.base_folder / "batches.meta").unlink()
    with pytest.raises(DatasetIntegrityError, match=r"batches\.meta.*missing"):
        FRDEEPF(root, train=True)


def test_not_installed_and_no_download(tmp_path):
    with pytest.raises(DatasetIntegrityError, match=r"missing.*download"):
        FRDEEPF(tmp_path / "empty")


def test_archive_with_wrong_md5_is_refused_and_removed(tmp_path):
    bad = tmp_path / "elsewhere" / "FIRST_PNG_dataset.tar.gz"
    bad.parent.mkdir()
    with tarfile.open(bad, "w:gz") as tar:
        payload = b"not the dataset"
        info = tarfile.TarInfo("FIRST_PNG_dataset/data_batch_1")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    root = tmp_path / "root"
    with pytest.raises(DatasetIntegrityError, match=r"md5.*removed"):
        FRDEEPF(root, download=True, url=str(bad))
    assert not (root / FRDEEPF.filename).exists()
    assert not (root / FRDEEPF.base_folder).exists()  # nothing was unpacked
    assert bad.is_file()  # the source is never touched
    assert [p.name for p in root.iterdir()] == []  # no temporary file left either


def test_archive_url_that_does_not_exist(tmp_path):
    with pytest.raises(DatasetIntegrityError, match="no FRDEEP-F archive"):
        FRDEEPF(tmp_path / "root", download=True, url=str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(DatasetIntegrityError, match="no FRDEEP-F archive"):
        FRDEEPF(tmp_path / "root", download=True, url=(tmp_path / "nowhere.tar.gz").as_uri())


def test_labeled_data_of_frdeep_f_and_a_catalog_as_the_train_command_takes_them(frdeep_root, tmp_path):
    """load_labeled_data: FRDEEP-F's split, then the catalog's usable rows, with a data card for each."""
    from astropy.table import Table
    from conftest import default_blobs, make_first_fits

    from frsurvey.training.data import load_labeled_data, seen_in_training

    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i, kind in enumerate(["FRI", "FRII", "hybrid", "FRII"]):
        ra, dec = 150.0 + 2 * i, 20.0
        make_first_fits(images / f"s{i}.fits", ra, dec, seed=i, sources=default_blobs(ra, dec, "FRII"))
        rows.append((ra, dec, kind))
    Table(rows=rows, names=["RA", "DEC", "fr_class"]).write(tmp_path / "lab.ecsv")
    test = FRDEEPF(frdeep_root, train=False)
    data = load_labeled_data("frdeep-f", tmp_path / "lab.ecsv", images, split="test", data_root=frdeep_root)
    assert data.images.shape == (53, 150, 150) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[:50], test.data)
    np.testing.assert_array_equal(data.labels, [*test.targets, 0, 1, 1])
    assert data.names[:50] == test.names and data.names[50:] == ["row 0", "row 1", "row 3"]
    frdeep, catalog = data.cards
    assert frdeep == {"name": "FRDEEP-F", "split": "test", "n": 50, "archive_md5": FRDEEPF.tgz_md5}
    assert catalog["n"] == 3 and catalog["skipped"] == {"label:hybrid": 1} and catalog["label_column"] == "fr_class"
    assert catalog["sha256"] == hashlib.sha256((tmp_path / "lab.ecsv").read_bytes()).hexdigest()
    # a model trained on the FRDEEP-F training split and this catalog has seen the catalog, not the test split
    card = {"training_data": [{"name": "FRDEEP-F", "split": "train"}, catalog]}
    assert seen_in_training(card, data.cards) == [str(tmp_path / "lab.ecsv")]
    assert seen_in_training({"training_data": [frdeep]}, data.cards) == ["FRDEEP-F (test split)"]


def test_labeled_data_needs_data_and_a_catalogs_images(tmp_path):
    from frsurvey.training.data import frdeep_data, load_labeled_data

    with pytest.raises(ValueError, match="no data"):
        load_labeled_data()
    with pytest.raises(ValueError, match="needs its images"):
        load_labeled_data(catalog=tmp_path / "lab.ecsv")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_labeled_data("mirabest")
    with pytest.raises(ValueError, match="train and a test split"):
        frdeep_data(tmp_path, "validation")
    with pytest.raises(DatasetIntegrityError, match="--download"):
        frdeep_data(tmp_path, "train")
