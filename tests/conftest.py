"""Shared fixtures and helpers: FIRST-like FITS images, synthetic radio galaxies, a trained model.

Everything here is real: FITS files with real WCS written by astropy, real
torch training. The shared data (``../shared/data`` beside the repository) is
read in place, never copied into the repository and never written to; tests
that need it are skipped with a reason when it is absent, and fail instead
where ``FRSURVEY_REQUIRE_SHARED=1`` says it must be there (CI: ``.ci/run``).
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

REPO = Path(__file__).resolve().parents[1]
#: The columns frsurvey adds, in order (stated here, independently of frsurvey.io).
OUR_COLUMNS = [
    "FR_CLASS",
    "P_FRI",
    "P_FRII",
    "FR_UNCERTAINTY",
    "FR_STATUS",
    "FR_SNR",
    "FR_LAS",
    "FR_SIZE_DECONV",
    "FR_NCOMP",
    "FR_OOD",
]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Set to 1 (CI does), the tests that need the shared data fail where it is missing instead of skipping.
REQUIRE_SHARED = "FRSURVEY_REQUIRE_SHARED"

#: FIRST's noise, Jy/beam.
FIRST_NOISE = 1.5e-4
#: FIRST's restoring beam FWHM, arcsec.
BEAM_FWHM = 5.4


# --------------------------------------------------------------------------------------------------
# FITS images


def first_wcs(ra: float, dec: float, shape=(300, 300), scale_arcsec: float = 1.8, crpix=None) -> WCS:
    """Return a SkyView-like TAN WCS: tangent point (ra, dec) at the image centre (or ``crpix``, 1-based)."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = list(crpix) if crpix is not None else [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "FK5"
    w.wcs.equinox = 2000.0
    return w


def default_blobs(ra: float, dec: float, kind: str = "FRII", scale: float = 1.0) -> list[tuple]:
    """Return Gaussian blobs ``(ra, dec, peak Jy/beam, FWHM arcsec)`` making a small radio galaxy at (ra, dec).

    ``FRII``: faint core, two bright compact hotspots 40" either side;
    ``FRI``: bright core, two fading broad jets.
    """
    cosd = np.cos(np.radians(dec))

    def off(dx_arcsec, dy_arcsec):
        return ra + dx_arcsec / 3600.0 / cosd, dec + dy_arcsec / 3600.0

    if kind == "FRII":
        return [
            (*off(0, 0), 0.002 * scale, BEAM_FWHM),
            (*off(-40, 12), 0.02 * scale, BEAM_FWHM),
            (*off(40, -12), 0.015 * scale, BEAM_FWHM),
        ]
    return [
        (*off(0, 0), 0.03 * scale, BEAM_FWHM),
        (*off(-12, 5), 0.01 * scale, 10.0),
        (*off(12, -5), 0.008 * scale, 10.0),
        (*off(-25, 9), 0.003 * scale, 16.0),
    ]


