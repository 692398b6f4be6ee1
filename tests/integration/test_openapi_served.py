"""GET /openapi.json serves docs/openapi.yaml, and the checks of the other tests do check."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.contract.openapi import CONTRACT, document
from tests.support.servers import LiveServer


def _get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read(), response.headers.get_content_type()


def test_openapi_json_is_the_document(server: LiveServer) -> None:
    status, body, content_type = _get(f"{server.url}/openapi.json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == document()


def test_answers_are_checked(server: LiveServer) -> None:
    before = CONTRACT.checked
    _get(f"{server.url}/healthz")
    _get(f"{server.url}/api/stats")
    assert CONTRACT.checked >= before + 2


def test_unknown_routes_get_the_error_json(server: LiveServer) -> None:
    before = len(CONTRACT.violations)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.url}/no/such/route", timeout=10)
    assert caught.value.code == 404
    assert CONTRACT.violations[before:] == []
