"""Fuzzing a live server. `openapi_run`: schemathesis drives every operation of docs/openapi.yaml;
then its stateful phase follows the links to live sessions (bench/fuzz_stateful.py).

    python bench/fuzz_openapi.py [--server URL] [--examples 50] [--seed 1] [--scenarios 100]

Without --server it serves the lite renderer on a free loopback port. Prints one JSON object:
inputs tried per operation, 5xx answers, other contract failures (the first few, to replay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import HypothesisDeprecationWarning, Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import _checkout  # noqa: F401
from bench.common import viewer_offer
from streamer.server.openapi import DOCUMENT

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
TEMPLATE = "astronaut"


@dataclass
class FuzzReport:
    tried: Counter[str] = field(default_factory=Counter)
    """Inputs sent, per operation (`METHOD path`)."""
    statuses: Counter[str] = field(default_factory=Counter)
    """Answers per `METHOD path -> status`."""
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)
    """One line per failing input (check and request), 5xx included."""
    skipped: list[str] = field(default_factory=list)
    """Operations not driven (marked `x-pending` and not served yet)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "operations": len(self.tried),
            "inputs": sum(self.tried.values()),
            "per_operation": dict(sorted(self.tried.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors": self.server_errors,
            "failures": len(self.failures),
            "first_failures": self.failures[:10],
            "skipped": self.skipped,
        }


def openapi_run(
    base_url: str,
    examples: int = 10,
    seed_: int = 1,
    skip: Iterable[str] | None = None,
    headers: dict[str, str] | None = None,
    session: tuple[str, str] | None = None,
    offers: bool = False,
) -> FuzzReport:
    """Up to `examples` inputs per operation and mode (positive, negative), each checked.

    `skip`: `METHOD path` of operations not to drive, by default those marked `x-pending`
    (tests/contract checks that the server has none of them yet); `headers` go on every
    request (e.g. a server key). With `session` (id, token) of a live session, the session's
    operations but DELETE are driven a second time on it (as `METHOD path [session]`). With
    `offers`, a real SDP offer opens a session by the JSON API and one by WHEP, each closed
    again, all four answers checked (as `METHOD path [offer]`)."""
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    _serializers(document)
    schema = schemathesis.openapi.from_dict(document)
    report = FuzzReport()
    skipped = set(pending(document) if skip is None else skip)
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            name = f"{operation.method.upper()} {operation.path}"
            if name in skipped:
                report.skipped.append(name)
                continue
            for mode in MODES:
                cases = operation.as_strategy(generation_mode=mode)
                _drive(cases, mode, name, base_url, http, headers or {}, examples, seed_, report)
                if session is not None and "{session_id}" in operation.path and operation.method != "delete":
                    sid, token = session
                    cases = operation.as_strategy(generation_mode=mode, path_parameters={"session_id": sid})
                    auth = {**(headers or {}), "Authorization": f"Bearer {token}"}
                    _drive(cases, mode, f"{name} [session]", base_url, http, auth, examples, seed_, report)
        if offers:
            _real_offers(schema, base_url, http, headers or {}, report)
    return report


def _real_offers(
    schema: Any, base_url: str, http: requests.Session, headers: dict[str, str], report: FuzzReport
) -> None:
    """Open and close a session with a real offer, by the JSON API and by WHEP."""
    ops = {f"{r.ok().method.upper()} {r.ok().path}": r.ok() for r in schema.get_all_operations()}

    def check(name: str, case: Case) -> Response:
        response = case.call(base_url=base_url, session=http, headers=headers, timeout=60)
        report.tried[f"{name} [offer]"] += 1
        report.statuses[f"{name} [offer] -> {response.status_code}"] += 1
        report.server_errors += response.status_code >= 500
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:
            report.failures.append(f"{name} [offer] -> {response.status_code}: {str(exc).splitlines()[0][:300]}")
        return response

    body = {"template": TEMPLATE, "sdp": asyncio.run(viewer_offer()), "type": "offer"}
    opened = check("POST /api/sessions", ops["POST /api/sessions"].Case(body=body, media_type="application/json"))
    if opened.status_code == 201:
        sid, token = opened.json()["session_id"], opened.json()["token"]
        close = ops["DELETE /api/sessions/{session_id}"]
        check(
            close.method.upper() + " " + close.path,
            close.Case(path_parameters={"session_id": sid}, headers={"Authorization": f"Bearer {token}"}),
        )
    whep = ops["POST /whep/{id}"].Case(
        path_parameters={"id": TEMPLATE}, body=asyncio.run(viewer_offer()), media_type="application/sdp"
    )
    opened = check("POST /whep/{id}", whep)
    if opened.status_code == 201:
        sid = opened.headers["location"][0].rsplit("/", 1)[1]  # lowercase keys, lists of values
        auth = {"Authorization": f"Bearer {opened.headers['x-session-token'][0]}"}
        check("DELETE /whep/{id}", ops["DELETE /whep/{id}"].Case(path_parameters={"id": sid}, headers=auth))


@contextmanager
def viewer(base_url: str, template: str = TEMPLATE) -> Iterator[tuple[str, str]]:
    """A connected aiortc viewer on `template` (its own loop, in a thread): yields (id, token)."""
    from streamer.headless.client import Client

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-viewer", daemon=True)
    thread.start()

    async def connect() -> Client:
        client = Client(base_url)
        await client.connect(template)
        await client.wait_frames(1)
        return client

    client = asyncio.run_coroutine_threadsafe(connect(), loop).result(120)
    try:
        yield client.session_id, client.token
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _serializers(document: dict[str, Any]) -> None:
    """Bodies schemathesis has no serializer for: binary ones as octet-stream, text as plain."""
    for item in document["paths"].values():
        for op in item.values():
            content = op.get("requestBody", {}).get("content", {}) if isinstance(op, dict) else {}
            for media_type, body in content.items():
                if media_type != "application/json":
                    binary = body.get("schema", {}).get("format") == "binary"
                    schemathesis.serializer.alias(media_type, "application/octet-stream" if binary else "text/plain")


def pending(document: dict[str, Any]) -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and op.get("x-pending")
    ]


