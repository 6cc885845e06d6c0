"""Browser tests of the operator and auditor pages: Playwright driving Debian's chromium.

The browser is ``/usr/bin/chromium`` (``scripts/system-packages.sh`` installs it; Playwright's
own browser downloads are never used), launched headless. The app runs on a real loopback HTTP
server (``tests.protocol.support.serving``) with a home made by ``tnca init``; the ACME side is
certbot's client (``tests.protocol.support.Subscriber``), and, where certificate transparency is
shown, a real log (``tnca ctlog serve``). People sign in through the login form.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored), named after the test and step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from acme_server import create_app
from ca.home import Home
from tests.admin.support import create_people
from tests.browser.support import SCREENSHOTS, Screens, Visitor
from tests.ct.ct_helpers import RunningLog, postgres_database, start_log, stop_log
from tests.protocol.support import LiveServer, authority, home, port, serving  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches out of the machine (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1360, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-packages.sh (make setup installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def people(home: Home) -> dict[str, str]:
    """One person per role (role → name), created with ``ca.records.users`` as ``tnca user add`` does."""
    return create_people(home)


@pytest.fixture
def live(home: Home, port: int) -> Iterator[LiveServer]:
    with serving(create_app(home), home, port) as server:
        yield server


@pytest.fixture
def ct_log(home: Home, tmp_path: Path) -> Iterator[RunningLog]:
    """A real RFC 6962 log that accepts the home's root, on its own database."""
    (tmp_path / "ct").mkdir()
    postgres = postgres_database("browser")
    running = start_log(tmp_path / "ct", "browser-ct", home.path / "certs" / "root.pem",
                        database_url=postgres[0] if postgres else None)
    yield running
    stop_log(running)
    if postgres:
        postgres[1]()


@pytest.fixture
def ct_home(home: Home, ct_log: RunningLog) -> Iterator[Home]:
    """The home with its policy asking for one SCT from ``ct_log``."""
    entry = f'{{ name = "{ct_log.name}", url = "{ct_log.url}", public_key = "{ct_log.public_key_file}" }}'
    text = home.policy_path.read_text()
    text = text.replace("\nlogs = []\n", f"\nlogs = [{entry}]\n").replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n")
    home.policy_path.write_text(text)
    with_log = Home(home.path)
    yield with_log
    with_log.close()


@pytest.fixture
def live_with_ct(ct_home: Home, port: int) -> Iterator[LiveServer]:
    with serving(create_app(ct_home), ct_home, port) as server:
        yield server


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screens:
    return Screens(request.node.name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:  # type: ignore[type-arg]
    """Keep each phase's report on the test item, so fixtures can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def visit(browser: Browser, request: pytest.FixtureRequest) -> Iterator:  # type: ignore[type-arg]
    """``visit(server)`` → a new :class:`Visitor` (a fresh browser context each time).

    When the test fails, every page it had open is saved as ``<test>-failed-<n>.png``.
    """
    contexts: list[BrowserContext] = []

    def open_for(server: LiveServer) -> Visitor:
        context = browser.new_context(viewport=VIEWPORT, base_url=server.base_url)
        context.set_default_timeout(float(os.environ.get("TNCA_BROWSER_TIMEOUT_MS", "15000")))
        contexts.append(context)
        return Visitor(context, context.new_page(), server.base_url)

    yield open_for
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for index, context in enumerate(contexts):
            for page in context.pages:
                page.screenshot(path=str(SCREENSHOTS / f"{prefix}-failed-{index}.png"), full_page=True)
    for context in contexts:
        context.close()
