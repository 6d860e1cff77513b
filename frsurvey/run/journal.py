"""The resume journal of a file run: finished chunks' results kept beside the output, so an interrupted run resumes.

:class:`ResumeJournal` is the folder ``<out>.frsurvey-partial``: a manifest
of everything the numbers depend on (catalog, reading, model, preprocessing,
image source, settings, thresholds), one file per finished chunk written
atomically and flushed to disk, and a lock (``flock``) so that two runs
never write one output. A run with another manifest does not use it; a
damaged chunk file is classified again.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import atomic_write
from ..io.formats import CatalogError
from ..model.checkpoint import file_sha256, weights_sha256
from ..status import DESCRIPTIONS, REFUSED, Status
from .engine import RowResults

try:  # POSIX: a journal is locked by the run using it
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

__all__ = [
    "JOURNAL_FORMAT",
    "JOURNAL_SUFFIX",
    "ResumeJournal",
    "catalog_fingerprint",
    "check_private_dir",
    "journal_path",
    "model_fingerprint",
]

log = logging.getLogger(__name__)


#: The journal of an unfinished run is this directory beside the output: ``labeled.fits.frsurvey-partial``.
JOURNAL_SUFFIX = ".frsurvey-partial"


#: Version of the journal layout; a journal of another version is not used.
JOURNAL_FORMAT = 2


_MANIFEST = "manifest.json"


_LOCK = "lock"


_CHUNK = re.compile(r"^chunk-(\d{7})\.npz$")


def journal_path(out: str | os.PathLike) -> Path:
    """Return the resume journal directory of an output file: ``<out>.frsurvey-partial`` beside it."""
    out = Path(out)
    return out.with_name(out.name + JOURNAL_SUFFIX)


def catalog_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Return what identifies a catalog file's content: its size and the sha256 of its bytes."""
    path = Path(path)
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def model_fingerprint(model: Any) -> str:
    """Return the sha256 of a model's checkpoint file, or of its weights, temperature and settings when unsaved."""
    sha = getattr(model, "sha256", None)
    if sha:
        return str(sha)
    extra = json.dumps(
        {"temperature": float(model.temperature), "tta": bool(model.tta), "card": model.card},
        sort_keys=True,
        default=str,
    )
    return "unsaved:" + hashlib.sha256((weights_sha256(model.net.state_dict()) + extra).encode()).hexdigest()


