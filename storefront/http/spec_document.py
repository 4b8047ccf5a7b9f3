"""``/openapi.json`` and ``/openapi.yaml``: ``openapi.yaml`` as written, ``$ref``s and all.

Connexion's ``SwaggerUIMiddleware`` serves ``Specification.spec``, the document with every
``$ref`` inlined (openapi-python-client makes 86 anonymous models of it, against the 16 named
schemas of ``openapi.yaml``) and with ``servers`` replaced by ``[{"url": <root_path>}]``, a bare
``""`` in a plain deployment. Connexion 3.3 has no option to serve the document as written;
it has one, ``SwaggerUIOptions(serve_spec=False)``, to serve none. ``create_app`` sets that and
puts this middleware in front of ``SwaggerUIMiddleware`` at the same two paths, so that Swagger
UI, which fetches ``/openapi.json``, reads this document too.

The document is built once: it depends on nothing in the request (never on ``Host``).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

JSON_PATH = "/openapi.json"
YAML_PATH = "/openapi.yaml"


class SpecDocumentMiddleware:
    def __init__(self, app: ASGIApp, *, document: dict[str, Any]) -> None:
        self.app = app
        self.bodies = {
            JSON_PATH: (json.dumps(document, ensure_ascii=False).encode(), b"application/json"),
            YAML_PATH: (
                yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode(),
                b"text/yaml; charset=utf-8",
            ),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and scope["method"] in {"GET", "HEAD"}:
            found = self.bodies.get(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        body, media_type = found
        headers = [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
