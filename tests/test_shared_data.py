"""Tests that need ../shared/data skip without it, and fail without it where FRSURVEY_REQUIRE_SHARED=1 (CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REQUIRE_SHARED, missing_shared_data, shared_data_required

#: A test file run by a pytest of its own, with tests/conftest.py as a plugin and the shared data elsewhere.
NEEDS_SHARED = """
from pathlib import Path

import conftest

conftest.SHARED_DATA = Path(__file__).parent / "no-shared-data"


def test_needs_the_folder(shared_data):
    pass


def test_needs_the_cutouts(first_cutouts):
    pass


def test_needs_the_archive(frdeep_archive):
    pass


def test_needs_nothing():
    pass
"""


def run_pytest(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_needs_shared.py").write_text(NEEDS_SHARED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # a bare pytest starts sooner
    env.pop(REQUIRE_SHARED, None)
    if require is not None:
        env[REQUIRE_SHARED] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rs", "test_needs_shared.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(("value", "required"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_what_the_variable_says(monkeypatch, value, required):
    monkeypatch.delenv(REQUIRE_SHARED, raising=False)
    if value is not None:
        monkeypatch.setenv(REQUIRE_SHARED, value)
    assert shared_data_required() is required
    with pytest.raises(pytest.fail.Exception if required else pytest.skip.Exception, match="the data is not here"):
        missing_shared_data("the data is not here")


def test_without_the_shared_data_its_tests_skip_with_the_reason(tmp_path):
    proc = run_pytest(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 3 skipped" in proc.stdout, proc.stdout
    assert f"shared data not found at {tmp_path / 'no-shared-data'}" in proc.stdout, proc.stdout


def test_where_the_shared_data_is_required_its_tests_fail(tmp_path):
    proc = run_pytest(tmp_path, "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 3 errors" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    assert proc.stdout.count(f"{REQUIRE_SHARED}=1 says it is required") >= 3, proc.stdout
    assert f"shared data not found at {tmp_path / 'no-shared-data'}" in proc.stdout, proc.stdout
