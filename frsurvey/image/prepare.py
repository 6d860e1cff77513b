"""From cutouts to model input: the canonical images of a list of source keys.

:class:`PreparedCutouts` is the one place where a cutout from an image source
becomes a canonical image (or a status saying why it cannot), used alike by
classification and by training from a labeled catalog, so that both see the
same pixels for the same source.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..sources import Cutout, ImageSource
from ..status import Status
from .morphology import MEASURES, blank_measures, measure
from .preprocess import BlankImageError, preprocess_first, preprocess_first_with_noise, to_model_input

__all__ = ["PreparedCutouts", "collate_prepared"]


class PreparedCutouts(Dataset):
    """Canonical images for a list of source keys: ``(i, uint8 image or None, status, message)``.

    With ``measured=True`` each item also carries the measurements of
    :func:`frsurvey.image.morphology.measure` (float64 vector, NaN when not
    measured), made from the same cutout and noise as the canonical image:
    ``(i, image, status, message, measures)``. ``decs`` (degrees, one per
    key) sets FIRST's beam for them; default: the round 5.4" beam.
    """

    def __init__(
        self,
        source: ImageSource,
        keys: list[Hashable | Cutout],
        *,
        measured: bool = False,
        decs: list[float] | np.ndarray | None = None,
    ) -> None:
        self.source = source
        self.keys = keys
        self.measured = measured
        self.decs = decs

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple:
        item = self._prepare(i)
        return item if self.measured else item[:4]

    def _prepare(self, i: int) -> tuple[int, np.ndarray | None, str, str, np.ndarray]:
        key = self.keys[i]
        cut = key if isinstance(key, Cutout) else self.source.load(key)
        if not cut.ok:
            return i, None, cut.status, cut.message, blank_measures()
        try:
            if not self.measured:
                return i, preprocess_first(cut.image), Status.OK, "", blank_measures()
            image, std = preprocess_first_with_noise(cut.image)
        except BlankImageError as exc:
            return i, None, Status.BLANK_IMAGE, f"{exc} ({cut.origin})", blank_measures()
        except ValueError as exc:
            return i, None, Status.BAD_IMAGE, f"{exc} ({cut.origin})", blank_measures()
        dec = None if self.decs is None else float(self.decs[i])
        return i, image, Status.OK, "", measure(cut.image, std, dec)


def collate_prepared(items: list[tuple]) -> dict[str, Any]:
    """Batch PreparedCutouts items: the images that exist become one tensor.

    Measured items (five values) also give ``measures``, ``(len(items), len(MEASURES))`` float64.
    """
    good = [(i, img) for i, img, *_ in items if img is not None]
    images = np.stack([img for _, img in good]) if good else np.zeros((0, 150, 150), np.uint8)
    return {
        "index": [i for i, *_ in items],
        "status": [item[2] for item in items],
        "message": [item[3] for item in items],
        "ok_index": [i for i, _ in good],
        "x": torch.from_numpy(to_model_input(images)),
        "measures": np.array([item[4] for item in items], dtype=np.float64).reshape(len(items), len(MEASURES))
        if items and len(items[0]) > 4
        else np.full((len(items), len(MEASURES)), np.nan),
    }
