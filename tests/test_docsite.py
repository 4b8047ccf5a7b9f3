"""The published docs in a real browser, offline: the site ``storefront docs build`` writes,
opened from ``file://``, and a running server's ``/``, ``/docs`` and ``/redoc``.

Headless Debian Chromium, driven by Playwright (as tests/test_swagger_ui.py). Every request the
pages make is watched: one that leaves the site (``file:``, ``blob:``, ``data:``) or the server
(127.0.0.1) fails the test, as it would fail behind a firewall.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from storefront.docsite import ROOT, build
from storefront.http.routes import HTTP_METHODS
from tests.servers import Server, demo_server
from tests.test_swagger_ui import CHROMIUM, FLAGS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
OPERATIONS = [
    operation
    for item in SPEC["paths"].values()
    for method, operation in item.items()
    if method in HTTP_METHODS
]
#: What each page shows once its script has drawn it.
READY = {"redoc.html": "[data-section-id*='/operation/']", "swagger-ui.html": ".opblock"}
#: The ids a fragment may name, as the browser scrolls to them: an id, or an <a name>.
MISSING_FRAGMENTS = """fragments => fragments.filter(f =>
    !document.getElementById(f) && document.getElementsByName(f).length === 0)"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the docs extra is not installed; .ci/run should have installed it")
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docsite") / "site"
    build(out)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_server(tmp_path_factory.mktemp("docs-server")) as running:
        yield running


def watched(browser: Browser, allowed: Callable[[str], bool]) -> tuple[BrowserContext, list[str]]:
    """A browser context that refuses, and lists, every request ``allowed`` refuses: every
    request the browser would send (``file:`` ones too). One that the page's own Content
    Security Policy blocks never gets this far: it never leaves the browser."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    refused: list[str] = []

    def route(handle: Any) -> None:
        if allowed(handle.request.url):
            handle.continue_()
        else:
            refused.append(handle.request.url)
            handle.abort()

    context.route("**/*", route)
    return context, refused


def in_site(site: Path) -> Callable[[str], bool]:
    def allowed(url: str) -> bool:
        if url.startswith(("blob:", "data:")):
            return True
        return url.startswith("file://") and Path(unquote(urlsplit(url).path)).is_relative_to(site)

    return allowed


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    ready = READY.get(Path(urlsplit(url).path).name)
    if ready:
        page.wait_for_selector(ready, state="attached", timeout=30_000)


def assert_lists_every_operation(page: Page) -> None:
    """ReDoc's rendered page has a section for each operation of openapi.yaml, under its
    operationId, headed by its summary."""
    sections = page.locator("[data-section-id*='/operation/']")
    assert sections.count() == len(OPERATIONS)
    shown = {
        (section.get_attribute("data-section-id") or "").rsplit("/", 1)[-1]: section.locator(
            "h2"
        ).first.inner_text()
        for section in sections.all()
    }
    for operation in OPERATIONS:
        heading = shown.get(operation["operationId"])
        assert heading is not None, f"ReDoc shows no {operation['operationId']}"
        assert operation.get("summary", operation["operationId"]) in heading


def test_every_internal_link_of_every_page_leads_to_a_page_and_its_anchor(
    site: Path, browser: Browser
) -> None:
    context, refused = watched(browser, in_site(site))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    #: target file URL -> fragments the links name -> the pages that link there.
    targets: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    to_visit, visited = [(site / "index.html").as_uri()], set()
    while to_visit:
        url = to_visit.pop()
        if url in visited:
            continue
        visited.add(url)
        open_page(page, url)
        hrefs: list[str] = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        for href in hrefs:
            if not href.startswith("file:"):
                continue  # a hyperlink to the web, or blob: (ReDoc's download of the document)
            target, _, fragment = href.partition("#")
            assert in_site(site)(target), f"{url} links {href}, outside the site"
            targets[target][unquote(fragment)].add(url)
            if target.endswith(".html"):
                to_visit.append(target)

    pages = {path.as_uri() for path in site.rglob("*.html")}
    assert visited == pages, "pages no link leads to, or links to pages the site has not"
    for target, fragments in targets.items():
        path = Path(unquote(urlsplit(target).path))
        assert path.is_file(), f"{sorted(fragments[''] or fragments)} link {target}: no such file"
        named = sorted(fragment for fragment in fragments if fragment)
        if not named or path.suffix != ".html":
            continue
        open_page(page, target)
        missing = page.evaluate(MISSING_FRAGMENTS, named)
        assert not missing, {
            f"{target}#{fragment}": sorted(fragments[fragment]) for fragment in missing
        }
    assert len(targets) >= len(pages)
    assert not errors, errors
    assert not refused, refused
    context.close()


def test_the_reference_shows_every_operation_from_file(site: Path, browser: Browser) -> None:
    context, refused = watched(browser, in_site(site))
    page = context.new_page()
    open_page(page, (site / "redoc.html").as_uri())
    assert_lists_every_operation(page)
    swagger = context.new_page()
    open_page(swagger, (site / "swagger-ui.html").as_uri())
    assert swagger.locator(".opblock").count() == len(OPERATIONS)
    assert "Storefront API" in swagger.locator(".info .title").inner_text()
    assert not refused, refused
    context.close()


def test_search_works_from_file(site: Path, browser: Browser) -> None:
    context, refused = watched(browser, in_site(site))
    page = context.new_page()
    open_page(page, (site / "index.html").as_uri())
    page.keyboard.press("s")  # Material's shortcut to the search box
    page.keyboard.type("pepper")
    results = page.locator(".md-search-result__item")
    results.first.wait_for(timeout=15_000)
    assert "pepper" in results.first.inner_text().lower()
    assert not refused, refused
    context.close()


def test_a_running_server_serves_its_docs_from_itself(server: Server, browser: Browser) -> None:
    def local(url: str) -> bool:
        return url.startswith((f"{server.base}/", "blob:", "data:"))

    context, refused = watched(browser, local)
    page = context.new_page()
    page.goto(f"{server.base}/")  # a browser asks for HTML: the index's links
    links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    assert f"{server.base}/redoc" in links
    assert f"{server.base}/ui/" in links

    page.goto(f"{server.base}/redoc")
    page.wait_for_selector(READY["redoc.html"], state="attached", timeout=30_000)
    assert_lists_every_operation(page)

    page.goto(f"{server.base}/docs")
    assert page.url == f"{server.base}/ui/"
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "Storefront API" in page.locator(".info .title").inner_text()
    assert not refused, refused
    context.close()
