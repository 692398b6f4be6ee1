"""schemathesis' stateful phase: sequences that follow the `links` of docs/openapi.yaml (and the
ones schemathesis infers from `Location`) from a session-opening answer to that live session's
routes, so generated calls reach a real session, not only 404s.

Each opening call carries a real SDP offer (a generated body opens nothing), the follow-up calls
carry the session's token, and every session a scenario opened is closed when it ends.
schemathesis infers WHEP's links from the offer's own `id` (the template): those calls go to the
session the scenario opened, the resource at the answer's `Location`.
bench/fuzz_openapi.py runs it after the per-operation phase; tests/contract runs it bounded.
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis import Case
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.transport import Response

from bench.common import viewer_offer
from bench.fuzz_openapi import CHECKS, TEMPLATE, FuzzReport, _serializers
from streamer.server.openapi import DOCUMENT

OPENERS = {"POST /api/sessions", "POST /whep/{id}"}


def _label(case: Case) -> str:
    return f"{case.method.upper()} {case.path}"


def _opened(response: Response, case: Case) -> tuple[str, str, str] | None:
    """(id, token, how to close it) of the session a 201 opened, else None."""
    if response.status_code != 201:
        return None
    if case.path == "/api/sessions":
        body = response.json()
        return body["session_id"], body["token"], "/api/sessions/"
    location = response.headers["location"][0]  # lowercase keys, lists of values
    return location.rsplit("/", 1)[1], response.headers["x-session-token"][0], "/whep/"


@dataclass
class Run:
    """What every scenario of one run shares."""

    base_url: str
    http: requests.Session
    offer: str
    headers: dict[str, str] = field(default_factory=dict)
    report: FuzzReport = field(default_factory=FuzzReport)


class LiveSessions:
    """The hooks mixed into schemathesis' state machine: real offers open sessions, their tokens
    go on the calls the links lead to, and each scenario closes what it opened."""

    shared: ClassVar[Run]

    def setup(self) -> None:
        self.tokens: dict[str, str] = {}
        self.opened: list[str] = []
        self.whep: list[str] = []

    def before_call(self, case: Case) -> None:
        if _label(case) in OPENERS:  # a real offer: the session opens and the links lead somewhere
            sdp = case.path == "/api/sessions"
            case.body = {"template": TEMPLATE, "sdp": self.shared.offer, "type": "offer"} if sdp else self.shared.offer
            case.media_type = "application/json" if sdp else "application/sdp"
            case.path_parameters = None if sdp else {"id": TEMPLATE}
        elif case.path == "/whep/{id}" and self.whep and str((case.path_parameters or {}).get("id")) == TEMPLATE:
            case.path_parameters = {"id": self.whep[-1]}  # the resource at the answer's Location
        sid = next((str(v) for v in (case.path_parameters or {}).values() if str(v) in self.tokens), None)
        if sid is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {self.tokens[sid]}"}

    def get_call_kwargs(self, case: Case) -> dict[str, Any]:
        return {
            "base_url": self.shared.base_url,
            "session": self.shared.http,
            "headers": self.shared.headers,
            "timeout": 60,
        }

    def after_call(self, response: Response, case: Case) -> None:
        live = any(str(v) in self.tokens for v in (case.path_parameters or {}).values())
        name = f"{_label(case)} [{'live' if live else 'stateful'}]"
        report = self.shared.report
        report.tried[name] += 1
        report.statuses[f"{name} -> {response.status_code}"] += 1
        report.server_errors += response.status_code >= 500
        if (opened := _opened(response, case)) is not None:
            sid, token, close = opened
            self.tokens[sid] = token
            self.opened.append(close + sid)
            if close == "/whep/":
                self.whep.append(sid)

    def validate_response(self, response: Response, case: Case, *args: Any, **kwargs: Any) -> None:
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:  # a finding: reported, not raised
            line = str(exc).splitlines()[0][:300]
            self.shared.report.failures.append(f"{_label(case)} [stateful] -> {response.status_code}: {line}")

    def teardown(self) -> None:
        for path in self.opened:
            token = self.tokens[path.rsplit("/", 1)[1]]
            self.shared.http.delete(
                self.shared.base_url + path, headers={**self.shared.headers, "Authorization": f"Bearer {token}"}
            )


def stateful_run(
    base_url: str, scenarios: int = 10, steps: int = 6, headers: dict[str, str] | None = None
) -> FuzzReport:
    """Up to `scenarios` sequences of at most `steps` calls each; every answer checked."""
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    _serializers(document)
    schema = schemathesis.openapi.from_dict(document)
    run = Run(base_url, requests.Session(), asyncio.run(viewer_offer()), headers or {})
    machine = type("Scenario", (LiveSessions, schema.as_state_machine()), {"shared": run})
    bounds = settings(
        max_examples=scenarios,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    with run.http, warnings.catch_warnings():  # schemathesis' own strategies draw from `random`
        warnings.filterwarnings(
            "ignore", message="Do not use the `random` module", category=HypothesisDeprecationWarning
        )
        machine.run(settings=bounds)
    return run.report
