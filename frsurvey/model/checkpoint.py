"""Checkpoints: a model and its card on disk, the shipped models, and loading them safely.

A checkpoint is a plain ``torch.save`` of ``{"format": ..., "card": dict,
"state_dict": dict}`` holding only tensors, strings and numbers, so that it
loads with ``torch.load(weights_only=True)``: no pickled code is ever run.
The card says what the model is (architecture, classes, the preprocessing it
expects, the data it was trained on, its metrics, calibration, seeds and
package versions) and carries the sha256 of the weights and of itself,
checked on load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import __version__, file_digest
from ..image.preprocess import PREPROCESSING, PREPROCESSING_VERSION
from .classifier import FRClassifier
from .networks import CLASSES, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_MODEL_NAME",
    "SHIPPED_MODELS",
    "CheckpointError",
    "card_sha256",
    "default_model_path",
    "file_sha256",
    "load_model",
    "package_versions",
    "save_model",
    "weights_sha256",
]


#: Version of the checkpoint layout.
CHECKPOINT_FORMAT = "frsurvey-checkpoint-1"


#: File name of the shipped model.
DEFAULT_MODEL_NAME = "frsurvey-default.pt"


class CheckpointError(ValueError):
    """Raised when a checkpoint is missing, corrupt, tampered or made for other inputs."""


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Return the sha256 of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def card_sha256(card: dict[str, Any]) -> str:
    """Return the sha256 of a model card's content (every entry but ``card_sha256`` itself).

    The card holds what turns the weights into probabilities (architecture,
    temperature, test-time augmentation, preprocessing contract), so an
    edited card is as much a different model as edited weights.
    """
    content = {k: v for k, v in card.items() if k != "card_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Return the sha256 hex digest of a file."""
    return file_digest(path, "sha256")


def package_versions() -> dict[str, str]:
    """Return the versions of the packages a model's results depend on."""
    import astropy
    import torchvision

    return {
        "frsurvey": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "astropy": astropy.__version__,
        "python": platform.python_version(),
    }


def save_model(model: FRClassifier, path: str | os.PathLike, **card_updates: Any) -> Path:
    """Write ``model`` and its card to ``path`` (atomically) and return the path.

    The card gains the architecture's input contract (classes, preprocessing
    name and version), the package versions and the sha256 of the weights.
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    card = dict(model.card)
    card.update(card_updates)
    card.setdefault("classes", list(CLASSES))
    card.setdefault("preprocessing", PREPROCESSING)
    card.setdefault("preprocessing_version", PREPROCESSING_VERSION)
    card.setdefault("normalization", {"mean": 0.5, "std": 0.5})
    card["temperature"] = float(model.temperature)
    card["versions"] = package_versions()
    card["weights_sha256"] = weights_sha256(state)
    card = _plain(card)
    card["card_sha256"] = card_sha256(card)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written through a new file beside it and renamed into place, as _utils.atomic_write does; torch.save is
    # given the file's name (not bytes in memory), which names the archive inside, so the bytes stay the same
    tmp = path.with_name(f".{path.name}.part")
    tmp.unlink(missing_ok=True)  # a left-over file (or link) is removed, not written through
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "card": card, "state_dict": state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    model.card = card
    return path


def _plain(value: Any, where: str = "card") -> Any:
    """Return ``value`` as plain Python data (dict, list, str, int, float, bool, None)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"{where} is a {type(value).__name__}; model cards hold plain values only")


#: Shipped models by name: ``default`` (one network, one pass per source) and ``accurate`` (the ensemble
#: it was distilled from).
SHIPPED_MODELS = ("default", "accurate")


