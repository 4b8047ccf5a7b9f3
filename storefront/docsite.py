"""``storefront docs build --out DIR``: the guides, the API reference (ReDoc) and Swagger UI as
one static site that works from ``file://`` and from any static host, fetching nothing from
another host at view time.

MkDocs with the Material theme builds it from ``mkdocs.yml`` (top of a source checkout), which
names this module as its hook (``hooks:``), so that a plain ``mkdocs build`` builds the same
site. The hook:

- makes the README the home page (``index.md``), its links into ``docs/`` rewritten to the
  site's pages, and ``../README.md`` links of the guides to it; a link to any other file of the
  repository (which the site has not) becomes its plain text;
- takes out the theme's scripts from other hosts (the offline plugin's Web Worker shim on a
  CDN), as ``theme.font: false`` takes out Google Fonts, and puts a local one in its place;
- writes ``redoc.html`` and ``swagger-ui.html``, each with ``openapi.yaml`` inlined as JSON
  (a page opened from ``file://`` cannot fetch), their scripts copied beside them: ReDoc from
  ``storefront/data/redoc/``, Swagger UI from the ``swagger_ui_bundle`` package that Connexion
  serves it from; and ``openapi.yaml`` (as written) and ``openapi.json``.

Search works from a host and from ``file://``. Material's offline plugin inlines the search
index into a script (a ``file://`` page cannot fetch it); its search runs in a Web Worker, which
a ``file://`` page may not start from a ``file:`` URL, and which the plugin's CDN shim would run
in an iframe. Instead ``assets/vendor/search-worker.js``, loaded before Material's script,
carries the worker's code and starts it from a ``blob:`` URL when the page is a ``file:`` one
(tests/test_docsite.py searches from ``file://`` in Chromium).

``404.html`` is left out: without a ``site_url`` (unknown: any host, any path) its links lead
from the host's top, not the site's.

MkDocs and Material are the optional ``docs`` extra; without them the command says what to
install. This module imports them only when building.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
import re
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from storefront.http import doc_pages
from storefront.http.doc_pages import REDOC_SCRIPT, redoc_page, redoc_script

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mkdocs.yml"
SPEC = ROOT / "openapi.yaml"
README = ROOT / "README.md"
INSTALL = "pip install 'storefront-api[docs]' (in a checkout: pip install -e '.[docs]')"

#: Where the reference pages and their scripts go in the site.
REDOC_PAGE = "redoc.html"
SWAGGER_PAGE = "swagger-ui.html"
VENDOR = "assets/vendor"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
SEARCH_WORKER = f"{VENDOR}/search-worker.js"
#: Starts Material's search worker from a blob of its code (``__searchWorker``, written before
#: this) on a ``file:`` page; any other worker, or any other page, as the browser would.
SEARCH_WORKER_SHIM = r"""
(function () {
  if (location.protocol !== "file:") return;
  var Native = window.Worker;
  window.Worker = function (url, options) {
    if (/\/workers\/search\.[^\/]*\.js$/.test(String(url))) {
      var code = new Blob([__searchWorker], { type: "text/javascript" });
      return new Native(URL.createObjectURL(code), options);
    }
    return new Native(url, options);
  };
})();
"""

#: A fenced code block or a code span, whose text is never a link.
CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[ \t]*$|`[^`\n]+`", re.M | re.S)
#: An inline Markdown link or image: ``[text](target "title")``, the text without brackets.
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(<?([^)\s>]+)>?((?:\s+\"[^\"]*\")?)\)")
#: An HTML ``src`` or ``href`` (a picture in a README is often an ``<img>``).
HTML_REF = re.compile(r"""((?:src|href)=")([^"]+)(")""")

log = logging.getLogger("mkdocs.storefront")


class DocsUnavailable(Exception):
    """The site cannot be built here; the message is one line saying why and what to do."""


