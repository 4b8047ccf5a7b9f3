"""A newcomer's first hour, following the README from the top.

The README's first command installs the package and runs ``storefront serve --demo``; here the
package is already installed, so the walk starts the installed ``storefront`` with the same
arguments in an empty directory, as a fresh clone would (``demo_server`` adds only ``--port``,
so that parallel runs do not collide on 8000). Then it does what the README tells a person to
do, and looks at what that person would look at:

1. the printed client, ``curl`` line and ``TOKEN=`` line: run as printed, they yield a token;
2. the README's "Clients and keys of your own" commands: a client and an API key;
3. the README's "A token, then a request" block, run with the demo client and that key, which
   sets ``$TOKEN`` itself as written, and reads the demo's users with it;
4. each route once, as the API table lists them, with the bodies it shows, a full token and a
   down-scoped one, and an error in the shape the README shows;
5. the spec, Swagger UI's page, the probes, and the server's own log.

The same hour on PostgreSQL follows docs/operations.md's "Operating beyond one machine" block
(``test_first_hour_on_postgresql_with_operations_md``).

Two steps of that hour run elsewhere, because each needs a heavy tool: clicking "Authorize"
and "Try it out" in Swagger UI (headless Chromium, ``tests/test_swagger_ui.py``) and driving a
generated SDK (``tests/test_sdk.py``). The README's examples in curl, Python and JavaScript run
in ``tests/test_readme.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from persistence.revisions import head_revision
from tests.conftest import POSTGRES_URL, REDIS_URL, postgres_admin, require_service
from tests.servers import STOREFRONT, Server, clean_env, demo_server, run_storefront, serving

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_BASE = "http://127.0.0.1:8000"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def readme_block(after_heading: str) -> str:
    """The first ``sh`` block under a heading of the README."""
    section = README[README.index(after_heading) :]
    match = re.search(r"```sh\n(.*?)\n```", section, re.DOTALL)
    assert match, f"no sh block under {after_heading!r}"
    return match.group(1)


def bash(script: str, **env: str) -> str:
    done = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def json_documents(text: str) -> list[Any]:
    """The JSON documents ``curl -s`` printed one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def printed(output: str, name: str) -> str:
    match = re.search(rf"^\s*{name}:\s+(\S+)", output, re.MULTILINE)
    assert match, f"{name} was not printed:\n{output}"
    return match.group(1)


def api_table_bodies() -> dict[str, str]:
    """The README's API table: "METHOD /path" (without its query) -> the body column."""
    section = README[README.index("\n| method |", README.index("## The API")) + 1 :]
    table = section[: section.index("\n\n")]
    header, _, *rows = table.splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["method", "path", "scope", "body", "success"]
    bodies = {}
    for row in rows:
        method, path, _scope, body, _success = (cell.strip() for cell in row.strip("|").split("|"))
        bodies[f"{method} {path.strip('`').split('?')[0].split('`')[0]}"] = body
    return bodies


def test_first_hour_with_the_readme(tmp_path: Path) -> None:
    first_command = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)[0]
    assert first_command.split("&&")[-1].split() == [".venv/bin/storefront", "serve", "--demo"]

    with demo_server(tmp_path) as server:
        walk(server, tmp_path)


