"""The README and docs/, taken at their word: their commands and examples are what the project
does, their settings table is complete, and their links lead somewhere inside the repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from persistence.revisions import head_revision
from tests.servers import Server, clean_env, demo_server, free_port, serving

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
#: The pages the README sends readers to (the examples are in api, the settings in configuration).
PAGES = ("api", "configuration", "operations", "development", "performance", "architecture")
API = (DOCS / "api.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
README_MAX_LINES = 220  # the front door; depth belongs in docs/


def example(language: str) -> str:
    match = re.search(rf"<!-- example:{language} -->\s*```\w+\n(.*?)```", API, re.DOTALL)
    assert match, f"no {language} example in docs/api.md"
    return match.group(1)


def fenced_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    run, test = fenced_commands()[:2]
    assert "storefront serve --demo" in run
    assert "pytest" in test
    assert README.index(run) < README.index("## ")  # before any section: the first thing
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_server(tmp_path_factory.mktemp("readme")) as running:
        yield running


def credentials(server: Server) -> dict[str, str]:
    found = dict(re.findall(r"(client_id|client_secret):\s+(\S+)", server.output))
    return {
        **server.env,
        "BASE": server.base,
        "CLIENT_ID": found["client_id"],
        "CLIENT_SECRET": found["client_secret"],
    }


def run(command: list[str], server: Server, tmp_path: Path) -> str:
    done = subprocess.run(
        command,
        env=credentials(server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_curl_example(server: Server, tmp_path: Path) -> None:
    out = run(["bash", "-c", example("curl")], server, tmp_path)
    assert "Charles Chaplin" in out
    assert "204" in out
    assert "Gadget Pro" in out


def test_python_example(server: Server, tmp_path: Path) -> None:
    out = run([sys.executable, "-c", example("python")], server, tmp_path)
    assert "Ada King" in out
    assert "Gadget Pro 99.99" in out


def test_javascript_example(server: Server, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "example.mjs"
    script.write_text(example("javascript"), encoding="utf-8")
    out = run([node, str(script)], server, tmp_path)
    assert "Rear Admiral Hopper" in out
    assert "Stylish T-Shirt" in out


def test_retry_and_optimistic_update_examples(server: Server, tmp_path: Path) -> None:
    retry = run(["bash", "-c", example("curl-retry")], server, tmp_path)
    assert "idempotent-replayed: true" in retry.lower()
    assert retry.count("Mary Shelley") == 1  # the user, read back once

    not_modified, new_tag, refused, status, _ = run(
        ["bash", "-c", example("curl-etag")], server, tmp_path
    ).split("\n")
    assert not_modified == "304"
    assert new_tag == '"2"'  # the user's second version
    assert status == "412"
    assert json.loads(refused)["error"] == "Precondition Failed"

    out = run([sys.executable, "-c", example("python-retry")], server, tmp_path)
    created, replayed = re.findall(r"created (\S+) replayed (\S+)", out)[0]
    assert created == replayed
    assert "Idempotent-Replayed: true" in out
    assert "renamed: PERCY SHELLEY" in out


def test_writing_products_example(server: Server, tmp_path: Path) -> None:
    out = run(["bash", "-c", example("curl-products")], server, tmp_path)
    found, updated, refused, invalid, deleted, missing = [x for x in out.splitlines() if x]
    assert any(p["name"] == "Walnut Board" for p in json.loads(found))
    assert json.loads(updated)["price"] == 29.99
    assert refused == "412"
    assert "'price'" in json.loads(invalid)["message"]
    assert deleted == "204"
    assert json.loads(missing) == {
        "error": "Product not found",
        "message": "The specified product ID does not exist.",
    }


def test_rate_limit_example_shows_what_was_spent(server: Server, tmp_path: Path) -> None:
    shown = json.loads(run(["bash", "-c", example("curl-rate-limit")], server, tmp_path))
    [limit] = shown["limits"]
    # At least the token request and GET /products (the module's other examples use the same
    # demo client, which has the default budget); asking spent none of it.
    assert (limit["policy"], limit["per"]) == ("default", "client")
    assert limit["used"] >= 2
    assert limit["remaining"] == limit["quota"] - limit["used"]
    assert shown["uses"] is None
    assert shown["rate_limit_reads"]["used"] >= 1


def test_scopes_example_reads_users_and_is_refused_products(server: Server, tmp_path: Path) -> None:
    out = run(["bash", "-c", example("curl-scopes")], server, tmp_path)
    scope, status, head, *rest = out.splitlines()
    assert (scope, status) == ("users:read", "200")
    assert head.startswith("HTTP/1.1 403")
    fields = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(": ") for line in rest)
        if value
    }
    assert fields["www-authenticate"] == (
        'Bearer realm="storefront", error="insufficient_scope", scope="products:read"'
    )
    assert json.loads(rest[-1]) == {
        "error": "Forbidden",
        "message": "This operation needs the scope 'products:read' (or 'read'); the credential "
        "grants 'users:read'.",
    }


@pytest.fixture(scope="module", params=["EdDSA", "ES256"])
def asymmetric_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = clean_env(STOREFRONT_JWT_ALGORITHM=request.param)
    with demo_server(tmp_path_factory.mktemp("jwks"), env) as running:
        yield running


def test_resource_server_example_checks_tokens_with_the_jwks_alone(
    asymmetric_server: Server, tmp_path: Path
) -> None:
    out = run([sys.executable, "-c", example("python-jwks")], asymmetric_server, tmp_path)
    client_id = credentials(asymmetric_server)["CLIENT_ID"]
    assert out.splitlines() == [f"accepted: {client_id} read", "refused: InvalidSignatureError"]


@pytest.mark.parametrize("nonce", ["false", "true"])
def test_the_dpop_example_binds_its_token_and_is_refused_as_bearer(
    tmp_path: Path, nonce: str
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = clean_env(STOREFRONT_PUBLIC_URL=public, STOREFRONT_DPOP_NONCE=nonce)
    with serving(tmp_path, env, "--demo", port=port) as running:
        out = run([sys.executable, "-c", example("python-dpop")], running, tmp_path)
    assert out.splitlines() == [
        "token_type: DPoP",
        "with a proof: 200",
        'as a bearer token: 401 error="invalid_token"',
    ]


def test_the_readyz_example_names_the_revision_the_server_reports(server: Server) -> None:
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    documented = re.search(r'"migrations": \{"status": "ok", "reason": "([^"]+)"\}', operations)
    assert documented, "no /readyz example in docs/operations.md"
    ready = httpx.get(f"{server.base}/readyz", timeout=10).json()
    assert ready["checks"]["migrations"] == {"status": "ok", "reason": documented.group(1)}
    assert documented.group(1) == f"at {head_revision()}, as this code expects"


def test_the_configuration_table_lists_every_setting() -> None:
    from core.settings import Settings

    for name in Settings.model_fields:
        assert f"| `STOREFRONT_{name.upper()}` |" in CONFIGURATION, name


def test_the_readme_is_a_front_door_that_leads_to_every_page() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the depth into docs/"
    for page in PAGES:
        assert f"](docs/{page}.md" in README, f"the README does not link docs/{page}.md"


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


#: Phrases that tell a story of the project rather than what it does. History belongs in
#: CHANGELOG.md; the README and docs/ say what is. Each is one no present-tense description
#: needs ("the seed" is the API description the project started from; "used to" only after a
#: subject, so that "a key used to sign" passes).
CHANGELOG_PHRASES = re.compile(
    r"\bthe seed\b|\bbefore this change\b|\b(?:it|they|this|that|which|we|there) used to\b"
    r"|\bno longer\b|\bis being added\b|\bwas fixed\b|\bwhat holds now\b"
)


@pytest.mark.parametrize(
    "document", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name
)
def test_the_manual_says_what_is_not_what_changed(document: Path) -> None:
    text = " ".join(document.read_text(encoding="utf-8").lower().split())
    found = CHANGELOG_PHRASES.findall(text)
    assert not found, f"{document.name} reads as a changelog ({found}): say what it does today"


FENCE = re.compile(r"^ *```.*?^ *```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(document: Path) -> str:
    """The text of a document outside its fenced blocks (where `#` starts a comment)."""
    return FENCE.sub("", document.read_text(encoding="utf-8"))


def anchors(document: Path) -> set[str]:
    """The fragments GitHub gives the document's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(document), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_no_document_names_a_path_outside_the_repository() -> None:
    # A clone has nothing beside it. A link may climb out of docs/ to the repository's top, never
    # further; anywhere else (a code span, a sentence, a code block) paths are read from the
    # repository's top, so `../` there always names something a clone does not have.
    for document in documents():
        text = document.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            where = (document.parent / target.partition("#")[0]).resolve()
            assert where.is_relative_to(ROOT), f"{document.name} links {target}, outside the repo"
        named = re.findall(r"(?:\.\./)+[\w.\-/]*", LINK.sub("", text))
        assert not named, f"{document.name} names {named}, outside the repository"


def test_every_relative_link_resolves() -> None:
    for document in documents():
        for target in LINK.findall(prose(document)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http://, https://, mailto:
                continue
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            name = f"{document.relative_to(ROOT)}: {target}"
            assert linked.is_relative_to(ROOT), f"{name} leaves the repository"
            assert linked.is_file(), f"{name} is not a file"
            if fragment and linked.suffix == ".md":
                assert fragment in anchors(linked), f"{name}: no such heading"
