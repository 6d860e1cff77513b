"""Labeled data to train on or to score: FRDEEP-F and labeled catalogs, with the cards that say what they are.

What ``frsurvey train`` learns from and ``frsurvey evaluate`` scores, for
Python: canonical uint8 images, their labels, a name per image, and one
*data card* per source of data (stored in a model card's ``training_data``
and in an evaluation's ``data``)::

    from frsurvey.training.data import load_labeled_data

    data = load_labeled_data("frdeep-f", download=True)  # FRDEEP-F's 550 training images
    data = load_labeled_data(catalog="labeled.ecsv", images="fits/")  # a labeled catalog

:func:`seen_in_training` compares data cards with a model card's, to tell
when a model is scored on its own training data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from astropy.table import Table

from .._utils import file_digest
from .datasets import FRDEEPF, LabeledCatalog, default_data_dir

__all__ = ["LabeledData", "catalog_data", "combine", "frdeep_data", "load_labeled_data", "seen_in_training"]


class LabeledData(NamedTuple):
    """Labeled canonical images and the cards of the data they come from."""

    #: uint8 ``(N, 150, 150)`` canonical images (see :mod:`frsurvey.image.preprocess`).
    images: np.ndarray
    #: ``(N,)`` class indices, 0 = FRI, 1 = FRII.
    labels: np.ndarray
    #: ``N`` names (FRDEEP-F's file names, ``row <i>`` for catalog rows), for the figures.
    names: list[str]
    #: One data card per source of data (FRDEEP-F by split and archive md5, a catalog by its sha256).
    cards: list[dict[str, Any]]


def frdeep_data(
    root: str | os.PathLike | None = None,
    split: str = "train",
    download: bool = False,
    url: str | None = None,
) -> LabeledData:
    """Return a split of FRDEEP-F (:class:`frsurvey.training.datasets.FRDEEPF`, with the canonical circular mask).

    Parameters
    ----------
    root : str or path-like, optional
        Where the dataset is, or is unpacked; default
        :func:`frsurvey.training.datasets.default_data_dir`.
    split : str
        ``train`` (550 images) or ``test`` (50).
    download : bool
        Fetch and unpack the archive first when it is not in ``root``.
    url : str, optional
        Where to fetch it from (``http(s)://``, ``file://`` or a path to a local copy).

    Returns
    -------
    LabeledData
        Its card: ``{"name": "FRDEEP-F", "split", "n", "archive_md5"}``.

    Raises
    ------
    frsurvey.training.datasets.DatasetMissingError
        If the dataset is not in ``root`` and ``download`` is false.
    frsurvey.training.datasets.DatasetIntegrityError
        If a file does not match its published md5.
    ValueError
        If ``split`` is not ``train`` or ``test``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"FRDEEP-F has a train and a test split, not {split!r}")
    ds = FRDEEPF(default_data_dir() if root is None else root, train=split == "train", download=download, url=url)
    card = {"name": "FRDEEP-F", "split": split, "n": len(ds), "archive_md5": FRDEEPF.tgz_md5}
    return LabeledData(ds.data, ds.targets, list(ds.names), [card])