def add_commands(docs: argparse.ArgumentParser, command: Callable[..., Any]) -> None:
    """``storefront docs ...``, under the ``docs`` parser ``storefront.cli`` made."""
    actions = docs.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = command(actions, "build", "write the guides, ReDoc and Swagger UI as a static site")
    build.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the directory to write; an existing one must be empty or hold an earlier build",
    )


def main(args: argparse.Namespace) -> int:
    """``storefront docs build``: needs no settings and no database."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("mkdocs: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        pages = build(args.out)
    except DocsUnavailable as exc:
        print(f"storefront: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    index = args.out.resolve() / "index.html"
    print(f"wrote {pages} pages to {args.out}; open {index.as_uri()} or copy it to any host")
    return 0


def build(out: Path) -> int:
    """Build the site into ``out``; the number of HTML pages written."""
    try:
        from mkdocs.commands.build import build as mkdocs_build
        from mkdocs.config import load_config
        from mkdocs.exceptions import MkDocsException
    except ImportError:
        raise DocsUnavailable(f"the docs extra is not installed: {INSTALL}") from None
    try:
        import material  # noqa: F401 - the theme mkdocs.yml names
    except ImportError:
        raise DocsUnavailable(f"mkdocs-material is not installed: {INSTALL}") from None
    if not CONFIG.is_file():
        raise DocsUnavailable(
            f"no {CONFIG.name} at {ROOT}: the site is built from a source checkout"
        )
    out = out.resolve()
    # MkDocs empties the directory first: never one that holds anything else.
    if ROOT.is_relative_to(out):
        raise DocsUnavailable(f"--out {out} holds the checkout; name a directory of its own")
    if out.exists() and not out.is_dir():
        raise DocsUnavailable(f"--out {out} is a file; name a directory")
    if out.exists() and any(out.iterdir()) and not (out / SEARCH_WORKER).is_file():
        raise DocsUnavailable(
            f"--out {out} is not empty and holds no earlier build; name a new or empty directory"
        )
    try:
        config = load_config(str(CONFIG), site_dir=str(out))
        mkdocs_build(config)
    except MkDocsException as exc:
        raise DocsUnavailable(f"the docs build failed: {exc}") from None
    return sum(1 for _ in out.rglob("*.html"))


# -- MkDocs hooks (mkdocs.yml: hooks) ---------------------------------------------------------


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    polyfills = config.extra.get("polyfills", [])
    config.extra["polyfills"] = [
        *(script for script in polyfills if not _remote(str(script))),
        SEARCH_WORKER,
    ]
    return config


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    from mkdocs.structure.files import File

    home = rewrite_links(README.read_text(encoding="utf-8"), page="README.md")
    files.append(File.generated(config, "index.md", content=home))
    return files


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri == "index.md":
        return markdown  # rewritten as it was made
    return rewrite_links(markdown, page=f"docs/{page.file.src_uri}")


def on_post_build(*, config: MkDocsConfig) -> None:
    site = Path(config.site_dir)
    (site / "404.html").unlink(missing_ok=True)
    workers = sorted((site / "assets" / "javascripts" / "workers").glob("search.*.js"))
    (site / VENDOR).mkdir(parents=True, exist_ok=True)
    code = workers[0].read_text(encoding="utf-8") if workers else ""
    (site / SEARCH_WORKER).write_text(
        f"var __searchWorker = {json.dumps(code)};\n{SEARCH_WORKER_SHIM}", encoding="utf-8"
    )
    spec_text = SPEC.read_text(encoding="utf-8")
    spec = yaml.safe_load(spec_text)
    title = spec["info"]["title"]
    (site / "openapi.yaml").write_text(spec_text, encoding="utf-8")
    (site / "openapi.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")

    redoc = site / VENDOR / "redoc"
    redoc.mkdir(parents=True, exist_ok=True)
    for name in (REDOC_SCRIPT, "LICENSE", f"{REDOC_SCRIPT}.LICENSE.txt"):
        shutil.copyfile(redoc_script().with_name(name), redoc / name)
    page = redoc_page(
        title=f"{title}: API reference", script_src=f"{VENDOR}/redoc/{REDOC_SCRIPT}", spec=spec
    )
    (site / REDOC_PAGE).write_text(_with_back_link(page, title), encoding="utf-8")

    swagger = site / VENDOR / "swagger-ui"
    swagger.mkdir(parents=True, exist_ok=True)
    bundle = _swagger_ui_dir()
    for name in SWAGGER_FILES:
        shutil.copyfile(bundle / name, swagger / name)
    licence = metadata.distribution("swagger_ui_bundle").read_text("LICENSE")  # Apache-2.0
    (swagger / "LICENSE").write_text(licence or "Apache-2.0\n", encoding="utf-8")
    (site / SWAGGER_PAGE).write_text(swagger_ui_page(title=title, spec=spec), encoding="utf-8")


# -- the pieces -------------------------------------------------------------------------------


def rewrite_links(markdown: str, *, page: str) -> str:
    """``markdown`` of the repository file ``page`` with its relative links made the site's."""

    def markdown_link(match: re.Match[str]) -> str:
        bang, text, target, title = match.groups()
        moved = site_target(target, page=page)
        if moved is None:
            return text if not bang else ""
        return f"{bang}[{text}]({moved}{title})"

    def html_ref(match: re.Match[str]) -> str:
        moved = site_target(match.group(2), page=page)
        return f"{match.group(1)}{moved if moved is not None else '#'}{match.group(3)}"

    def prose(text: str) -> str:
        return HTML_REF.sub(html_ref, LINK.sub(markdown_link, text))

    parts, done = [], 0
    for code in CODE.finditer(markdown):
        parts += [prose(markdown[done : code.start()]), code.group(0)]
        done = code.end()
    return "".join([*parts, prose(markdown[done:])])


