"""``/openapi.json`` and ``/openapi.yaml``: ``openapi.yaml`` as written, ``$ref``s and all.

Connexion's ``SwaggerUIMiddleware`` serves ``Specification.spec``, the document with every
``$ref`` inlined (openapi-python-client makes 86 anonymous models of it, against the 16 named
schemas of ``openapi.yaml``) and with ``servers`` replaced by ``[{"url": <root_path>}]``, a bare
``""`` in a plain deployment. Connexion 3.3 has no option to serve the document as written;
it has one, ``SwaggerUIOptions(serve_spec=False)``, to serve none. ``create_app`` sets that and
puts this middleware in front of ``SwaggerUIMiddleware`` at the same two paths, so that Swagger
UI, which fetches ``/openapi.json``, reads this document too.

Each body is rendered once, at its first request: it depends on nothing in the request (never
on ``Host``). Not at start-up: the YAML rendering is the slowest part of building an app, and
most processes that build one (every test, every worker) may never be asked for it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

JSON_PATH = "/openapi.json"
YAML_PATH = "/openapi.yaml"
MEDIA_TYPES = {JSON_PATH: b"application/json", YAML_PATH: b"text/yaml; charset=utf-8"}
#: libyaml's emitter when present (six times faster than PyYAML's; the same text).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class SpecDocumentMiddleware:
    def __init__(self, app: ASGIApp, *, document: dict[str, Any]) -> None:
        self.app = app
        self.document = document
        self.bodies: dict[str, bytes] = {}

    def body(self, path: str) -> bytes:
        body = self.bodies.get(path)
        if body is None:
            # Two first requests at once may both render it: the same bytes, so no lock.
            body = self.bodies[path] = _render(self.document, path)
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media_type = None
        if scope["type"] == "http" and scope["method"] in {"GET", "HEAD"}:
            media_type = MEDIA_TYPES.get(scope["path"])
        if media_type is None:
            await self.app(scope, receive, send)
            return
        body = self.body(scope["path"])
        headers = [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def _render(document: dict[str, Any], path: str) -> bytes:
    if path == JSON_PATH:
        return json.dumps(document, ensure_ascii=False).encode()
    text: str = yaml.dump(document, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    return text.encode()
