"""``storefront docs build --out DIR``: the pages it writes, nothing in them fetched from another
host, the README's and the guides' links made the site's, and a clear refusal without the
``docs`` extra. (Chromium opens the site and follows its links: tests/test_docsite.py.)"""

from __future__ import annotations

import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from storefront import cli
from storefront.docsite import ROOT, rewrite_links, site_target
from tests.servers import clean_env, run_storefront

#: The pages the site has: the README as the home page, each guide, the two reference pages.
GUIDES = sorted(path.stem for path in (ROOT / "docs").glob("*.md"))
PAGES = {"index.html", *(f"{guide}.html" for guide in GUIDES), "redoc.html", "swagger-ui.html"}
#: Elements whose URL attribute the browser fetches as the page loads (a plain <a href> it
#: does not: a hyperlink in prose may lead anywhere).
FETCHED = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "source": "src",
    "video": "src",
    "audio": "src",
    "embed": "src",
    "object": "data",
}
REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def have_docs_extra() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_docs_extra():
        if os.environ.get("CI"):
            pytest.fail("the docs extra is not installed; .ci/run should have installed it")
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    done = run_storefront(clean_env(), "docs", "build", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(PAGES)} pages to {out}" in done.stdout
    assert "WARNING" not in done.stderr, done.stderr  # a broken link or anchor, say
    return out


class FetchedURLs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = FETCHED.get(tag)
        for name, value in attrs:
            if value and (name == wanted or name == "srcset"):
                self.urls.append(value)
            if value and name == "style":
                self.urls += CSS_URL.findall(value)

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style":
            self.urls += CSS_URL.findall(data)


def test_the_site_has_the_guides_and_both_reference_pages(site: Path) -> None:
    assert {path.name for path in site.glob("*.html")} == PAGES
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Storefront API" in home
    for page in PAGES - {"index.html"}:
        assert f'href="{page}"' in home, f"the navigation leads nowhere near {page}"
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    # Both reference pages carry the document itself: a file:// page cannot fetch it.
    for page in ("redoc.html", "swagger-ui.html"):
        text = (site / page).read_text(encoding="utf-8")
        assert spec["paths"]["/users/{id}"]["get"]["summary"] in text
        assert "fetch(" not in text
    assert (site / "openapi.yaml").read_bytes() == (ROOT / "openapi.yaml").read_bytes()
    assert json.loads((site / "openapi.json").read_text(encoding="utf-8")) == spec
    vendor = site / "assets" / "vendor"
    assert (vendor / "redoc" / "redoc.standalone.js").stat().st_size > 500_000
    assert (vendor / "redoc" / "LICENSE").is_file()
    assert (vendor / "swagger-ui" / "swagger-ui-bundle.js").stat().st_size > 500_000
    assert (
        (vendor / "search-worker.js")
        .read_text(encoding="utf-8")
        .startswith("var __searchWorker = ")
    )
    assert not (site / "404.html").exists()


def test_nothing_is_fetched_from_another_host(site: Path) -> None:
    """No script, stylesheet, font, image or frame from another host; links in prose may
    lead anywhere. (Chromium checks what the pages fetch as they run: tests/test_docsite.py.)"""
    for page in site.rglob("*.html"):
        parser = FetchedURLs()
        parser.feed(page.read_text(encoding="utf-8"))
        remote = [url for url in parser.urls if REMOTE.match(url)]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
        assert "fonts.googleapis" not in page.read_text(encoding="utf-8")
    for sheet in site.rglob("*.css"):
        urls = CSS_URL.findall(sheet.read_text(encoding="utf-8"))
        remote = [url for url in urls if REMOTE.match(url)]
        assert not remote, f"{sheet.relative_to(site)} loads {remote}"
    # Scripts name URLs they never load here (Material's ResizeObserver polyfill, for browsers
    # without one): Chromium runs them and fails on any request that leaves the site.


def test_the_readme_and_guides_link_to_the_site_pages(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="docs/' not in home
    assert 'href="api.html#errors"' in home
    api = (site / "api.html").read_text(encoding="utf-8")
    assert 'href="index.html#a-token-then-a-request"' in api
    assert "README.md" not in re.findall(r'href="([^"]*)"', api)


def test_a_link_is_rewritten_to_where_the_site_has_the_file() -> None:
    cases = {
        ("docs/api.md", "../README.md#a-b"): "index.md#a-b",
        ("docs/api.md", "operations.md#x"): "operations.md#x",
        ("docs/api.md", "#x"): "#x",
        ("docs/api.md", "../openapi.yaml"): "openapi.yaml",
        ("docs/api.md", "../storefront/app.py"): None,
        ("docs/api.md", "pictures/a.svg"): "pictures/a.svg",
        ("README.md", "docs/api.md#errors"): "api.md#errors",
        ("README.md", "docs/pictures/a.svg"): "pictures/a.svg",
        ("README.md", "openapi.yaml"): "openapi.yaml",
        ("README.md", "LICENSE"): None,
        ("README.md", "https://example.com/x.md"): "https://example.com/x.md",
    }
    for (page, target), expected in cases.items():
        assert site_target(target, page=page) == expected, (page, target)


def test_code_is_left_as_written() -> None:
    markdown = (
        "[api](docs/api.md), [licence](LICENSE), `m[0](LICENSE)`\n"
        "```python\ny = m[0](LICENSE)\n```\n"
        '<img src="docs/pictures/a.svg">\n'
    )
    assert rewrite_links(markdown, page="README.md") == (
        "[api](api.md), licence, `m[0](LICENSE)`\n"
        "```python\ny = m[0](LICENSE)\n```\n"
        '<img src="pictures/a.svg">\n'
    )


def test_without_the_docs_extra_the_command_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in ("mkdocs", "material")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mkdocs", None)  # an import of it fails
    assert cli.main(["docs", "build", "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "the docs extra is not installed" in err
    assert "pip install" in err
    assert "[docs]" in err
    assert not (tmp_path / "site").exists()


def test_a_directory_that_holds_something_else_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not have_docs_extra():
        pytest.skip("the docs extra is not installed")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert cli.main(["docs", "build", "--out", str(tmp_path)]) == 1
    assert "is not empty and holds no earlier build" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
