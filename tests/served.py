"""`run.py serve` as a subprocess, launched and polled in one place for every test and bench that
needs the real command (the browser suite, the drain tests, the Ray fronts, bench/fuzz.py, cpu.py,
soak.py);
in-process servers: tests.support.servers.live_server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import streamer
from tests.support.servers import SUBPROCESS_PORTS, free_port_in

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0


def same_streamer() -> dict[str, str]:
    """The environment for a subprocess that must import the `streamer` this process imported
    (a checkout's, or the installed wheel's), whatever its working directory."""
    home = str(Path(streamer.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [home, os.environ.get("PYTHONPATH")]))}


def readyz(url: str) -> int:
    """The status of `url`/readyz; 0 while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


class Served:
    """`python run.py serve --port P ARGS` with `env` added to the environment (less the names in
    `unset`); its output in `log` (a temporary file by default).

    `launcher` and `cwd` start it otherwise (e.g. `python -m streamer` from another folder)."""

    ports: ClassVar[set[int]] = set()
    """The ports of the servers this process started and has not stopped."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (sys.executable, "run.py"),
        cwd: Path = ROOT,
        log: Path | None = None,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port_in(SUBPROCESS_PORTS)
        while self.port in Served.ports:  # free until its server binds it: never handed out twice
            self.port = free_port_in(range(self.port + 1, SUBPROCESS_PORTS.stop))
        Served.ports.add(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._keep_log = log is not None
        if log is None:
            fd, name = tempfile.mkstemp(prefix="served-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self._log = log.open("wb")  # closed in stop()
        inherited = {k: v for k, v in os.environ.items() if k not in unset}
        self.process = subprocess.Popen(
            [*launcher, "serve", "--port", str(self.port), *args],
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**inherited, **(env or {})},
        )

    def log(self, last: int | None = 3000) -> str:
        """The last `last` characters the server wrote (all of it with None)."""
        text = Path(self._log.name).read_text(errors="replace")
        return text if last is None else text[-last:]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until /readyz answers 200; fails at once if the server exits first."""
        deadline = time.monotonic() + timeout_s
        while readyz(self.url) != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} not ready (exit {self.process.poll()}):\n{self.log()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.25)  # returns at once when the server died

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        Served.ports.discard(self.port)
        if not self._keep_log:
            Path(self._log.name).unlink(missing_ok=True)


@contextlib.contextmanager
def served(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """A ready server for the block; fails if it stopped during the block."""
    server = Served(*args, env=env)
    try:
        server.wait_ready()
        yield server
        if server.process.poll() is not None:
            code = server.process.poll()
            raise RuntimeError(f"server on {server.url} stopped during the test (exit {code}):\n{server.log()}")
    finally:
        server.stop()


@contextlib.contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The base URL of a ready `run.py serve ARGS` for the block."""
    with served(*args, env=env) as server:
        yield server.url
