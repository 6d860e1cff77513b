"""A newcomer's command line: every option explained with its default, errors that name the option to change."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
from conftest import run_frsurvey

import frsurvey
from frsurvey.cli import _HelpFormatter, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.slow
def test_the_installed_command_runs_and_exits_with_mains_code(tmp_path):
    """The console script itself (the other tests call ``main`` in their own process): it starts, and
    the exit code ``main`` returns is the process's, with the message on stderr and no traceback."""
    version = run_frsurvey("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"frsurvey {frsurvey.__version__}"
    (tmp_path / "cat.csv").write_text("ra,dec\n150.0,30.0\n")
    (tmp_path / "empty").mkdir()
    proc = run_frsurvey("classify", "cat.csv", "--images", "empty", "--out", "out.vot", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("frsurvey: error: --images 'empty' holds no FITS file"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.vot").exists()


def test_every_option_has_help_and_states_its_default():
    missing, no_default = [], []
    for name, parser in _subparsers(build_parser()).items():
        formatter = _HelpFormatter(prog=name)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            option = f"{name} {action.option_strings[0]}"
            if not action.help:
                missing.append(option)
            text = formatter._get_help_string(action)
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if action.default is not None and action.default is not False and not switch and "default" not in text:
                no_default.append(option)
    assert missing == [] and no_default == []


def test_help_shows_the_default_data_root_and_that_evaluate_trains_only_with_cv(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FRSURVEY_DATA", str(tmp_path / "mydata"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = "".join(capsys.readouterr().out.split())  # help lines are wrapped at spaces and hyphens
    assert f"here{tmp_path / 'mydata'}" in out and "$FRSURVEY_DATA" in out
    assert "(default40)" in out and "(default0.002)" in out  # --epochs, --lr
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "training (only with --cv" in capsys.readouterr().out


def _usage_error(capsys, argv: list[str]) -> str:
    """Run ``argv``; assert exit 2 without a traceback; return stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    return err


def test_errors_name_the_option_to_change(capsys, tmp_path):
    catalog = tmp_path / "in.csv"
    catalog.write_text("ra,dec\n150.0,2.0\n")
    err = _usage_error(capsys, ["classify", catalog, "--out", tmp_path / "o.vot", "--device", "gpu"])
    assert "--device" in err and "cpu" in err and "cuda" in err
    err = _usage_error(capsys, ["classify", catalog, "--out", tmp_path / "x.txt"])
    assert "--out-format" in err and "--format " not in err and ".vot" in err
    err = _usage_error(capsys, ["classify", catalog, "--out", tmp_path / "x.txt", "--out-format", "txt"])
    assert "--out-format 'txt'" in err
    err = _usage_error(capsys, ["train", "--dataset", "frdeep-f", "--arch", "ensemble", "--out", tmp_path / "m.pt"])
    assert "--members" in err and "Python" not in err
    err = _usage_error(capsys, ["train", "--dataset", "frdeep-f", "--epochs", "0", "--out", tmp_path / "m.pt"])
    assert "--epochs" in err
    err = _usage_error(capsys, ["evaluate", "--dataset", "frdeep-f", "--epochs", "3", "--lr", "0.1", "--out-dir", "e"])
    assert "--epochs, --lr: training options, used only with --cv K" in err
    err = _usage_error(capsys, ["classify", catalog, "--out", tmp_path / "o.vot", "--threads", "0"])
    assert "--threads" in err
    err = _usage_error(capsys, ["classify", catalog, "--out", tmp_path / "o.vot", "--offline", "--ra-col", "x"])
    assert "'x' (--ra-col) is not in the catalog" in err
    from conftest import make_first_fits

    make_first_fits(tmp_path / "img" / "a.fits", 150.0, 2.0)
    err = _usage_error(
        capsys, ["train", "--catalog", catalog, "--images", tmp_path / "img", "--label-column", "cls", "--out", "m.pt"]
    )
    assert "'cls'" in err and "--label-column" in err


def test_a_missing_dataset_names_the_options_that_fetch_it(capsys, tmp_path):
    err = _usage_error(capsys, ["train", "--dataset", "frdeep-f", "--data-root", tmp_path / "d", "--out", "m.pt"])
    assert "--download" in err and "--dataset-url" in err and "--data-root" in err
    assert "download=True" not in err


def test_the_default_data_root_is_the_platforms(monkeypatch, tmp_path, capsys):
    from frsurvey.training.datasets import default_data_dir

    monkeypatch.delenv("FRSURVEY_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "frsurvey"
    err = _usage_error(capsys, ["train", "--dataset", "frdeep-f", "--out", tmp_path / "m.pt"])
    assert str(tmp_path / "xdg" / "frsurvey") in err


@pytest.mark.slow
def test_dataset_url_alone_downloads_from_there(capsys, tmp_path, frdeep_archive, model_path):
    root = tmp_path / "data"
    argv = ["evaluate", "--dataset", "frdeep-f", "--data-root", root, "--dataset-url", frdeep_archive]
    argv += ["--model", model_path, "--out-dir", tmp_path / "report"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert (root / "FIRST_PNG_dataset" / "test_batch").is_file()
    assert "50 images" in capsys.readouterr().err


def test_download_without_network_names_the_address_and_the_way_out(capsys, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/FIRST_PNG_dataset.tar.gz"
    err = _usage_error(
        capsys, ["train", "--dataset", "frdeep-f", "--data-root", tmp_path, "--dataset-url", url, "--out", "m.pt"]
    )
    assert f"could not download FRDEEP-F from {url}" in err and "--dataset-url PATH" in err


# --------------------------------------------------------------------------------------------------
# Progress


def test_row_progress_lines_count_rows_with_a_total_and_time_left():
    import io

    from frsurvey.progress import RowProgress

    out = io.StringIO()
    p = RowProgress(10, mode="lines", interval=0.0, stream=out)
    p.start_chunk(6)
    p.expect(3)  # six rows from three distinct sources
    p.update(1)
    p.update(1)
    p.finish_chunk()
    p.start_chunk(4)
    p.finish_chunk()
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("frsurvey: classify: 2/10 rows (20%) in ")
    assert "rows/s, about" in lines[0] and "left" in lines[0]
    assert [line.split(" in ")[0] for line in lines[1:4]] == [
        "frsurvey: classify: 4/10 rows (40%)",
        "frsurvey: classify: 6/10 rows (60%)",
        "frsurvey: classify: 10/10 rows (100%)",
    ]


def test_row_progress_bar_has_a_total():
    import io

    from frsurvey.progress import RowProgress

    out = io.StringIO()
    p = RowProgress(301, mode="bar", stream=out)
    p.start_chunk(301)
    p.finish_chunk()
    p.close()
    assert "301/301" in out.getvalue() and "row" in out.getvalue()


@pytest.mark.slow
def test_classify_without_a_terminal_prints_progress_lines(capsys, monkeypatch, tmp_path, model_path):
    from conftest import REPO

    import frsurvey.progress

    monkeypatch.setattr(frsurvey.progress, "LINE_INTERVAL", 0.0)
    demo = REPO / "catalogs" / "demo"
    argv = ["classify", demo / "demo.csv", "--images", demo / "images", "--model", model_path]
    argv += ["--out", tmp_path / "o.vot", "--device", "cpu"]
    assert main([str(a) for a in argv]) == 3
    err = capsys.readouterr().err
    assert "frsurvey: classify: 26/26 rows (100%)" in err
    assert main([str(a) for a in [*argv, "--no-progress"]]) == 3
    assert "rows (100%)" not in capsys.readouterr().err


def test_an_images_folder_without_fits_files_is_refused_up_front(capsys, tmp_path):
    catalog = tmp_path / "in.csv"
    catalog.write_text("ra,dec\n150.0,2.0\n")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    err = _usage_error(capsys, ["classify", catalog, "--images", empty, "--out", tmp_path / "o.vot"])
    assert "--images" in err and "holds no FITS file" in err
    assert not (tmp_path / "o.vot").exists()
    err = _usage_error(capsys, ["show", catalog, "--images", tmp_path / "nowhere", "--out", tmp_path / "o.png"])
    assert "is not a folder" in err


# --------------------------------------------------------------------------------------------------
# Defaults


def test_default_threads_are_the_idle_cores(monkeypatch):
    import os

    import torch

    from frsurvey.run.engine import idle_cores

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for load, expected in ((0.1, 4), (1.2, 3), (2.6, 1), (9.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert idle_cores() == expected, load
        # the DataLoader workers the run starts take cores of their own
        assert idle_cores(reserve=1) == max(1, expected - 1), load
    monkeypatch.delattr(os, "getloadavg")
    assert idle_cores() == 4 and idle_cores(reserve=3) == 1


@pytest.mark.slow
def test_classify_sets_the_threads_for_the_run_only(tmp_path, model_path, capsys):
    import torch

    demo = Path(__file__).resolve().parents[1] / "catalogs" / "demo"
    before = torch.get_num_threads()
    argv = ["classify", demo / "demo.csv", "--images", demo / "images", "--model", model_path, "--threads", "1"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "o.vot", "--device", "cpu", "-v"]]) == 3
    assert "model threads: 1" in capsys.readouterr().err
    assert torch.get_num_threads() == before
