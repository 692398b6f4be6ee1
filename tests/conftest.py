"""Suites CI must run: with `STREAMER_REQUIRE_SUITES` set (e.g. `browser,speech,ray,dotnet`, as
.ci/run sets it), a test of one of them that skips (no Chromium, no espeak-ng, no Ray, no Mono)
fails instead, so a CI machine that lost a tool cannot go green by skipping."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

SUITES = {
    "browser": re.compile(r"chromium", re.IGNORECASE),
    "speech": re.compile(r"espeak-ng", re.IGNORECASE),
    "ray": re.compile(r"\bray\b", re.IGNORECASE),
    "dotnet": re.compile(r"\bmono\b", re.IGNORECASE),
}
"""Each suite and what its skip reason names."""


def required() -> set[str]:
    names = {n.strip() for n in os.environ.get("STREAMER_REQUIRE_SUITES", "").split(",") if n.strip()}
    unknown = names - SUITES.keys()
    if unknown:
        raise pytest.UsageError(f"STREAMER_REQUIRE_SUITES names unknown suites {sorted(unknown)} ({sorted(SUITES)})")
    return names


def skipped_suite(report: pytest.CollectReport | pytest.TestReport, suites: set[str]) -> str | None:
    """The required suite a skipped report belongs to, judged by its skip reason."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    return next((s for s in sorted(suites) if SUITES[s].search(reason)), None)


def _fail_if_required(report: pytest.CollectReport | pytest.TestReport) -> None:
    suite = skipped_suite(report, required())
    if suite is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        report.outcome = "failed"
        report.longrepr = f"the {suite} suite must run here (STREAMER_REQUIRE_SUITES) but skipped: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    _fail_if_required(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report = yield
    _fail_if_required(report)
    return report
