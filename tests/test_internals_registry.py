"""Every name of a library's that the code uses outside the library's documented API is in
storefront/internals.py with its reason, and each is still there in the installed library.

``tests/borrowed.py`` finds the uses by reading the code; these tests hold them, the registry
(``BORROWED``) and the documented API it sets apart (``DOCUMENTED``, ``HOOKS``) together.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from storefront import internals
from tests import borrowed

ROOT = Path(__file__).resolve().parent.parent
UPGRADING = "docs/development.md#borrowed-internals"


@functools.cache
def report() -> borrowed.Report:
    return borrowed.find_uses()


@functools.cache
def registry() -> dict[tuple[int, str], internals.Borrowed]:
    found = {}
    for entry in internals.BORROWED:
        holder, name = internals.resolve(entry.path)
        found[(id(holder), name)] = entry
    return found


def unregistered(uses: list[borrowed.Use]) -> list[borrowed.Use]:
    return [use for use in uses if use.kind != "public" and use.key not in registry()]


def expected_kind(uses: list[borrowed.Use]) -> str:
    if any(use.kind == "private" for use in uses):
        return "private"
    return "override" if any(use.how == "override" for use in uses) else "undocumented"


def test_every_use_outside_the_documented_api_is_registered() -> None:
    missing = unregistered(report().uses)
    assert not missing, (
        "The code uses these names outside the libraries' documented API. Add each to "
        "BORROWED in storefront/internals.py with the reason it is needed (or, if a page of "
        f"the library's documentation describes it, to DOCUMENTED with that page; {UPGRADING}):"
        "\n- " + "\n- ".join(sorted(map(str, missing)))
    )


def test_every_entry_is_still_used() -> None:
    used = {use.key for use in report().uses}
    stale = [entry.path for key, entry in registry().items() if key not in used]
    assert not stale, (
        "storefront/internals.py registers names the code no longer uses; remove them:\n- "
        + "\n- ".join(stale)
    )


def test_each_entry_has_the_kind_its_uses_give_it() -> None:
    uses: dict[tuple[int, str], list[borrowed.Use]] = {}
    for use in report().uses:
        uses.setdefault(use.key, []).append(use)
    wrong = [
        f"{entry.path} is registered as {entry.kind}, used as {expected_kind(uses[key])}"
        for key, entry in registry().items()
        if key in uses and entry.kind != expected_kind(uses[key])
    ]
    assert not wrong, "\n".join(wrong)


def test_each_entry_names_a_library_walked() -> None:
    wrong = [
        entry.path
        for entry in internals.BORROWED
        if entry.library not in borrowed.LIBRARIES
        or entry.path.partition(".")[0].partition(":")[0] != entry.library
    ]
    assert not wrong, wrong


def test_every_documented_name_listed_is_still_used() -> None:
    used: set[str] = set()
    for use in report().uses:
        if use.kind != "public":
            continue
        if use.how == "override":
            entries = internals.documented_hooks(use.holder, use.name)
        else:
            entries = internals.documenting(use.holder, use.name)
        used |= {entry.path + repr(entry.names) for entry in entries}
    stale = [
        f"{entry.path} {entry.names}"
        for entry in (*internals.DOCUMENTED, *internals.HOOKS)
        if entry.path + repr(entry.names) not in used
    ]
    assert not stale, "DOCUMENTED / HOOKS list names the code no longer uses:\n- " + "\n- ".join(
        stale
    )


def test_every_library_reached_is_walked_or_set_aside() -> None:
    unknown = {
        library: where
        for library, where in report().libraries.items()
        if library not in borrowed.LIBRARIES and library not in borrowed.NOT_WALKED_LIBRARIES
    }
    assert not unknown, (
        "The code reaches libraries the walker neither reads nor sets aside (LIBRARIES and "
        f"NOT_WALKED_LIBRARIES in tests/borrowed.py): {unknown}"
    )


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


# The walker, on snippets: what it must report, so that the tests above cannot pass for want
# of finding anything.

SNIPPETS = [
    pytest.param(
        """
        from connexion.validators import FormDataValidator
        def f(validator: FormDataValidator) -> object:
            return validator._schema
        """,
        "connexion.validators.abstract:AbstractRequestBodyValidator._schema",
        "private",
        "read",
        id="a private attribute of an annotated parameter",
    ),
    pytest.param(
        """
        from connexion.uri_parsing import AbstractURIParser
        def f(parser: AbstractURIParser | None) -> object:
            return getattr(parser, "_body_encoding", None)
        """,
        "connexion.uri_parsing:AbstractURIParser._body_encoding",
        "private",
        "read",
        id="getattr with a literal name",
    ),
    pytest.param(
        """
        from connexion.spec import Specification
        original = Specification.__dict__.get("_validate_spec")
        """,
        "connexion.spec:Specification._validate_spec",
        "private",
        "read",
        id="a class's __dict__",
    ),
    pytest.param(
        """
        from connexion.spec import Specification
        Specification._validate_spec = classmethod(lambda cls, spec: None)
        """,
        "connexion.spec:Specification._validate_spec",
        "private",
        "assign",
        id="a class attribute assigned",
    ),
    pytest.param(
        """
        import connexion
        class App(connexion.AsyncApp):
            def __init__(self) -> None:
                super().__init__(__name__)
                self.middleware.app = None
        """,
        "connexion.middleware.main:ConnexionMiddleware.app",
        "undocumented",
        "assign",
        id="an attribute of an inherited attribute, assigned",
    ),
    pytest.param(
        """
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        class Protocol(HttpToolsProtocol):
            def on_body(self, body: bytes) -> None:
                self.transport.close()
        """,
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_body",
        "override",
        "override",
        id="a method overridden",
    ),
    pytest.param(
        """
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        class Protocol(HttpToolsProtocol):
            def on_body(self, body: bytes) -> None:
                self.transport.close()
        """,
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.transport",
        "undocumented",
        "read",
        id="an instance attribute of a base class",
    ),
    pytest.param(
        """
        from connexion.validators import JSONRequestBodyValidator
        class Mixin:
            def _validate(self, body: object) -> object:
                return super()._validate(body)
        class Validator(Mixin, JSONRequestBodyValidator):
            pass
        """,
        "connexion.validators.json:JSONRequestBodyValidator._validate",
        "private",
        "override",
        id="a private method overridden through a mixin",
    ),
    pytest.param(
        """
        from connexion.utils import make_type
        """,
        "connexion.utils:make_type",
        "undocumented",
        "import",
        id="an undocumented import",
    ),
    pytest.param(
        """
        from sqlalchemy import Connection, select
        def f(connection: Connection) -> object:
            compiled = select(1).compile(dialect=connection.dialect)
            return compiled.positional
        """,
        "sqlalchemy.sql.compiler:SQLCompiler.positional",
        "undocumented",
        "read",
        id="through the library's own annotations, on the subclass that has it",
    ),
    pytest.param(
        """
        from sqlalchemy.exc import DBAPIError
        def f(exc: BaseException) -> object:
            if isinstance(exc, DBAPIError):
                return exc.instance
            return None
        """,
        "sqlalchemy.exc:DBAPIError.instance",
        "undocumented",
        "read",
        id="a name narrowed by isinstance",
    ),
    pytest.param(
        """
        import uvloop
        class Loop(uvloop.Loop):
            async def create_server(self, *args: object, **kwargs: object) -> object:
                return await super().create_server(*args, **kwargs)
        """,
        "uvloop.loop:Loop.create_server",
        "override",
        "override",
        id="a method of a compiled class overridden",
    ),
]


@pytest.mark.parametrize(("source", "path", "kind", "how"), SNIPPETS)
def test_the_walker_reports(source: str, path: str, kind: str, how: str) -> None:
    uses = borrowed.uses_in(source)
    assert any((u.path, u.kind, u.how) == (path, kind, how) for u in uses), "\n".join(
        map(str, uses)
    )


PUBLIC = [
    pytest.param("from sqlalchemy import select", "sqlalchemy:select", id="a documented import"),
    pytest.param(
        """
        from sqlalchemy import Connection
        def f(connection: Connection) -> object:
            return connection.dialect.loaded_dbapi
        """,
        "sqlalchemy.engine.interfaces:Dialect.loaded_dbapi",
        id="a name of SQLAlchemy's Core Internals page",
    ),
    pytest.param(
        """
        import uvloop
        class Loop(uvloop.Loop):
            def serve(self) -> None:
                self.call_later(1, print)
        """,
        "uvloop.loop:Loop.call_later",
        id="an asyncio event loop method",
    ),
]


@pytest.mark.parametrize(("source", "path"), PUBLIC)
def test_the_walker_sets_apart_the_documented_api(source: str, path: str) -> None:
    uses = [u for u in borrowed.uses_in(source) if u.path == path]
    assert uses, f"{path} not found"
    assert all(u.kind == "public" for u in uses), uses


def test_what_the_walker_does_not_follow() -> None:
    """A value taken out of a dict, or a parameter annotated Any, has no type the walker can
    tell: what is reached through it is not seen (docs/development.md says so)."""
    uses = borrowed.uses_in(
        """
        from typing import Any
        def f(validators: dict[str, Any], validator: Any) -> object:
            return validators["body"]._schema, validator._schema
        """
    )
    assert uses == []


def test_a_use_the_registry_lacks_fails_the_registry_test() -> None:
    uses = borrowed.uses_in(
        """
        from connexion.validators import JSONRequestBodyValidator
        def f(validator: JSONRequestBodyValidator) -> object:
            return validator._strict_validation
        """
    )
    assert [u.path for u in unregistered(uses)] == [
        "connexion.validators.abstract:AbstractRequestBodyValidator._strict_validation"
    ]
