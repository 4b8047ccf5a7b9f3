"""A PgBouncer in transaction mode, started by the tests from the distribution's package.

It listens on a spare port of 127.0.0.1 in front of the test PostgreSQL, with its
configuration, auth file, log and pid file in a temporary directory of its own. Every
database name is passed through (``* =``), so each test's cloned database is reachable by
name through the same PgBouncer.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.servers import free_port

#: Server connections per (database, user): what PostgreSQL sees, whatever the clients hold.
POOL_SIZE = 10
#: Seconds before PgBouncer tries again to log in to a PostgreSQL that refused it: after an
#: outage (tests/test_faults.py) service resumes that much after PostgreSQL is back. 15 by
#: default; 1 here, so that the test waits for the recovery it checks, not for the timer.
LOGIN_RETRY = 1


@dataclass
class PgBouncer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def url_for(self, direct_url: str) -> str:
        """``direct_url`` (a PostgreSQL URL) rewritten to go through this PgBouncer."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    @property
    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "pgbouncer", str(self.directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PgBouncer did not start:\n" + self.log) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _config(directory: Path, port: int, upstream_host: str, upstream_port: int) -> str:
    return f"""\
[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 1000
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
server_login_retry = {LOGIN_RETRY}
"""


@contextmanager
def pgbouncer(upstream_url: str) -> Iterator[PgBouncer]:
    """Run PgBouncer in front of the PostgreSQL of ``upstream_url`` until the block ends."""
    upstream = make_url(upstream_url)
    # Not under pytest's tmp_path: PgBouncer refuses to run as root, so it runs as the
    # postgres user, which must be able to read its directory.
    directory = Path(tempfile.mkdtemp(prefix="storefront-pgbouncer-"))
    port = free_port()
    (directory / "pgbouncer.ini").write_text(
        _config(directory, port, upstream.host or "127.0.0.1", upstream.port or 5432)
    )
    # auth_type trust still wants each user listed.
    (directory / "userlist.txt").write_text(f'"{upstream.username or "postgres"}" ""\n')
    shutil.chown(directory, "postgres")
    for path in directory.iterdir():
        shutil.chown(path, "postgres")
    bouncer = PgBouncer(port, directory)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)
