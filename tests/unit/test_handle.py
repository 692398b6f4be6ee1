"""A worker handle's bookkeeping: a job cancelled while it is still being sent leaves no error
that nobody retrieves (asyncio would log "Future exception was never retrieved" for it)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import numpy as np

from streamer.pool.front.handle import Handle
from streamer.render.base import RenderJob


class SlowSend(Handle):
    """A backend whose send of a job waits until told (a busy pipe)."""

    def __init__(self) -> None:
        super().__init__(0, "cpu", render_timeout_s=5.0)
        self.stats.alive = True
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def _send(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> None:
        self.sending.set()
        await self.release.wait()

    def _send_cancel(self, session_id: str) -> None:
        pass


async def test_a_job_cancelled_while_it_is_sent_leaves_no_unretrieved_error() -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context["message"]))
    handle = SlowSend()
    job = RenderJob("t", np.arange(5, dtype=np.int64), np.zeros(3200, np.float32), 0, True, session_id="s1")
    render = asyncio.create_task(handle.render(job, loop.time() + 1))
    await handle.sending.wait()
    handle.cancel("s1")  # an interrupt: the session's jobs fail at once …
    render.cancel()  # … and the conversation drops the task that was still sending
    await asyncio.gather(render, return_exceptions=True)
    assert handle.stats.in_flight == 0
    del render
    gc.collect()
    await asyncio.sleep(0)
    assert unretrieved == []
