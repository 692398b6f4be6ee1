"""The streamed chat completions client against a real fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from streamer.reply.llm import ChatStream, LlmConfig, LlmError
from tests.fake_llm import Script, fake_llm
from tests.support.servers import free_port

MESSAGES = [{"role": "user", "content": "hi"}]


def config(url: str, timeout_s: float = 5.0, key: str | None = "sk-secret") -> LlmConfig:
    return LlmConfig(url, "fake-7b", key, 64, 0.5, timeout_s)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def collect(stream: ChatStream) -> str:
    return "".join([delta async for delta in stream.deltas()])


async def test_deltas_stream_until_done_with_the_request_openai_sends(http):
    with fake_llm(Script("Hello there. 你好！")) as llm:
        assert await collect(ChatStream(http, config(llm.url), MESSAGES)) == "Hello there. 你好！"
        body = llm.requests[0]
        assert body["stream"] is True and body["messages"] == MESSAGES and body["model"] == "fake-7b"
        assert body["max_tokens"] == 64 and body["_auth"] == "Bearer sk-secret"
        assert llm.hung_up == 0


async def test_close_hangs_up_on_the_server_at_once(http):
    with fake_llm(Script("word " * 200, token_s=0.02)) as llm:
        stream = ChatStream(http, config(llm.url), MESSAGES)
        got = []
        async for delta in stream.deltas():
            got.append(delta)
            if len(got) == 3:
                stream.close()
        await llm.wait_for(hung_up=1)
        assert len(got) <= 4


async def test_cancelling_the_reader_hangs_up_too(http):
    with fake_llm(Script("word " * 200, token_s=0.02)) as llm:
        first = asyncio.Event()

        async def read() -> None:
            async for _ in ChatStream(http, config(llm.url), MESSAGES).deltas():
                first.set()

        task = asyncio.ensure_future(read())
        await first.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await llm.wait_for(hung_up=1)


async def test_a_stall_times_out_and_hangs_up(http):
    with fake_llm(Script("one two three", stall_after=1)) as llm:
        with pytest.raises(LlmError, match=r"sent nothing for 0\.3 s"):
            await collect(ChatStream(http, config(llm.url, timeout_s=0.3), MESSAGES))
        await llm.wait_for(hung_up=1)


async def test_no_first_token_in_time(http):
    with fake_llm(Script("late", first_token_s=2.0)) as llm, pytest.raises(LlmError, match="sent nothing"):
        await collect(ChatStream(http, config(llm.url, timeout_s=0.3), MESSAGES))


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (Script(status=500), "answered 500"),
        (Script(status=401), "answered 401"),
        (Script("a b c d", fail_after=2), "broke off before"),
        (Script("a b c d", malformed_after=2), "malformed"),
    ],
)
async def test_failures_are_clear_and_never_show_the_key(http, script, message):
    with fake_llm(script) as llm:
        with pytest.raises(LlmError, match=message) as failed:
            await collect(ChatStream(http, config(llm.url), MESSAGES))
        assert "sk-secret" not in str(failed.value)


async def test_a_server_that_is_down(http):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LlmError, match="cannot reach the LLM"):
        await collect(ChatStream(http, config(url), MESSAGES))
