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

from .preprocess import BlankImageError, preprocess_first, to_model_input
from .sources import Cutout, ImageSource
from .status import Status

__all__ = ["PreparedCutouts", "collate_prepared"]


class PreparedCutouts(Dataset):
    """Canonical images for a list of source keys: ``(i, uint8 image or None, status, message)``."""

    def __init__(self, source: ImageSource, keys: list[Hashable | Cutout]) -> None:
        self.source = source
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str, str]:
        key = self.keys[i]
        cut = key if isinstance(key, Cutout) else self.source.load(key)
        if not cut.ok:
            return i, None, cut.status, cut.message
        try:
            return i, preprocess_first(cut.image), Status.OK, ""
        except BlankImageError as exc:
            return i, None, Status.BLANK_IMAGE, f"{exc} ({cut.origin})"
        except ValueError as exc:
            return i, None, Status.BAD_IMAGE, f"{exc} ({cut.origin})"


def collate_prepared(items: list[tuple[int, np.ndarray | None, str, str]]) -> dict[str, Any]:
    """Batch PreparedCutouts items: the images that exist become one tensor."""
    good = [(i, img) for i, img, _, _ in items if img is not None]
    images = np.stack([img for _, img in good]) if good else np.zeros((0, 150, 150), np.uint8)
    return {
        "index": [i for i, *_ in items],
        "status": [s for *_, s, _ in items],
        "message": [m for *_, m in items],
        "ok_index": [i for i, _ in good],
        "x": torch.from_numpy(to_model_input(images)),
    }
