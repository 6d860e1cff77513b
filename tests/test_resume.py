"""Interrupted runs: killed (SIGKILL), Ctrl-C, SIGTERM, a full disk, at any point; resumed, they finish as if never stopped.

``classify_file`` keeps a journal beside the output (``<out>.frsurvey-partial``):
one file per finished chunk. The same command again takes the finished
chunks from it and classifies the rest; the output is the one an
uninterrupted run writes, row for row and value for value (``FRS_DATE`` is
the date of the run that finished). No test here asserts a time.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import default_blobs, frsurvey_command, make_first_fits, run_cli

from frsurvey.cli import main
from frsurvey.io import CatalogError, ChunkWriter, read_catalog
from frsurvey.run import classify_file
from frsurvey.run.engine import BatchClassifier
from frsurvey.run.journal import JOURNAL_SUFFIX, ResumeJournal, journal_path

pytestmark = pytest.mark.filterwarnings("ignore:File may have been truncated")

DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def same_output(a: Path, b: Path) -> None:
    """The two files are byte for byte the same but for the date of the run (FRS_DATE)."""
    x, y = a.read_bytes(), b.read_bytes()
    assert len(DATE.findall(x)) == len(DATE.findall(y)) <= 1
    assert DATE.sub(b"D", x) == DATE.sub(b"D", y), f"{a} and {b} differ"


def chunk_files(journal: Path) -> list[Path]:
    return sorted(journal.glob("chunk-*.npz")) if journal.is_dir() else []


# --------------------------------------------------------------------------------------------------
# Killed for real: a subprocess, SIGKILL and SIGINT halfway (the reference run and the resumed ones in this process)


N_ROWS = 800
CHUNK = 40  # 20 chunks


@pytest.fixture(scope="module")
def big_run(tmp_path_factory, model_path):
    """A catalog of 800 rows from three synthetic fields, and an uninterrupted run of it (the reference)."""
    d = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(5)
    centers = [(140.0, 20.0), (141.0, 21.0), (142.0, 22.0)]
    for k, (ra, dec) in enumerate(centers):
        blobs = []
        for j in range(6):
            blobs += default_blobs(
                ra + rng.uniform(-0.1, 0.1), dec + rng.uniform(-0.1, 0.1), "FRII" if j % 2 else "FRI"
            )
        make_first_fits(d / "images" / f"f{k}.fits", ra, dec, shape=(600, 600), sources=blobs, seed=k)
    which = rng.integers(0, 3, N_ROWS)
    ra = np.array([centers[i][0] for i in which]) + rng.uniform(-0.08, 0.08, N_ROWS)
    dec = np.array([centers[i][1] for i in which]) + rng.uniform(-0.08, 0.08, N_ROWS)
    rows = [f"{i},{r:.7f},{q:.7f}" for i, (r, q) in enumerate(zip(ra, dec))]
    for i in range(70, N_ROWS, 97):  # positions seen in an earlier chunk: remembered in one run, not across runs
        rows[i] = f"{i}," + rows[i - 67].split(",", 1)[1]
    rows[130] = "130,,21.0"  # and a few that cannot be classified
    rows[555] = "555,200.0,-30.0"
    catalog = d / "cat.csv"
    catalog.write_text("id,ra,dec\n" + "\n".join(rows) + "\n")
    cmd = ["classify", str(catalog), "--images", str(d / "images"), "--model", str(model_path)]
    cmd += ["--device", "cpu", "--threads", "1", "--chunk-size", str(CHUNK), "--no-progress"]
    ref = d / "ref.fits"
    proc = run_cli(*cmd, "--out", ref, "-v")
    assert proc.returncode == 3, proc.stderr
    prepared = int(re.search(r"(\d+) source\(s\) prepared", proc.stderr).group(1))
    return cmd, ref, prepared, d


def _env() -> dict:
    env = dict(os.environ)
    env.pop("FRSURVEY_MODEL", None)
    return env


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a terminal's process gets them (default action, not blocked).

    A child inherits ignored dispositions and the blocked-signal mask of the process that starts it; the test
    process (pytest, with Dask clusters and servers started in it) must not decide whether Ctrl-C reaches the run.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_halfway(cmd: list[str], out: Path, sig: int, chunks: int = 2) -> tuple[subprocess.Popen, str, int]:
    """Start ``frsurvey`` in a process of its own, send ``sig`` once its journal holds ``chunks`` finished chunks;
    return (process, stderr, chunks)."""
    journal = journal_path(out)
    proc = subprocess.Popen(
        [*frsurvey_command(), *cmd, "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + 300
    while len(chunk_files(journal)) < chunks:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run never finished a chunk"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err, len(chunk_files(journal))


def resume(cmd: list[str], out: Path) -> subprocess.CompletedProcess:
    """The same command again (in this process), verbose."""
    return run_cli(*cmd, "--out", out, "-v")


@pytest.mark.slow
def test_sigkill_halfway_then_the_same_command_finishes_the_same_file(big_run):
    cmd, ref, prepared, d = big_run
    out = d / "killed.fits"
    proc, _, done = stop_halfway(cmd, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= done < N_ROWS // CHUNK, "killed halfway"
    assert not out.exists(), "no half-written output"
    assert sorted(p.name for p in d.iterdir() if p.name.startswith("killed")) == [f"killed.fits{JOURNAL_SUFFIX}"]

    again = resume(cmd, out)
    assert again.returncode == 3, again.stderr
    assert "Traceback" not in again.stderr
    assert f"resuming from {journal_path(out)}: {done} chunk(s) finished by an earlier run" in again.stderr
    assert f"{done} chunk(s) ({done * CHUNK} rows) from the journal" in again.stderr
    # the finished chunks' sources were not prepared again
    redone = int(re.search(r"(\d+) source\(s\) prepared", again.stderr).group(1))
    assert redone < prepared
    same_output(ref, out)
    assert not journal_path(out).exists()
    a, b = read_catalog(ref), read_catalog(out)
    assert list(b["id"]) == list(range(N_ROWS))
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback_and_the_run_resumes(big_run):
    cmd, ref, _, d = big_run
    out = d / "interrupted.fits"
    proc, err, done = stop_halfway(cmd, out, signal.SIGINT, chunks=3)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"frsurvey: interrupted; finished so far: {done * CHUNK} rows: " in err
    assert f"kept in {journal_path(out)}: run the same command again to resume" in err
    assert len(chunk_files(journal_path(out))) == done and not out.exists()
    again = resume(cmd, out)
    assert again.returncode == 3, again.stderr
    assert f"{done} chunk(s) finished by an earlier run" in again.stderr
    same_output(ref, out)


# --------------------------------------------------------------------------------------------------
# Interrupted in this process, at every step of a run


@pytest.fixture
def zoo_run(status_zoo, model_path, tmp_path):
    catalog, images, expected = status_zoo
    options = {"images": images, "model": model_path, "device": "cpu", "chunk_size": 3}
    return catalog, options, expected, tmp_path


def reference(catalog, options, out: Path) -> Path:
    run = classify_file(catalog, out, **options)
    assert run.resumed == 0 and run.journal is None
    return out


class Interrupt:
    """Raise KeyboardInterrupt (or ``exc``) on the ``at``-th call of ``owner.name``, calling through otherwise."""

    def __init__(self, monkeypatch, owner, name: str, at: int, exc: BaseException | None = None) -> None:
        self.calls = 0
        original = getattr(owner, name)
        self.exc = exc if exc is not None else KeyboardInterrupt()

        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == at:
                raise self.exc
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)


def count_classify(monkeypatch) -> list:
    calls: list = []
    original = BatchClassifier.classify

    def counting(self, ra, *args, **kwargs):
        calls.append(len(ra))
        return original(self, ra, *args, **kwargs)

    monkeypatch.setattr(BatchClassifier, "classify", counting)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["vot", "fits", "ecsv", "csv"])
def test_interrupted_during_a_chunk_then_resumed(zoo_run, monkeypatch, ext):
    catalog, options, expected, d = zoo_run
    ref = reference(catalog, options, d / f"ref.{ext}")
    out = d / f"out.{ext}"
    with monkeypatch.context() as m:
        Interrupt(m, BatchClassifier, "classify", at=3)
        with pytest.raises(KeyboardInterrupt) as info:
            classify_file(catalog, out, **options)
    assert info.value.journal == journal_path(out)
    assert info.value.run_summary.rows == 6 and info.value.run_summary.summary.startswith("6 rows: ")
    assert len(chunk_files(journal_path(out))) == 2 and not out.exists()
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == [], "no temporary file beside the output"

    calls = count_classify(monkeypatch)
    run = classify_file(catalog, out, **options)
    assert calls == [3, 3, 2], "only the three chunks not finished before were classified"
    assert (run.resumed, run.resumed_rows, run.chunks, run.rows) == (2, 6, 5, 14)
    assert run.journal is None and not journal_path(out).exists()
    same_output(ref, out)
    assert list(read_catalog(out)["FR_STATUS"]) == expected


def _flaky_write(monkeypatch, at: int):
    """Interrupt the at-th journal write after its temporary file is written, before it is renamed."""
    import frsurvey.run.journal as stream

    original = stream.atomic_write
    calls = []

    def write(path, data, **kwargs):
        calls.append(path)
        if len(calls) == at:
            path.with_name(f".{path.name}.tmp").write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt
        return original(path, data, **kwargs)

    monkeypatch.setattr(stream, "atomic_write", write)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["journal-write", "assembly", "after-the-output-is-in-place", "first-chunk"])
def test_interrupted_at_any_step_resumes_to_the_same_file(zoo_run, monkeypatch, where):
    catalog, options, _, d = zoo_run
    ref = reference(catalog, options, d / "ref.vot")
    out = d / "out.vot"
    with monkeypatch.context() as m:
        if where == "journal-write":
            _flaky_write(m, at=4)  # the manifest, chunks 0 and 1, then chunk 2 half written
        elif where == "assembly":
            Interrupt(m, ChunkWriter, "close", at=1)
        elif where == "after-the-output-is-in-place":
            Interrupt(m, ResumeJournal, "discard", at=1)
        else:
            Interrupt(m, BatchClassifier, "classify", at=1)
        with pytest.raises(KeyboardInterrupt):
            classify_file(catalog, out, **options)
    finished = len(chunk_files(journal_path(out)))
    assert finished == {"journal-write": 2, "assembly": 5, "after-the-output-is-in-place": 5, "first-chunk": 0}[where]
    assert out.exists() == (where == "after-the-output-is-in-place")
    assert journal_path(out).exists() == (finished > 0)
    calls = count_classify(monkeypatch)
    run = classify_file(catalog, out, **options)
    assert len(calls) == 5 - finished and run.resumed == finished
    same_output(ref, out)
    assert not journal_path(out).exists()
    assert not [p for p in d.iterdir() if p.name.startswith(".")]


def test_sigterm_exits_143_and_resumes(zoo_run, capsys):
    catalog, options, _, d = zoo_run
    ref = reference(catalog, options, d / "ref.ecsv")
    out = d / "out.ecsv"
    args = ["classify", catalog, "--images", options["images"], "--model", options["model"], "--out", out]
    args += ["--chunk-size", "3", "--device", "cpu", "--no-progress"]
    original = BatchClassifier.classify
    calls = []

    def terminated(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # as a batch system does at the end of a job's time
        return original(self, *a, **k)

    before = signal.getsignal(signal.SIGTERM)
    BatchClassifier.classify = terminated
    try:
        rc = main([str(a) for a in args])
    finally:
        BatchClassifier.classify = original
    assert signal.getsignal(signal.SIGTERM) == before, "the handler is put back"
    err = capsys.readouterr().err
    assert rc == 143, err
    assert "frsurvey: terminated; finished so far: 9 rows" in err and "run the same command again" in err
    assert len(chunk_files(journal_path(out))) == 3
    assert main([str(a) for a in args]) == 3
    err = capsys.readouterr().err
    assert "3 chunk(s) finished by an earlier run" in err
    same_output(ref, out)


# --------------------------------------------------------------------------------------------------
# Which journal is used


def interrupted(catalog, out: Path, options, at: int = 3) -> Path:
    """Run, interrupted (Ctrl-C) when the at-th chunk starts; return the journal left."""
    with pytest.MonkeyPatch.context() as m:
        Interrupt(m, BatchClassifier, "classify", at=at)
        with pytest.raises(KeyboardInterrupt):
            classify_file(catalog, out, **options)
    assert chunk_files(journal_path(out))
    return journal_path(out)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["catalog", "model", "images", "no-tta", "chunk-size", "thresholds", "restart"])
def test_a_journal_that_does_not_match_is_not_used(zoo_run, monkeypatch, caplog, change):
    catalog, options, _, d = zoo_run
    work = d / "cat.csv"
    work.write_bytes(catalog.read_bytes())
    images = d / "images"
    shutil.copytree(options["images"], images)
    options = {**options, "images": images}
    out = d / "out.vot"
    interrupted(work, out, options)
    extra = {}
    why = {
        "catalog": "the catalog file changed",
        "model": "another model",
        "images": "the image source changed",
        "no-tta": "settings one_view: False then, True now",
        "chunk-size": "reading chunk_size: 3 then, 4 now",
        "thresholds": "thresholds unresolved_size: 5.4 then, 5.0 now",
        "restart": "--restart: not using the journal",
    }[change]
    if change == "catalog":
        with open(work, "a") as f:
            f.write("extra row,150.0,30.0,9\n")
    elif change == "model":
        from frsurvey.model.checkpoint import load_model, save_model

        m = load_model(options["model"])
        m.card["name"] = "another"
        extra["model"] = save_model(m, d / "other.pt")
    elif change == "images":
        make_first_fits(images / "new.fits", 100.0, 10.0)
    elif change == "no-tta":
        extra["tta"] = False
    elif change == "chunk-size":
        extra["chunk_size"] = 4
    elif change == "thresholds":
        from frsurvey.image.morphology import Thresholds

        extra["thresholds"] = Thresholds(unresolved_size=5.0)
    else:
        extra["restart"] = True
    calls = count_classify(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="frsurvey"):
        run = classify_file(work, out, **{**options, **extra})
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert why in messages, messages
    assert "finished by an earlier run" not in messages
    assert run.resumed == 0 and len(calls) == run.chunks, "every chunk classified again"
    fresh = classify_file(work, d / "fresh.vot", **{**options, **extra, "restart": False})
    assert fresh.resumed == 0
    same_output(d / "fresh.vot", out)


@pytest.mark.slow
def test_a_damaged_journal_file_is_classified_again(zoo_run, monkeypatch, caplog):
    catalog, options, _, d = zoo_run
    ref = reference(catalog, options, d / "ref.fits")
    out = d / "out.fits"
    journal = interrupted(catalog, out, options, at=4)
    damaged = chunk_files(journal)[1]
    damaged.write_bytes(b"PK\x03\x04 not a whole npz")
    calls = count_classify(monkeypatch)
    run = classify_file(catalog, out, **options)
    assert "cannot be used" in caplog.text and "classifying chunk 1 again" in caplog.text
    assert run.resumed == 2 and len(calls) == 3
    same_output(ref, out)


def test_a_second_run_on_the_same_output_is_refused(zoo_run, capsys):
    catalog, options, _, d = zoo_run
    out = d / "out.vot"
    holder = ResumeJournal(out, {"other": "run"})
    holder.open()
    try:
        rc = main(["classify", str(catalog), "--images", str(options["images"]), "--model", str(options["model"]),
                   "--out", str(out), "--chunk-size", "3", "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"another frsurvey run (pid {os.getpid()}) is writing" in err and "Traceback" not in err
        assert not out.exists()
    finally:
        holder.discard()
    with pytest.raises(CatalogError, match="another frsurvey run"):
        a = ResumeJournal(out, {})
        a.open()
        try:
            ResumeJournal(out, {}).open()
        finally:
            a.discard()


@pytest.mark.slow
def test_os_errors_keep_the_journal_and_bugs_do_not(zoo_run, monkeypatch, capsys):
    catalog, options, _, d = zoo_run
    ref = reference(catalog, options, d / "ref.csv")
    out = d / "out.csv"
    with monkeypatch.context() as m:
        Interrupt(m, BatchClassifier, "classify", at=3, exc=OSError(28, "No space left on device"))
        with pytest.raises(OSError):
            classify_file(catalog, out, **options)
    assert len(chunk_files(journal_path(out))) == 2
    run = classify_file(catalog, out, **options)
    assert run.resumed == 2
    same_output(ref, out)
    with monkeypatch.context() as m:
        Interrupt(m, BatchClassifier, "classify", at=3, exc=RuntimeError("a bug"))
        with pytest.raises(RuntimeError):
            classify_file(catalog, d / "bug.csv", **options)
    assert not journal_path(d / "bug.csv").exists() and not (d / "bug.csv").exists()
    # the command line says what went wrong with the disk, briefly (exit 2), and keeps the journal
    with monkeypatch.context() as m:
        Interrupt(m, BatchClassifier, "classify", at=2, exc=OSError(28, "No space left on device"))
        rc = main(["classify", str(catalog), "--images", str(options["images"]), "--model", str(options["model"]),
                   "--out", str(d / "disk.csv"), "--chunk-size", "3", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err
    assert len(chunk_files(journal_path(d / "disk.csv"))) == 1


@pytest.mark.slow
def test_whole_catalog_runs_keep_no_journal_and_clear_a_stale_one(zoo_run):
    catalog, options, _, d = zoo_run
    out = d / "out.vot"
    interrupted(catalog, out, options)
    run = classify_file(catalog, out, **{**options, "chunk_size": 0})
    assert run.chunks == 1 and not journal_path(out).exists()
    run = classify_file(catalog, d / "plain.vot", **{**options, "resume": False})
    assert run.journal is None and not journal_path(d / "plain.vot").exists()


@pytest.mark.slow
def test_a_resumed_online_run_fetches_nothing_twice(tmp_path, model):
    from fake_services import FakeServices
    from test_fetch import FAST, GENERATED, write_catalog

    services = FakeServices(tmp_path / "served").start()
    try:
        catalog = write_catalog(tmp_path / "cat.csv", GENERATED)
        options = {
            "model": model,
            "source": "skyview",
            "source_options": {"skyview_url": services.skyview_url, "cache": tmp_path / "cache", **FAST},
            "chunk_size": 2,
        }
        out = tmp_path / "out.vot"
        interrupted(catalog, out, options, at=2)  # chunk 0 fetched and finished
        first = services.counts.copy()
        run = classify_file(catalog, out, **options)
        assert run.resumed == 1
        fetched = sum(c for p, c in services.counts.items() if p.startswith("/tempspace/fits/"))
        assert fetched == len(GENERATED), "every cutout downloaded once over both runs"
        assert sum(c for p, c in first.items() if p.startswith("/tempspace/fits/")) == 2
        services.reset_counts()
        again = classify_file(catalog, tmp_path / "again.vot", **options)
        assert services.total_requests == 0 and again.resumed == 0
        same_output(tmp_path / "again.vot", out)
    finally:
        services.stop()
