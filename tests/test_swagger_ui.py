"""Swagger UI in a real browser: Authorize with client credentials, then "Try it out".

Headless Debian Chromium, driven by Playwright (no browser download: .ci/run installs the
distribution's chromium). The screenshot lands in the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, demo_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No network beyond loopback here: keep Chromium from reaching for Google's services.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with demo_server(tmp_path) as running:
        yield running


def test_authorize_and_try_it_out(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    found = dict(re.findall(r"(client_id|client_secret):\s+(\S+)", server.output))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.goto(f"{server.base}/ui/")
            info = page.locator(".swagger-ui .info")
            expect(info.locator(".title")).to_contain_text("Storefront API")
            expect(info).to_contain_text("Every error is JSON of the shape")
            expect(info).to_contain_text("X-RateLimit-Remaining")

            page.click("button.authorize")
            modal = page.locator(".modal-ux")
            modal.locator("#client_id").fill(found["client_id"])
            modal.locator("#client_secret").fill(found["client_secret"])
            # Swagger UI draws its own box over the (hidden) checkbox; ask for "read" only.
            modal.locator("label[for='read-clientCredentials-checkbox-OAuth2']").click()
            modal.locator("button.authorize").first.click()
            expect(modal).to_contain_text("Authorized")  # the token was fetched
            expect(modal.get_by_role("button", name="Logout")).to_be_visible()
            modal.get_by_role("button", name="Close").first.click()

            operation = page.locator("#operations-users-list_users")
            operation.locator(".opblock-summary").click()
            expect(operation).to_contain_text("X-RateLimit-Limit")  # documented headers
            # "Try it out" is on from the start (tryItOutEnabled in create_app).
            operation.locator("button.execute").click()
            live = operation.locator(".live-responses-table .response")
            expect(live.locator(".response-col_status").first).to_have_text("200")
            expect(live).to_contain_text("x-ratelimit-remaining")

            page.locator("#operations-users-get_user .opblock-summary").click()
            expect(page.locator("#operations-users-get_user")).to_contain_text(
                "The specified user ID does not exist."
            )
            page.screenshot(path=str(tmp_path / "swagger-ui.png"), full_page=True)
            operation.screenshot(path=str(tmp_path / "try-it-out.png"))
        finally:
            browser.close()
    assert (tmp_path / "swagger-ui.png").stat().st_size > 10_000
    token_requests = [line for line in server.lines if "POST /auth/token 200" in line]
    assert token_requests, "Swagger UI did not fetch a token"
