"""The Connexion internals the adapter relies on are still there, as pinned."""

from __future__ import annotations

from storefront.http.compiled import internals


def test_connexion_still_has_every_internal_the_adapter_uses() -> None:
    problems = internals.check()
    assert problems == [], (
        "The installed Connexion differs from the one storefront.http.compiled was checked "
        "against; re-read each entry in storefront/http/compiled/internals.py:\n- "
        + "\n- ".join(problems)
    )


def test_the_registry_notices_a_change() -> None:
    fake = internals.Internal("connexion.utils:make_type", "undocumented", ("value",), "test")
    original = internals.INTERNALS
    internals.INTERNALS = (*original, fake)
    try:
        problems = internals.check()
    finally:
        internals.INTERNALS = original
    assert any("connexion.utils:make_type now takes" in p for p in problems)


def test_the_pin_matches_pyproject() -> None:
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert f"connexion[swagger-ui,uvicorn]=={internals.PINNED}" in pyproject