def walk(server: Server, directory: Path) -> None:
    base = server.base
    # 1. What the server printed: the demo client, and a curl line that fetches a token.
    client_id = printed(server.output, "client_id")
    client_secret = printed(server.output, "client_secret")
    assert f"Swagger UI: {base}/ui/" in server.output
    curl_line = re.search(r"^\s*(curl .*/auth/token.*)$", server.output, re.MULTILINE)
    assert curl_line, server.output
    token = json.loads(bash(curl_line.group(1)))
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "read write"

    # 2. The README's commands for a client and a key of one's own, in the server's directory.
    commands = readme_block("### Clients and keys of your own").splitlines()
    storefront = shlex.quote(STOREFRONT)
    create_client = commands[0].split("#")[0].replace(".venv/bin/storefront", storefront)
    made = bash(f"cd {shlex.quote(str(directory))} && {create_client}", **server.env)
    own_id, own_secret = printed(made, "client_id"), printed(made, "client_secret")
    assert "(shown only now)" in made
    create_key = commands[1].split("#")[0].replace(".venv/bin/storefront", storefront)
    made = bash(
        f"cd {shlex.quote(str(directory))} && {create_key.replace('CLIENT_ID', own_id)}",
        **server.env,
    )
    api_key = printed(made, "api_key")
    assert api_key.startswith("sk_")

    # The line that keeps a token in $TOKEN, as printed: it holds a token the API takes.
    token_line = re.search(r"^\s*(TOKEN=\$\(curl .*/auth/token.*)$", server.output, re.MULTILINE)
    assert token_line, server.output
    kept = bash(f'{token_line.group(1)}\nprintf %s "$TOKEN"')
    assert httpx.get(f"{base}/users", headers={"Authorization": f"Bearer {kept}"}).is_success

    # 3. "A token, then a request", as written, with the demo client and the new key: nothing
    # given but what the README says to fill in; the block sets $TOKEN itself.
    block = (
        readme_block("### A token, then a request")
        .replace(README_BASE, base)
        .replace("CLIENT_ID", client_id)
        .replace("CLIENT_SECRET", client_secret)
        .replace("sk_…", api_key)
    )
    assert "TOKEN=$(curl" in block
    fetched, users, products = json_documents(bash(block))
    assert fetched["token_type"] == "bearer"
    assert fetched["scope"] == "read write"
    # The demo's users, read with the token the block kept.
    assert [u["email"] for u in users][:5] == [
        "amara.okafor@example.com",
        "lukas.schneider@example.com",
        "priya.raman@example.org",
        "mateo.garcia@example.net",
        "hannah.kowalski@example.com",
    ]
    assert any(p["name"] == "Gadget Pro" for p in products)

    with httpx.Client(base_url=base, timeout=10) as http:
        # The new client's own token, asked for less than it has (down-scoping).
        read_only = http.post(
            "/auth/token",
            data={"grant_type": "client_credentials", "scope": "read"},
            auth=(own_id, own_secret),
        )
        assert read_only.status_code == 200, read_only.text
        assert read_only.json()["scope"] == "read"
        reader = {"Authorization": f"Bearer {read_only.json()['access_token']}"}

        # 4. Each route of the API table once, with the bodies the table shows.
        bodies = api_table_bodies()
        assert bodies["POST /auth/token"].startswith("form: `grant_type=client_credentials`")
        assert bodies["POST /users"] == '`{"name", "email", "password"}`'
        assert bodies["PUT /users/{id}"] == 'any of `{"name", "email", "password"}`'
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        password = "first-hour-password"
        created = http.post(
            "/users",
            headers=auth,
            json={"name": "Newcomer", "email": "newcomer@example.com", "password": password},
        )
        assert created.status_code == 201, created.text
        user = created.json()
        assert user["id"].startswith("user_")
        assert created.headers["Location"].endswith(f"/users/{user['id']}")
        assert "password" not in user

        listed = http.get("/users", params={"limit": 10}, headers=auth)
        assert listed.status_code == 200
        assert user in listed.json()
        assert int(listed.headers["X-Total-Count"]) >= 1
        assert int(listed.headers["X-RateLimit-Limit"]) == 100
        assert int(listed.headers["X-RateLimit-Remaining"]) < 100

        assert http.get(f"/users/{user['id']}", headers=reader).json() == user
        renamed = http.put(f"/users/{user['id']}", headers=auth, json={"name": "Regular"})
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "Regular"
        assert "updated_at" in renamed.json()
        refused = http.delete(f"/users/{user['id']}", headers=reader)  # read only: 403
        assert refused.status_code == 403
        assert "insufficient_scope" in refused.headers["WWW-Authenticate"]
        deleted = http.delete(f"/users/{user['id']}", headers=auth)
        assert deleted.status_code == 204
        assert deleted.content == b""

        gone = http.get(f"/users/{user['id']}", headers=auth)
        assert gone.status_code == 404
        assert gone.json() == {
            "error": "User not found",
            "message": "The specified user ID does not exist.",
        }
        apparel = http.get("/products", params={"category": "Apparel"}, headers=auth)
        assert apparel.status_code == 200
        assert any(p["name"] == "Stylish T-Shirt" for p in apparel.json())

        # 5. The spec, Swagger UI's page, the probes.
        spec = http.get("/openapi.json")
        assert spec.status_code == 200
        assert "/users/{id}" in spec.json()["paths"]
        assert "swagger" in http.get("/ui/").text.lower()
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200

    # The log: one access line per request, by path template, and no secret in any line.
    deadline = time.monotonic() + 5
    while "DELETE /users/{id} 204" not in server.output and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.output
    assert "GET /users/{id} 404" in log
    assert "DELETE /users/{id} 204" in log
    for secret in (password, own_secret, api_key, token["access_token"]):
        assert secret not in log