def _drive(
    cases: SearchStrategy[Case],
    mode: GenerationMode,
    name: str,
    base_url: str,
    http: requests.Session,
    headers: dict[str, str],
    examples: int,
    seed_: int,
    report: FuzzReport,
) -> None:
    @seed(seed_)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=True,
    )
    @given(case=cases)
    def one(case: Case) -> None:
        report.tried[name] += 1
        response = case.call(base_url=base_url, session=http, headers=headers, timeout=60)
        report.statuses[f"{name} -> {response.status_code}"] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:  # a finding: reported, not raised
            report.failures.append(f"{name} [{mode.value}] -> {response.status_code}: {str(exc).splitlines()[0][:300]}")

    try:
        with warnings.catch_warnings():  # schemathesis' own strategies draw from `random`
            warnings.filterwarnings(
                "ignore", message="Do not use the `random` module", category=HypothesisDeprecationWarning
            )
            one()
    except Unsatisfiable:  # nothing to negate: an operation without parameters or body
        if mode is GenerationMode.POSITIVE:
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="base URL of a running server (default: start a lite one)")
    parser.add_argument("--examples", type=int, default=50, help="inputs per operation and mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenarios", type=int, default=100, help="sequences of the stateful phase")
    args = parser.parse_args()
    from streamer.config import Settings
    from tests.support.servers import live_server

    served = nullcontext(args.server) if args.server else live_server(Settings(renderer="lite"))
    with served as live:
        url = live if isinstance(live, str) else live.url
        with viewer(url) as session:
            report = openapi_run(url, examples=args.examples, seed_=args.seed, session=session, offers=True)
        from bench.fuzz_stateful import stateful_run  # it builds on this module

        stateful = stateful_run(url, scenarios=args.scenarios)
    print(json.dumps({"bench": "fuzz", "openapi": report.as_json(), "stateful": stateful.as_json()}))


if __name__ == "__main__":
    main()
