"""schemathesis drives every operation of docs/openapi.yaml against a live lite server.

Bounded for CI: a fixed seed, at most EXAMPLES inputs per operation and mode (positive and
negative), the session's operations once more on a live session with a connected viewer; then
the stateful phase: sequences that follow the links from a session-opening answer to that live
session's routes. `python bench/fuzz_openapi.py --examples N --scenarios M` is the longer run.
No 5xx, and every answer conforms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bench.fuzz_openapi import openapi_run, pending, viewer
from bench.fuzz_stateful import stateful_run
from streamer.config import Settings
from tests.contract.openapi import document, operations
from tests.support.servers import LiveServer, live_server

EXAMPLES = 8
"""About 250 inputs in all (operations without parameters need only one)."""
SEED = 20261202
SCENARIOS = 15
"""Sequences of the stateful phase, up to 6 calls each (about 5 s on a quiet 2-core machine)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cache = tmp_path_factory.mktemp("cache")
    with live_server(Settings(renderer="lite", cache_dir=cache, max_sessions=2)) as live:
        yield live


def test_every_operation_conforms_and_none_gives_a_5xx(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    with viewer(server.url) as session:
        report = openapi_run(server.url, examples=EXAMPLES, seed_=SEED, session=session, offers=True)
    with capsys.disabled():
        print("\nschemathesis:", json.dumps(report.as_json()))
    driven = {name.removesuffix(" [session]").removesuffix(" [offer]") for name in report.tried}
    assert len(driven) + len(report.skipped) == len(operations())
    assert sorted(report.skipped) == sorted(pending(document()))
    assert report.server_errors == 0, report.failures
    assert report.failures == []
    assert sum(report.tried.values()) >= 200
    spoken = report.statuses["POST /api/sessions/{session_id}/say [session] -> 202"]
    for opened in ("POST /api/sessions [offer] -> 201", "POST /whep/{id} [offer] -> 201"):
        assert report.statuses[opened] == 1, report.statuses
    assert spoken > 0, "no text was spoken on the live session: the run did not reach the handlers"


def test_the_stateful_phase_follows_the_links_to_live_sessions(
    server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    report = stateful_run(server.url, scenarios=SCENARIOS)
    with capsys.disabled():
        print("\nschemathesis stateful:", json.dumps(report.as_json()))
    assert report.server_errors == 0, report.failures
    assert report.failures == []
    assert report.statuses["POST /api/sessions [stateful] -> 201"] > 0, report.statuses
    live = [key for key in report.statuses if "[live] -> 2" in key]  # answered on a session just opened
    assert any(key.startswith(("DELETE /whep/{id}", "OPTIONS /whep/{id}")) for key in live), report.statuses
    assert any("/api/sessions/{session_id}" in key for key in live), report.statuses
