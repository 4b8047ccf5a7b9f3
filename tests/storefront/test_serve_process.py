"""`storefront serve` prepares (migrates, makes keys, loads the demo) in a child process, so the
process that goes on to serve never imports what only preparing needs (storefront.cli._in_child).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.servers import clean_env, free_port

#: Runs `storefront serve --demo` with uvicorn.run replaced by a function that builds the app,
#: as the worker would, and reports which modules the serving process holds.
SCRIPT = """
import json, sys, uvicorn
from storefront import cli

def run(*args, **kwargs):
    import storefront.app
    storefront.app.create_app_from_env()
    import handlers.health, handlers.users, handlers.products, handlers.auth  # as requests do
    held = ["alembic", "persistence.migrate", "storefront.importer", "rich"]
    print(json.dumps({name: name in sys.modules for name in held}))

uvicorn.run = run
raise SystemExit(cli.main(["serve", "--port", sys.argv[1], "--demo"]))
"""


def serve(tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port())],
        env=clean_env(STOREFRONT_DATABASE_URL=database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_serving_process_holds_nothing_only_preparing_needs(tmp_path: Path) -> None:
    database = tmp_path / "shop.db"
    done = serve(tmp_path, f"sqlite:///{database}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The child's output (the demo client) comes first, whole, then the serving process'.
    assert lines[0].startswith("Demo client")
    assert any(line.strip().startswith("client_secret:") for line in lines)
    assert json.loads(lines[-1]) == {
        "alembic": False,
        "persistence.migrate": False,
        "storefront.importer": False,
        "rich": False,
    }
    # The child did migrate and load the demo catalogue.
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM products").fetchone()[0] > 0
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1


def test_a_failure_while_preparing_is_one_line_and_the_exit_code(tmp_path: Path) -> None:
    done = serve(tmp_path, "sqlite:////proc/no-such-dir/shop.db")
    assert done.returncode == 1
    assert done.stdout == ""  # nothing served
    assert done.stderr.splitlines() == [
        "storefront: cannot open the database file /proc/no-such-dir/shop.db "
        "(STOREFRONT_DATABASE_URL=sqlite:////proc/no-such-dir/shop.db): "
        "No such file or directory (FileNotFoundError)"
    ]
