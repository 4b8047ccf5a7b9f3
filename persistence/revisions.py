"""The newest migration's revision, read from the migration files without Alembic.

``/readyz`` compares it with the database's. Alembic's ``ScriptDirectory`` gives the same
answer, but importing it (and Mako with it) takes 8 MiB of every worker, which never migrates:
``storefront serve`` migrates in a child process. Each migration names its ``revision`` and
``down_revision`` as literals (Alembic's template writes them so); the head is the revision no
other names as its ``down_revision``. tests/persistence/test_migrations.py checks the answer
against Alembic's.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

VERSIONS = Path(__file__).with_name("migrations") / "versions"


@cache
def head_revision() -> str | None:
    """The head revision; None when there are no migrations."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        names = _literals(path)
        revision = names.get("revision")
        if not isinstance(revision, str):
            continue  # not a migration (no revision = "..." at the top level)
        revisions.add(revision)
        down = names.get("down_revision")
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple):  # a merge migration names several
            parents.update(str(parent) for parent in down)
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {sorted(heads)}")
    return next(iter(heads), None)


def _literals(path: Path) -> dict[str, object]:
    """The module-level names of ``path`` assigned a literal."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    return found
