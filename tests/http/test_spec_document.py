"""``/openapi.json`` and ``/openapi.yaml`` are ``openapi.yaml``: ``$ref``s and servers intact."""

from __future__ import annotations

import json

import pytest
import yaml
from starlette.testclient import TestClient

from core.settings import Settings
from storefront.app import create_app, load_spec

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack


def test_the_served_json_is_the_written_document(api: TestClient) -> None:
    served = api.get("/openapi.json", headers={"Host": "attacker.example"})
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    assert document == load_spec()
    # What Connexion's own copy lost: the named schemas behind $refs, and a server url.
    ref = document["paths"]["/users/{id}"]["get"]["responses"]["200"]["content"]
    assert ref["application/json"]["schema"] == {"$ref": "#/components/schemas/User"}
    assert document["servers"][0]["url"] == "/"
    assert "attacker.example" not in served.text


def test_the_served_yaml_is_the_same_document(api: TestClient) -> None:
    served = api.get("/openapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/yaml")
    assert yaml.safe_load(served.text) == load_spec()
    assert api.head("/openapi.json").content == b""


def test_swagger_ui_reads_the_served_document(api: TestClient) -> None:
    page = api.get("/ui/")
    assert page.status_code == 200
    # Relative to /ui/, so that it holds under a path prefix too.
    assert '"url": "../openapi.json"' in page.text
    assert api.get("/ui/../openapi.json").json()["info"] == load_spec()["info"]


def test_the_served_server_is_the_public_url_when_one_is_set(settings: Settings) -> None:
    public = settings.model_copy(update={"public_url": "https://api.example.com/shop"})
    with create_app(public).test_client() as api:
        served = api.get("/openapi.json", headers={"Host": "evil.example"}).json()
    assert served["servers"] == [
        {"url": "https://api.example.com/shop", "description": "This Storefront API"}
    ]
    assert "evil.example" not in json.dumps(served)
