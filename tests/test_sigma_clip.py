"""The fast sigma clip gives astropy's answer to the last bit, so preprocessing is unchanged."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from frsurvey.image.preprocess import preprocess_first, sigma_clipped_std


def astropy_std(x: np.ndarray) -> np.floating:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sigma_clipped_stats(x, sigma=3, maxiters=5)[2]


def same(a, b) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


@pytest.mark.slow
def test_real_cutouts_to_the_bit(first_cutouts):
    files = sorted((first_cutouts / "fits").glob("*.fits"))
    assert len(files) == 301
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.nan_to_num(fits.getdata(path))  # big-endian float32, as read from the file
        for x in (data, data.astype(np.float32), data.astype(np.float64)):
            ours, theirs = sigma_clipped_std(x), astropy_std(x)
            assert ours == theirs, (path.name, x.dtype, ours, theirs)
            assert ours.dtype == theirs.dtype


@pytest.mark.parametrize(
    "data",
    [
        np.zeros((300, 300), np.float32),
        np.full((300, 300), 2.5, np.float32),
        np.array([1.0], np.float32),
        np.array([1.0, 2.0], np.float32),
        np.array([1.0, 2.0, 3.0, 1000.0], np.float32),
        np.arange(7, dtype=np.float64),
        np.r_[np.zeros(100), 1e6].astype(np.float32),
        np.array([-1.0, 1.0] * 50 + [np.float32(1e30)], np.float32),
    ],
    ids=["zeros", "constant", "one", "two", "outlier", "float64", "spike", "huge"],
)
def test_edge_cases(data):
    assert same(sigma_clipped_std(data), astropy_std(data))


def test_empty():
    assert np.isnan(sigma_clipped_std(np.zeros(0, np.float32)))


@pytest.mark.slow
def test_random_arrays_with_outliers_and_ties():
    rng = np.random.default_rng(42)
    for i in range(400):
        n = int(rng.integers(1, 5000))
        x = rng.normal(size=n) * rng.uniform(1e-5, 10)
        if i % 3 == 0:
            x[rng.integers(0, n, size=max(1, n // 20))] += rng.uniform(0, 100)
        if i % 5 == 0:
            x = np.round(x * 10) / 10  # many ties
        x = x.astype(np.float32 if i % 2 else np.float64)
        if i % 7 == 0:
            x = x.astype(x.dtype.newbyteorder(">"))
        assert same(sigma_clipped_std(x), astropy_std(x)), i


def reference_preprocess(image: np.ndarray) -> np.ndarray:
    """The canonical recipe written out with astropy, as MiraBest wrote it."""
    from PIL import Image

    from frsurvey.image.preprocess import circle_mask

    image = np.nan_to_num(image)
    std = astropy_std(image)
    image = image.copy()
    image[image <= 3 * std] = 0
    crop = image[75:225, 75:225].copy()
    mask = circle_mask()
    crop[~mask] = 0
    lo, hi = crop[mask].min(), crop[mask].max()
    out = np.zeros_like(crop, dtype=np.float32)
    out[mask] = (crop[mask] - lo) / (hi - lo) * 255
    return np.asarray(Image.fromarray(out).convert("L"))


@pytest.mark.slow
def test_preprocessing_identical_to_the_astropy_recipe(first_cutouts):
    for path in sorted((first_cutouts / "fits").glob("*.fits"))[::10]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = fits.getdata(path)
        np.testing.assert_array_equal(preprocess_first(data), reference_preprocess(data), err_msg=path.name)
