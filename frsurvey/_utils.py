"""Small helpers shared by every layer: version, digests, atomic writes, user directories, progress bars, devices.

This module is the bottom of the package: it imports nothing from
frsurvey but :mod:`frsurvey._flags`, and nothing heavy at import time (torch and tqdm are imported
by the functions that need them), so that any module may use it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._flags import OptionError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "__version__",
    "atomic_write",
    "file_digest",
    "progress_bar",
    "replace_atomically",
    "resolve_device",
    "umask",
    "user_dir",
]

#: The package version (also ``frsurvey.__version__``; setup.py reads it from here).
__version__ = "0.1.0"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Return the hex digest of a file's bytes with a :mod:`hashlib` algorithm, read 1 MiB at a time."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def umask() -> int:
    """Return the process's umask (without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_atomically(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the finished file ``tmp`` in place of ``path`` in one step (``os.replace``).

    It gets the mode of the file it replaces, or the one the umask gives a
    new file (``mkstemp`` makes files private, 0600).
    """
    path = Path(path)
    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~umask())
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, data: bytes, *, durable: bool = False, mode: int = 0o666) -> Path:
    """Write ``data`` to ``path`` through a new temporary file beside it, renamed into place; return the path.

    The temporary file is created exclusively and never through a link
    (``O_EXCL | O_NOFOLLOW``). Readers see the old file or the whole new
    one, never a part.

    Parameters
    ----------
    mode : int
        The new file's permissions, less the umask (0o600: private).
    durable : bool
        Also flush the file and the rename to disk (``fsync``), so that a
        crash of the machine cannot leave a truncated file under the name.

    Raises
    ------
    OSError
        If the file cannot be written; no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a left-over (or planted) file or link: never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # the rename itself, on disk
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
    return path


def user_dir(kind: str, env: str | None = None) -> Path:
    """Return frsurvey's per-user ``cache`` or ``data`` directory, as :mod:`platformdirs` places them.

    ``$<env>`` overrides it when set. Otherwise, on Linux:
    ``$XDG_CACHE_HOME/frsurvey`` or ``~/.cache/frsurvey``, and
    ``$XDG_DATA_HOME/frsurvey`` or ``~/.local/share/frsurvey``; macOS and
    Windows have their own places (``~/Library/Caches/frsurvey``,
    ``%LOCALAPPDATA%\\frsurvey\\Cache``, ...).
    """
    if env and os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    import platformdirs

    if kind == "cache":
        return Path(platformdirs.user_cache_dir("frsurvey", appauthor=False))
    if kind == "data":
        return Path(platformdirs.user_data_dir("frsurvey", appauthor=False))
    raise ValueError(f"unknown kind of directory {kind!r}: cache or data")


def progress_bar(total: int | None, desc: str, unit: str, *, leave: bool = True, file: Any = None):
    """Return a tqdm bar on stderr (or ``file``) with the project's settings: a total, an ETA, the terminal's width."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=file)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``auto`` (a GPU when there is one), ``cpu``, ``cuda[:N]`` or ``mps``.

    Raises
    ------
    frsurvey._flags.OptionError
        If the name is not a device, or a GPU is asked for and none is available (a ValueError).
    """
    import torch

    if isinstance(device, torch.device):
        return device
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise OptionError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N ({exc})") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"--device {device!r}: frsurvey runs on auto, cpu, cuda[:N] or mps, not {dev.type}")
    if dev.type == "mps" and not mps:
        raise OptionError("--device mps was asked for, but torch sees no MPS device here")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda was asked for, but torch sees no CUDA GPU here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OptionError(f"--device {device}: torch sees only {torch.cuda.device_count()} CUDA GPU(s)")
    return dev
