"""Child processes (render workers, audio decoders) never outlive the server.

A pipe to the parent does not always show its death: other children may hold the same pipe
open, and a worker busy rendering does not read it. So each child watches its parent's pid.
"""

from __future__ import annotations

import os
import threading
import time

POLL_S = 0.5


def exit_with_parent(parent: int) -> None:
    """Exit this process (at once, status 0) when `parent` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
