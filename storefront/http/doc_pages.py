"""The pages a person looks for first: ``/`` (an index), ``/docs``, ``/redoc`` and Swagger UI's.

- ``/`` answers with the links below: HTML to a browser (an ``Accept`` naming ``text/html``),
  JSON to anything else.
- ``/docs`` redirects to Swagger UI, which Connexion serves at ``/ui/`` (where FastAPI users look
  for it first).
- ``/ui/`` (and ``/ui/index.html``) is Swagger UI's page, ours rather than Connexion's template
  so that it carries ``SWAGGER_UI_CSS``; Connexion serves the rest of ``/ui/``: Swagger UI's
  script and stylesheet, and ``swagger-ui-config.json`` (the ``swagger_ui_config`` given to
  ``add_api``), which the page reads.
- ``/redoc`` is ReDoc over ``/openapi.json`` (the document as written, served by
  ``SpecDocumentMiddleware``), its script ``/redoc/redoc.standalone.js`` served from
  ``storefront/data/redoc/``: nothing is fetched from another host.

URLs in the pages and in ``Location`` are relative, so that they hold under a path prefix. Only
GET and HEAD at these exact paths are answered; any other request goes on, to be routed (an
unknown path stays a JSON 404). No credentials are asked for: like ``/openapi.json``, the pages
tell what the spec tells. Each page gets a fixed route label of its own (bounded, as metrics
labels must be) rather than ``unmatched``.

The same ReDoc and Swagger UI pages, with the document inlined, are the API reference and the
Swagger UI page of the static site (``storefront.docsite``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from storefront.http.state import publish_route

REDOC_DIR = Path(__file__).resolve().parent.parent / "data" / "redoc"
REDOC_SCRIPT = "redoc.standalone.js"

INDEX_PATH = "/"
SWAGGER_UI_PATH = "/ui"  # where Connexion serves Swagger UI's files (swagger_ui_path)
#: Swagger UI's page: ours (the files it loads are Connexion's).
SWAGGER_UI_PAGES = (f"{SWAGGER_UI_PATH}/", f"{SWAGGER_UI_PATH}/index.html")
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
REDOC_SCRIPT_PATH = f"{REDOC_PATH}/{REDOC_SCRIPT}"
#: Every path this middleware answers (GET and HEAD only).
PAGES = frozenset({INDEX_PATH, DOCS_PATH, REDOC_PATH, REDOC_SCRIPT_PATH, *SWAGGER_UI_PAGES})
#: Where each link of the index leads, relative to ``/`` (as the pages write them).
LINKS = {
    "docs": "docs",
    "redoc": "redoc",
    "swagger_ui": "ui/",
    "openapi_json": "openapi.json",
    "openapi_yaml": "openapi.yaml",
}

#: ReDoc's menu shows Redocly's logo from Redocly's CDN, whatever its options say: the browser
#: is told to load images and fonts from nowhere else than the page's own origin (the logo's
#: <img> removes itself when its load fails).
REDOC_POLICY = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"img-src 'self' data: blob:; font-src 'self' data:\">"
)
#: Swagger UI's stylesheet over an operation, tightened so that an expanded list operation reads
#: on a screen or two (tests/test_swagger_ui.py measures it) rather than six; nothing is hidden
#: that says something.
SWAGGER_UI_CSS = """
/* A response with one media type (every one here) needs no media-type selector. */
.swagger-ui .response-controls:has(select.content-type option:only-child) { display: none; }
/* No response declares OpenAPI links: no column of "No links" (its heading included). */
.swagger-ui .response-col_links { display: none; }
/* A response header is one line: name, description, type. */
.swagger-ui table.headers td { padding: 2px 0; }
.swagger-ui table.headers thead th { padding: 4px 0; }
.swagger-ui table.headers .renderedMarkdown p { margin: 0; }
.swagger-ui .response-col_description .renderedMarkdown p { margin: 0.25em 0; }
.swagger-ui .model-example { margin-top: 0.5em; }
/* A parameter: its description, default and field close together. */
.swagger-ui table.parameters tbody tr td { padding-top: 6px; padding-bottom: 6px; }
.swagger-ui .parameters-col_description .renderedMarkdown p { margin: 0 0 0.5em; }
.swagger-ui .parameters-col_description input { margin: 0; }
"""
#: Script-safe JSON: a ``</script>`` inside a string of the document cannot end the element.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(document: dict[str, Any]) -> str:
    """``document`` as JSON to write inside a ``<script>`` element."""
    return json.dumps(document, ensure_ascii=False).translate(_SCRIPT_ESCAPES)


def redoc_script() -> Path:
    return REDOC_DIR / REDOC_SCRIPT


def redoc_page(
    *, title: str, script_src: str, spec: dict[str, Any] | None = None, spec_url: str = ""
) -> str:
    """ReDoc's page: the document ``spec`` inlined (a page that works from ``file://``) or
    fetched from ``spec_url``; ``script_src`` is where the page finds ReDoc's bundle."""
    source = script_json(spec) if spec is not None else json.dumps(spec_url)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
{REDOC_POLICY}
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<div id="redoc-container"></div>
<script src="{html.escape(script_src)}"></script>
<script>
Redoc.init({source}, {{"expandResponses": "200,201"}}, document.getElementById("redoc-container"));
</script>
</body>
</html>
"""


def swagger_ui_page(*, title: str, assets: str, options: dict[str, Any]) -> str:
    """Swagger UI's page. ``assets``: where its script and stylesheet are (a relative URL that
    ends in ``/``, or nothing); ``options``: given to ``SwaggerUIBundle`` (where the document is,
    ``url`` or ``spec``, and any configuration) over the page's own."""
    settings = {
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "validatorUrl": None,
        **options,
    }
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}: Swagger UI</title>
<link rel="stylesheet" href="{html.escape(assets)}swagger-ui.css">
<link rel="icon" type="image/png" href="{html.escape(assets)}favicon-32x32.png" sizes="32x32">
<style>body {{ margin: 0; background: #fafafa; }}{SWAGGER_UI_CSS}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{html.escape(assets)}swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle(Object.assign(
  {{"presets": [SwaggerUIBundle.presets.apis]}}, {script_json(settings)}
));
</script>
</body>
</html>
"""


def index_page(title: str) -> str:
    rows = "\n".join(
        f'<li><a href="{href}">{html.escape(label)}</a></li>'
        for label, href in (
            ("API reference (ReDoc)", LINKS["redoc"]),
            ("Swagger UI: try the API in the browser", LINKS["swagger_ui"]),
            ("OpenAPI document (JSON)", LINKS["openapi_json"]),
            ("OpenAPI document (YAML)", LINKS["openapi_yaml"]),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<h1>{html.escape(title)}</h1>
<ul>
{rows}
</ul>
</body>
</html>
"""