def test_first_hour_on_postgresql_with_operations_md(tmp_path: Path) -> None:
    """docs/operations.md's "Operating beyond one machine", step by step, on the local
    PostgreSQL and Redis: its exports with this machine's addresses and fresh secrets, its
    ``db upgrade`` creating the database (a name of this test's own, dropped afterwards), its
    ``serve``, then a client of one's own (the README's command) and one request."""
    require_service(POSTGRES_URL, 5432)
    require_service(REDIS_URL, 6379)
    section = OPERATIONS[OPERATIONS.index("## Operating beyond one machine") :]
    match = re.search(r"```sh\n(.*?)\n```", section, re.DOTALL)
    assert match, "no sh block under 'Operating beyond one machine'"
    steps = [line.split("#")[0].strip() for line in match.group(1).splitlines()]

    name = f"nc_first_hour_{uuid.uuid4().hex[:12]}"
    database = make_url(POSTGRES_URL).set(database=name)
    # What an operator puts in place of the examples: this machine's services, new secrets.
    mine = {
        "postgresql://storefront@db.internal:5432/storefront": database.render_as_string(False),
        "redis://cache.internal:6379": REDIS_URL,
    }
    env = clean_env()
    exports = [step for step in steps if step.startswith("export ")]
    assert [e.split("=")[0] for e in exports] == [
        "export STOREFRONT_DATABASE_URL",
        "export STOREFRONT_RATE_LIMIT_STORAGE_URL",
        "export STOREFRONT_JWT_SECRET",
        "export STOREFRONT_PEPPER",
    ]
    for export in exports:
        variable, _, value = export.removeprefix("export ").partition("=")
        env[variable] = mine.get(value, secrets.token_urlsafe(32) if value == "…" else value)
    assert env["STOREFRONT_DATABASE_URL"].endswith(f"/{name}")
    commands = [shlex.split(step) for step in steps if step.startswith("storefront ")]
    assert commands[0] == ["storefront", "db", "upgrade"]
    serve = commands[1]
    assert serve[:2] == ["storefront", "serve"]

    try:
        # db upgrade creates the database, which does not exist yet, and migrates it.
        upgraded = run_storefront(env, *commands[0][1:], cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        created, applied = upgraded.stdout.splitlines()
        assert created.startswith(f'created the database "{name}" at host ')
        assert applied.startswith(f"applied 0001→{head_revision()} (postgresql://")

        # serve as written, on this machine's loopback and a free port.
        options = dict(zip(serve[2::2], serve[3::2], strict=True))
        documented = {"--host": "0.0.0.0", "--port": "8000", "--workers": "2"}  # noqa: S104
        assert options == documented  # compared with the page, never bound to here
        options["--host"] = "127.0.0.1"
        del options["--port"]  # serving() picks a free one
        argv = [word for pair in options.items() for word in pair]
        with serving(tmp_path, env, *argv) as server:
            own = json.loads(
                bash(f"{shlex.quote(STOREFRONT)} clients create --name ops --json", **env)
            )
            with httpx.Client(base_url=server.base, timeout=10) as http:
                token = http.post(
                    "/auth/token", data={"grant_type": "client_credentials", **own}
                ).json()["access_token"]
                listed = http.get("/users", headers={"Authorization": f"Bearer {token}"})
                assert listed.status_code == 200, listed.text
                assert listed.json() == []
                assert listed.headers["X-Total-Count"] == "0"
                ready = http.get("/readyz").json()
                assert ready["status"] == "ready"
                assert ready["checks"]["migrations"]["reason"] == (
                    f"at {head_revision()}, as this code expects"
                )
        assert env["STOREFRONT_PEPPER"] not in server.output
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
