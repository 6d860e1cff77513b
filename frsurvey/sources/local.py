"""Cutouts from a local directory of FITS images with celestial WCS.

File names do not matter: every ``.fits``, ``.fit``, ``.fts`` and
``.fits.gz`` file below the directory is opened, its footprint indexed, and
for each position the image that contains it, farthest from an edge, is
chosen. The 300x300 px cutout is cut on the image's own pixel grid around the
pixel nearest the position, exactly as SkyView centres its cutouts.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._compat import fits as fits_compat
from .._flags import OptionError
from ..image.preprocess import CROP_SIZE, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC
from ..status import Status
from .base import Cutout, ImageSource

__all__ = ["FITS_SUFFIXES", "LocalFITSSource", "cut_window", "cutout_from_file", "image_caps", "read_image"]

log = logging.getLogger(__name__)

#: File name endings taken to be FITS images.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz")
#: Relative tolerance on the pixel scale before an image counts as not FIRST's.
SCALE_TOLERANCE = 0.01
#: Largest image, in pixels, read whole into memory (``--max-image-pixels``): 100 million (10,000 x 10,000).
#: Compressed images (``.gz``, ``.fz``, tile-compressed HDUs) and scaled integer images are
#: decompressed whole by astropy to cut one window; uncompressed images are read by rows and not limited.
MAX_IMAGE_PIXELS = 100_000_000
#: Largest image, in bytes of its decoded pixels, read whole into memory (``--max-image-bytes``): 512 MiB.
MAX_IMAGE_BYTES = 512 * 1024**2


def image_caps(max_image_pixels: int | None = None, max_image_bytes: int | None = None) -> tuple[int, int]:
    """Return the caps ``(pixels, bytes)`` on an image read whole: each None is its default, both checked.

    The one place where :data:`MAX_IMAGE_PIXELS` and :data:`MAX_IMAGE_BYTES`
    are applied (:class:`LocalFITSSource` and
    :class:`~frsurvey.sources.options.SourceOptions` both use it).

    Raises
    ------
    ValueError
        If a cap is below 1.
    """
    pixels = int(MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels)
    nbytes = int(MAX_IMAGE_BYTES if max_image_bytes is None else max_image_bytes)
    if pixels < 1 or nbytes < 1:
        raise OptionError("--max-image-pixels and --max-image-bytes must be at least 1")
    return pixels, nbytes


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image: where it is, its size and celestial WCS."""

    path: str
    hdu: int
    nx: int
    ny: int
    wcs_header: str
    scale_arcsec: float
    center: tuple[float, float, float]
    radius: float  # chord length on the unit sphere from centre to farthest corner
    #: Where the pixels start in the file, for an uncompressed float image read directly (else -1).
    data_offset: int = -1
    #: Their FITS dtype (big-endian float), when ``data_offset`` is set.
    dtype: str = ""
    #: Why the image is never read (it declares more pixels than the caps allow), or "".
    refused: str = ""


#: Header cards that never bear on a WCS; SkyView writes hundreds, and WCS() would parse them all.
_NOT_WCS = frozenset(("COMMENT", "HISTORY", ""))


#: Equatorial reference systems whose (RA, Dec) are the catalog's (J2000/ICRS; FK5 only at equinox 2000).
_EQUATORIAL = ("ICRS", "FK5")