def render_blobs(wcs: WCS, shape, blobs: Sequence[tuple], scale_arcsec: float) -> np.ndarray:
    """Return the sum of Gaussian blobs ``(ra, dec, peak, fwhm_arcsec)`` on the pixel grid of ``wcs``."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    out = np.zeros(shape, dtype=np.float64)
    for ra, dec, peak, fwhm in blobs:
        x, y = wcs.world_to_pixel_values(ra, dec)
        sigma = fwhm / 2.3548 / scale_arcsec
        out += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return out


def make_first_fits(
    path,
    ra: float,
    dec: float,
    shape=(300, 300),
    scale_arcsec: float = 1.8,
    sources: Sequence[tuple] | None = None,
    naxis4: bool = False,
    compressed: bool = False,
    gz: bool = False,
    data: np.ndarray | None = None,
    noise: float = FIRST_NOISE,
    seed: int = 0,
    crpix=None,
) -> Path:
    """Write a FIRST-like image and return its path.

    float32 Jy/beam, RA---TAN/DEC--TAN with the tangent point (ra, dec) at the
    image centre (SkyView's layout: CRPIX = (n + 1) / 2), Gaussian noise of
    ``noise`` Jy/beam and Gaussian blobs ``sources`` = ``[(ra, dec, peak Jy/beam,
    FWHM arcsec), ...]`` (default: a small FRII-like double at the centre).
    ``data`` replaces the pixels altogether.

    ``naxis4``: FIRST's own layout, (STOKES, FREQ, y, x) with degenerate axes.
    ``compressed``: a tile-compressed (CompImageHDU, lossless GZIP_2) image in extension 1.
    ``gz``: gzip the whole file (``.gz`` is appended to ``path`` if missing).
    """
    path = Path(path)
    w = first_wcs(ra, dec, shape, scale_arcsec, crpix)
    if data is None:
        rng = np.random.default_rng(seed)
        blobs = default_blobs(ra, dec) if sources is None else sources
        data = rng.normal(0.0, noise, shape) + render_blobs(w, shape, blobs, scale_arcsec)
    data = np.asarray(data, dtype=np.float32)
    header = w.to_header()
    header["BUNIT"] = "JY/BEAM"
    header["BMAJ"] = BEAM_FWHM / 3600.0
    header["BMIN"] = BEAM_FWHM / 3600.0
    header["BPA"] = 0.0
    if naxis4:
        header["WCSAXES"] = 4
        header["CTYPE3"], header["CRVAL3"], header["CRPIX3"], header["CDELT3"] = "FREQ", 1.4e9, 1.0, 2.2e7
        header["CUNIT3"] = "Hz"
        header["CTYPE4"], header["CRVAL4"], header["CRPIX4"], header["CDELT4"] = "STOKES", 1.0, 1.0, 1.0
        data = data[None, None]
    if compressed:
        hdul = fits.HDUList(
            [
                fits.PrimaryHDU(),
                fits.CompImageHDU(data, header=header, compression_type="GZIP_2", quantize_level=0.0),
            ]
        )
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data, header=header)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        if not path.name.endswith(".gz"):
            path = path.with_name(path.name + ".gz")
        raw = path.with_name(path.name[: -len(".gz")] + ".tmp")
        hdul.writeto(raw, overwrite=True)
        with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
    else:
        hdul.writeto(path, overwrite=True)
    return path


def random_name(rng: np.random.Generator, suffix: str = ".fits") -> str:
    """Return a meaningless file name (image file names must not matter)."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    return "".join(rng.choice(letters, 10)) + suffix


# --------------------------------------------------------------------------------------------------
# Synthetic training images


def synthetic_cutout(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Return a 300x300 Jy/beam cutout of an easy synthetic FRI or FRII at a random orientation."""
    shape = (300, 300)
    w = first_wcs(180.0, 30.0, shape)
    angle = rng.uniform(0, np.pi)
    size = rng.uniform(25, 50)  # arcsec from the core to a hotspot or jet end
    cosd = np.cos(np.radians(30.0))

    def pos(r):
        return 180.0 + r * np.cos(angle) / 3600.0 / cosd, 30.0 + r * np.sin(angle) / 3600.0

    if kind == "FRII":
        blobs = [(*pos(0), 0.002, BEAM_FWHM), (*pos(size), 0.03, BEAM_FWHM), (*pos(-size), 0.02, BEAM_FWHM)]
    else:
        blobs = [(*pos(0), 0.04, BEAM_FWHM), (*pos(size / 3), 0.012, 12.0), (*pos(-size / 3), 0.01, 12.0)]
        blobs += [(*pos(2 * size / 3), 0.004, 18.0), (*pos(-2 * size / 3), 0.003, 18.0)]
    return rng.normal(0, FIRST_NOISE, shape) + render_blobs(w, shape, blobs, 1.8)


def synthetic_training_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` canonical uint8 images (half FRI, half FRII) and their labels (0 = FRI, 1 = FRII)."""
    from frsurvey.image.preprocess import preprocess_first

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = np.stack([preprocess_first(synthetic_cutout("FRII" if y else "FRI", rng)) for y in labels])
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Running the command line


def frsurvey_command() -> list[str]:
    """Return the ``frsurvey`` console script installed beside this interpreter (else ``python -m frsurvey.cli``)."""
    script = Path(sys.executable).with_name("frsurvey")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "frsurvey.cli"]


@contextlib.contextmanager
def _in_directory(path):
    """While in the block, the working directory is ``path`` (unchanged for None); the old one after."""
    if path is None:
        yield
        return
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run ``frsurvey`` in this process as :func:`run_frsurvey` runs the command: (exit code, stdout, stderr).

    ``frsurvey.cli.main`` with the arguments as strings, ``$FRSURVEY_MODEL`` unset and the working
    directory ``cwd`` for the call; what it writes to stdout and stderr (its log lines included) is
    returned in a :class:`subprocess.CompletedProcess`, and an exit of argparse's becomes the exit code.
    Usable where ``capsys`` is not (module- and session-scoped fixtures).
    """
    from frsurvey.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    model = os.environ.pop("FRSURVEY_MODEL", None)
    try:
        with _in_directory(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # as the interpreter turns it into an exit status
                code = exc.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
    finally:
        if model is not None:
            os.environ["FRSURVEY_MODEL"] = model
    return subprocess.CompletedProcess(["frsurvey", *argv], code, out.getvalue(), err.getvalue())


def run_frsurvey(*args, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ``frsurvey`` command in a process of its own and return the completed process (text output).

    For what needs a real process (the console script, signals, memory measured, start-up); else :func:`run_cli`.
    """
    env = dict(os.environ)
    env.pop("FRSURVEY_MODEL", None)
    return subprocess.run(
        [*frsurvey_command(), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------------
# Fixtures


def shared_data_required() -> bool:
    """Whether ``$FRSURVEY_REQUIRE_SHARED`` says the shared data must be there (set, and not empty or 0)."""
    return os.environ.get(REQUIRE_SHARED, "").strip() not in ("", "0")


def missing_shared_data(reason: str) -> NoReturn:
    """Skip the test for want of shared data, with ``reason``; fail it where the data is required (CI)."""
    if shared_data_required():
        pytest.fail(f"{reason}, and {REQUIRE_SHARED}=1 says it is required", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data directory (read-only); skips when it is absent (fails where it is required)."""
    if not SHARED_DATA.is_dir():
        missing_shared_data(f"shared data not found at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def first_cutouts(shared_data) -> Path:
    """``first-cutouts/``: 301 real SkyView FIRST cutouts, their catalog and reference PNGs."""
    d = shared_data / "first-cutouts"
    if not (d / "catalog.csv").is_file() or not (d / "fits").is_dir():
        missing_shared_data(f"the real FIRST cutouts are not in {d}")
    return d


@pytest.fixture(scope="session")
def frdeep_archive(shared_data) -> Path:
    """The published FRDEEP-F archive (read in place)."""
    p = shared_data / "frdeep-f" / "FIRST_PNG_dataset.tar.gz"
    if not p.is_file():
        missing_shared_data(f"the FRDEEP-F archive is not at {p}")
    return p


@pytest.fixture(scope="session")
def frdeep_root(tmp_path_factory, frdeep_archive) -> Path:
    """A data root where FRDEEP-F was installed once from the local archive (treat as read-only)."""
    from frsurvey.training.datasets import FRDEEPF

    root = tmp_path_factory.mktemp("frdeep")
    FRDEEPF(root, train=True, download=True, url=str(frdeep_archive))
    return root


@pytest.fixture(scope="session")
def stilts() -> str:
    """The ``stilts`` command; skips when it is not on PATH."""
    exe = shutil.which("stilts")
    if exe is None:
        pytest.skip("stilts is not on PATH (apt-get install stilts)")
    return exe


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    """A real model, trained in this session for 2 epochs on 64 synthetic images and saved with save_model."""
    import torch

    from frsurvey.model.checkpoint import save_model
    from frsurvey.model.networks import SmallCNN
    from frsurvey.training.train import TrainConfig, train_model

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    images, labels = synthetic_training_set(64, seed=1)
    # as small as it gets (classifying 301 cutouts means 9 x 301 forward passes on the CPU); the test
    # model only has to be a real, trained, saved model, not a good one
    arch_kwargs = {"width": 2}
    if "stem_stride" in inspect.signature(SmallCNN).parameters:
        arch_kwargs["stem_stride"] = 2
    cfg = TrainConfig(arch="cnn", arch_kwargs=arch_kwargs, epochs=2, batch_size=16, device="cpu", seed=0)
    model, _ = train_model(images, labels, cfg, card={"name": "test-cnn"})
    return save_model(model, tmp_path_factory.mktemp("model") / "test-model.pt")


@pytest.fixture(scope="session")
def model(model_path):
    """The session model, loaded with frsurvey.load_model."""
    from frsurvey.model.checkpoint import load_model

    return load_model(model_path)


# --------------------------------------------------------------------------------------------------
# A catalog where every FR_STATUS is reached by a real bad input


def make_status_zoo(directory) -> tuple[Path, Path, list[str]]:
    """Write images and a CSV catalog reaching every status; return (catalog, image dir, expected statuses).

    Images (random-looking names, in a subdirectory too): a FRII-like and an FRI-like source in their own
    SkyView-like cutouts; a 600x600 field with a source near its edge (crop inside: padded and classified)
    and a position 30 px from its edge (outside_image); a file whose data was truncated (bad_image); an
    all-zero image (blank_image); an image at 3.6"/px (wrong_scale). Bad positions: blank, NaN,
    malformed sexagesimal, Dec 95. Duplicated positions, in decimal and sexagesimal, are classified alike.
    """
    directory = Path(directory)
    images = directory / "images"
    rng = np.random.default_rng(99)
    make_first_fits(images / random_name(rng), 150.0, 30.0, seed=1)
    make_first_fits(
        images / "sub" / random_name(rng, ".fits.gz"),
        151.0,
        31.0,
        seed=2,
        gz=True,
        sources=default_blobs(151.0, 31.0, "FRI"),
    )
    field = first_wcs(160.0, 30.0, (600, 600))
    edge_ra, edge_dec = (float(v) for v in field.pixel_to_world_values(100.3, 300.2))  # 100 px from the edge
    out_ra, out_dec = (float(v) for v in field.pixel_to_world_values(300.2, 30.3))  # 30 px from the edge
    make_first_fits(
        images / random_name(rng),
        160.0,
        30.0,
        shape=(600, 600),
        seed=3,
        sources=default_blobs(160.0, 30.0) + default_blobs(edge_ra, edge_dec, "FRI"),
    )
    truncated = make_first_fits(images / random_name(rng), 170.0, 30.0, seed=4)
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: 2880 + (len(raw) - 2880) // 3])  # the header, a third of the data
    make_first_fits(images / random_name(rng), 180.0, 30.0, data=np.zeros((300, 300)))
    make_first_fits(images / random_name(rng), 190.0, 30.0, scale_arcsec=3.6, seed=5)
    rows = [
        ("good FRII", "150.0", "30.0", "ok"),
        ("good FRI", "151.0", "31.0", "ok"),
        ("blank dec", "150.0", "", "bad_position"),
        ("edge padded", f"{edge_ra:.10f}", f"{edge_dec:.10f}", "ok"),
        ("near edge", f"{out_ra:.10f}", f"{out_dec:.10f}", "outside_image"),
        ("NaN ra", "nan", "30.0", "bad_position"),
        ("truncated", "170.0", "30.0", "bad_image"),
        ("zeros", "180.0", "30.0", "blank_image"),
        ("coarse", "190.0", "30.0", "wrong_scale"),
        ("nowhere", "200.0", "30.0", "no_image"),
        ("malformed", "10:00", "+30:00:00", "bad_position"),
        ("too far north", "150.0", "95.0", "bad_position"),
        ("good FRII again", "150.0", "30.0", "ok"),
        ("good FRII sexagesimal", "10:00:00.000", "+30:00:00.00", "ok"),
    ]
    catalog = directory / "zoo.csv"
    lines = ["name,ra,dec,flux"] + [f"{n},{r},{d},{i * 1.5}" for i, (n, r, d, _) in enumerate(rows)]
    catalog.write_text("\n".join(lines) + "\n")
    return catalog, images, [s for *_, s in rows]


@pytest.fixture(scope="session")
def status_zoo(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The status zoo, written once per session (treat as read-only)."""
    return make_status_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def real_classified(tmp_path_factory, first_cutouts, model_path) -> tuple[subprocess.CompletedProcess, Path]:
    """`frsurvey classify` run once (in this process) on the 301 real cutouts with the session model: (run, VOTable)."""
    out = tmp_path_factory.mktemp("real") / "real.vot"
    proc = run_cli(
        "classify",
        first_cutouts / "catalog.csv",
        "--images",
        first_cutouts / "fits",
        "--model",
        model_path,
        "--out",
        out,
    )
    return proc, out


# --------------------------------------------------------------------------------------------------
# The command line in this process, on two small images


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    """Two SkyView-like images: an FRII-like source at (150, 30) and an FRI-like one at (10, -5)."""
    d = tmp_path_factory.mktemp("sky")
    make_first_fits(d / "a.fits", 150.0, 30.0, seed=1)
    make_first_fits(d / "b.fits", 10.0, -5.0, seed=2, sources=default_blobs(10.0, -5.0, "FRI"))
    return d


def cli(capsys, *args) -> tuple[int, str]:
    """Run ``frsurvey`` in this process; return (exit code, stderr) (an option refused by argparse exits 2)."""
    from frsurvey.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err
