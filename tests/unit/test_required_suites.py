"""CI's guard against silent skips: with STREAMER_REQUIRE_SUITES set, a required suite that skips fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPS = """
import pytest

pytest.importorskip("{module}")


def test_speech():
    pytest.skip("espeak-ng is not installed")


def test_gpu():
    pytest.skip("needs a CUDA device")
"""


def _run(tmp_path: Path, required: str, module: str = "json") -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_skips.py"
    test.write_text(SKIPS.format(module=module))
    env = {**os.environ, "STREAMER_REQUIRE_SUITES": required, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(test)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_variable_skips_stay_skips(tmp_path):
    out = _run(tmp_path, "")
    assert out.returncode == 0 and "2 skipped" in out.stdout, out.stdout


def test_a_required_suite_that_skips_fails_and_others_still_skip(tmp_path):
    out = _run(tmp_path, "speech,ray")
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 skipped" in out.stdout and "the speech suite must run here" in out.stdout, out.stdout


def test_a_required_module_that_cannot_import_fails_collection(tmp_path):
    out = _run(tmp_path, "ray", module="ray.no_such_module")
    assert out.returncode != 0 and "the ray suite must run here" in out.stdout, out.stdout
