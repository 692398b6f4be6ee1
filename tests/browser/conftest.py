"""Browser suite fixtures: one live server for the session, one Chromium per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.harness import watch
from tests.browser.live_server import static_site
from tests.served import serve
from tests.support.servers import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("no Chromium at /usr/bin/chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
def site() -> Iterator[tuple[int, dict[str, str]]]:
    """A second origin (127.0.0.1:PORT) for bare pages; fill the dict with path -> HTML."""
    pages: dict[str, str] = {}
    with static_site(pages) as port:
        yield port, pages


@pytest.fixture(scope="session")
def server(chromium_path: Path, site: tuple[int, dict[str, str]]) -> Iterator[str]:
    port, _ = site
    with serve("--renderer", "lite", "--cors", f"http://127.0.0.1:{port}") as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[object]:
    """Chromium for one module. Not for the session: sync Playwright keeps an event loop
    running in this thread while it is open, which would break later asyncio tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh page whose console errors and uncaught exceptions land in `page.problems`."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    watch(page)
    yield page
    context.close()
