"""Two real server processes sharing one Redis count one budget, exactly, under concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

STOREFRONT = str(Path(sys.executable).with_name("storefront"))
REDIS_URL = "redis://127.0.0.1:6379"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    if not _redis_up():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}; .ci/run should start it")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    return {
        **base,
        "STOREFRONT_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "STOREFRONT_KEY_DIR": str(tmp_path / "keys"),
        "STOREFRONT_RATE_LIMIT_STORAGE_URL": REDIS_URL,
        "STOREFRONT_RATE_LIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        "STOREFRONT_LOG_LEVEL": "warning",
    }


def _command(env: dict[str, str], *argv: str) -> dict[str, str]:
    done = subprocess.run(
        [STOREFRONT, *argv], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    parsed: dict[str, str] = json.loads(done.stdout)
    return parsed


@pytest.fixture
def servers(env: dict[str, str]) -> Iterator[list[str]]:
    subprocess.run([STOREFRONT, "db", "upgrade"], env=env, check=True, timeout=60)
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [STOREFRONT, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for base in bases:
            while True:
                try:
                    httpx.get(f"{base}/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{base} did not start"
                    time.sleep(0.1)
        yield bases
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


async def _burst(bases: list[str], headers: dict[str, str], total: int) -> list[int]:
    limits = httpx.Limits(max_connections=15)
    async with (
        httpx.AsyncClient(base_url=bases[0], limits=limits, timeout=30) as one,
        httpx.AsyncClient(base_url=bases[1], limits=limits, timeout=30) as two,
    ):
        clients = [one, two]
        responses = await asyncio.gather(
            *(clients[n % 2].get("/products", headers=headers) for n in range(total))
        )
    return [r.status_code for r in responses]


def test_two_processes_share_one_exact_budget(env: dict[str, str], servers: list[str]) -> None:
    client = _command(env, "clients", "create", "--name", "burst", "--scopes", "read", "--json")
    key = _command(env, "keys", "create", "--client-id", client["client_id"], "--json")
    headers = {"X-API-Key": key["api_key"]}

    # 300 requests at once over 30 connections, split across the two processes.
    statuses = asyncio.run(_burst(servers, headers, 300))
    assert statuses.count(200) == 100
    assert statuses.count(429) == 200

    # Revocation through the command reaches both processes at once.
    subprocess.run([STOREFRONT, "keys", "revoke", key["key_id"]], env=env, check=True, timeout=60)
    for base in servers:
        assert httpx.get(f"{base}/products", headers=headers).status_code == 401


def test_several_workers_with_in_memory_limits_refuse_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    done = subprocess.run(
        [STOREFRONT, "serve", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--workers 2 needs a shared rate-limit store" in lines[0]
    assert "STOREFRONT_RATE_LIMIT_STORAGE_URL" in lines[0]
