"""GET /openapi.json: the hand-written contract in docs/openapi.yaml, served as JSON.

The YAML is the one source of truth; tests hold the server's answers to it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml
from aiohttp import web

from streamer import resources

DOCUMENT = resources.OPENAPI


@functools.cache
def document_json(path: Path = DOCUMENT) -> str:
    """The document as JSON text, read once per process."""
    with path.open(encoding="utf-8") as f:
        return json.dumps(yaml.safe_load(f))


async def serve(request: web.Request) -> web.Response:
    return web.Response(text=document_json(), content_type="application/json")
