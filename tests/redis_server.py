"""A throwaway `redis-server` (Debian's package) on a free loopback port, for the tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.servers import free_port

READY_LINE = b"Ready to accept connections"


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yields `redis://127.0.0.1:<port>/0`; the server keeps nothing on disk and is stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # blocks until the server says it is ready (or exits)
            if READY_LINE in line:
                break
        else:
            raise RuntimeError(f"redis-server exited ({process.wait()}) before it was ready")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(30)
