"""Datasets: FRDEEP-F, and labeled catalogs seen through an image source.

Both give ``(image, target)`` pairs of canonical 150x150 uint8 images (see
:mod:`frsurvey.image.preprocess`) and class indices (0 = FRI, 1 = FRII), like
torchvision's datasets; ``transform`` and ``target_transform`` apply on top.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from torch.utils.data import DataLoader, Dataset

from .._utils import file_digest, user_dir
from ..image.prepare import PreparedCutouts
from ..image.preprocess import CROP_SIZE, BlankImageError, circle_mask, preprocess_first, scale_to_uint8
from ..io import find_position_columns, parse_positions, read_catalog
from ..sources import make_source
from ..status import Status
from .augment import noise_level, perturb_cutout

__all__ = [
    "FRDEEPF",
    "DatasetIntegrityError",
    "DatasetMissingError",
    "LabeledCatalog",
    "default_data_dir",
    "find_duplicates",
    "label_index",
    "md5sum",
]

log = logging.getLogger(__name__)


class DatasetIntegrityError(RuntimeError):
    """Raised when a dataset file is missing or does not match its published checksum."""


class DatasetMissingError(DatasetIntegrityError):
    """Raised when a dataset file is not there at all (download it)."""


#: Environment variable that overrides the default data directory.
DATA_ENV = "FRSURVEY_DATA"


def default_data_dir() -> Path:
    """Return the user's data directory for frsurvey (where datasets are unpacked).

    ``$FRSURVEY_DATA`` if set; else ``$XDG_DATA_HOME/frsurvey`` or
    ``~/.local/share/frsurvey`` (Linux and other Unixes),
    ``~/Library/Application Support/frsurvey`` (macOS),
    ``%LOCALAPPDATA%\\frsurvey`` (Windows), as platformdirs' ``user_data_dir`` would say.
    """
    return user_dir("data", DATA_ENV)


def md5sum(path: str | os.PathLike) -> str:
    """Return the md5 hex digest of a file."""
    return file_digest(path, "md5")


def _apply_circle(images: np.ndarray) -> np.ndarray:
    """Return FRDEEP-F images as the canonical preprocessing makes them.

    FRDEEP-F was scaled min..max over the whole square; the canonical recipe
    masks first and scales inside the circle. Masking the corners is exact;
    where the brightest pixel was in a corner, the inside is re-scaled to
    0..255 the canonical way (a handful of images).
    """
    mask = circle_mask()
    out = images.copy()
    out[:, ~mask] = 0
    for i in np.flatnonzero(out.reshape(len(out), -1).max(axis=1) < 255):
        try:
            out[i] = scale_to_uint8(out[i].astype(np.float32), mask)
        except BlankImageError:
            pass  # an empty image stays empty
    return out


class _BatchUnpickler(pickle.Unpickler):
    """Unpickle CIFAR-style batches, allowing numpy arrays and strings only."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _load_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        return _BatchUnpickler(io.BytesIO(f.read()), encoding="latin1").load()