class DocPagesMiddleware:
    def __init__(self, app: ASGIApp, *, title: str) -> None:
        self.app = app
        self.title = title
        self.bodies: dict[str, tuple[bytes, bytes]] = {}

    def body(self, scope: Scope, path: str) -> tuple[bytes, bytes]:
        """(media type, body) of a page, each made at its first request."""
        if path == INDEX_PATH and not _accepts_html(scope):
            # Paths from the top, under the prefix the server is mounted at (if any).
            root = scope.get("root_path", "")
            links = {name: f"{root}/{href}" for name, href in LINKS.items()}
            return b"application/json", json.dumps({"name": self.title, "links": links}).encode()
        found = self.bodies.get(path)
        if found is None:
            found = self.bodies[path] = self._render(path)
        return found

    def _render(self, path: str) -> tuple[bytes, bytes]:
        if path in SWAGGER_UI_PAGES:
            # Relative, from /ui/: under a path prefix as well. Connexion serves the
            # configuration (swagger_ui_config) beside the page.
            # deepLinking: an operation opened is in the address (#/users/list_users).
            options = {
                "url": "../openapi.json",
                "configUrl": "swagger-ui-config.json",
                "deepLinking": True,
            }
            page = swagger_ui_page(title=self.title, assets="", options=options)
            return b"text/html; charset=utf-8", page.encode()
        if path == REDOC_SCRIPT_PATH:
            return b"text/javascript; charset=utf-8", redoc_script().read_bytes()
        if path == REDOC_PATH:
            page = redoc_page(
                title=f"{self.title}: API reference",
                script_src=f"{REDOC_PATH.lstrip('/')}/{REDOC_SCRIPT}",
                spec_url=LINKS["openapi_json"],
            )
            return b"text/html; charset=utf-8", page.encode()
        return b"text/html; charset=utf-8", index_page(self.title).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path not in PAGES or scope["method"] not in {"GET", "HEAD"}:
            await self.app(scope, receive, send)
            return
        publish_route(scope, path)
        if path == DOCS_PATH:
            headers = [(b"location", LINKS["swagger_ui"].encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 307, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        media_type, body = self.body(scope, path)
        headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        if path == INDEX_PATH:
            headers.append((b"vary", b"Accept"))
        if path == REDOC_SCRIPT_PATH:
            headers.append((b"cache-control", b"public, max-age=86400"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def _accepts_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False
