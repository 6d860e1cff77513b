"""The canonical FIRST preprocessing: conformance with MiraBest's reference images, and edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from conftest import FIRST_NOISE, default_blobs, first_wcs, render_blobs

from frsurvey.image.preprocess import (
    CROP_SIZE,
    BlankImageError,
    circle_mask,
    preprocess_first,
    scale_to_uint8,
    to_model_input,
)


def synthetic_cutout(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = first_wcs(150.0, 20.0)
    return (
        rng.normal(0, FIRST_NOISE, (300, 300)) + render_blobs(w, (300, 300), default_blobs(150.0, 20.0), 1.8)
    ).astype(np.float32)


@pytest.mark.slow
def test_reference_pngs_agree(first_cutouts):
    """Each real cutout with a MiraBest reference PNG preprocesses to (nearly) the same pixels."""
    from PIL import Image

    pngs = sorted((first_cutouts / "reference-png").glob("*.png"))
    assert len(pngs) == 186
    agree = []
    for png in pngs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tab characters in SkyView's COMMENT cards
            data = fits.getdata(first_cutouts / "fits" / f"{png.stem}.fits")
        ref = np.asarray(Image.open(png).convert("L"))
        assert ref.shape == (150, 150)
        agree.append(np.mean(preprocess_first(data) == ref))
    agree = np.array(agree)
    assert agree.mean() >= 0.98, f"mean fraction of identical pixels {agree.mean():.4f}"
    assert np.mean(agree >= 0.95) >= 0.97, f"only {np.mean(agree >= 0.95):.3f} of images agree on >= 95% of pixels"


def test_output_type_shape_and_range():
    out = preprocess_first(synthetic_cutout())
    assert out.dtype == np.uint8
    assert out.shape == (150, 150)
    assert out.max() == 255
    assert out.min() == 0


def test_corners_outside_the_circle_are_zero():
    img = synthetic_cutout(1)
    for sl in (np.s_[75:90, 75:90], np.s_[75:90, 210:225], np.s_[210:225, 75:90], np.s_[210:225, 210:225]):
        img[sl] = 1.0  # the corners of the crop are the brightest pixels of the cutout
    img[140:160, 140:160] = 0.3
    out = preprocess_first(img)
    mask = circle_mask()
    assert (out[~mask] == 0).all()
    assert out[0, 0] == out[0, -1] == out[-1, 0] == out[-1, -1] == 0
    assert out.max() == 255 and (out[65:85, 65:85] == 255).all()  # the brightest pixel inside the circle


def test_circle_mask_geometry():
    m = circle_mask()
    assert m.shape == (CROP_SIZE, CROP_SIZE)
    assert m[75, 0] and m[0, 75] and m[74, 149] and m[149, 74]
    assert not m[0, 0] and not m[10, 10]
    np.testing.assert_array_equal(m, m[::-1]) and np.testing.assert_array_equal(m, m.T)


def test_only_signal_above_three_sigma_survives():
    img = np.random.default_rng(2).normal(0, FIRST_NOISE, (300, 300)).astype(np.float32)
    img[150, 150] = 1.0
    img[120, 160] = 0.5
    out = preprocess_first(img)
    assert out[75, 75] == 255  # (150, 150) of the cutout is (75, 75) of the crop
    assert out[45, 85] == 127  # (0.5 - 0) / (1 - 0) * 255 truncated
    assert np.count_nonzero(out) < 30  # noise (3 sigma) is clipped to 0 but for a few pixels


def test_nan_pixels_count_as_zero():
    img = synthetic_cutout(3)
    with_nan = img.copy()
    with_nan[:, :40] = np.nan  # outside the central crop
    with_nan[10:20, 200:210] = np.nan
    zeros = img.copy()
    zeros[:, :40] = 0
    zeros[10:20, 200:210] = 0
    np.testing.assert_array_equal(preprocess_first(with_nan), preprocess_first(zeros))


def test_input_is_not_modified_and_any_float_dtype_works():
    img = synthetic_cutout(4)
    img[0, 0] = np.nan
    before = img.copy()
    a = preprocess_first(img)
    np.testing.assert_array_equal(img, before)
    b = preprocess_first(img.astype(np.float64))
    assert (a == b).mean() > 0.999


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((300, 300), np.float32),
        np.full((300, 300), np.nan, np.float32),
        np.full((300, 300), 0.01, np.float32),
        np.full((300, 300), -0.01, np.float64),
    ],
    ids=["zero", "nan", "constant", "negative-constant"],
)
def test_blank_images_raise(image):
    with pytest.raises(BlankImageError):
        preprocess_first(image)


def test_signal_only_outside_the_circle_is_blank():
    img = np.zeros((300, 300), np.float32)
    img[76, 76] = 1.0  # a corner of the crop, outside the circle
    with pytest.raises(BlankImageError):
        preprocess_first(img)


@pytest.mark.parametrize("shape", [(150, 150), (300, 301), (299, 300), (1, 300, 300), (300,)])
def test_wrong_shape_raises_value_error(shape):
    with pytest.raises(ValueError, match="300x300"):
        preprocess_first(np.ones(shape, np.float32))


def test_blank_image_error_is_a_value_error():
    assert issubclass(BlankImageError, ValueError)


def test_scale_to_uint8_truncates_like_pil():
    from PIL import Image

    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (150, 150)).astype(np.float32)
    mask = np.ones((150, 150), bool)
    ours = scale_to_uint8(x, mask)
    lo, hi = x.min(), x.max()
    pil = np.asarray(Image.fromarray(((x - lo) / (hi - lo) * 255).astype(np.float32)).convert("L"))
    np.testing.assert_array_equal(ours, pil)


def test_to_model_input():
    img = np.array([[0, 255], [51, 102]], np.uint8)
    one = to_model_input(img)
    assert one.shape == (1, 2, 2) and one.dtype == np.float32
    np.testing.assert_allclose(one[0], [[-1, 1], [-0.6, -0.2]], atol=1e-6)
    many = to_model_input(np.stack([img, img, img]))
    assert many.shape == (3, 1, 2, 2)
