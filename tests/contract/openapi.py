"""The contract in docs/openapi.yaml, loaded for tests: response checks and the route table."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.validation.response.validators import V31ResponseHeadersValidator

from streamer.server.openapi import DOCUMENT

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


@cache
def spec() -> OpenAPI:
    return OpenAPI.from_dict(document())


@cache
def headers_spec() -> OpenAPI:
    """The document checking status and headers only: for file answers, whose body is not here."""
    return OpenAPI.from_dict(document(), config=Config(response_validator_cls=V31ResponseHeadersValidator))


def shape(path: str) -> str:
    """A path with its parameters' names blanked: `/whep/{template}` -> `/whep/{}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def operations(pending: bool | None = None) -> set[tuple[str, str]]:
    """(METHOD, path shape) of the document; `pending` filters on the `x-pending` mark."""
    found = set()
    for path, item in document()["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is not None and (pending is None or bool(op.get("x-pending")) == pending):
                found.add((method.upper(), shape(path)))
    return found


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path shape) the application serves, HEAD (aiohttp's, with GET) left out."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method not in ("HEAD", "*"):
            found.add((route.method, shape(path)))
    return found


@dataclass
class _Answer:
    """An aiohttp answer as openapi-core reads one; file and WebSocket answers have no body here."""

    status_code: int
    content_type: str
    headers: Any
    data: bytes


@dataclass
class ResponseCheck:
    """Holds every answer an application gives to the document; the violations pile up here."""

    violations: list[str] = field(default_factory=list)
    checked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, app: web.Application) -> None:
        app.on_response_prepare.append(self._on_prepare)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        body = response.body if isinstance(response, web.Response) else None
        data = body if isinstance(body, bytes) else b""
        content_type = "" if isinstance(response, web.WebSocketResponse) else response.content_type
        answer = _Answer(response.status, content_type, response.headers, data)
        try:
            checker = headers_spec() if isinstance(response, web.FileResponse) else spec()
            checker.validate_response(AIOHTTPOpenAPIWebRequest(request, body=None), answer)
            problem = None
        except PathError:
            problem = _unknown_route(answer)
        except Exception as exc:  # noqa: BLE001 - every kind of mismatch is a finding
            problem = "; ".join(str(e) for e in getattr(exc, "schema_errors", ()) or ()) or repr(exc)
        with self._lock:
            self.checked += 1
            if problem is not None:
                self.violations.append(f"{request.method} {request.path} -> {response.status}: {problem}")


def _unknown_route(answer: _Answer) -> str | None:
    """A method or path the document lacks may only get 400/403/404/405 with the error JSON
    (403: the origin and Host checks answer before any route is matched)."""
    if answer.status_code not in (400, 403, 404, 405):
        return f"not in the document, yet answered {answer.status_code}"
    try:
        body = json.loads(answer.data)
    except ValueError:
        body = None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)):
        return f"not in the document, and the answer is not the error JSON: {answer.data[:200]!r}"
    return None


CONTRACT = ResponseCheck()
"""Every answer of every server the integration suite starts (one instance however imported)."""
