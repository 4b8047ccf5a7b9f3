"""Real ``storefront serve`` processes for the tests that talk HTTP over a socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STOREFRONT = str(Path(sys.executable).with_name("storefront"))


#: Ports for the servers a test starts: each xdist worker draws from a block of its own, below
#: the kernel's ephemeral range (32768 and up), in turn from a random start. A port the kernel
#: hands out for bind(0) is often handed to the next asker too: a free port that one worker
#: picked and closed was then taken by another worker's server before its own could bind it
#: (a test met the other worker's Prometheus exporter on "its" port).
_PORT_BLOCK = 1000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_FIRST_PORT = 20000 + (_WORKER % 12) * _PORT_BLOCK
_turn = itertools.count(random.randrange(_PORT_BLOCK))


def free_port() -> int:
    """A port nothing listens on now, and that no other test worker will pick."""
    for _ in range(_PORT_BLOCK):
        port = _FIRST_PORT + next(_turn) % _PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone else's, for now
        return port
    raise RuntimeError(f"no free port in {_FIRST_PORT}-{_FIRST_PORT + _PORT_BLOCK - 1}")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's STOREFRONT_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    return env | extra


@dataclass
class Server:
    base: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def demo_server(directory: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``storefront serve --demo`` in ``directory``."""
    with serving(directory, env, "--demo") as server:
        yield server


@contextmanager
def serving(
    directory: Path, env: dict[str, str] | None = None, *argv: str, port: int | None = None
) -> Iterator[Server]:
    """``storefront serve ARGV`` in ``directory``; its output is read as it comes, so that a
    chatty server never blocks on a full pipe. ``port``: one chosen beforehand (free_port()),
    for settings that must name the server's own URL; by default a free one."""
    port = port or free_port()
    env = env or clean_env()
    process = subprocess.Popen(
        [STOREFRONT, "serve", *argv, "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, env)
    started = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)
            if "Application startup complete" in line:
                started.set()
        started.set()  # the process ended: stop waiting

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not started.wait(60) or process.poll() is not None:
            raise RuntimeError("server did not start:\n" + server.output)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def wait_until_up(base: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_storefront(
    env: dict[str, str], *argv: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a ``storefront`` command to completion, whatever its exit status."""
    return subprocess.run(
        [STOREFRONT, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def storefront(env: dict[str, str], *argv: str, cwd: Path | None = None) -> str:
    """Run a ``storefront`` command that must succeed; its stdout."""
    done = run_storefront(env, *argv, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"storefront {' '.join(argv)}: {done.stderr}")
    return done.stdout


def storefront_json(env: dict[str, str], *argv: str, cwd: Path | None = None) -> dict[str, str]:
    """Run a ``storefront … --json`` command; its JSON output."""
    import json

    parsed: dict[str, str] = json.loads(storefront(env, *argv, "--json", cwd=cwd))
    return parsed


def start_server(env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``storefront serve`` on a spare port, quietly; the process and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [STOREFRONT, "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def stop_servers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def deployment_env(
    *, rate_limit_storage_url: str, key_dir: Path, **settings: str
) -> dict[str, str]:
    """The environment of every instance of one deployment: generated once, not per process,
    so that every instance verifies the tokens every other one issues, and the digests of
    every secret; one rate-limit store, under a key prefix of its own. ``settings``: more
    ``STOREFRONT_*`` variables."""
    return clean_env(
        STOREFRONT_JWT_SECRET=secrets.token_urlsafe(48),
        STOREFRONT_PEPPER=secrets.token_urlsafe(48),
        STOREFRONT_KEY_DIR=str(key_dir),
        STOREFRONT_RATE_LIMIT_STORAGE_URL=rate_limit_storage_url,
        STOREFRONT_RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
        **settings,
    )


@contextmanager
def instances(env: dict[str, str], count: int = 2) -> Iterator[list[str]]:
    """The database migrated, then ``count`` ``storefront serve`` processes on it, each on a
    port of its own: their base URLs, once every one answers."""
    storefront(env, "db", "upgrade")
    started = [start_server(env) for _ in range(count)]
    try:
        bases = [base for _, base in started]
        for base in bases:
            wait_until_up(base)
        yield bases
    finally:
        stop_servers([process for process, _ in started])


def new_api_key(
    env: dict[str, str], *, scopes: str = "read", limit: str | None = None
) -> dict[str, str]:
    """A new client with ``scopes`` (and its own rate ``limit``), and an API key of it, made by
    the commands: the key's JSON (``key_id``, ``api_key``, …)."""
    client = storefront_json(env, "clients", "create", "--name", "test", "--scopes", scopes)
    if limit is not None:
        storefront(env, "clients", "set-limit", client["client_id"], limit)
    return storefront_json(env, "keys", "create", "--client-id", client["client_id"])


async def burst(bases: list[str], headers: dict[str, str], total: int) -> list[int]:
    """``total`` GET /products at once, alternately on each base, over 30 connections."""
    import httpx

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
