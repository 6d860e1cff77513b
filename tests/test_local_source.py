"""Finding the image of a position in a directory of FITS files, and cutting the 300x300 cutout."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from conftest import first_wcs, make_first_fits, random_name

from frsurvey.image.preprocess import preprocess_first
from frsurvey.sources import Cutout, LocalFITSSource, make_source
from frsurvey.status import Status


def cutout(source: LocalFITSSource, ra: float, dec: float) -> Cutout:
    (i, cut), *rest = list(source.get([ra], [dec]))
    assert i == 0 and not rest
    return cut


def pixel_to_world(ra0, dec0, shape, x, y, scale=1.8):
    r, d = first_wcs(ra0, dec0, shape, scale).pixel_to_world_values(x, y)
    return float(r), float(d)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_position_inside_one_image(tmp_path, rng):
    path = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0)
    src = LocalFITSSource(tmp_path)
    assert len(src.records) == 1 and src.skipped == {}
    cut = cutout(src, 150.0, 30.0)
    assert cut.ok, cut.message
    assert cut.status == Status.OK
    assert cut.origin == str(path)
    assert cut.image.shape == (300, 300) and cut.image.dtype == np.float32


def test_position_outside_all_images(tmp_path, rng):
    make_first_fits(tmp_path / random_name(rng), 150.0, 30.0)
    src = LocalFITSSource(tmp_path)
    # 0.3 deg away: beyond the image's 0.075 deg half-width
    cut = cutout(src, 150.0, 30.3)
    assert not cut.ok and cut.image is None
    assert cut.status == Status.NO_IMAGE
    # and the other side of the sky
    assert cutout(src, 330.0, -30.0).status == Status.NO_IMAGE


def test_empty_directory_gives_no_image(tmp_path):
    src = LocalFITSSource(tmp_path)
    assert cutout(src, 10.0, 10.0).status == Status.NO_IMAGE


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LocalFITSSource(tmp_path / "nope")


def test_skyview_like_file_gives_its_own_pixels(tmp_path, rng):
    """The "same pixels" guarantee: a SkyView 300x300 cutout centred on the position is returned as is."""
    path = make_first_fits(tmp_path / random_name(rng), 201.365, -4.73, seed=3)
    with fits.open(path) as hdul:
        data = hdul[0].data.copy()
        ra, dec = hdul[0].header["CRVAL1"], hdul[0].header["CRVAL2"]
    cut = cutout(LocalFITSSource(tmp_path), ra, dec)
    assert cut.ok, cut.message
    assert cut.image.dtype == np.float32
    np.testing.assert_array_equal(cut.image, data)


@pytest.mark.slow
def test_real_skyview_cutouts_give_their_own_pixels(first_cutouts):
    """Every real SkyView cutout, found by the catalog position alone, comes back pixel for pixel."""
    from astropy.table import Table

    cat = Table.read(first_cutouts / "catalog.csv")
    src = LocalFITSSource(first_cutouts / "fits")
    assert len(src.records) == len(cat) == 301 and src.skipped == {}
    mismatched = []
    for i, cut in src.get(cat["ra_deg"], cat["dec_deg"]):
        assert cut.ok, cut.message
        assert cut.origin.endswith(f"{cat['name'][i]}.fits")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = fits.getdata(cut.origin)
        if not np.array_equal(cut.image, data, equal_nan=True):
            mismatched.append(cat["name"][i])
    src.close()
    assert mismatched == []


def test_off_centre_window_is_nearest_to_the_position(tmp_path, rng):
    shape = (400, 420)
    path = make_first_fits(tmp_path / random_name(rng), 120.0, 40.0, shape=shape, seed=5)
    data = fits.getdata(path)
    x, y = 200.3, 180.2  # the window centre (x0 + 149.5) nearest: x0 = 51, y0 = 31
    ra, dec = pixel_to_world(120.0, 40.0, shape, x, y)
    cut = cutout(LocalFITSSource(tmp_path), ra, dec)
    assert cut.ok, cut.message
    np.testing.assert_array_equal(cut.image, data[31:331, 51:351])


@pytest.mark.parametrize("which", [0, 1])
def test_overlapping_images_pick_the_one_farthest_from_an_edge(tmp_path, rng, which):
    shape = (600, 600)  # 0.3 deg wide
    a = make_first_fits(tmp_path / random_name(rng), 150.00, 30.0, shape=shape, seed=1)
    b = make_first_fits(tmp_path / random_name(rng), 150.05, 30.0, shape=shape, seed=2)
    src = LocalFITSSource(tmp_path)
    assert len(src.records) == 2
    # near b's centre (and 69 px from a's), or near a's centre
    ra = 150.045 if which == 0 else 150.005
    cut = cutout(src, ra, 30.0)
    assert cut.ok, cut.message
    assert cut.origin == str(b if which == 0 else a)


def test_image_at_first_scale_preferred_over_wrong_scale(tmp_path, rng):
    right = make_first_fits(tmp_path / random_name(rng), 150.00, 30.0, shape=(600, 600))
    make_first_fits(tmp_path / random_name(rng), 150.05, 30.0, shape=(300, 300), scale_arcsec=3.6)
    cut = cutout(LocalFITSSource(tmp_path), 150.045, 30.0)  # central in the wrong-scale image
    assert cut.ok, cut.message
    assert cut.origin == str(right)


def test_gzipped_file(tmp_path, rng):
    path = make_first_fits(tmp_path / random_name(rng, ".fits.gz"), 10.0, -5.0, gz=True, seed=7)
    assert path.name.endswith(".fits.gz")
    with fits.open(path) as hdul:
        data = hdul[0].data.copy()
    cut = cutout(LocalFITSSource(tmp_path), 10.0, -5.0)
    assert cut.ok, cut.message
    assert cut.origin == str(path)
    np.testing.assert_array_equal(cut.image, data)


@pytest.mark.parametrize("suffix", [".fits", ".fits.fz"])
def test_tile_compressed_file(tmp_path, rng, suffix):
    path = make_first_fits(tmp_path / random_name(rng, suffix), 250.0, 50.0, compressed=True, seed=8)
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
        data = hdul[1].data.copy()
    src = LocalFITSSource(tmp_path)
    assert [r.hdu for r in src.records] == [1]
    cut = cutout(src, 250.0, 50.0)
    assert cut.ok, cut.message
    np.testing.assert_array_equal(cut.image, data)


def test_rice_compressed_demo_images_are_indexed():
    from conftest import REPO

    src = LocalFITSSource(REPO / "catalogs" / "demo" / "images")
    assert src.skipped == {}
    assert len(src.records) == 22


def test_four_dimensional_image_with_degenerate_axes(tmp_path, rng):
    path = make_first_fits(tmp_path / random_name(rng), 200.0, 10.0, naxis4=True, seed=9)
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (1, 1, 300, 300)
        assert hdul[0].header["NAXIS"] == 4
        plane = hdul[0].data[0, 0].copy()
    cut = cutout(LocalFITSSource(tmp_path), 200.0, 10.0)
    assert cut.ok, cut.message
    np.testing.assert_array_equal(cut.image, plane)


def test_cube_with_several_planes_is_skipped(tmp_path, rng):
    path = tmp_path / random_name(rng)
    w = first_wcs(200.0, 10.0).to_header()
    w["CTYPE3"], w["CRVAL3"], w["CDELT3"], w["CRPIX3"] = "FREQ", 1.4e9, 1e7, 1.0
    fits.PrimaryHDU(np.zeros((3, 300, 300), np.float32), header=w).writeto(path)
    src = LocalFITSSource(tmp_path)
    assert list(src.skipped) == [str(path)]
    assert cutout(src, 200.0, 10.0).status == Status.NO_IMAGE


def test_position_within_75_px_of_the_edge_is_outside_image(tmp_path, rng):
    shape = (600, 600)
    path = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0, shape=shape)
    src = LocalFITSSource(tmp_path)
    for x, y in [(60.2, 300.2), (539.8, 300.2), (300.2, 10.2), (300.2, 590.2), (2.2, 2.2)]:
        ra, dec = pixel_to_world(150.0, 30.0, shape, x, y)
        cut = cutout(src, ra, dec)
        assert cut.status == Status.OUTSIDE_IMAGE, (x, y, cut.status, cut.message)
        assert cut.image is None and cut.origin == str(path)


def test_near_edge_with_central_crop_inside_is_padded_with_nan(tmp_path, rng):
    shape = (600, 600)
    path = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0, shape=shape, seed=4)
    data = fits.getdata(path)
    x, y = 100.2, 520.2  # window x0 = -49 (49 columns off the image), y0 = 371 (71 rows off)
    ra, dec = pixel_to_world(150.0, 30.0, shape, x, y)
    cut = cutout(LocalFITSSource(tmp_path), ra, dec)
    assert cut.ok, cut.message
    img = cut.image
    assert np.isnan(img[:, :49]).all() and np.isnan(img[229:, :]).all()
    np.testing.assert_array_equal(img[:229, 49:], data[371:, :251])
    # the central 150x150 is all data, and it preprocesses
    assert np.isfinite(img[75:225, 75:225]).all()
    assert preprocess_first(img).max() == 255


def test_wrong_pixel_scale(tmp_path, rng):
    path = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0, scale_arcsec=3.6)
    cut = cutout(LocalFITSSource(tmp_path), 150.0, 30.0)
    assert cut.status == Status.WRONG_SCALE
    assert "3.6" in cut.message and cut.origin == str(path)


def test_slightly_off_scale_within_tolerance_is_accepted(tmp_path, rng):
    make_first_fits(tmp_path / random_name(rng), 150.0, 30.0, scale_arcsec=1.8 * 1.005)
    assert cutout(LocalFITSSource(tmp_path), 150.0, 30.0).ok


def test_broken_files_are_skipped_without_breaking_the_others(tmp_path, rng):
    good = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0)
    sub = tmp_path / "deeper" / "still"
    good2 = make_first_fits(sub / random_name(rng, ".fit"), 160.0, 30.0, seed=2)
    text = tmp_path / random_name(rng)
    text.write_text("SIMPLE? no, this is a text file\n")
    empty = tmp_path / random_name(rng)
    empty.write_bytes(b"")
    truncated = tmp_path / random_name(rng)
    truncated.write_bytes(good.read_bytes()[:1000])  # in the middle of the header
    gz_truncated = make_first_fits(tmp_path / random_name(rng, ".fits.gz"), 170.0, 30.0, gz=True)
    gz_truncated.write_bytes(gz_truncated.read_bytes()[:300])
    no_wcs = tmp_path / random_name(rng)
    fits.PrimaryHDU(np.ones((300, 300), np.float32)).writeto(no_wcs)
    table = tmp_path / random_name(rng)
    fits.BinTableHDU.from_columns([fits.Column("a", "D", array=np.arange(3.0))]).writeto(table)
    (tmp_path / "notes.txt").write_text("not even named like FITS")

    src = LocalFITSSource(tmp_path)
    assert set(src.skipped) == {str(p) for p in (text, empty, truncated, gz_truncated, no_wcs, table)}
    assert all(src.skipped.values())
    assert sorted(r.path for r in src.records) == sorted([str(good), str(good2)])
    assert cutout(src, 150.0, 30.0).ok
    assert cutout(src, 160.0, 30.0).ok
    assert cutout(src, 170.0, 30.0).status == Status.NO_IMAGE


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_data_truncated_after_indexing_is_bad_image(tmp_path, rng):
    path = make_first_fits(tmp_path / random_name(rng), 150.0, 30.0)
    make_first_fits(tmp_path / random_name(rng), 160.0, 30.0, seed=2)
    src = LocalFITSSource(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    cut = cutout(src, 150.0, 30.0)
    assert cut.status == Status.BAD_IMAGE and cut.image is None
    assert str(path) in cut.message
    assert cutout(src, 160.0, 30.0).ok


def test_keys_of_equal_positions_are_equal_and_source_pickles(tmp_path, rng):
    import pickle

    make_first_fits(tmp_path / random_name(rng), 150.0, 30.0)
    src = LocalFITSSource(tmp_path)
    keys = src.locate(np.array([150.0, 150.0, 150.001]), np.array([30.0, 30.0, 30.0]))
    assert keys[0] == keys[1] != keys[2]
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.load(keys[0]).image, src.load(keys[0]).image)


def test_make_source():
    with pytest.raises(ValueError, match="--images"):
        make_source(source="local")
    with pytest.raises(ValueError, match="unknown image source"):
        make_source(images=".", source="skyview-nope")


def test_images_across_ra_zero_and_near_the_pole(tmp_path, rng):
    wrap = make_first_fits(tmp_path / random_name(rng), 0.02, 10.0)
    pole = make_first_fits(tmp_path / random_name(rng), 45.0, 89.95, seed=2)
    src = LocalFITSSource(tmp_path)
    for ra, dec, origin in [(359.99, 10.0, wrap), (0.05, 10.0, wrap), (45.0, 89.95, pole), (44.0, 89.95, pole)]:
        cut = cutout(src, ra, dec)
        assert cut.ok, (ra, dec, cut.message)
        assert cut.origin == str(origin)
    # across the pole, 0.04 deg from the centre: in the image but too close to its edge
    assert cutout(src, 225.0, 89.99).status == Status.OUTSIDE_IMAGE


def test_several_images_in_one_file(tmp_path, rng):
    path = tmp_path / random_name(rng)
    hdus = [fits.PrimaryHDU()]
    for ra in (100.0, 101.0):
        h = first_wcs(ra, 0.0).to_header()
        data = np.random.default_rng(int(ra)).normal(0, 1.5e-4, (300, 300)).astype(np.float32)
        hdus.append(fits.ImageHDU(data, header=h))
    fits.HDUList(hdus).writeto(path)
    src = LocalFITSSource(tmp_path)
    assert sorted(r.hdu for r in src.records) == [1, 2]
    for ra, ext in ((100.0, 1), (101.0, 2)):
        cut = cutout(src, ra, 0.0)
        assert cut.ok, cut.message
        np.testing.assert_array_equal(cut.image, fits.getdata(path, ext))