def site_target(target: str, *, page: str) -> str | None:
    """Where a link of the repository file ``page`` leads in the site: the same target when it
    is not a path (a URL, a fragment), the site's copy of the file, or None when the site has
    no copy."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return target
    path, hash_, fragment = target.partition("#")
    if not path:
        return target
    in_repo = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
    if in_repo == "README.md":
        in_site = "index.md"
    elif in_repo.startswith("docs/"):
        in_site = in_repo.removeprefix("docs/")
    elif in_repo == "openapi.yaml":
        in_site = in_repo
    else:
        log.info("%s: %s is not in the site; its link is dropped", page, target)
        return None
    here = "." if page == "README.md" else posixpath.dirname(page.removeprefix("docs/")) or "."
    return posixpath.relpath(in_site, here) + hash_ + fragment


def swagger_ui_page(*, title: str, spec: dict[str, Any]) -> str:
    """Swagger UI over the inlined document, without "Try it out": a static copy has no server
    at the spec's relative URL to send requests to. The page is the served one's
    (``storefront.http.doc_pages``), its stylesheet included."""
    page = doc_pages.swagger_ui_page(
        title=title,
        assets=f"{VENDOR}/swagger-ui/",
        options={"spec": spec, "supportedSubmitMethods": []},
    )
    note = " (requests are sent from a running server's Swagger UI, at /ui/)"
    return _with_back_link(page, title, note=note)


def _with_back_link(page: str, title: str, note: str = "") -> str:
    bar = (
        '<nav style="font: 14px sans-serif; padding: 8px 16px; border-bottom: 1px solid #ddd">'
        f'<a href="index.html">{title}: the guides</a> · '
        f'<a href="{REDOC_PAGE}">API reference</a> · <a href="{SWAGGER_PAGE}">Swagger UI</a>'
        f' · <a href="openapi.yaml">openapi.yaml</a>{note}</nav>'
    )
    return page.replace("<body>\n", f"<body>\n{bar}\n", 1)


def _swagger_ui_dir() -> Path:
    import swagger_ui_bundle  # Connexion's swagger-ui extra: Swagger UI's own dist files

    return Path(swagger_ui_bundle.swagger_ui_path)


def _remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))
