"""An OpenAI-compatible chat completions client, streamed: SSE deltas until `data: [DONE]`.

`ChatStream.close()` closes the HTTP response at once, so the LLM server sees the hang-up and
stops generating (an interrupt must not let the model run on). The API key goes in the
`Authorization` header only, never in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from streamer.errors import StreamerError
from streamer.settings_slices import ReplySettings

log = logging.getLogger(__name__)

DETAIL_CHARS = 200


class LlmError(StreamerError):
    """The LLM could not answer (refused, 4xx/5xx, timeout, malformed stream)."""

    status = 502


@dataclass(frozen=True)
class LlmConfig:
    url: str
    model: str
    api_key: str | None
    max_tokens: int
    temperature: float
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: ReplySettings) -> LlmConfig:
        return cls(
            settings.llm_url.rstrip("/"),
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_max_tokens,
            settings.llm_temperature,
            settings.llm_timeout_s,
        )


class ChatStream:
    """One streamed answer; iterate `deltas()` once, `close()` from anywhere to hang up."""

    def __init__(self, http: aiohttp.ClientSession, config: LlmConfig, messages: list[dict[str, str]]) -> None:
        self._http = http
        self._config = config
        self._messages = messages
        self._response: aiohttp.ClientResponse | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self._response is not None:
            self._response.close()

    async def deltas(self) -> AsyncIterator[str]:
        """The answer's text pieces as they arrive; `LlmError` when the LLM fails."""
        c = self._config
        body: dict[str, Any] = {
            "model": c.model,
            "messages": self._messages,
            "stream": True,
            "max_tokens": c.max_tokens,
            "temperature": c.temperature,
        }
        headers = {"Authorization": f"Bearer {c.api_key}"} if c.api_key else {}
        url = f"{c.url}/chat/completions"
        try:
            async with asyncio.timeout(c.timeout_s):
                response = await self._http.post(url, json=body, headers=headers)
            self._response = response
            if self.closed:
                response.close()
                return
            await _check_status(response, url)
            async for delta in self._read(response):
                yield delta
        except TimeoutError:
            raise LlmError(f"the LLM at {url} sent nothing for {c.timeout_s:g} s") from None
        except aiohttp.ClientPayloadError:
            if not self.closed:
                raise LlmError("the LLM's stream broke off before [DONE]") from None
        except aiohttp.ClientError as exc:
            if not self.closed:
                raise LlmError(f"cannot reach the LLM at {url}: {type(exc).__name__} {exc}") from None
        finally:
            if self._response is not None:
                self._response.close()

    async def _read(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        finished = False
        while True:
            async with asyncio.timeout(self._config.timeout_s):
                line = await response.content.readline()
            if not line:
                break
            text = line.decode("utf-8", errors="replace").strip()
            if not text.startswith("data:"):
                continue  # blank lines between events, comments, `event:` fields
            data = text[5:].strip()
            if data == "[DONE]":
                return
            delta, done = _parse_chunk(data)
            finished = finished or done
            if delta:
                yield delta
        if not finished and not self.closed:
            raise LlmError("the LLM's stream ended before [DONE]")


async def _check_status(response: aiohttp.ClientResponse, url: str) -> None:
    if response.status == 200:
        return
    try:
        detail = (await response.text())[:DETAIL_CHARS].strip()
    except (aiohttp.ClientError, UnicodeDecodeError):
        detail = ""
    raise LlmError(f"the LLM at {url} answered {response.status}: {detail or response.reason}")


def _parse_chunk(data: str) -> tuple[str, bool]:
    """The text delta of one `chat.completion.chunk`, and whether it carries a finish_reason."""
    try:
        chunk = json.loads(data)
        if "error" in chunk:
            raise LlmError(f"the LLM failed mid-answer: {str(chunk['error'])[:DETAIL_CHARS]}")
        choices = chunk.get("choices") or [{}]
        delta = choices[0].get("delta") or {}
        content = delta.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not a string")
        return content, choices[0].get("finish_reason") is not None
    except (ValueError, TypeError, AttributeError, IndexError):
        raise LlmError(f"the LLM sent a malformed stream chunk: {data[:80]!r}") from None
