"""A Ray head started as its own process (`ray start --head --block`, own ports and temp
dir, stopped by its own process group: never `ray stop`, which stops every Ray on the
machine) and signalling servers (`run.py serve --pool ray`, launched by tests/served.py) that join it
by address."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.served import Served
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
SIM = {"STREAMER_SIM_FIXED_MS": "40", "STREAMER_SIM_PER_FRAME_MS": "2", "STREAMER_BATCH_SIZE": "16"}


def _ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class RayHead:
    def __init__(self, log: Path) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths
        port, manager, objects, agent, agent_grpc, env_agent, metrics, low = _ports(8)
        self.address = f"127.0.0.1:{port}"
        self._log = log.open("wb")
        self.log = log
        if not (Path.home() / ".ray" / "auth_token").is_file():  # a head with token auth, as Ray 2.60+ makes
            subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True)
        # The head's own ports, so it never meets another Ray on the machine.
        args = [
            RAY, "start", "--head", "--block", f"--port={port}", f"--node-manager-port={manager}",
            f"--object-manager-port={objects}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
            f"--min-worker-port={low}", f"--max-worker-port={low + 40}", "--include-dashboard=false",
            f"--temp-dir={self.temp_dir}", "--num-cpus=4", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
        ]  # fmt: skip
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_AUTH_MODE", None)
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # until the head says it runs (or exits)
            self._log.write(line)
            if b"Ray runtime started" in line:
                break
        assert self.process.poll() is None, log.read_text()[-3000:]

    def stop(self) -> None:
        """Its process group: the head's processes and the actors' workers it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def get(url: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url + path, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


class Front(Served):
    """A signalling server on the head's render actors."""

    def __init__(self, head: RayHead, cache_dir: Path, log: Path, **env: str) -> None:
        args = ("--pool", "ray", "--ray-address", head.address, "--renderer", "sim", "--devices", "sim:0,sim:1")
        full = {**SIM, "STREAMER_CACHE_DIR": str(cache_dir), "RAY_USAGE_STATS_ENABLED": "0", **env}
        # the front finds the head's token where Ray keeps it
        super().__init__(*args, env=full, log=log, unset=("RAY_AUTH_MODE",))

    def devices(self) -> list[dict[str, Any]]:
        status, body = get(self.url, "/api/stats")
        assert status == 200, status
        return body["devices"]

    def stop(self, kill: bool = True) -> None:
        super().stop(kill=kill)