def default_model_path(name: str = "default") -> Path:
    """Return the path of a shipped model (``$FRSURVEY_MODEL``, if set, for ``default``).

    Parameters
    ----------
    name : str
        One of :data:`SHIPPED_MODELS`.

    Looked for in the source tree's ``checkpoints/`` (editable installs) and
    in ``<prefix>/share/frsurvey/checkpoints`` (wheel installs).

    Raises
    ------
    CheckpointError
        If ``name`` is not a shipped model's name.
    """
    if name not in SHIPPED_MODELS:
        raise CheckpointError(
            f"no shipped model is called {name!r}; the shipped models are {', '.join(SHIPPED_MODELS)}"
        )
    env = os.environ.get("FRSURVEY_MODEL")
    if env and name == "default":
        return Path(env)
    filename = f"frsurvey-{name}.pt"
    repo = Path(__file__).resolve().parents[2]  # frsurvey/model/checkpoint.py -> the repository
    for candidate in (
        repo / "checkpoints" / filename,
        Path(sys.prefix) / "share" / "frsurvey" / "checkpoints" / filename,
    ):
        if candidate.exists():
            return candidate
    return repo / "checkpoints" / filename


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FRClassifier:
    """Return the model stored in a checkpoint, in evaluation mode.

    Parameters
    ----------
    path : str or path-like, optional
        A checkpoint written by :func:`save_model`, or the name of a shipped
        model (:data:`SHIPPED_MODELS`: ``default``, ``accurate``) where no
        file of that name exists; default: the shipped default model
        (:func:`default_model_path`).
    device : str or torch.device
        Where to put the weights.

    Returns
    -------
    FRClassifier
        With ``card`` (the model card), ``path`` and ``sha256`` (of the file).

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, holds anything but plain data
        (pickled code is refused), was tampered with (weights or card do not
        match the sha256 the card carries), or was made for other classes or preprocessing.
    """
    if path is None:
        path = default_model_path()
    elif isinstance(path, str) and path in SHIPPED_MODELS and not Path(path).exists():
        path = default_model_path(path)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"refusing {str(path)!r}: it is not a plain-data checkpoint (torch.load with weights_only=True "
            f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an frsurvey checkpoint (format {CHECKPOINT_FORMAT})")
    card, state = blob.get("card"), blob.get("state_dict")
    if not isinstance(card, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} lacks its model card or weights")
    try:
        card = _plain(card)
    except TypeError as exc:
        raise CheckpointError(
            f"{str(path)!r}: its model card holds something other than plain values ({exc})"
        ) from None
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{str(path)!r}: its state dict holds entries that are not named tensors ({', '.join(map(repr, bad[:5]))})"
        )
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not_finite:
        raise CheckpointError(
            f"{str(path)!r}: weights {', '.join(not_finite[:5])} hold NaN or infinite values "
            "(a training run that diverged?): its scores would mean nothing"
        )
    temperature = card.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise CheckpointError(f"{str(path)!r}: its temperature {temperature!r} is not a finite number above 0")
    if weights_sha256(state) != card.get("weights_sha256"):
        raise CheckpointError(f"{str(path)!r}: the weights do not match the sha256 in the model card (tampered?)")
    if card_sha256(card) != card.get("card_sha256"):
        raise CheckpointError(
            f"{str(path)!r}: the model card does not match its sha256 (edited after saving?): refusing it, "
            "since the card decides what the scores mean (temperature, test-time augmentation, preprocessing)"
        )
    if tuple(card.get("classes", ())) != CLASSES:
        raise CheckpointError(f"{str(path)!r} predicts {card.get('classes')}, not {list(CLASSES)}")
    if not isinstance(card.get("arch_kwargs", {}), dict):
        raise CheckpointError(f"{str(path)!r}: its arch_kwargs are not a mapping")
    prep = (card.get("preprocessing"), card.get("preprocessing_version"))
    if prep != (PREPROCESSING, PREPROCESSING_VERSION):
        raise CheckpointError(
            f"{str(path)!r} was trained on images made by {prep[0]!r} v{prep[1]}; this frsurvey makes "
            f"{PREPROCESSING!r} v{PREPROCESSING_VERSION} images, so its scores would mean nothing"
        )
    try:
        net = build_model(card["arch"], **card.get("arch_kwargs", {}))
        net.load_state_dict(state)
        model = FRClassifier(net, card)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{str(path)!r}: cannot build its network: {exc}") from exc
    model.path = str(path)
    model.sha256 = file_sha256(path)
    return model.to(device).eval()
