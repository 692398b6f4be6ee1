"""`run.py check-models DIR`: the tiny layout passes, a layout without DWPose or with a
truncated file gets its own verdict and exit status, each file's size and SHA-256 reported."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamer.cli import main
from streamer.config import ROOT, Settings
from streamer.render.musetalk.doctor import EXIT_BROKEN, EXIT_MISSING, EXIT_READY, check_models, format_report
from tests.support.tiny_musetalk import build_tiny_models

DWPOSE = "dwpose/dw-ll_ucoco_384.pth"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("doctor") / "models")


@pytest.fixture
def models(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "models"))


def test_the_tiny_layout_will_start(pristine: Path) -> None:
    done = subprocess.run(
        [sys.executable, "run.py", "check-models", str(pristine), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == EXIT_READY, done.stderr
    report = json.loads(done.stdout)
    assert report["will_start"] and not report["degraded"] and report["verdict"] == "MuseTalk will start"
    files = {f["path"]: f for f in report["files"]}
    unet = pristine / "musetalkV15" / "unet.pth"
    assert files["musetalkV15/unet.pth"]["sha256"] == hashlib.sha256(unet.read_bytes()).hexdigest()
    assert files["musetalkV15/unet.pth"]["size"] == unet.stat().st_size
    required = [f for f in report["files"] if f["required"]]
    assert len(required) == 9 and all(f["status"] == "found" for f in required)
    resnet = files["face-parse-bisent/resnet18-5c106cde.pth"]  # never read: absent is fine
    assert resnet["status"] == "missing" and not resnet["required"]
    assert report["fp16"] == torch.cuda.is_available()


def test_without_dwpose_it_will_not_start_unless_haar_boxes_are_allowed(models: Path, capsys) -> None:
    (models / DWPOSE).unlink()
    report = check_models(models, Settings())
    assert report.exit_code == EXIT_MISSING and not report.will_start
    assert report.verdict == f"MuseTalk will not start: {DWPOSE} missing"
    assert any("no DWPose: preparing templates is refused" in note for note in report.notes)
    degraded = check_models(models, Settings(musetalk_faces="haar"))
    assert degraded.exit_code == EXIT_READY and degraded.degraded
    assert degraded.verdict == "MuseTalk will start, degraded (see the notes)"
    with pytest.raises(SystemExit) as stopped:
        main(["doctor", str(models)])  # the alias, text output
    assert stopped.value.code == EXIT_MISSING
    out = capsys.readouterr().out
    assert f"missing     {DWPOSE}" in out and out.rstrip().endswith(f"{DWPOSE} missing")


def test_a_truncated_or_reshaped_file_is_named(models: Path) -> None:
    whisper = models / "whisper" / "pytorch_model.bin"
    whisper.write_bytes(whisper.read_bytes()[: whisper.stat().st_size // 2])
    report = check_models(models, Settings())
    assert report.exit_code == EXIT_BROKEN and not report.will_start
    files = {f.path: f for f in report.files}
    assert files["whisper/pytorch_model.bin"].status == "unreadable"
    assert "cannot read weights" in files["whisper/pytorch_model.bin"].detail
    assert report.verdict == "MuseTalk will not start: whisper/pytorch_model.bin unreadable"
    (models / "face-parse-bisent" / "79999_iter.pth").unlink()  # missing and broken: broken wins
    unet = models / "musetalkV15" / "unet.pth"
    state = torch.load(unet, weights_only=True)
    state["conv_in.weight"] = torch.zeros(1, 2, 3)
    torch.save(state, unet)
    report = check_models(models, Settings())
    files = {f.path: f for f in report.files}
    assert report.exit_code == EXIT_BROKEN
    assert files["musetalkV15/unet.pth"].status == "wrong shape"
    assert "conv_in.weight (1, 2, 3)" in files["musetalkV15/unet.pth"].detail
    assert files["face-parse-bisent/79999_iter.pth"].status == "missing"
    assert "unreadable" in format_report(report) and "wrong shape" in format_report(report)