class _ImageDataset(Dataset):
    """``(image, target)`` pairs from ``data`` and ``targets``, through the transforms."""

    data: np.ndarray
    targets: np.ndarray
    transform: Callable | None = None
    target_transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class FRDEEPF(_ImageDataset):
    """The FRDEEP-F dataset of FIRST FRI/FRII images (Tang, Scaife & Leahy 2019).

    550 training and 50 test images, 150x150, made by the canonical FIRST
    preprocessing but without its circular mask: the mask is applied here
    (``mask=True``) so that the images are exactly what :func:`preprocess_first`
    makes.

    Parameters
    ----------
    root : str or path-like
        Directory holding (or to receive) ``FIRST_PNG_dataset/``.
    train : bool
        The 550 training images if True, else the 50 test images.
    transform, target_transform : callable, optional
        Applied to the uint8 ``(150, 150)`` image and to the class index.
    download : bool
        Fetch and unpack the archive from ``url`` when the files are not in
        ``root`` already (an integrity check decides).
    url : str, optional
        Where to fetch the archive: ``http(s)://``, ``file://`` or a local
        path. Default: the authors' published address.
    mask : bool
        Apply the inscribed-circle mask of the canonical preprocessing.

    Raises
    ------
    DatasetIntegrityError
        If a file is missing or its md5 differs from the published one; a
        corrupt file is never unpickled.
    """

    base_folder = "FIRST_PNG_dataset"
    url = "http://www.jb.man.ac.uk/research/ascaife/FIRST_PNG_dataset.tar.gz"
    filename = "FIRST_PNG_dataset.tar.gz"
    tgz_md5 = "2f39461e6c62fb45289559915106013a"
    train_list = [
        ("data_batch_1", "f34da44757c7fa3f6e6cd3d0839a4634"),
        ("data_batch_2", "f56cda0d9a99305fee2bad7de0560f95"),
        ("data_batch_3", "93265dd849331af4e1b092f74b06450b"),
        ("data_batch_4", "0de8f4c18b775251f4e553e2990cd446"),
        ("data_batch_5", "c6aa87400a1be6007da7cfcefd2c3e5c"),
        ("data_batch_6", "cebd3fdea93abbc048a3a4d5e58528e0"),
        ("data_batch_7", "49497445e9380f157e78cf8d74fca1eb"),
        ("data_batch_8", "88e298eed2d87bbdddad83fef1482723"),
        ("data_batch_9", "8c40117dbf4d456e63a8a665b245aa63"),
        ("data_batch_10", "f24d110cc5811ba4651630b9ee9b2989"),
        ("data_batch_11", "b843dc3b7f48606235029f135d41c85e"),
    ]
    test_list = [("test_batch", "4e06889b1e7713deb46e62887eb37727")]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": "655493bdee948954f3939727b3f9e735"}
    classes = ["FRI", "FRII"]

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        url: str | None = None,
        mask: bool = True,
    ) -> None:
        self.root = Path(os.path.expanduser(root))
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        if url is not None:
            self.url = url
        if download:
            self.download()
        self.check_integrity()
        files = self.train_list if train else self.test_list
        data, targets, names = [], [], []
        for name, _ in files:
            entry = _load_batch(self.root / self.base_folder / name)
            data.extend(np.asarray(a, dtype=np.uint8).reshape(CROP_SIZE, CROP_SIZE) for a in entry["data"])
            targets.extend(int(t) for t in entry["labels"])
            names.extend(f"{name}/{n}" for n in entry["filenames"])
        self.data = np.stack(data)
        if mask:
            self.data = _apply_circle(self.data)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.names = names
        label_names = _load_batch(self.root / self.base_folder / self.meta["filename"])[self.meta["key"]]
        if list(label_names) != self.classes:
            raise DatasetIntegrityError(f"FRDEEP-F label names are {label_names}, expected {self.classes}")

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"FRDEEPF(root={str(self.root)!r}, split={split!r}, n={len(self)})"

    @classmethod
    def files(cls) -> list[tuple[str, str]]:
        """Return ``(name, md5)`` of every file of the unpacked dataset."""
        return [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]

    def check_integrity(self) -> None:
        """Check that every file is present with its published md5.

        Raises
        ------
        DatasetIntegrityError
            Naming the first missing or corrupt file and what to do about it.
        """
        folder = self.root / self.base_folder
        for name, md5 in self.files():
            path = folder / name
            if not path.is_file():
                raise DatasetMissingError(
                    f"FRDEEP-F is not in {str(self.root)!r} ({name} is missing): download it with "
                    f"--download (command line) or download=True (Python), or unpack a copy of "
                    f"{self.filename} with --dataset-url PATH (url=PATH)"
                )
            got = md5sum(path)
            if got != md5:
                raise DatasetIntegrityError(
                    f"FRDEEP-F file {str(path)!r} is corrupt: md5 {got}, published {md5}; delete "
                    f"{str(folder)!r} and download it again (--download or --dataset-url PATH; Python: download=True)"
                )

    def _is_intact(self) -> bool:
        try:
            self.check_integrity()
        except DatasetIntegrityError:
            return False
        return True

    def download(self) -> None:
        """Fetch the archive from :attr:`url`, check its md5 and unpack it into ``root``.

        Does nothing when the unpacked files are already intact. ``url`` may
        be ``http(s)://``, ``file://`` or a plain path to a local copy.
        """
        if self._is_intact():
            log.info("FRDEEP-F already in %s and verified", self.root)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        archive = self.root / self.filename
        if not (archive.is_file() and md5sum(archive) == self.tgz_md5):
            _fetch(self.url, archive)
        got = md5sum(archive)
        if got != self.tgz_md5:
            archive.unlink(missing_ok=True)
            raise DatasetIntegrityError(
                f"the archive from {self.url} has md5 {got}, not the published {self.tgz_md5}; removed it"
            )
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(self.base_folder)]
            tar.extractall(self.root, members=members, filter="data")
        self.check_integrity()


