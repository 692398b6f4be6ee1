"""One live server on loopback for the integration suite, every answer held to docs/openapi.yaml."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.config import Settings
from tests.contract.openapi import CONTRACT
from tests.support import servers as testing
from tests.support.servers import LiveServer

__all__ = ["LiveServer", "live_server"]


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """tests.support.servers.live_server, with each answer checked against the contract."""
    with testing.live_server(settings, on_app=CONTRACT.attach) as live:
        yield live


@pytest.fixture(autouse=True)
def _contract() -> Iterator[None]:
    """Fails the test during which a server answered outside the contract."""
    before = len(CONTRACT.violations)
    yield
    found = CONTRACT.violations[before:]
    assert not found, "answers outside docs/openapi.yaml:\n" + "\n".join(found)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(cache_dir=cache_dir, max_sessions=4)) as live:
        yield live


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 s of real speech from espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Hello there. The quick brown fox jumps over the lazy dog."
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(path), text], check=True)
    return path
