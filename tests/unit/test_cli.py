"""The command line and the installable package: `streamer`, `python -m streamer` and the
checkout's `run.py` run one CLI; the wheel carries the page, the templates and the contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from streamer import cli, resources
from tests.served import Served, same_streamer

COMMANDS = ("serve", "prepare", "render", "client", "grant")
NOT_SOURCE = (".git", ".venv", "cache", "build", "*.egg-info", "__pycache__", ".pytest_cache", "out")


def _help(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, cwd=cwd, env=same_streamer()
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_command_parses_to_its_function():
    parser = cli.build_parser()
    assert parser.parse_args(["serve", "--port", "1"]).run is cli.serve
    for name in COMMANDS[1:]:
        assert getattr(cli, name) is not None
    assert parser.parse_args(["grant", "--template", "a"]).run is cli.grant


def test_python_m_streamer_lists_every_command(tmp_path):
    out = _help(sys.executable, "-m", "streamer", cwd=tmp_path)
    assert all(name in out for name in COMMANDS), out


@pytest.mark.skipif(not (resources.CHECKOUT / "run.py").is_file(), reason="run.py is in the checkout only")
def test_run_py_in_the_checkout_is_the_same_command():
    out = _help(sys.executable, "run.py", cwd=resources.CHECKOUT)
    assert all(name in out for name in COMMANDS), out


def test_the_console_script_when_this_install_declares_it():
    def left_in_this_checkout(d: metadata.Distribution) -> bool:  # by a build, not an install
        return resources.in_checkout() and Path(str(d.locate_file(""))).resolve() == resources.CHECKOUT

    installed = [d for d in metadata.distributions(name="streamer") if not left_in_this_checkout(d)]
    if not installed or "streamer" not in {e.name for e in installed[0].entry_points}:
        pytest.skip("this environment's streamer was installed before the console script existed")
    script = Path(sys.executable).parent / "streamer"
    assert script.is_file(), script
    assert all(name in _help(str(script)) for name in COMMANDS)


def test_the_shipped_files_are_found():
    assert (resources.WEB / "index.html").is_file() and (resources.WEB / "embed.js").is_file()
    assert (resources.TEMPLATES / "astronaut.png").is_file()
    assert resources.OPENAPI.read_text(encoding="utf-8").startswith("openapi:")


def _recent_setuptools() -> bool:
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= 68
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not resources.in_checkout(), reason="builds the wheel from the checkout")
def test_the_wheel_carries_the_page_the_templates_and_the_contract(tmp_path):
    source = tmp_path / "source"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(resources.CHECKOUT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    isolation = ["--no-build-isolation"] if _recent_setuptools() else []  # else pip fetches it
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("streamer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("web/index.html", "web/embed.js", "templates/astronaut.png", "templates/welcome.wav", "openapi.yaml"):
        assert f"streamer/_data/{name}" in names, name
    assert "streamer/_data/templates/make_samples.py" not in names  # a script, not a template
    assert "streamer/cli.py" in names and "streamer/webrtc/hooks.py" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "streamer = streamer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_package_serves_the_page_the_contract_and_the_templates_from_any_folder(tmp_path):
    """What `pip install .` must give: run from elsewhere, on the embedded defaults."""
    env = {**same_streamer(), "STREAMER_CACHE_DIR": str(tmp_path / "cache")}
    server = Served("--renderer", "lite", env=env, launcher=(sys.executable, "-m", "streamer"), cwd=tmp_path)
    try:
        server.wait_ready()
        with urllib.request.urlopen(server.url + "/", timeout=10) as r:
            assert "<html" in r.read().decode().lower()
        with urllib.request.urlopen(server.url + "/openapi.json", timeout=10) as r:
            assert json.load(r)["openapi"].startswith("3.1")
        with urllib.request.urlopen(server.url + "/api/templates", timeout=10) as r:
            listed = {t["id"]: t for t in json.load(r)["templates"]}
        assert listed["astronaut"]["ready"] and listed["astronaut"]["welcome_seconds"] > 0
    finally:
        server.stop()
