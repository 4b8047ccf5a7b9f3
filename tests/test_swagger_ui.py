"""Swagger UI in a real browser: Authorize with client credentials, then "Try it out".

Headless Debian Chromium, driven by Playwright (no browser download: .ci/run installs the
distribution's chromium). The screenshot lands in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.servers import Server, clean_env, demo_server, storefront

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

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
PAGE_SIZE = 20  # the spec's default `limit`, which Swagger UI fills in
#: More of each than one page holds, so that a page shows PAGE_SIZE items of a larger total.
USERS = PAGE_SIZE + 3
DEMO_PRODUCTS = 16  # in storefront/data/demo_products.json
DEMO_USERS = 5  # in storefront/data/demo_users.json
EXTRA_PRODUCTS = 10  # imported before the server starts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One demo server for the module: the tests only read, but for the users that
    test_execute_on_every_get_shows_real_data signs up (which the other does not count)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    extra = [
        {"id": f"prod_extra_{n:02}", "name": f"Extra {n}", "price": n, "category": "Extra"}
        for n in range(EXTRA_PRODUCTS)
    ]
    tmp_path = tmp_path_factory.mktemp("swagger-ui")
    (tmp_path / "extra.json").write_text(json.dumps(extra), encoding="utf-8")
    # Only serve and db upgrade create a database: make it, then add the products.
    storefront(clean_env(), "db", "upgrade", cwd=tmp_path)
    storefront(clean_env(), "products", "import", "extra.json", cwd=tmp_path)
    with demo_server(tmp_path) as running:
        yield running


def credentials(server: Server) -> dict[str, str]:
    return dict(re.findall(r"(client_id|client_secret):\s+(\S+)", server.output))


def authorize(page: Page, found: dict[str, str]) -> Locator:
    """Authorize (client credentials, scope read) in Swagger UI's dialog: the dialog, open."""
    from playwright.sync_api import expect

    page.click("button.authorize")
    modal = page.locator(".modal-ux")
    modal.locator("#client_id").fill(found["client_id"])
    modal.locator("#client_secret").fill(found["client_secret"])
    # Swagger UI draws its own box over the (hidden) checkbox; ask for "read" only.
    modal.locator("label[for='read-clientCredentials-checkbox-OAuth2']").click()
    modal.locator("button.authorize").first.click()
    expect(modal).to_contain_text("Authorized")  # the token was fetched
    return modal


def sign_up_users(server: Server, count: int) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        token = http.post(
            "/auth/token", data={"grant_type": "client_credentials", **credentials(server)}
        ).json()["access_token"]
        for n in range(count):
            created = http.post(
                "/users",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": f"User {n}", "email": f"user{n}@example.com", "password": "x" * 12},
            )
            assert created.status_code == 201, created.text


