"""A Redis primary, a replica and a Sentinel, started by the tests from the distribution's
packages, on spare ports of 127.0.0.1, with their files in a temporary directory."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.servers import free_port

SERVICE = "storefront"
#: How long the Sentinel waits before it calls an unanswering primary down: short, so that the
#: failover test is short (production: 5000 to 30000, against false alarms).
DOWN_AFTER_MS = 1000


@dataclass
class RedisTopology:
    primary_port: int
    replica_port: int
    sentinel_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """What STOREFRONT_RATE_LIMIT_STORAGE_URL says."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def primary(self) -> int:
        """The port of the primary the Sentinel names now."""
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            _host, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_primary(self) -> None:
        """The primary dies at once (SIGKILL: no goodbye to the replica or the Sentinel)."""
        self.processes["primary"].send_signal(signal.SIGKILL)
        self.processes["primary"].wait(timeout=10)


def _wait(what: str, ready: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(ready) and ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout} s")
        time.sleep(0.1)


@contextmanager
def redis_with_sentinel() -> Iterator[RedisTopology]:
    directory = Path(tempfile.mkdtemp(prefix="storefront-sentinel-"))
    topology = RedisTopology(free_port(), free_port(), free_port())
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)]
    # The Sentinel rewrites its configuration file as it learns the topology.
    (directory / "sentinel.conf").write_text(
        f"port {topology.sentinel_port}\n"
        "bind 127.0.0.1\n"
        f"dir {directory}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {topology.primary_port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} 10000\n"
    )
    commands = {
        # The replica's first full sync at once, not after the default 5 s of waiting for
        # more replicas to share it.
        "primary": [
            "redis-server",
            "--port",
            str(topology.primary_port),
            "--repl-diskless-sync-delay",
            "0",
            *common,
        ],
        "replica": [
            "redis-server",
            "--port",
            str(topology.replica_port),
            "--replicaof",
            "127.0.0.1",
            str(topology.primary_port),
            "--dbfilename",
            "replica.rdb",
            *common,
        ],
        "sentinel": ["redis-sentinel", str(directory / "sentinel.conf")],
    }

    def start(name: str) -> None:
        topology.processes[name] = subprocess.Popen(
            commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    try:
        start("primary")
        start("replica")

        def replica_synced() -> bool:
            with redis.Redis(port=topology.replica_port, socket_timeout=1) as replica:
                return replica.info("replication").get("master_link_status") == "up"

        def sentinel_knows_the_replica() -> bool:
            with redis.Redis(port=topology.sentinel_port, socket_timeout=1) as sentinel:
                replicas = sentinel.sentinel_slaves(SERVICE)
            return any(r["port"] == topology.replica_port for r in replicas)

        _wait("the replica", replica_synced)
        # Only now: the Sentinel learns the replicas from the primary's INFO, which it asks
        # for once on connecting and then every 10 s; started earlier, it may wait that long.
        start("sentinel")
        _wait("the Sentinel", sentinel_knows_the_replica)
        yield topology
    finally:
        for process in topology.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in topology.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(directory, ignore_errors=True)
