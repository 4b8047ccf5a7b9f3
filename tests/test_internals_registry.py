"""Every name of a library's that the code uses outside the library's documented API is in
storefront/internals.py with its reason, and each is still there in the installed library."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storefront import internals

ROOT = Path(__file__).resolve().parent.parent
UPGRADING = "docs/development.md#borrowed-internals"


def test_the_installed_libraries_still_have_every_registered_name() -> None:
    problems = internals.check()
    assert problems == [], (
        "An installed library differs from the one storefront/internals.py was read against; "
        f"re-read each entry named ({UPGRADING}):\n- " + "\n- ".join(problems)
    )


def test_the_check_notices_a_change() -> None:
    original = internals.BORROWED
    internals.BORROWED = (
        *original,
        internals.Borrowed("connexion", "connexion.utils:make_type", "undocumented", "t", ("x",)),
        internals.Borrowed("connexion", "connexion.utils:made_up", "undocumented", "t"),
    )
    try:
        problems = internals.check()
    finally:
        internals.BORROWED = original
    assert any(p.startswith("connexion.utils:make_type now takes") for p in problems), problems
    assert any(p.startswith("connexion.utils:made_up is gone") for p in problems), problems


@pytest.mark.parametrize(("library", "release"), sorted(internals.PINNED.items()))
def test_each_library_with_private_names_is_pinned_in_pyproject(library: str, release: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'"{library}(\[[^]]*\])?=={re.escape(release)}[";]', pyproject), library
    kinds = {entry.kind for entry in internals.BORROWED if entry.library == library}
    assert kinds & {"private", "override"}, f"{library} has no private name or override left"


def test_every_library_with_private_names_is_pinned() -> None:
    libraries = {e.library for e in internals.BORROWED if e.kind in ("private", "override")}
    assert libraries == set(internals.PINNED)