def catalog_data(
    catalog: str | os.PathLike | Table,
    images: str | os.PathLike | None = None,
    label_column: str = "fr_class",
    ra_col: str | None = None,
    dec_col: str | None = None,
) -> LabeledData:
    """Return the usable rows of a labeled catalog, their images cut and prepared as ``classify`` does.

    Parameters
    ----------
    catalog : str, path-like or astropy.table.Table
        The labeled catalog (a file, or a table already read).
    images : str or path-like, optional
        Directory of the catalog's FIRST FITS images.
    label_column : str
        Column of FRI/FRII labels; rows with other values (hybrids, blanks)
        and rows whose image cannot be had are skipped and counted in the card.
    ra_col, dec_col : str, optional
        Position columns, when they cannot be found by UCD or name.

    Returns
    -------
    LabeledData
        Names ``row <i>`` (the catalog's row numbers); its card:
        ``{"name", "label_column", "n", "skipped", "sha256"}`` (the file's
        path and sha256; a table's name, ``table`` if none, and no sha256).

    Raises
    ------
    KeyError
        If ``label_column`` is not in the catalog.
    """
    cat = LabeledCatalog(catalog, images=images, label_column=label_column, ra_col=ra_col, dec_col=dec_col)
    card: dict[str, Any] = {
        "name": str(catalog.meta.get("name", "table")) if isinstance(catalog, Table) else str(catalog),
        "label_column": label_column,
        "n": len(cat),
        "skipped": dict(cat.skipped),
    }
    if not isinstance(catalog, Table):
        card["sha256"] = file_digest(catalog, "sha256")
    return LabeledData(cat.data, cat.targets, [f"row {r}" for r in cat.rows], [card])


def combine(parts: Sequence[LabeledData]) -> LabeledData:
    """Return the labeled data of all ``parts``, one after the other."""
    if not parts:
        raise ValueError("no data to combine")
    return LabeledData(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        [n for p in parts for n in p.names],
        [c for p in parts for c in p.cards],
    )


def load_labeled_data(
    dataset: str | None = None,
    catalog: str | os.PathLike | Table | None = None,
    images: str | os.PathLike | None = None,
    *,
    split: str = "train",
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    url: str | None = None,
    label_column: str = "fr_class",
    ra_col: str | None = None,
    dec_col: str | None = None,
) -> LabeledData:
    """Return the labeled data of a published dataset and/or a labeled catalog, as ``frsurvey train`` takes it.

    Parameters
    ----------
    dataset : str, optional
        ``frdeep-f``: FRDEEP-F's ``split`` (:func:`frdeep_data`, with
        ``data_root``, ``download`` and ``url``).
    catalog : str, path-like or astropy.table.Table, optional
        A labeled catalog, with the directory of its FIRST FITS ``images``
        (:func:`catalog_data`, with ``label_column``, ``ra_col`` and ``dec_col``).
        Its rows come after the dataset's.

    Raises
    ------
    ValueError
        If neither data is given, the dataset is not ``frdeep-f``, or the
        catalog comes without its images.
    """
    if dataset is None and catalog is None:
        raise ValueError("no data: give a dataset ('frdeep-f') and/or a labeled catalog with its images")
    if dataset not in (None, "frdeep-f"):
        raise ValueError(f"unknown dataset {dataset!r}; the published dataset is 'frdeep-f'")
    if catalog is not None and images is None:
        raise ValueError("a labeled catalog needs its images: the directory of its FIRST FITS images")
    parts = []
    if dataset == "frdeep-f":
        parts.append(frdeep_data(data_root, split, download=download, url=url))
    if catalog is not None:
        parts.append(catalog_data(catalog, images, label_column, ra_col, dec_col))
    return combine(parts)


def seen_in_training(card: dict, data: list[dict]) -> list[str]:
    """Return the names of the evaluation data sets that the model of ``card`` was trained on.

    Parameters
    ----------
    card : dict
        The model card; its ``training_data`` entries are compared.
    data : list of dict
        The data cards of the evaluation (:attr:`LabeledData.cards`, as
        ``frsurvey train`` writes them): FRDEEP-F by split, a labeled
        catalog by its file's sha256.

    Returns
    -------
    list of str
        Empty when none of the data was seen in training.
    """
    seen: list[str] = []
    trained = card.get("training_data") or []
    for d in data:
        for t in trained:
            if (
                d.get("name") == "FRDEEP-F"
                and t.get("name") == "FRDEEP-F"
                and d.get("split") == t.get("split", "train")
            ):
                seen.append(f"FRDEEP-F ({d['split']} split)")
                break
            digest = d.get("sha256")
            if digest and digest in (t.get("sha256"), t.get("catalog_sha256")):
                seen.append(str(d.get("name")))
                break
    return seen
