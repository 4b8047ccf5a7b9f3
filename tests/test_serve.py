"""The README's first command, for real: ``storefront serve --demo`` over HTTP on a socket."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    STOREFRONT,
    Server,
    clean_env,
    demo_server,
    free_port,
    storefront,
    storefront_json,
    wait_until_up,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with demo_server(tmp_path) as running:
        yield running


def test_demo_server_serves_the_api_over_http(server: Server, tmp_path: Path) -> None:
    curl = re.search(r"^\s*(curl .*/auth/token.*)$", server.output, re.MULTILINE)
    assert curl, server.output
    # The printed curl line, run as printed, yields a token.
    fetched = subprocess.run(
        ["bash", "-c", curl.group(1)], capture_output=True, text=True, timeout=30, check=True
    )
    token = httpx.Response(200, content=fetched.stdout).json()
    assert token["token_type"] == "bearer"
    assert token["scope"] == "read write"
    assert token["expires_in"] == 3600

    with httpx.Client(base_url=server.base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        products = http.get("/products", params={"category": "electronics"}, headers=auth)
        assert products.status_code == 200
        assert any(p["name"] == "Gadget Pro" for p in products.json())

        created = http.post(
            "/users",
            headers=auth,
            json={
                "name": "Charlie Chaplin",
                "email": "charlie@example.com",
                "password": "pw-12345",
            },
        )
        assert created.status_code == 201
        location = created.headers["Location"]
        assert location == f"/users/{created.json()['id']}"  # relative: no public URL is set
        assert http.get(location, headers=auth).json() == created.json()

        missing = http.get("/users/user_doesnotexist", headers=auth)
        assert missing.status_code == 404
        assert missing.json() == {
            "error": "User not found",
            "message": "The specified user ID does not exist.",
        }
        assert http.get("/nowhere").json()["error"] == "Not Found"
        assert "server" not in http.get("/users", headers=auth).headers

        # An API key made by the command works against the running server, in both headers.
        client_id = re.search(r"client_id:\s+(\S+)", server.output)
        assert client_id, server.output
        made = storefront_json(
            server.env, "keys", "create", "--client-id", client_id.group(1), cwd=tmp_path
        )
        api_key = made["api_key"]
        for headers in ({"X-API-Key": api_key}, {"Authorization": f"Bearer {api_key}"}):
            assert http.get("/products", headers=headers).status_code == 200
            refused = http.post("/users", headers={**headers, "Content-Type": "text/plain"})
            assert refused.status_code == 415  # authenticated, scope write, then the body

        ui = http.get("/ui/")
        assert ui.status_code == 200
        assert "swagger" in ui.text.lower()
        spec = http.get("/openapi.json").json()
        assert "clientCredentials" in spec["components"]["securitySchemes"]["OAuth2"]["flows"]

    # Secrets are generated once and kept for the next start.
    assert (tmp_path / "storefront-keys" / "jwt-signing.key").stat().st_mode & 0o077 == 0
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    # One argon2id hash at a time: twelve sign-ups take the better part of a second.
    env = clean_env(STOREFRONT_PASSWORD_HASH_CONCURRENCY="1", STOREFRONT_SHUTDOWN_GRACE="30")
    storefront(env, "db", "upgrade", cwd=tmp_path)
    client = storefront_json(env, "clients", "create", "--name", "slow", cwd=tmp_path)
    process = subprocess.Popen(
        [STOREFRONT, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)
        form = {"grant_type": "client_credentials", **client}
        token = httpx.post(f"{base}/auth/token", data=form).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def sign_ups() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                requests = [
                    http.post(
                        "/users",
                        headers=auth,
                        json={
                            "name": f"U{i}",
                            "email": f"u{i}@example.com",
                            "password": "pw-123456",
                        },
                    )
                    for i in range(12)
                ]
                pending = asyncio.gather(*requests)
                await asyncio.sleep(0.3)  # all twelve are in flight, most still queued
                process.send_signal(signal.SIGTERM)
                return [r.status_code for r in await pending]

        statuses = asyncio.run(sign_ups())
        assert statuses == [201] * 12
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        log = process.stderr.read()
        assert "Shutting down" in log
        assert "Traceback" not in log
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr is not None:
            process.stderr.close()
