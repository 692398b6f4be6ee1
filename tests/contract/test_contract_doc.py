"""docs/openapi.yaml is a valid OpenAPI 3.1 document, and the server, docs/api.md agree with it."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate

from streamer.config import Settings
from streamer.core import events
from streamer.server.app import create_app
from tests.contract.openapi import ResponseCheck, app_routes, document, operations, shape

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"
HEADING = re.compile(r"^#{2,4} (.+)$", re.M)
OPERATION = re.compile(r"\b(GET|POST|DELETE|OPTIONS|PATCH|PUT) `(/[^`]*)`(?: \(also `(/[^`]*)`\))?")


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document())
    assert document()["openapi"].startswith("3.1")


@pytest.fixture(scope="module")
def served() -> set[tuple[str, str]]:
    return app_routes(create_app(Settings()))


def test_every_route_is_documented(served: set[tuple[str, str]]) -> None:
    assert served - operations() == set(), "routes the document lacks"


def test_every_operation_is_served(served: set[tuple[str, str]]) -> None:
    assert operations(pending=False) - served == set(), "operations the server lacks"


def test_pending_operations_are_not_served_yet(served: set[tuple[str, str]]) -> None:
    landed = operations(pending=True) & served
    assert not landed, f"these have landed: drop their `x-pending: true` in docs/openapi.yaml: {sorted(landed)}"


def _documented_in_prose() -> set[tuple[str, str]]:
    found = set()
    for heading in HEADING.findall(API_MD.read_text(encoding="utf-8")):
        for method, path, also in OPERATION.findall(heading):
            found.update((method, re.sub(r"\{[^}]*\}", "{}", p)) for p in (path, also) if p)
    return found


def _covers(template: str, path: str) -> bool:
    return re.fullmatch(re.escape(template).replace(r"\{\}", "[^/]+"), path) is not None


def test_api_md_and_the_document_name_the_same_operations() -> None:
    prose = _documented_in_prose()
    ours = operations(pending=False)
    assert {p for p in prose if not any(m == p[0] and _covers(t, p[1]) for m, t in ours)} == set()
    assert {o for o in ours if not any(m == o[0] and _covers(o[1], p) for m, p in prose)} == set()


def test_api_md_links_the_document() -> None:
    assert "(openapi.yaml)" in API_MD.read_text(encoding="utf-8")


def test_responses_are_closed_objects() -> None:
    """`additionalProperties: false` on every object schema a response names."""
    schemas = document()["components"]["schemas"]
    seen: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and ref not in seen:
                seen.add(ref)
                visit(schemas[ref.rsplit("/", 1)[1]])
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, node
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for item in document()["paths"].values():
        for op in item.values():
            if isinstance(op, dict):
                visit(op.get("responses", {}))
    visit(document()["components"]["responses"])
    assert seen, "no response schema was visited"


def test_shape_blanks_parameter_names() -> None:
    assert shape("/whep/{template}") == shape("/whep/{id}") == "/whep/{}"


async def test_the_response_check_finds_a_wrong_answer() -> None:
    check = ResponseCheck()
    app = web.Application()
    check.attach(app)
    app.freeze()
    await app.on_response_prepare.send(make_mocked_request("GET", "/healthz", app=app), web.json_response({"ok": 1}))
    await app.on_response_prepare.send(make_mocked_request("GET", "/healthz", app=app), web.json_response({"ok": True}))
    await app.on_response_prepare.send(make_mocked_request("GET", "/a/b/c", app=app), web.Response(status=404))
    assert check.checked == 3
    assert len(check.violations) == 2, check.violations
    assert check.violations[0].startswith("GET /healthz -> 200")
    assert "not the error JSON" in check.violations[1]


def test_the_event_schemas_are_streamer_events() -> None:
    """Each dataclass of streamer/core/events.py is one variant of `Event`, field for field."""
    schemas = document()["components"]["schemas"]
    variants = {}
    for variant in schemas["Event"]["oneOf"]:
        variant = schemas[variant["$ref"].rsplit("/", 1)[1]] if "$ref" in variant else variant
        variants[variant["properties"]["type"]["const"]] = variant
    ours = {}
    for cls in typing.get_args(events.Event):
        names = {f.name for f in dataclasses.fields(cls)}
        ours[cls.__dataclass_fields__["type"].default] = names
    assert set(variants) == set(ours)
    for kind, names in ours.items():
        assert set(variants[kind]["properties"]) == names | {"session_id"}, kind
        assert set(variants[kind]["required"]) == names, kind


async def test_the_response_check_reads_a_file_answer_by_status_and_headers(tmp_path: Path) -> None:
    """A FileResponse's body is not in hand when it is prepared: its status and headers are checked."""
    page = tmp_path / "index.html"
    page.write_text("<!doctype html>", encoding="utf-8")
    check = ResponseCheck()
    app = web.Application()
    check.attach(app)
    app.freeze()
    await app.on_response_prepare.send(make_mocked_request("GET", "/", app=app), web.FileResponse(page))
    await app.on_response_prepare.send(make_mocked_request("GET", "/", app=app), web.FileResponse(page, status=500))
    assert check.checked == 2
    assert len(check.violations) == 1, check.violations
    assert check.violations[0].startswith("GET / -> 500")
