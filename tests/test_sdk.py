"""A Python SDK generated from the served spec (openapi-python-client) works against the server.

The SDK is generated the way a user would: from the running server's ``/openapi.json``. The
generated code is written to a temporary directory, never committed. Its models must carry
real types and the spec's names: a spec that generates ``Any`` for the user, or a model per
inlined ``$ref``, is a spec to improve.
"""

from __future__ import annotations

import datetime
import importlib
import os
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from storefront.app import load_spec
from tests.servers import Server, demo_server

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_server(tmp_path_factory.mktemp("sdk-server")) as running:
        yield running


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("sdk")
    config = out / "config.yaml"
    config.write_text("post_hooks: []\n", encoding="utf-8")  # no formatter run on the output
    subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--url",
            f"{server.base}/openapi.json",
            "--meta",
            "none",
            "--output-path",
            str(out / "storefront_client"),
            "--config",
            str(config),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("storefront_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.startswith("storefront_client")]:
            del sys.modules[name]


def module(sdk: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{sdk.__name__}.{name}")


def test_models_are_the_specs_named_schemas(sdk: ModuleType) -> None:
    models = module(sdk, "models")
    named = set(load_spec()["components"]["schemas"])
    assert {"User", "Product", "Error", "Token", "UserCreate"} <= named
    for name in ("User", "Product", "Error", "Token", "UserCreate"):
        assert isinstance(getattr(models, name, None), type), f"no model {name}"
    # One model per named object schema, not one per place a $ref was inlined (that was 86).
    generated = {name for name in models.__all__ if isinstance(getattr(models, name), type)}
    assert len(generated) < 2 * len(named), sorted(generated - named)


def test_models_are_typed(sdk: ModuleType) -> None:
    models = module(sdk, "models")
    hints = typing.get_type_hints(models.User)
    assert hints["id"] is str
    assert hints["name"] is str
    assert hints["email"] is str
    assert hints["created_at"] is datetime.datetime
    assert datetime.datetime in typing.get_args(hints["updated_at"])
    assert typing.get_type_hints(models.Product)["price"] is float
    assert typing.get_type_hints(models.Token)["expires_in"] is int
    # The password is write-only: a field of the create body, never of the user.
    assert "password" in typing.get_type_hints(models.UserCreate)
    assert "password" not in hints


def test_the_generated_client_drives_every_route(sdk: ModuleType, server: Server) -> None:
    models = module(sdk, "models")
    found = dict(re.findall(r"(client_id|client_secret):\s+(\S+)", server.output))

    with sdk.Client(base_url=server.base) as anonymous:
        token = module(sdk, "api.auth.issue_token").sync(
            client=anonymous,
            body=models.TokenRequest(
                grant_type="client_credentials",
                client_id=found["client_id"],
                client_secret=found["client_secret"],
            ),
        )
    assert isinstance(token, models.Token), token
    with sdk.AuthenticatedClient(base_url=server.base, token=token.access_token) as client:
        users = "api.users."
        created = module(sdk, users + "create_user").sync(
            client=client,
            body=models.UserCreate(
                name="Sdk User", email="sdk@example.com", password="generated-1"
            ),
        )
        assert isinstance(created, models.User), created
        assert isinstance(created.created_at, datetime.datetime)
        fetched = module(sdk, users + "get_user").sync(client=client, id=created.id)
        assert fetched == created
        updated = module(sdk, users + "update_user").sync(
            client=client, id=created.id, body=models.UserUpdate(name="Sdk User II")
        )
        assert updated.name == "Sdk User II"
        assert isinstance(updated.updated_at, datetime.datetime)
        listed = module(sdk, users + "list_users").sync(client=client, limit=100)
        assert created.id in [u.id for u in listed]
        deleted = module(sdk, users + "delete_user").sync_detailed(client=client, id=created.id)
        assert deleted.status_code == 204
        missing = module(sdk, users + "get_user").sync(client=client, id=created.id)
        assert isinstance(missing, models.Error)
        assert missing.error == "User not found"

        # The headers of safe retries and concurrent writes are arguments of the client too.
        body = models.UserCreate(name="Retry", email="retry@example.com", password="generated-2")
        create = module(sdk, users + "create_user")
        first = create.sync_detailed(client=client, body=body, idempotency_key="sdk-1")
        again = create.sync_detailed(client=client, body=body, idempotency_key="sdk-1")
        assert again.parsed == first.parsed
        assert again.headers["Idempotent-Replayed"] == "true"
        stale = module(sdk, users + "update_user").sync(
            client=client, id=first.parsed.id, body=models.UserUpdate(name="X"), if_match='"0"'
        )
        assert isinstance(stale, models.Error)
        assert stale.error == "Precondition Failed"

        products = module(sdk, "api.products.list_products").sync(client=client, search="gadget")
        assert [p.name for p in products] == ["Gadget Pro"]
        assert products[0].price == 99.99


def paging_example() -> str:
    """The Python block of docs/api.md's "Paging with the generated client", as written."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("### Paging with the generated client", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "docs/api.md lost its paging example"
    return found.group(1)


def test_paging_with_the_generated_client(sdk: ModuleType, server: Server, tmp_path: Path) -> None:
    """docs/api.md's paging loop, run as written against the server (with pages of 5, so that
    the demo's 16 products take four), prints every product once, in id order."""
    found = dict(re.findall(r"(client_id|client_secret):\s+(\S+)", server.output))
    models = module(sdk, "models")
    with sdk.Client(base_url=server.base) as anonymous:
        token = module(sdk, "api.auth.issue_token").sync(
            client=anonymous,
            body=models.TokenRequest(grant_type="client_credentials", **found),
        )
    example = paging_example()
    for written, here in (("http://127.0.0.1:8000", server.base), ("limit=100", "limit=5")):
        assert written in example, written
        example = example.replace(written, here)
    script = tmp_path / "paging.py"
    script.write_text(example, encoding="utf-8")
    sdk_root = str(Path(sdk.__file__).parent.parent)
    env = os.environ | {"TOKEN": token.access_token, "PYTHONPATH": sdk_root}
    ran = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    ids = [line.split()[0] for line in ran.stdout.splitlines()]
    with sdk.AuthenticatedClient(base_url=server.base, token=token.access_token) as client:
        first = module(sdk, "api.products.list_products").sync_detailed(client=client, limit=5)
    total = int(first.headers["X-Total-Count"])
    assert len(ids) == len(set(ids)) == total == 16
    assert ids == sorted(ids)  # products are listed by id
