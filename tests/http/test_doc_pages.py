"""``/``, ``/docs`` and ``/redoc``: served without credentials, nothing from another host, and
counted under labels of their own (a browser test renders them: tests/test_docsite.py)."""

from __future__ import annotations

import hashlib
import re

import pytest
from starlette.testclient import TestClient

from storefront.http.doc_pages import SWAGGER_UI_CSS, redoc_script

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack


def test_the_index_lists_the_pages_as_json_or_html(api: TestClient) -> None:
    index = api.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "application/json"
    assert index.headers["vary"] == "Accept"
    links = index.json()["links"]
    assert links == {
        "docs": "/docs",
        "redoc": "/redoc",
        "swagger_ui": "/ui/",
        "openapi_json": "/openapi.json",
        "openapi_yaml": "/openapi.yaml",
    }
    for href in links.values():
        assert api.get(href).status_code == 200, href
    page = api.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert set(re.findall(r'href="([^"]+)"', page.text)) == {
        "redoc",
        "ui/",
        "openapi.json",
        "openapi.yaml",
    }
    assert api.head("/").content == b""


def test_docs_redirects_to_swagger_ui(api: TestClient) -> None:
    docs = api.get("/docs", follow_redirects=False)
    assert docs.status_code == 307
    assert docs.headers["location"] == "ui/"  # relative: it holds under a path prefix
    assert api.get("/docs").url.path == "/ui/"


def test_redoc_reads_the_served_document_with_its_own_script(api: TestClient) -> None:
    page = api.get("/redoc")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="redoc/redoc.standalone.js">' in page.text
    assert 'Redoc.init("openapi.json"' in page.text
    # ReDoc's menu asks Redocly's CDN for a logo: the page's policy keeps the browser from it.
    assert "content=\"img-src 'self' data: blob:; font-src 'self' data:\"" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
    script = api.get("/redoc/redoc.standalone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.content == redoc_script().read_bytes()


def test_swagger_ui_is_our_page_over_connexions_files(api: TestClient) -> None:
    """The page carries our stylesheet; Connexion serves what it loads, and the configuration
    given to add_api (swagger_ui_config), which the page reads."""
    page = api.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert SWAGGER_UI_CSS in page.text
    assert '"configUrl": "swagger-ui-config.json"' in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
    loaded = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    assert sorted(loaded) == ["favicon-32x32.png", "swagger-ui-bundle.js", "swagger-ui.css"]
    for name in loaded:
        assert api.get(f"/ui/{name}").status_code == 200, name
    config = api.get("/ui/swagger-ui-config.json").json()
    assert config == {"persistAuthorization": True, "tryItOutEnabled": False}
    assert api.get("/ui/index.html").text == page.text
    assert api.head("/ui/").content == b""


def test_the_pages_need_no_credentials_and_have_their_own_labels(api: TestClient) -> None:
    for path in ("/", "/docs", "/redoc", "/redoc/redoc.standalone.js"):
        assert api.get(path, follow_redirects=False).status_code in (200, 307), path
    metrics = api.get("/metrics").text
    assert api.get("/ui/").status_code == 200
    for path, status in (("/", 200), ("/docs", 307), ("/redoc", 200), ("/ui/", 200)):
        assert f'method="GET",path="{path}",status="{status}"' in metrics, path


def test_other_methods_and_paths_stay_json_404s(api: TestClient) -> None:
    for method, path in (("POST", "/"), ("DELETE", "/redoc"), ("GET", "/redoc/"), ("GET", "/x")):
        response = api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert set(response.json()) == {"error", "message"}


def test_the_vendored_redoc_is_the_file_its_readme_names() -> None:
    readme = (redoc_script().parent / "README.md").read_text(encoding="utf-8")
    recorded = re.search(r"`redoc\.standalone\.js` SHA-256 \| `([0-9a-f]{64})`", readme)
    assert recorded, "storefront/data/redoc/README.md records no SHA-256 for the file"
    assert hashlib.sha256(redoc_script().read_bytes()).hexdigest() == recorded.group(1)
    assert "2.5.4" in readme
    notices = redoc_script().parent / "redoc.standalone.js.LICENSE.txt"
    assert 'Version: "2.5.4"' in notices.read_text(encoding="utf-8")