def _celestial_wcs(header):
    """Return (the image's celestial WCS, "") or (None, why the image's WCS cannot place catalog positions)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(fits.Header([c for c in header.cards if c.keyword not in _NOT_WCS]))
        if not wcs.has_celestial:
            return None, "no celestial WCS (CTYPE RA---xxx / DEC--xxx)"
        # The celestial axes must be the image's first two (FITS order), so that
        # the pixel grid of the cutout is the sky plane.
        if sorted([wcs.wcs.lng, wcs.wcs.lat]) != [0, 1]:
            return None, "its celestial axes are not the image's first two"
        wcs.wcs.set()
    lng, lat = wcs.wcs.lngtyp.strip(), wcs.wcs.lattyp.strip()
    if (lng, lat) != ("RA", "DEC"):
        return None, (
            f"its WCS is in {lng}/{lat} coordinates, not RA/Dec: catalog positions (RA/Dec, J2000) would land "
            "on the wrong pixels; FIRST images are equatorial"
        )
    system, equinox = wcs.wcs.radesys.strip().upper(), float(wcs.wcs.equinox)
    if system not in _EQUATORIAL or (system == "FK5" and np.isfinite(equinox) and abs(equinox - 2000.0) > 0.01):
        shown = f"{system} {equinox:g}" if np.isfinite(equinox) else system
        return None, (
            f"its RA/Dec are {shown}, not J2000/ICRS: catalog positions would land on the wrong pixels; "
            "FIRST images are J2000"
        )
    return (wcs if wcs.naxis == 2 else wcs.celestial), ""  # a 2-D one is its own celestial part


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _image_hdus(hdul):
    from astropy.io import fits

    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS", 0) >= 2:
            yield i, hdu


def _open(path: str):
    from astropy.io import fits

    return fits.open(path, memmap=not path.endswith((".gz", ".fz")), lazy_load_hdus=True)


def _read_whole(path: str, hdul, hdu) -> bool:
    """Whether astropy must decode the whole image to give any of its pixels (compressed or scaled).

    A compressed file is told by its content (astropy opens a gzip file
    whatever its name), not only by its name.
    """
    from astropy.io import fits

    header = hdu.header
    return (
        bool(fits_compat.compression(hdul))
        or path.lower().endswith((".gz", ".fz", ".bz2", ".zip"))
        or isinstance(hdu, fits.CompImageHDU)
        or any(k in header for k in ("BSCALE", "BZERO", "BLANK"))
    )


def _too_big(path: str, hdul, hdu, npix: int, max_pixels: int, max_bytes: int) -> str:
    """Return why an image that is read whole is over the caps (from its header alone), or ""."""
    if not _read_whole(path, hdul, hdu):
        return ""
    header = hdu.header
    scaled = any(k in header for k in ("BSCALE", "BZERO", "BLANK"))
    nbytes = npix * max(abs(int(header.get("BITPIX", 8))) // 8, 8 if scaled else 1)
    if npix > max_pixels or nbytes > max_bytes:
        return (
            f"it declares {npix} pixels ({nbytes} bytes decoded), which would have to be decompressed whole, "
            f"above the caps of {max_pixels} pixels and {max_bytes} bytes (--max-image-pixels, --max-image-bytes)"
        )
    return ""


def index_file(
    path: str, max_pixels: int = MAX_IMAGE_PIXELS, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[list[ImageRecord], str | None]:
    """Return the indexable images in one FITS file and, if none, why.

    An image that would be decompressed whole and declares more than
    ``max_pixels`` pixels or ``max_bytes`` bytes is indexed with its
    ``refused`` reason: rows it alone covers get ``bad_image``, and it is
    never decompressed.
    """
    records: list[ImageRecord] = []
    why = "no image HDU (NAXIS >= 2)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open(path) as hdul:
                for i, hdu in _image_hdus(hdul):
                    header = hdu.header
                    nx, ny = int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))
                    if nx < 2 or ny < 2:
                        why = f"HDU {i} is {nx}x{ny} pixels: no image"
                        continue
                    extra = [int(header.get(f"NAXIS{k}", 1)) for k in range(3, int(header["NAXIS"]) + 1)]
                    if any(n != 1 for n in extra):
                        return [], f"HDU {i} has non-degenerate axes beyond the sky plane ({extra})"
                    wcs, refused = _celestial_wcs(header)
                    if wcs is None:
                        why = f"HDU {i}: {refused}"
                        continue
                    too_big = _too_big(path, hdul, hdu, nx * ny, max_pixels, max_bytes)
                    layout = (-1, "") if too_big else _raw_layout(path, hdul, i, hdu, nx * ny)
                    records.append(_record(path, i, nx, ny, wcs, layout, too_big))
    except Exception as exc:  # empty, truncated or non-FITS files
        return [], f"not a readable FITS file ({type(exc).__name__}: {exc})"
    return records, None if records else why


def _raw_layout(path: str, hdul, i: int, hdu, npix: int) -> tuple[int, str]:
    """Return (data offset, dtype) when the image's pixels can be read straight from the file, else (-1, "").

    That is an uncompressed, unscaled float image (FIRST's) in a plain file
    that holds all of its data: reading its bytes gives the values astropy
    gives, without parsing the header again for every cutout.
    """
    from astropy.io import fits

    header = hdu.header
    if (
        path.endswith((".gz", ".fz", ".bz2", ".zip"))
        or fits_compat.compression(hdul)
        or isinstance(hdu, fits.CompImageHDU)
        or header.get("BITPIX") not in (-32, -64)
        or header.get("BSCALE", 1) != 1
        or header.get("BZERO", 0) != 0
    ):
        return -1, ""
    dtype = ">f4" if header["BITPIX"] == -32 else ">f8"
    offset = fits_compat.data_offset(hdul, i)
    if os.path.getsize(path) < offset + npix * np.dtype(dtype).itemsize:
        return -1, ""  # truncated: let astropy say so when it is read
    return offset, dtype


class _RawPlane:
    """The pixels of one image, read from its file by rows on indexing (``plane[y0:y1, x0:x1]``)."""

    def __init__(self, rec: ImageRecord) -> None:
        self.rec = rec
        self.shape = (rec.ny, rec.nx)

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, cols = index
        y0, y1, _ = rows.indices(self.rec.ny)
        rec = self.rec
        dtype = np.dtype(rec.dtype)
        count = max(y1 - y0, 0) * rec.nx
        with open(rec.path, "rb") as f:
            f.seek(rec.data_offset + y0 * rec.nx * dtype.itemsize)
            block = np.fromfile(f, dtype=dtype, count=count)
        if block.size != count:
            raise ValueError(f"the file ends {count - block.size} pixels early (truncated?)")
        return block.reshape(-1, rec.nx)[:, cols]


def _record(
    path: str, hdu: int, nx: int, ny: int, wcs, layout: tuple[int, str] = (-1, ""), refused: str = ""
) -> ImageRecord:
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs) * 3600.0
    x = np.array([(nx - 1) / 2, -0.5, nx - 0.5, -0.5, nx - 0.5])
    y = np.array([(ny - 1) / 2, -0.5, -0.5, ny - 0.5, ny - 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.pixel_to_world_values(x, y)
    vec = _unit(np.asarray(ra), np.asarray(dec))
    if not np.all(np.isfinite(vec)):
        raise ValueError("WCS does not map the image corners to the sky")
    radius = float(np.max(np.linalg.norm(vec[1:] - vec[0], axis=1)))
    scale = float(np.sqrt(scales[0] * scales[1]))
    if abs(scales[0] - scales[1]) > SCALE_TOLERANCE * scale:
        scale = float("nan")  # non-square pixels: never FIRST's grid
    return ImageRecord(
        path,
        hdu,
        nx,
        ny,
        wcs.to_header_string(relax=True),
        scale,
        tuple(float(v) for v in vec[0]),
        radius,
        *layout,
        refused,
    )


def read_image(path: str, hdu: int, cache: OrderedDict | None = None):
    """Return the 2-D pixel array of one image HDU (degenerate axes dropped).

    Leading degenerate axes (FIRST's STOKES and FREQ) are indexed away; the
    result may be a memory map.
    """
    hdul = None
    if cache is not None and path in cache:
        cache.move_to_end(path)
        hdul = cache[path]
    if hdul is None:
        hdul = _open(path)
        if cache is not None:
            cache[path] = hdul
            while len(cache) > 8:
                cache.popitem(last=False)[1].close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = hdul[hdu].data
        except ValueError as exc:  # scaled integers (BSCALE, BZERO, BLANK): astropy will not memory-map them
            if not fits_compat.refuses_memmap(exc):
                raise
            from astropy.io import fits

            if cache is not None:
                cache.pop(path, None)
            hdul.close()
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
            if cache is not None:
                cache[path] = hdul
            data = hdul[hdu].data
    if data is None:
        raise ValueError("the HDU holds no data")
    while data.ndim > 2:
        if data.shape[0] != 1:
            raise ValueError(f"image has shape {data.shape}: more than one plane")
        data = data[0]
    return data


def cutout_from_file(path: str | os.PathLike, ra: float, dec: float, pixel_scale: float = PIXEL_SCALE_ARCSEC) -> Cutout:
    """Return the 300x300 :class:`Cutout` at (ra, dec) from one FITS file.

    The same arithmetic as :class:`LocalFITSSource` over a directory holding
    only this file: the pixel nearest the position on the file's own grid,
    :func:`cut_window` around it, the same statuses (``bad_image``,
    ``no_image``, ``wrong_scale``, ``outside_image``). A downloaded file and a
    local copy of it give identical pixels.
    """
    src = LocalFITSSource.from_files([path], pixel_scale=pixel_scale)
    try:
        if src.skipped:
            why = next(iter(src.skipped.values()))
            return Cutout.failed(Status.BAD_IMAGE, f"cannot use {path}: {why}", str(path))
        return src.load(src.locate(np.array([ra], dtype=float), np.array([dec], dtype=float))[0])
    finally:
        src.close()


def cut_window(data: np.ndarray, x: float, y: float, size: int = CUTOUT_SIZE) -> tuple[np.ndarray | None, str]:
    """Return the ``size`` x ``size`` window of ``data`` centred on pixel (x, y).

    The window is the one whose centre (between its two middle pixels) is
    nearest to (x, y), as SkyView places a source in a 300x300 cutout.
    Parts of the window beyond the image are NaN (SkyView's blank), as long
    as the central ``150 x 150`` px lie inside the image; otherwise the
    window is refused.

    Returns
    -------
    window, reason
        float32 array, or None and why not.
    """
    ny, nx = data.shape
    half = (size - 1) / 2.0
    x0 = int(np.floor(x - half + 0.5))
    y0 = int(np.floor(y - half + 0.5))
    inner = (size - CROP_SIZE) // 2
    if x0 + inner < 0 or y0 + inner < 0 or x0 + inner + CROP_SIZE > nx or y0 + inner + CROP_SIZE > ny:
        return None, "the position is within 75 px of the image edge"
    if x0 >= 0 and y0 >= 0 and x0 + size <= nx and y0 + size <= ny:
        return np.array(data[y0 : y0 + size, x0 : x0 + size], dtype=np.float32), ""
    out = np.full((size, size), np.nan, dtype=np.float32)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    out[ys - y0 : ye - y0, xs - x0 : xe - x0] = data[ys:ye, xs:xe]
    return out, ""


class LocalFITSSource(ImageSource):
    """FIRST cutouts cut from a directory of FITS images.

    Parameters
    ----------
    directory : str or path-like
        Searched recursively for FITS files (names irrelevant). Files that
        are not readable FITS images with a celestial WCS are skipped, each
        with a warning in the log and a count in :attr:`skipped`.
    pixel_scale : float
        The pixel scale in arcsec the images must have (FIRST's 1.8"); an
        image off by more than 1% is not used as if it were FIRST's: rows it
        alone covers get the status ``wrong_scale``.
    max_image_pixels, max_image_bytes : int, optional
        Caps on an image that must be decompressed whole to cut a window
        (default :data:`MAX_IMAGE_PIXELS`, :data:`MAX_IMAGE_BYTES`), checked
        on its header before any pixel is read.

    Notes
    -----
    An image that cannot be read when a cutout is cut (truncated data, a
    corrupt compressed tile, over the caps) is dropped from the index for
    the rest of the run, with a warning, and the next image covering the
    position is used; only when none is left is the row ``bad_image``.
    """

    name = "local"

    def __init__(
        self,
        directory: str | os.PathLike,
        pixel_scale: float = PIXEL_SCALE_ARCSEC,
        max_image_pixels: int | None = None,
        max_image_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"image directory {str(self.directory)!r} does not exist")
        self.pixel_scale = float(pixel_scale)
        self._set_caps(max_image_pixels, max_image_bytes)
        self.records: list[ImageRecord] = []
        self.skipped: dict[str, str] = {}
        self._wcs: dict[int, object] = {}
        self._dropped: dict[int, str] = {}  # images found unreadable in this run: why
        self._scan()
        self._files: OrderedDict = OrderedDict()

    def _set_caps(self, max_image_pixels: int | None, max_image_bytes: int | None) -> None:
        self.max_image_pixels, self.max_image_bytes = image_caps(max_image_pixels, max_image_bytes)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_wcs"] = {}
        state["_files"] = OrderedDict()
        state.pop("_tree", None)
        return state

    def _footprints(self):
        """Return (k-d tree of image centres, centres, radii), built once."""
        tree = getattr(self, "_tree", None)
        if tree is None:
            from scipy.spatial import cKDTree

            centers = np.array([r.center for r in self.records])
            radii = np.array([r.radius for r in self.records])
            tree = self._tree = (cKDTree(centers), centers, radii)
        return tree

    @classmethod
    def from_files(
        cls,
        paths: list[str | os.PathLike],
        pixel_scale: float = PIXEL_SCALE_ARCSEC,
        max_image_pixels: int | None = None,
        max_image_bytes: int | None = None,
    ) -> LocalFITSSource:
        """Return a source over the given FITS files only (no directory scan).

        Cutouts are located and cut exactly as for a directory holding just
        these files; the online sources use it on the files they download.
        """
        self = cls.__new__(cls)
        paths = [Path(p) for p in paths]
        self.directory = paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p) for p in paths]))
        self.pixel_scale = float(pixel_scale)
        self._set_caps(max_image_pixels, max_image_bytes)
        self.records = []
        self.skipped = {}
        self._wcs = {}
        self._dropped = {}
        self._index(paths, warn=False)
        self._files = OrderedDict()
        return self

    def _scan(self) -> None:
        files = sorted(
            p
            for p in self.directory.rglob("*")
            if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES) and not p.name.startswith(".")
        )
        self._index(files)
        log.info(
            "indexed %d image(s) in %d file(s) under %s (%d skipped)",
            len(self.records),
            len(files),
            self.directory,
            len(self.skipped),
        )

    def _index(self, files: list[Path], warn: bool = True) -> None:
        for p in files:
            records, why = index_file(str(p), self.max_image_pixels, self.max_image_bytes)
            if why:
                self.skipped[str(p)] = why
                if warn:
                    log.warning("skipping %s: %s", p, why)
            self.records.extend(records)

    def describe(self) -> str:
        """Return ``local:<directory> (<n> images)``."""
        return f"local:{self.directory.resolve()} ({len(self.records)} images)"

    def fingerprint(self) -> str:
        """Return the directory, pixel scale, and a digest of every image file's path, size and modification time.

        Adding, removing or rewriting an image changes it (so that a resume
        journal made before is not used).
        """
        h = hashlib.sha256(f"{self.pixel_scale!r}\n".encode())
        for path in sorted({r.path for r in self.records} | set(self.skipped)):
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            except OSError:
                h.update(f"{path}\0gone\n".encode("utf-8", "surrogateescape"))
        return f"{self.describe()} sha256:{h.hexdigest()}"

    def _wcs_of(self, i: int):
        wcs = self._wcs.get(i)
        if wcs is None:
            from astropy.wcs import WCS

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wcs = WCS(self.records[i].wcs_header)  # the string itself: no fits.Header made of it
            self._wcs[i] = wcs
        return wcs

    def _scale_ok(self, rec: ImageRecord) -> bool:
        return bool(abs(rec.scale_arcsec - self.pixel_scale) <= SCALE_TOLERANCE * self.pixel_scale)

    def locate(self, ra: np.ndarray, dec: np.ndarray) -> list:
        """Return per position ``(image number, x, y)`` or a failed Cutout.

        Among the images containing a position, the one at FIRST's pixel scale
        where the position lies farthest from an edge is chosen.
        """
        ra = np.asarray(ra, dtype=float)
        dec = np.asarray(dec, dtype=float)
        n = len(ra)
        result: list = [None] * n
        finite = np.isfinite(ra) & np.isfinite(dec)
        for i in np.flatnonzero(~finite):
            result[i] = Cutout.failed(Status.BAD_POSITION, "no position")
        if not self.records:
            for i in np.flatnonzero(finite):
                result[i] = Cutout.failed(Status.NO_IMAGE, f"no usable FITS image under {self.directory}")
            return result
        tree, centers, radii = self._footprints()
        idx = np.flatnonzero(finite)
        vec = _unit(ra[idx], dec[idx])
        candidates = tree.query_ball_point(vec, r=float(radii.max()) * 1.0001) if len(idx) else []
        # per image, the positions that might fall in it (in order)
        counts = np.fromiter((len(c) for c in candidates), dtype=np.intp, count=len(candidates))
        flat_c = np.fromiter(itertools.chain.from_iterable(candidates), dtype=np.intp, count=int(counts.sum()))
        flat_j = np.repeat(np.arange(len(candidates)), counts)
        near = np.linalg.norm(vec[flat_j] - centers[flat_c], axis=1) <= radii[flat_c] * 1.0001
        flat_c, flat_j = flat_c[near], flat_j[near]
        order = np.argsort(flat_c, kind="stable")
        flat_c, flat_j = flat_c[order], flat_j[order]
        starts = np.flatnonzero(np.r_[True, flat_c[1:] != flat_c[:-1]]) if len(flat_c) else np.zeros(0, np.intp)
        per_image = {int(flat_c[a]): flat_j[a:b] for a, b in zip(starts, [*starts[1:], len(flat_c)])}
        best_margin = np.full(len(idx), -np.inf)
        best_rank = np.full(len(idx), -1)  # 1: right scale, 0: wrong scale
        best = np.full((len(idx), 3), np.nan)
        dropped = getattr(self, "_dropped", {})
        unreadable = np.full(len(idx), -1)  # an image found unreadable in this run that covers the position
        for c, js in per_image.items():
            rec = self.records[c]
            js = np.asarray(js)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x, y = self._wcs_of(c).world_to_pixel_values(ra[idx[js]], dec[idx[js]])
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            margin = np.minimum.reduce([x + 0.5, rec.nx - 0.5 - x, y + 0.5, rec.ny - 0.5 - y])
            inside = np.isfinite(margin) & (margin > 0)
            if c in dropped:  # unreadable: not used again in this run, but rows it alone covers say why
                unreadable[js[inside]] = c
                continue
            rank = 1 if self._scale_ok(rec) else 0
            better = inside & ((rank > best_rank[js]) | ((rank == best_rank[js]) & (margin > best_margin[js])))
            upd = js[better]
            best_margin[upd] = margin[better]
            best_rank[upd] = rank
            best[upd] = np.stack([np.full(better.sum(), c), x[better], y[better]], axis=1)
        for j, i in enumerate(idx):
            if best_rank[j] < 0 and unreadable[j] >= 0:
                rec = self.records[int(unreadable[j])]
                why = dropped[int(unreadable[j])]
                result[i] = Cutout.failed(Status.BAD_IMAGE, f"cannot read {rec.path}: {why}", rec.path)
            elif best_rank[j] < 0:
                result[i] = Cutout.failed(Status.NO_IMAGE, f"no image under {self.directory} covers the position")
            elif best_rank[j] == 0:
                rec = self.records[int(best[j, 0])]
                result[i] = Cutout.failed(
                    Status.WRONG_SCALE,
                    f'{rec.path} has {rec.scale_arcsec:.3g}"/px, not FIRST\'s {self.pixel_scale}"/px; '
                    'resample it onto a 1.8"/px grid first',
                    rec.path,
                )
            else:
                c, x, y = best[j]
                result[i] = (int(c), round(float(x), 6), round(float(y), 6))
        return result

    def load(self, key) -> Cutout:
        """Return the 300x300 cutout for a key from :meth:`locate`."""
        if isinstance(key, Cutout):
            return key
        c, x, y = key
        rec = self.records[c]
        if c in getattr(self, "_dropped", {}):  # found unreadable since the key was located
            return self._instead(c, x, y, self._dropped[c])
        if rec.refused:
            return self._instead(c, x, y, rec.refused)
        try:
            # plain float images: only the window's rows are read, straight into native floats
            data = _RawPlane(rec) if rec.data_offset >= 0 else read_image(rec.path, rec.hdu, self._files)
            window, why = cut_window(data, x, y)
        except Exception as exc:  # truncated data, unreadable compression, ...
            old = self._files.pop(rec.path, None)
            if old is not None:
                old.close()
            return self._instead(c, x, y, f"{type(exc).__name__}: {exc}")
        if window is None:
            return Cutout.failed(Status.OUTSIDE_IMAGE, f"{why} ({rec.path})", rec.path)
        return Cutout(window, Status.OK, "", rec.path)

    def _instead(self, c: int, x: float, y: float, why: str) -> Cutout:
        """Drop unreadable image ``c`` from the index for this run; cut the position from the next image covering it."""
        rec = self.records[c]
        dropped = self.__dict__.setdefault("_dropped", {})
        if c not in dropped:
            dropped[c] = why
            log.warning(
                "cannot read %s (%s): not using it again in this run; the next image covering each of its "
                "positions is used instead (rows no other image covers: %s)",
                rec.path,
                why,
                Status.BAD_IMAGE,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ra, dec = self._wcs_of(c).pixel_to_world_values(x, y)
        failed = Cutout.failed(Status.BAD_IMAGE, f"cannot read {rec.path}: {why}", rec.path)
        if not (np.isfinite(ra) and np.isfinite(dec)):
            return failed
        other = self.locate(np.array([float(ra)]), np.array([float(dec)]))[0]
        if isinstance(other, Cutout):  # no other image covers it (or only one at another scale)
            return failed if other.status == Status.NO_IMAGE else other
        log.info("(%.6f, %.6f): using %s instead of %s", ra, dec, self.records[other[0]].path, rec.path)
        return self.load(other)

    def close(self) -> None:
        """Close the FITS files kept open between cutouts."""
        while self._files:
            self._files.popitem()[1].close()