_LABELS = {
    "fri": 0,
    "fr i": 0,
    "fr1": 0,
    "fr-i": 0,
    "fr_i": 0,
    "i": 0,
    "1": 0,
    "frii": 1,
    "fr ii": 1,
    "fr2": 1,
    "fr-ii": 1,
    "fr_ii": 1,
    "ii": 1,
    "2": 1,
}


def label_index(value: Any) -> int | None:
    """Return 0 for an FRI label, 1 for FRII (``FRI``, ``FR II``, ``FR1``, ``2``, ...), else None."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _LABELS.get(str(value).strip().lower())


class LabeledCatalog(_ImageDataset):
    """A labeled catalog seen through an image source, like :class:`FRDEEPF`.

    Each row's image is cut and prepared exactly as ``frsurvey classify``
    does (same image source, same canonical preprocessing), so a model trained
    on it sees the pixels it will see in classification.

    Parameters
    ----------
    catalog : astropy.table.Table or path
        The labeled catalog.
    images : path, optional
        Directory of FIRST FITS images (or give ``source``).
    label_column : str
        Column with FRI/FRII labels; rows with other values (hybrids, blanks)
        are skipped and counted in :attr:`skipped`.
    source : ImageSource, optional
        An image source instead of ``images``.
    ra_col, dec_col : str, optional
        Position columns, when they cannot be found by UCD or name.
    transform, target_transform : callable, optional
        As for :class:`FRDEEPF`.
    variants : int
        Also make this many physically perturbed versions of each image
        (fainter and shifted, before the canonical preprocessing; see
        :func:`frsurvey.training.augment.perturb_cutout`) into :attr:`variants`.
    seed : int
        Seed of the perturbations.

    Attributes
    ----------
    data : numpy.ndarray
        uint8 ``(N, 150, 150)`` canonical images of the usable rows.
    targets : numpy.ndarray
        Their labels, 0 = FRI, 1 = FRII.
    rows : numpy.ndarray
        Their row numbers in the catalog.
    skipped : dict
        Count of skipped rows by reason (``label:<value>`` or an FR_STATUS).
    variants : numpy.ndarray or None
        uint8 ``(N, variants, 150, 150)`` perturbed versions, when asked for.
    """

    classes = ["FRI", "FRII"]

    def __init__(
        self,
        catalog,
        images: str | os.PathLike | None = None,
        label_column: str = "fr_class",
        source=None,
        ra_col: str | None = None,
        dec_col: str | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        workers: int = 0,
        variants: int = 0,
        seed: int = 0,
    ) -> None:
        table = catalog if isinstance(catalog, Table) else read_catalog(catalog)
        if label_column not in table.colnames:
            raise KeyError(f"label column {label_column!r} is not in the catalog; its columns are {table.colnames}")
        self.table = table
        self.transform = transform
        self.target_transform = target_transform
        self.source = source if source is not None else make_source(images=images)
        ra_name, dec_name = find_position_columns(table, ra_col, dec_col)
        ra, dec, status = parse_positions(table, ra_name, dec_name)
        labels = [label_index(v) for v in table[label_column]]
        self.skipped: dict[str, int] = {}
        use = []
        for i, (lab, st) in enumerate(zip(labels, status)):
            if lab is None:
                value = table[label_column][i]
                key = f"label:{'' if value is np.ma.masked else str(value).strip()}"
                self.skipped[key] = self.skipped.get(key, 0) + 1
            elif st != Status.OK:
                self.skipped[st] = self.skipped.get(st, 0) + 1
            else:
                use.append(i)
        use = np.asarray(use, dtype=np.int64)
        keys = self.source.locate(ra[use], dec[use]) if len(use) else []
        self.source.prefetch(keys)  # online sources: downloaded concurrently, as classify does
        prepared = PreparedCutouts(self.source, keys)
        loader = DataLoader(prepared, batch_size=None, num_workers=workers)
        data, targets, rows, perturbed = [], [], [], []
        rng = np.random.default_rng(seed)
        for (j, img, st, msg), row in zip(loader, use):
            if img is None:
                self.skipped[st] = self.skipped.get(st, 0) + 1
                log.info("row %d skipped: %s %s", row, st, msg)
                continue
            data.append(np.asarray(img))
            targets.append(labels[row])
            rows.append(row)
            if variants:
                perturbed.append(self._perturbed(keys[int(j)], data[-1], variants, rng))
        self.source.close()
        self.variants = np.stack(perturbed) if perturbed else None
        self.data = np.stack(data) if data else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.skipped:
            log.warning(
                "%d of %d catalog rows skipped: %s",
                sum(self.skipped.values()),
                len(table),
                ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())),
            )

    def _perturbed(self, key, image: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        raw = self.source.load(key).image
        sigma = noise_level(raw)  # the same for every variant
        out = np.empty((n, CROP_SIZE, CROP_SIZE), dtype=np.uint8)
        for k in range(n):
            try:
                out[k] = preprocess_first(perturb_cutout(raw, rng, sigma=sigma))
            except BlankImageError:  # faded into the noise: keep the real image
                out[k] = image
        return out


def _fetch(url: str, dest: Path) -> None:
    """Copy ``url`` (http(s), file:// or a path) to ``dest`` atomically."""
    parsed = urllib.parse.urlparse(url)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if parsed.scheme in ("http", "https"):
                log.info("downloading %s", url)
                try:
                    with urllib.request.urlopen(url, timeout=60) as resp:
                        shutil.copyfileobj(resp, out)
                except OSError as exc:  # URLError, HTTPError, timeouts
                    reason = getattr(exc, "reason", None) or exc
                    raise DatasetIntegrityError(
                        f"could not download FRDEEP-F from {url}: {reason}. Without network here: copy "
                        f"{dest.name} (md5 {FRDEEPF.tgz_md5}) from a machine that has it and give its path "
                        f"with --dataset-url PATH (Python: url=PATH)"
                    ) from exc
            else:
                src = urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url
                if not Path(src).is_file():
                    raise DatasetIntegrityError(
                        f"no FRDEEP-F archive at {url!r}: give --dataset-url the path or URL of {dest.name}"
                    )
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_duplicates(
    images: np.ndarray, reference: np.ndarray, max_shift: int = 4, threshold: float = 0.85
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return which canonical images also appear in a reference set.

    Two canonical images of the same source share their pattern of non-zero
    (above 3 sigma) pixels even when they were cut a pixel or two apart; the
    overlap is measured as the intersection over union of those patterns,
    maximised over shifts of up to ``max_shift`` pixels.

    Parameters
    ----------
    images, reference : numpy.ndarray
        uint8 ``(N, 150, 150)`` and ``(M, 150, 150)`` canonical images.
    max_shift : int
        Largest shift tried along each axis, in pixels.
    threshold : float
        Smallest overlap counted as the same source.

    Returns
    -------
    duplicate : numpy.ndarray
        ``(N,)`` booleans.
    match : numpy.ndarray
        ``(N,)`` index of the best-matching reference image.
    overlap : numpy.ndarray
        ``(N,)`` the best overlap, 0..1.
    """
    a = images > 0
    b = (reference > 0).reshape(len(reference), -1).astype(np.float32)
    b_sum = b.sum(1)[None]
    best = np.zeros(len(a))
    match = np.zeros(len(a), dtype=np.int64)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = np.roll(a, (dy, dx), axis=(1, 2)).reshape(len(a), -1).astype(np.float32)
            inter = shifted @ b.T
            iou = inter / np.maximum(shifted.sum(1)[:, None] + b_sum - inter, 1)
            top = iou.max(1)
            better = top > best
            best[better] = top[better]
            match[better] = iou.argmax(1)[better]
    return best >= threshold, match, best
