"""What the browser tests share besides fixtures: screenshots and a signed-in visitor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.admin.support import PASSWORD, PEOPLE  # noqa: F401  (the people every test signs in as)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


class Screens:
    """Saves full-page screenshots as ``<test name>-<nn>-<step>.png``."""

    def __init__(self, test_name: str) -> None:
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{self.prefix}-*.png"):
            old.unlink()

    def __call__(self, page: Page, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@dataclass
class Visitor:
    """One person's browser: its own context (cookies), one page, and the server's address."""

    context: BrowserContext
    page: Page
    base_url: str

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def sign_in(self, name: str, password: str = PASSWORD, *, landing: str = "/admin/",
                shots: Screens | None = None) -> None:
        """Through the login form, as a person does; ends on ``landing``."""
        self.goto(landing)
        expect(self.page).to_have_url(re.compile(r"/auth/login"))
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Password").fill(password)
        if shots is not None:
            shots(self.page, "sign-in")
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(self.base_url + landing)
        expect(self.page.locator("#signed-in-as")).to_have_text(name)