def test_authorize_and_try_it_out(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    found = credentials(server)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.goto(f"{server.base}/ui/")
            info = page.locator(".swagger-ui .info")
            expect(info.locator(".title")).to_contain_text("Storefront API")
            expect(info).to_contain_text("Every error is JSON of the shape")
            expect(info).to_contain_text("X-RateLimit-Remaining")
            # The Servers dropdown says which server "/" is, not just "/".
            expect(page.locator(".servers select option").first).to_have_text(
                re.compile(r"^/ - This Storefront API server")
            )

            modal = authorize(page, found)
            expect(modal.get_by_role("button", name="Logout")).to_be_visible()
            modal.get_by_role("button", name="Close").first.click()

            operation = page.locator("#operations-users-list_users")
            operation.locator(".opblock-summary").click()
            expect(operation).to_contain_text("X-RateLimit-Limit")  # documented headers
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


def test_execute_on_every_get_shows_real_data(server: Server) -> None:
    """Try it out, then Execute with what Swagger UI fills in: a page of real data.

    The spec once carried example cursors, which Swagger UI sent as `after` and `before`:
    every list came back `200 []` beside an X-Total-Count of 3.
    """
    from playwright.sync_api import expect, sync_playwright

    sign_up_users(server, USERS)
    found = credentials(server)
    with httpx.Client(base_url=server.base) as http:
        first = http.get("/users", params={"limit": 1}, headers=_bearer(http, found)).json()
        product = http.get("/products", params={"limit": 1}, headers=_bearer(http, found)).json()
    user_id = first[0]["id"]
    product_id = product[0]["id"]

    def execute(operation: Locator) -> tuple[str, str, dict[str, str]]:
        operation.locator("button.execute").click()
        live = operation.locator(".live-responses-table .response")
        status = live.locator(".response-col_status").first
        expect(status).not_to_be_empty()
        # The page's stylesheet leaves the live table's headings alone.
        headings = operation.locator(".live-responses-table thead .col_header")
        expect(headings).to_have_count(2)
        for heading in headings.all():
            expect(heading).to_be_visible()
        body = live.locator(".response-col_description pre").first.inner_text()
        headers = dict(
            line.strip().split(": ", 1)
            for line in live.locator(".headerline").all_inner_texts()
            if ": " in line
        )
        return status.inner_text().strip(), body, headers

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.goto(f"{server.base}/ui/")
            modal = authorize(page, found)
            modal.get_by_role("button", name="Close").first.click()

            gets = page.locator(".opblock-get")
            ids = [gets.nth(i).get_attribute("id") for i in range(gets.count())]
            assert "operations-users-list_users" in ids
            assert "operations-products-list_products" in ids
            seen: dict[str, tuple[str, str, dict[str, str]]] = {}
            for element_id in ids:
                operation = page.locator(f"#{element_id}")
                operation.locator(".opblock-summary").click()
                operation.get_by_role("button", name="Try it out").click()
                expect(operation.locator("button.execute")).to_be_visible()
                # Nothing is filled in but the documented defaults (limit 20, offset 0).
                filled = {
                    row.get_attribute("data-param-name"): row.locator("input").input_value()
                    for row in operation.locator("tr[data-param-name]").all()
                    if row.locator("input").count()
                }
                assert {k: v for k, v in filled.items() if v} in (
                    {},
                    {"limit": str(PAGE_SIZE), "offset": "0"},
                ), (element_id, filled)
                if element_id == "operations-users-get_user":
                    # A path parameter has no example to send: a made-up id is a 404.
                    operation.locator("tr[data-param-name='id'] input").fill(user_id)
                if element_id == "operations-products-get_product":
                    operation.locator("tr[data-param-name='id'] input").fill(product_id)
                seen[element_id] = execute(operation)
                assert seen[element_id][0] == "200", (element_id, seen[element_id])
        finally:
            browser.close()

    for name, total in (
        ("users-list_users", DEMO_USERS + USERS),
        ("products-list_products", DEMO_PRODUCTS + EXTRA_PRODUCTS),
    ):
        _status, body, headers = seen[f"operations-{name}"]
        assert int(headers["x-total-count"]) == total
        assert len(json.loads(body)) == min(total, PAGE_SIZE) == PAGE_SIZE
    assert json.loads(seen["operations-users-get_user"][1])["id"] == user_id
    assert json.loads(seen["operations-products-get_product"][1])["id"] == product_id
    assert "storefront_" in seen["operations-health-metrics"][1]


def _bearer(http: httpx.Client, found: dict[str, str]) -> dict[str, str]:
    token = http.post("/auth/token", data={"grant_type": "client_credentials", **found})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


#: An expanded list operation at 1280x800 is about 2,400 px (`GET /users`) and 2,700 px
#: (`GET /products`) tall. It was 4,150 and 4,600 px: each of eight or nine responses had a
#: media-type selector with one choice, the 429 listed the five rate-limit headers again, and
#: 431, 500 and 503 were a row each (they are `default`, one row, with `Retry-After`); the
#: page's stylesheet (storefront.http.doc_pages.SWAGGER_UI_CSS) drops the empty controls and
#: tightens the header and parameter tables.
MAX_OPERATION_HEIGHT = 3_000
#: What each response of a list operation shows in its headers table.
NEEDED_HEADERS = {
    "200": ["X-Total-Count", "Link", "X-RateLimit-Limit", "X-RateLimit-Remaining", "RateLimit"],
    "401": ["WWW-Authenticate"],
    "403": ["WWW-Authenticate"],
    "429": ["Retry-After"],
    "default": ["Retry-After"],
}


@pytest.mark.parametrize(
    "element_id", ["operations-users-list_users", "operations-products-list_products"]
)
def test_expanded_list_operation_stays_a_readable_length(server: Server, element_id: str) -> None:
    """At 1280x800, an expanded list operation is under MAX_OPERATION_HEIGHT pixels tall, and
    its button offers "Try it out" rather than "Cancel" (tryItOutEnabled is off). Each
    response still shows its example and the headers its client needs."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.base}/ui/")
            operation = page.locator(f"#{element_id}")
            operation.locator(".opblock-summary").click()
            expect(operation.locator(".responses-wrapper")).to_be_visible()
            expect(operation.locator("button.try-out__btn")).to_have_text("Try it out")
            box = operation.bounding_box()
            rows = {
                row.get_attribute("data-code"): row
                for row in operation.locator("tr.response").all()
            }
            assert {"200", "400", "401", "403", "429", "default"} <= set(rows), sorted(rows)
            for code, headers in NEEDED_HEADERS.items():
                shown = rows[code].locator("table.headers td:first-child").all_inner_texts()
                assert set(headers) <= {name.strip() for name in shown}, (code, shown)
            for row in rows.values():
                expect(row.locator(".highlight-code")).to_be_visible()  # the example
                expect(row.locator("select.content-type")).to_be_hidden()  # its one choice
            expect(rows["default"]).to_contain_text("503")
        finally:
            browser.close()
    assert box is not None
    print(f"{element_id}: {box['height']:.0f} px")
    assert box["height"] < MAX_OPERATION_HEIGHT, (element_id, box["height"])
