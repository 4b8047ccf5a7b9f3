"""The ``storefront`` commands of credential lifecycles: ``keys create --expires-in``,
``keys list``, ``clients rotate-secret``."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from core.crypto import SecretDigester
from core.settings import Settings
from persistence import clients
from persistence.models import ApiKey, utcnow
from storefront import admin
from storefront.app import create_app
from tests.storefront.test_cli import run, run_json


def settings_of(_env: Path) -> Settings:
    return Settings(_env_file=None, validate_responses=True)  # type: ignore[call-arg]


def close_to(moment: str | None, expected: datetime) -> bool:
    assert moment is not None
    return abs(datetime.fromisoformat(moment) - expected) < timedelta(minutes=1)


def one_error_line(err: str) -> str:
    # Log lines (a key generated on first use, say) may precede it; the error is one line.
    [error] = [line for line in err.splitlines() if line.startswith("storefront: ")]
    return error


def test_keys_expire_and_the_list_shows_each_keys_lifecycle(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = run_json(capsys, "clients", "create", "--name", "shop", "--json")
    cid = client["client_id"]
    quarterly = run_json(
        capsys, "keys", "create", "--client-id", cid, "--expires-in", "90d", "--json"
    )
    assert list(quarterly) == ["key_id", "expires_at", "api_key"]
    assert close_to(quarterly["expires_at"], utcnow() + timedelta(days=90))

    code, out, _ = run(capsys, "keys", "create", "--client-id", cid, "--expires-in", "1w")
    assert code == 0
    key_line, expires_line, secret_line = out.splitlines()
    weekly = key_line.split()[1]
    assert expires_line.startswith("expires_at:")
    assert expires_line.endswith("Z")
    assert close_to(expires_line.split(maxsplit=1)[1], utcnow() + timedelta(weeks=1))
    assert secret_line.endswith("(shown only now)")

    forever = run_json(capsys, "keys", "create", "--client-id", cid, "--json")
    assert forever["expires_at"] is None
    soon = run_json(capsys, "keys", "create", "--client-id", cid, "--expires-in", "30m", "--json")
    revoked = run_json(capsys, "keys", "create", "--client-id", cid, "--json")
    assert run(capsys, "keys", "revoke", revoked["key_id"])[0] == 0

    settings = settings_of(env)

    def time_passes(session: Session) -> None:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == soon["key_id"])
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )

    admin.run(settings, time_passes)
    with TestClient(create_app(settings)) as api:
        for _ in range(5):
            assert api.get("/users", headers={"X-API-Key": quarterly["api_key"]}).status_code == 200
        expired = api.get("/users", headers={"X-API-Key": soon["api_key"]})
        assert expired.status_code == 401
        assert expired.json() == {"error": "Unauthorized", "message": "The API key has expired."}
        assert expired.headers["WWW-Authenticate"].startswith("Bearer")
    # Leaving the client waited for the last-use writes.

    listed = {k["key_id"]: k for k in run_json(capsys, "keys", "list", "--json")}
    assert {k: v["status"] for k, v in listed.items()} == {
        quarterly["key_id"]: "active",
        weekly: "active",
        forever["key_id"]: "active",
        soon["key_id"]: "expired",
        revoked["key_id"]: "revoked",
    }
    assert close_to(listed[quarterly["key_id"]]["last_used_at"], utcnow())
    assert listed[forever["key_id"]]["last_used_at"] is None
    assert listed[soon["key_id"]]["last_used_at"] is None  # refused: not a use
    assert listed[quarterly["key_id"]]["expires_at"] == quarterly["expires_at"]
    assert listed[quarterly["key_id"]]["prefix"] == quarterly["api_key"][:11]

    code, out, _ = run(capsys, "keys", "list", "--client-id", cid)
    assert code == 0
    header, *lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines}
    assert header.startswith("KEY ID")
    assert rows[quarterly["key_id"]].split()[1:4] == [quarterly["api_key"][:11], cid, "active"]
    assert rows[soon["key_id"]].split()[3] == "expired"
    assert rows[revoked["key_id"]].split()[3] == "revoked"
    # EXPIRES and LAST USED: "never" when there is none, else the time as --json gives it
    # (RFC 3339 in UTC, to the second); USES LEFT "-" for a key without uses.
    assert rows[forever["key_id"]].split()[-3:] == ["never", "never", "-"]
    cells = rows[quarterly["key_id"]].split()
    assert len(cells) == 8  # id, prefix, client, status, three times and the uses left
    assert cells[5] == quarterly["expires_at"]
    assert cells[6] == listed[quarterly["key_id"]]["last_used_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cells[6])
    assert {line.index(" active") for line in lines if " active" in line} == {
        header.index(" STATUS")
    }
    for key in (quarterly, forever, soon):
        assert key["api_key"][11:] not in out + json.dumps(listed)


def test_a_key_made_before_prefixes_were_kept_shows_none(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = run_json(capsys, "clients", "create", "--name", "old", "--json")["client_id"]
    digest = SecretDigester(b"any pepper").digest("sk_old")
    old = admin.run(
        settings_of(env), lambda s: clients.create_api_key(s, client_id=cid, digest=digest).id
    )
    [listed] = run_json(capsys, "keys", "list", "--json")
    assert (listed["key_id"], listed["prefix"], listed["status"]) == (old, None, "active")
    _, out, _ = run(capsys, "keys", "list")
    assert out.splitlines()[1].split()[:4] == [old, "-", cid, "active"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["keys", "create", "--expires-in", "90"],
            "--expires-in must be a whole number and a unit",
        ),
        (["keys", "create", "--expires-in", "90x"], "as 30m, 12h, 90d or 1w; got '90x'"),
        (["keys", "create", "--expires-in", "0d"], "--expires-in must be a whole number"),
        (["keys", "create", "--expires-in", "0"], "--expires-in must be a whole number"),
        (["keys", "create", "--expires-in=-1d"], "got '-1d'"),
        (["keys", "create", "--expires-in", "1.5h"], "got '1.5h'"),
        (["keys", "create", "--expires-in", "1d12h"], "got '1d12h'"),
        (["keys", "create", "--expires-in", "3651d"], "--expires-in must be at most 3650d"),
        (["keys", "create", "--expires-in", "9999999w"], "at most 3650d"),
        (["clients", "rotate-secret", "CID", "--grace", "soon"], "--grace must be 0 or a whole"),
        (["clients", "rotate-secret", "CID", "--grace", "31d"], "--grace must be at most 30d"),
        (["clients", "rotate-secret", "cli_nope"], "No client with id 'cli_nope'"),
    ],
)
def test_lifecycle_mistakes_are_one_line_errors(
    env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    cid = run_json(capsys, "clients", "create", "--name", "shop", "--json")["client_id"]
    argv = [cid if arg == "CID" else arg for arg in argv]
    if argv[:2] == ["keys", "create"]:
        argv += ["--client-id", cid]
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert needle in one_error_line(err)
    assert "Traceback" not in out + err
    assert run_json(capsys, "keys", "list", "--json") == []  # nothing was made


def test_rotate_secret_with_a_grace(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    created = run_json(capsys, "clients", "create", "--name", "shop", "--json")
    rotated = run_json(capsys, "clients", "rotate-secret", created["client_id"], "--json")
    assert list(rotated) == ["client_id", "previous_secret_expires_at", "client_secret"]
    assert rotated["client_id"] == created["client_id"]
    assert rotated["client_secret"] != created["client_secret"]
    assert close_to(rotated["previous_secret_expires_at"], utcnow() + timedelta(hours=24))
    # The list says a grace is running, and shows neither secret.
    listed = run_json(capsys, "clients", "list", "--json")
    assert [c["previous_secret_expires_at"] for c in listed] == [
        rotated["previous_secret_expires_at"]
    ]
    assert created["client_secret"] not in json.dumps(listed)
    assert rotated["client_secret"] not in json.dumps(listed)

    with TestClient(create_app(settings_of(env))) as api:
        for secret in (created["client_secret"], rotated["client_secret"]):
            form = {
                "grant_type": "client_credentials",
                "client_id": created["client_id"],
                "client_secret": secret,
            }
            assert api.post("/auth/token", data=form).status_code == 200

        # At once: the secret before stops working; the one replaced has a grace of 1h.
        code, out, _ = run(capsys, "clients", "rotate-secret", created["client_id"], "--grace", "0")
        assert code == 0
        id_line, grace_line, secret_line = out.splitlines()
        assert id_line.split() == ["client_id:", created["client_id"]]
        assert grace_line.split(maxsplit=1) == [
            "previous_secret_expires_at:",
            "stopped working now",
        ]
        assert secret_line.endswith("(shown only now)")
        newest = secret_line.split()[1]
        for secret, status in [
            (created["client_secret"], 401),
            (rotated["client_secret"], 401),
            (newest, 200),
        ]:
            form = {
                "grant_type": "client_credentials",
                "client_id": created["client_id"],
                "client_secret": secret,
            }
            assert api.post("/auth/token", data=form).status_code == status

    assert run_json(capsys, "clients", "list", "--json")[0]["previous_secret_expires_at"] is None
    code, out, _ = run(capsys, "clients", "rotate-secret", created["client_id"], "--grace", "12h")
    assert code == 0
    grace_line = out.splitlines()[1]
    assert grace_line.startswith("previous_secret_expires_at: works until ")
    until = grace_line.split()[-1]  # "2026-11-28T23:00:00Z", as --json gives it
    assert close_to(until, utcnow() + timedelta(hours=12))
