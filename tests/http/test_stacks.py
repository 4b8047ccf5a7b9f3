"""The compiled stack and Connexion's stock stack answer every request alike.

The same script of requests (every route, its errors, routing, security, validation) runs
against both stacks, each on its own copy of one database; any difference in status, headers
or body is a failure. Values that differ by nature (ids, secrets, tokens, times, request ids)
are replaced by placeholders in order of appearance first, so that equal structure compares
equal.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.crypto import SecretDigester
from core.settings import Settings
from persistence.migrate import upgrade
from storefront import admin
from storefront.app import create_app
from tests.conftest import JWT_SECRET, PEPPER

#: Values that differ between two runs, whatever the stack.
VOLATILE = re.compile(
    r"user_[A-Za-z0-9_-]{12,}|prod_[A-Za-z0-9_-]{12,}|key_[A-Za-z0-9_-]{12,}|sk_[A-Za-z0-9_-]+"
    r"|client_[A-Za-z0-9_-]{12,}|cli_[A-Za-z0-9_-]{12,}|eyJ[A-Za-z0-9_.-]+"
    r'|(?<="jti": ")[0-9a-f]{32}'
)
#: Times, paging cursors that carry one, and /readyz's measured latency ("answered in 3 ms"):
#: equal within a run only by chance of the clock.
TIMES = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z|-?\d{10,}\.(?=<v\d+>)|(?<=answered in )\d+(?= ms)")
#: Headers that carry a time or a per-request value.
SKIPPED_HEADERS = {"date", "x-request-id", "x-ratelimit-reset", "ratelimit", "retry-after"}

Request = tuple[str, str, dict[str, Any]]


def script(client_id: str, secret: str, api_key: str) -> Callable[[Any], list[Request]]:
    """The requests, built once a token exists (``token`` is read from the first answer)."""

    def build(token: str) -> list[Request]:
        bearer = {"Authorization": f"Bearer {token}"}
        keyed = {**bearer, "Idempotency-Key": "stack-diff-1"}
        credentials = {"client_id": client_id, "client_secret": secret}
        wrong_secret = {**credentials, "client_secret": secret + "x"}
        user = {"name": "Ada Lovelace", "email": "ada@example.com", "password": "analytical1"}
        return [
            ("POST", "/auth/token", {"data": {"grant_type": "client_credentials"}}),
            ("POST", "/auth/token", {"data": {"grant_type": "password"}}),
            (
                "POST",
                "/auth/token",
                {
                    "data": {
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": secret + "x",
                    }
                },
            ),
            (
                "POST",
                "/auth/token",
                {
                    "data": {
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": secret,
                        "scope": "admin",
                    }
                },
            ),
            ("POST", "/auth/token", {"json": {"grant_type": "client_credentials"}}),
            ("GET", "/users", {}),
            ("GET", "/users", {"headers": {"Authorization": "Bearer nonsense"}}),
            ("GET", "/users", {"headers": {"Authorization": "Basic Zm9vOmJhcg=="}}),
            ("GET", "/users", {"headers": {"X-API-Key": "sk_unknown"}}),
            ("GET", "/users", {"headers": {**bearer, "X-API-Key": api_key}}),
            ("POST", "/users", {"headers": bearer, "json": user}),
            ("POST", "/users", {"headers": bearer, "json": user}),
            ("POST", "/users", {"headers": bearer, "json": {**user, "email": "b@example.com"}}),
            ("POST", "/users", {"headers": bearer, "json": {**user, "id": "user_mine"}}),
            ("POST", "/users", {"headers": keyed, "json": {**user, "email": "c@example.com"}}),
            ("POST", "/users", {"headers": keyed, "json": {**user, "email": "c@example.com"}}),
            ("POST", "/users", {"headers": keyed, "json": {**user, "email": "d@example.com"}}),
            ("POST", "/users", {"headers": {**bearer, "Idempotency-Key": "a b"}, "json": user}),
            ("POST", "/users", {"headers": bearer, "json": {"name": "x"}}),
            ("POST", "/users", {"headers": bearer, "content": b"{", "ctype": "application/json"}),
            ("POST", "/users", {"headers": bearer, "content": b"a=b", "ctype": "text/plain"}),
            ("GET", "/users", {"headers": bearer}),
            ("GET", "/users?limit=1", {"headers": bearer}),
            ("GET", "/users?limit=0", {"headers": bearer}),
            ("GET", "/users?limit=abc", {"headers": bearer}),
            ("GET", "/users?offset=-1", {"headers": bearer}),
            ("GET", "/users?color=red", {"headers": bearer}),
            ("GET", "/users?after=zzz", {"headers": bearer}),
            ("GET", "/users", {"headers": {"X-API-Key": api_key}}),
            ("GET", "/users/user_doesnotexist00", {"headers": bearer}),
            ("PUT", "/users/user_doesnotexist00", {"headers": bearer, "json": {"name": "B"}}),
            ("PUT", "/users/user_doesnotexist00", {"headers": bearer, "json": {}}),
            ("DELETE", "/users/user_doesnotexist00", {"headers": bearer}),
            ("HEAD", "/users", {"headers": bearer}),
            ("PATCH", "/users", {"headers": bearer}),
            ("OPTIONS", "/users/user_doesnotexist00", {"headers": bearer}),
            ("PROPFIND", "/users", {"headers": bearer}),
            ("GET", "/healthz", {"headers": {"Connection": "Upgrade", "Upgrade": "websocket"}}),
            ("DELETE", "/products", {"headers": bearer}),
            ("GET", "/nowhere", {}),
            ("GET", "/products?search=walnut&category=Kitchen", {"headers": bearer}),
            ("GET", "/products?limit=101", {"headers": bearer}),
            ("POST", "/products", {"headers": bearer, "json": {"name": "x", "price": 1.234}}),
            (
                "POST",
                "/products",
                {"headers": bearer, "json": {"name": " ", "price": 1, "category": "c"}},
            ),
            ("GET", "/products/prod_doesnotexist00", {"headers": bearer}),
            ("PUT", "/products/prod_doesnotexist00", {"headers": bearer, "json": {"price": 2}}),
            ("PUT", "/products/prod_doesnotexist00", {"headers": bearer, "json": {}}),
            ("DELETE", "/products/prod_doesnotexist00", {"headers": {**bearer, "If-Match": "1"}}),
            ("GET", "/healthz", {}),
            ("GET", "/readyz", {}),
            ("GET", "/.well-known/oauth-authorization-server", {}),
            ("GET", "/.well-known/jwks.json", {}),
            ("POST", "/auth/introspect", {"data": {**credentials, "token": token}}),
            ("POST", "/auth/introspect", {"data": {**credentials, "token": "nonsense"}}),
            ("POST", "/auth/introspect", {"data": {"token": token}}),
            ("POST", "/auth/introspect", {"json": {**credentials, "token": token}}),
            ("POST", "/auth/revoke", {"data": {**credentials, "token": "nonsense"}}),
            ("POST", "/auth/revoke", {"data": {**wrong_secret, "token": token}}),
            ("POST", "/auth/revoke", {"data": credentials}),
        ]

    return build


def run(settings: Settings, client: admin.NewClient, key: admin.NewApiKey) -> list[Any]:
    answers: list[Any] = []
    with create_app(settings).test_client() as api:
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        token = api.post("/auth/token", data=form).json()["access_token"]
        requests = script(client.client_id, client.client_secret, key.api_key)(token)
        created: str | None = None
        for method, path, options in requests:
            options = dict(options)
            ctype = options.pop("ctype", None)
            headers = dict(options.pop("headers", {}))
            if ctype:
                headers["Content-Type"] = ctype
            response = api.request(method, path, headers=headers, **options)
            if method == "POST" and path == "/users" and response.status_code == 201:
                created = response.json()["id"]
            answers.append(describe(method, path, response))
        assert created is not None
        read_only = api.post("/auth/token", data={**form, "scope": "read"}).json()
        response = api.post(
            "/users",
            headers={"Authorization": f"Bearer {read_only['access_token']}"},
            json={"name": "Read Only", "email": "ro@example.com", "password": "readonly1"},
        )
        answers.append(describe("POST", "/users (read scope)", response))
        users_only = api.post("/auth/token", data={**form, "scope": "users:read"}).json()
        response = api.get(
            "/products", headers={"Authorization": f"Bearer {users_only['access_token']}"}
        )
        answers.append(describe("GET", "/products (users:read scope)", response))
        bearer = {"Authorization": f"Bearer {token}"}
        for method, options in [
            ("GET", {}),
            ("GET", {"headers": {"If-None-Match": '"1"'}}),
            ("GET", {"headers": {"If-None-Match": '"1"x'}}),
            ("PUT", {"json": {"name": "Ada King"}}),
            ("PUT", {"json": {"name": "Lost"}, "headers": {"If-Match": '"1"'}}),
            ("PUT", {"json": {"name": "Lost"}, "headers": {"If-Match": 'w/"2"'}}),
            ("PUT", {"json": {"name": "Lost"}, "headers": {"If-None-Match": "*"}}),
            ("DELETE", {"headers": {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}}),
            ("PUT", {"json": {"name": "Ada"}, "headers": {"If-Match": '"2"'}}),
            ("PUT", {"json": {"email": "not-an-address"}}),
            ("DELETE", {"headers": {"If-Match": '"2"'}}),
            ("DELETE", {"headers": {"If-Match": "*"}}),
            ("GET", {}),
        ]:
            path = f"/users/{created}"
            options = dict(options)
            headers = {**bearer, **options.pop("headers", {})}
            response = api.request(method, path, headers=headers, **options)
            answers.append(describe(method, path, response))
        # Last, since the script's token stops working: revoked, it is inactive and refused.
        credentials = {"client_id": client.client_id, "client_secret": client.client_secret}
        for method, path, options in [
            ("POST", "/auth/revoke", {"data": {**credentials, "token": token}}),
            ("POST", "/auth/introspect", {"data": {**credentials, "token": token}}),
            ("GET", "/users", {"headers": bearer}),
        ]:
            answers.append(describe(method, path, api.request(method, path, **options)))
    return answers


def describe(method: str, path: str, response: Any) -> dict[str, Any]:
    headers = {
        name: value for name, value in response.headers.items() if name not in SKIPPED_HEADERS
    }
    try:
        body: Any = response.json()
    except (ValueError, json.JSONDecodeError):
        body = response.text
    return {
        "request": f"{method} {path}",
        "status": response.status_code,
        "headers": headers,
        "body": body,
    }


def normalise(answers: list[Any]) -> str:
    seen: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), f"<v{len(seen)}>")

    text = json.dumps(answers, indent=1, sort_keys=True)
    text = re.sub(r'"content-length": "\d+"', '"content-length": "<n>"', text)
    # Seconds since the epoch (introspection) and how long the database took to answer.
    text = re.sub(r'"(exp|iat|nbf)": \d+', r'"\1": <time>', text)
    text = re.sub(r"answered in \d+ ms", "answered in <n> ms", text)
    return TIMES.sub("<time>", VOLATILE.sub(placeholder, text))


@pytest.fixture
def copies(tmp_path: Path) -> list[Settings]:
    """One migrated SQLite database, copied for each stack."""
    template = tmp_path / "template.db"
    upgrade(f"sqlite:///{template}")
    made = []
    for stack in ("compiled", "connexion"):
        path = tmp_path / f"{stack}.db"
        shutil.copy(template, path)
        made.append(
            Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=f"sqlite:///{path}",
                key_dir=tmp_path / "keys",
                jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
                pepper=PEPPER,  # type: ignore[arg-type]
                validate_responses=True,
                rate_limit="1000000/minute",
                auth_failure_limit="1000000/minute",
                http_stack=stack,  # type: ignore[arg-type]
            )
        )
    return made


def test_both_stacks_answer_every_request_alike(copies: list[Settings]) -> None:
    digester = SecretDigester(PEPPER.encode())
    transcripts = []
    for settings in copies:
        client = admin.run(
            settings,
            lambda s: admin.create_client(s, digester, name="diff", scopes=["read", "write"]),
        )
        key = admin.run(
            settings, lambda s, c=client: admin.create_api_key(s, digester, client_id=c.client_id)
        )
        transcripts.append(normalise(run(settings, client, key)))
    compiled, stock = transcripts
    statuses = set(re.findall(r'"status": (\d+)', compiled))
    # The script reached every kind of answer it means to compare.
    assert {
        *("200", "201", "204", "304", "400", "401", "403", "404", "405", "409", "412", "415", "422")
    } <= statuses
    assert compiled == stock