class ResumeJournal:
    """What an unfinished :func:`classify_file` run has done, kept beside its output so that it can resume.

    The journal is a directory, ``<out>.frsurvey-partial``, holding

    - ``manifest.json``: what the run's results depend on: the catalog's
      size and sha256, the chunk size, table and position columns, the
      model's sha256, the preprocessing, the image source's fingerprint and
      the numeric settings (device type, precision, views, pass size)
      and the thresholds of the statuses ``unresolved``, ``too_large`` and
      ``out_of_domain``, with the frsurvey version;
    - ``chunk-NNNNNNN.npz``, one per finished chunk: its rows' statuses,
      reasons, probabilities, spreads, measurements and FR_OOD (plain arrays, read without
      pickle), each written to a temporary name, flushed to disk and renamed,
      so a chunk file is whole or absent;
    - ``lock``: held (``flock``) by the run using the journal: a second run
      writing the same output is refused.

    A run finds the journal of an earlier run of the same command, and takes
    the results of its finished chunks instead of classifying them again; a
    journal whose manifest differs is not used (the log says why) and is
    replaced. The finished run assembles its output from every chunk and
    deletes the journal.

    Parameters
    ----------
    out : str or path-like
        The run's output file.
    manifest : dict
        What the run's results depend on (JSON-serialisable).
    """

    def __init__(self, out: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.out = Path(out)
        self.path = journal_path(self.out)
        self.manifest = {"journal": JOURNAL_FORMAT, **manifest}
        #: Chunks finished by an earlier run (number -> file), found by :meth:`open`.
        self.finished: dict[int, Path] = {}
        self._lock_file = None
        self._created = False

    # ------------------------------------------------------------------ opening

    def open(self, restart: bool = False) -> None:
        """Lock the journal, decide whether the earlier run's chunks are used, and write this run's manifest.

        Raises
        ------
        frsurvey.io.CatalogError
            If another run holds the journal (is writing the same output).
        """
        self._make_dir()
        self._lock()
        old = self._read_manifest()
        chunks = self._chunk_files()
        if old is not None or chunks:
            if restart:
                log.warning("--restart: not using the journal of an earlier run in %s", self.path)
            elif old != self.manifest:
                log.warning("not resuming from %s: %s; starting over", self.path, self._why_not(old))
            else:
                self.finished = chunks
        self._clear(keep=set(self.finished.values()))
        atomic_write(
            self.path / _MANIFEST,
            json.dumps(self.manifest, indent=1, sort_keys=True).encode(),
            durable=True,
            mode=0o600,
        )
        if self.finished:
            log.warning(
                "resuming from %s: %d chunk(s) finished by an earlier run are not classified again",
                self.path,
                len(self.finished),
            )

    def _make_dir(self) -> bool:
        """Create the journal directory (if need be) and check it is safe to use; return whether it was created.

        Raises
        ------
        frsurvey.io.CatalogError
            If the journal path is a symbolic link, not a directory, or a
            directory of another user: frsurvey never writes or deletes
            through it.
        """
        created = False
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o700)
                created = True
            except FileExistsError:
                pass
            check_private_dir(self.path, f"the journal of {str(self.out)!r}")
        except OSError as exc:
            raise CatalogError(f"cannot write beside the output {str(self.out)!r}: {exc}") from exc
        return created

    def acquire(self) -> None:
        """Lock the journal directory without using it (a run that keeps no journal, ``--chunk-size 0``).

        The directory is created if need be (and deleted by :meth:`discard`).

        Raises
        ------
        frsurvey.io.CatalogError
            If another run holds the journal, or it is not safe to use.
        """
        self._created = self._make_dir()
        try:
            self._lock()
        except BaseException:
            if self._created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def _lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path / _LOCK, flags, 0o600)
        except OSError as exc:  # ELOOP: the lock file is a symbolic link
            raise CatalogError(
                f"cannot use {str(self.path / _LOCK)!r} as the lock of {str(self.out)!r}: {exc.strerror or exc} "
                "(a symbolic link or not a regular file? frsurvey never writes through one): remove it"
            ) from None
        f = os.fdopen(fd, "r+")  # closed by release()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            f.close()
            raise CatalogError(f"{str(self.path / _LOCK)!r} is not a regular file: remove it")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip()
                f.close()
                raise CatalogError(
                    f"another frsurvey run{f' (pid {holder})' if holder else ''} is writing {str(self.out)!r} "
                    f"(its journal {str(self.path)!r} is locked): wait for it, or choose another --out"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _read_manifest(self) -> dict | None:
        try:
            if (self.path / _MANIFEST).is_symlink():  # never read through a link
                return None
            value = json.loads((self.path / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _why_not(self, old: dict | None) -> str:
        if old is None:
            return "its manifest is missing or unreadable"
        if old.get("journal") != JOURNAL_FORMAT:
            return f"it was written in journal format {old.get('journal')}, not {JOURNAL_FORMAT}"
        names = {
            "catalog": "the catalog file changed",
            "model": "another model (its sha256 differs)",
            "source": "the image source changed (other images, directory, service, cache or --offline)",
            "frsurvey": "another frsurvey version",
        }
        why = []
        for key in sorted(set(old) | set(self.manifest)):
            a, b = old.get(key), self.manifest.get(key)
            if a == b:
                continue
            if key in names:
                why.append(names[key])
            elif isinstance(a, dict) and isinstance(b, dict):
                why += [
                    f"{key} {k}: {a.get(k)!r} then, {b.get(k)!r} now"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
            else:
                why.append(f"{key}: {a!r} then, {b!r} now")
        return "; ".join(why) or "its manifest differs"

    def _chunk_files(self) -> dict[int, Path]:
        out = {}
        for p in self.path.iterdir():
            m = _CHUNK.match(p.name)
            if m and stat.S_ISREG(p.lstat().st_mode):  # never read through a symbolic link
                out[int(m.group(1))] = p
        return out

    def _clear(self, keep: set[Path]) -> None:
        """Remove everything but the lock and ``keep``: other chunks, temporary files, spools of killed runs."""
        for p in self.path.iterdir():
            if p.name == _LOCK or p in keep:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ chunks

    def load(self, k: int, rows: int) -> Any:
        """Return the results (:class:`~frsurvey.run.engine.RowResults`) of finished chunk ``k`` of ``rows`` rows, or None.

        A chunk file that cannot be read or does not fit is logged and
        forgotten (the chunk is classified again).
        """
        path = self.finished.get(k)
        if path is None:
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                n = int(z["rows"])
                status = z["status"][z["status_index"]].astype(object)
                message = z["message"][z["message_index"]].astype(object)
                p_fri, spread = z["p_fri"].astype(np.float64), z["spread"].astype(np.float64)
                measures, ood = z["measures"].astype(np.float64), z["ood"].astype(np.float64)
            if n != rows or not (len(status) == len(message) == len(p_fri) == len(spread) == len(measures) == rows):
                raise ValueError(f"it holds {n} rows, the chunk has {rows}")
            if not set(status) <= set(DESCRIPTIONS):
                raise ValueError(f"unknown statuses {sorted(set(status) - set(DESCRIPTIONS))}")
            _check_chunk_values(status, p_fri, spread)
        except Exception as exc:  # a damaged file: the chunk is classified again
            log.warning("journal file %s cannot be used (%s): classifying chunk %d again", path, exc, k)
            self.finished.pop(k, None)
            path.unlink(missing_ok=True)
            return None
        return RowResults(status, message, p_fri, spread, None, measures, ood)

    def save(self, k: int, res: Any) -> None:
        """Record the results of chunk ``k`` (whole, flushed to disk, or not at all)."""
        status_values, status_index = np.unique(np.asarray(res.status, dtype=str), return_inverse=True)
        message_values, message_index = np.unique(np.asarray(res.message, dtype=str), return_inverse=True)
        buf = io.BytesIO()
        np.savez(
            buf,
            rows=np.int64(len(res.status)),
            status=status_values,
            status_index=status_index.astype(np.int32).reshape(-1),
            message=message_values,
            message_index=message_index.astype(np.int32).reshape(-1),
            p_fri=np.asarray(res.p_fri, dtype=np.float64),
            spread=np.asarray(res.spread, dtype=np.float64),
            measures=np.asarray(res.measures, dtype=np.float64),
            ood=np.asarray(res.ood, dtype=np.float64),
        )
        path = self.path / f"chunk-{k:07d}.npz"
        atomic_write(path, buf.getvalue(), durable=True, mode=0o600)
        self.finished[k] = path

    def counts(self) -> tuple[int, dict[str, int]]:
        """Return the rows of the finished chunks on disk, and how many have each status."""
        rows, counts = 0, collections.Counter()
        for path in self._chunk_files().values():
            try:
                with np.load(path, allow_pickle=False) as z:
                    values, index = z["status"], z["status_index"]
                    counts.update(dict(zip(values.tolist(), np.bincount(index, minlength=len(values)).tolist())))
                    rows += int(z["rows"])
            except Exception:  # a damaged file: not finished
                continue
        return rows, {s: n for s, n in counts.items() if n}

    # ------------------------------------------------------------------ closing

    def release(self) -> None:
        """Unlock the journal and leave it for a later run (after an interruption)."""
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def discard(self) -> None:
        """Delete the journal (the output is complete, or there is nothing worth resuming)."""
        (self.path / _MANIFEST).unlink(missing_ok=True)  # first: chunk files without it are never used
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

    @classmethod
    def discard_stale(cls, out: str | os.PathLike) -> None:
        """Delete the journal of an earlier run of ``out`` unless a run holds it (for runs that keep none)."""
        path = journal_path(out)
        if path.is_symlink() or not path.is_dir():
            return
        journal = cls(out, {})
        try:
            journal._make_dir()
            journal._lock()
        except CatalogError:
            return
        log.info("deleting the journal of an earlier, unfinished run: %s", path)
        journal.discard()


def check_private_dir(path: Path, what: str) -> None:
    """Raise :class:`~frsurvey.io.CatalogError` unless ``path`` is a real directory of this user.

    A symbolic link (even to a directory) is refused, as is a directory owned
    by another user: frsurvey deletes and writes files in its journal, and
    must never do so in a directory someone else chose.
    """
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise CatalogError(
            f"{what} {str(path)!r} is a symbolic link: frsurvey never writes or deletes through one; "
            "remove the link (or choose another --out)"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise CatalogError(f"{what} {str(path)!r} exists and is not a directory: remove it (or choose another --out)")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CatalogError(
            f"{what} {str(path)!r} belongs to another user (uid {st.st_uid}): not using it; "
            "remove it (or choose another --out)"
        )


def _check_chunk_values(status: np.ndarray, p_fri: np.ndarray, spread: np.ndarray) -> None:
    """Raise ValueError unless a journal chunk's values are ones a run can give.

    Classified rows, and rows the model saw but that were refused a label
    (``unresolved``, ``too_large``, ``out_of_domain``: their probabilities are
    written): a finite probability in [0, 1] and a spread in [0, 0.5] or NaN
    (one view, or no spread); other rows: NaN for both.
    """
    ok = np.asarray([s == Status.OK or s in REFUSED for s in status], dtype=bool)
    with np.errstate(invalid="ignore"):
        good_p = np.isfinite(p_fri) & (p_fri >= 0.0) & (p_fri <= 1.0)
        good_sd = np.isnan(spread) | ((spread >= 0.0) & (spread <= 0.5))
    if not (good_p[ok].all() and good_sd[ok].all()):
        raise ValueError("a classified row has a probability outside [0, 1] or a spread outside [0, 0.5]")
    if not (np.isnan(p_fri[~ok]).all() and np.isnan(spread[~ok]).all()):
        raise ValueError("a row that was not classified has a probability")
