"""GET /rate_limit: the caller's budgets as the limiter counts them, read without spending
them, bounded by a budget of its own; through the real app, on each backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from core.settings import Settings
from persistence import clients as clients_repo
from storefront import admin
from storefront.app import create_app
from tests.helpers import assert_error

Headers = dict[str, str]
QUOTA = 50
READS = 5
#: A successful token request counts against its client's budget (the contract).
GRANT = 1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit": f"{QUOTA}/minute", "rate_limit_reads": f"{READS}/minute"}
    )


@pytest.fixture
def bearer(
    make_client: Callable[..., admin.NewClient], token_for: Callable[..., str]
) -> Callable[..., tuple[admin.NewClient, Headers]]:
    def make(scopes: str = "read") -> tuple[admin.NewClient, Headers]:
        client = make_client(scopes)
        return client, {"Authorization": f"Bearer {token_for(client)}"}

    return make


def _only_limit(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"limits", "uses", "rate_limit_reads"}
    assert body["uses"] is None
    assert len(body["limits"]) == 1
    limit: dict[str, Any] = body["limits"][0]
    return limit


@pytest.mark.stock_stack
def test_remaining_is_what_requests_spent_and_reading_spends_none(
    api: TestClient, bearer: Callable[..., tuple[admin.NewClient, Headers]]
) -> None:
    client, headers = bearer()
    for _ in range(3):
        last = api.get("/products", headers=headers)
        assert last.status_code == 200
    spent = GRANT + 3
    assert last.headers["X-RateLimit-Remaining"] == str(QUOTA - spent)

    shown = api.get("/rate_limit", headers=headers)
    assert shown.status_code == 200, shown.text
    assert shown.headers["Cache-Control"] == "no-store"
    limit = _only_limit(shown.json())
    assert limit["policy"] == "default"
    assert (limit["per"], limit["id"]) == ("client", client.client_id)
    assert (limit["quota"], limit["window"]) == (QUOTA, 60)
    assert (limit["used"], limit["remaining"]) == (spent, QUOTA - spent)
    # The window the requests opened: the reset they were told, give or take the rounding
    # of a window's milliseconds read at two moments.
    assert abs(limit["reset"] - int(last.headers["X-RateLimit-Reset"])) <= 1
    assert 0 <= limit["reset_in"] <= 60
    # The response's headers are the main budget's, as read: nothing spent.
    assert shown.headers["X-RateLimit-Remaining"] == str(QUOTA - spent)
    assert shown.headers["X-RateLimit-Limit"] == str(QUOTA)
    assert abs(int(shown.headers["X-RateLimit-Reset"]) - limit["reset"]) <= 1
    assert shown.headers["RateLimit-Policy"] == f'"default";q={QUOTA};w=60'
    assert "Retry-After" not in shown.headers

    again = api.get("/rate_limit", headers=headers).json()
    assert _only_limit(again)["remaining"] == QUOTA - spent
    reads = again["rate_limit_reads"]
    assert reads["policy"] == "rate_limit_reads"
    assert (reads["quota"], reads["used"], reads["remaining"]) == (READS, 2, READS - 2)
    # The next real request finds the budget where the others left it.
    assert api.get("/products", headers=headers).headers["X-RateLimit-Remaining"] == str(
        QUOTA - spent - 1
    )


def test_a_fresh_caller_has_its_whole_quota(
    api: TestClient,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[..., admin.NewApiKey],
) -> None:
    headers = {"X-API-Key": make_api_key(make_client("read").client_id).api_key}
    limit = _only_limit(api.get("/rate_limit", headers=headers).json())
    assert (limit["used"], limit["remaining"]) == (0, QUOTA)
    assert 59 <= limit["reset_in"] <= 60


def test_any_scope_may_ask(
    api: TestClient, bearer: Callable[..., tuple[admin.NewClient, Headers]]
) -> None:
    _, headers = bearer("write")
    assert api.get("/products", headers=headers).status_code == 403
    assert api.get("/rate_limit", headers=headers).status_code == 200


def test_a_clients_own_limit_shows_as_policy_client(
    api: TestClient,
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    token_for: Callable[..., str],
) -> None:
    client = make_client("read")
    admin.run(
        settings,
        lambda s: clients_repo.set_rate_limit(s, client_id=client.client_id, rate_limit="7/minute"),
    )
    headers = {"Authorization": f"Bearer {token_for(client)}"}  # the grant spends one
    api.get("/products", headers=headers)
    shown = api.get("/rate_limit", headers=headers)
    limit = _only_limit(shown.json())
    assert (limit["policy"], limit["quota"], limit["window"]) == ("client", 7, 60)
    assert limit["remaining"] == 7 - GRANT - 1
    assert shown.headers["RateLimit-Policy"] == '"client";q=7;w=60'


@pytest.mark.parametrize("field", ["X-API-Key", "Authorization"])
def test_an_api_keys_budget_shows(
    api: TestClient,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[..., admin.NewApiKey],
    field: str,
) -> None:
    key = make_api_key(make_client("read").client_id)
    headers = {field: key.api_key if field == "X-API-Key" else f"Bearer {key.api_key}"}
    for _ in range(2):
        assert api.get("/products", headers=headers).status_code == 200
    limit = _only_limit(api.get("/rate_limit", headers=headers).json())
    assert (limit["per"], limit["id"], limit["policy"]) == ("key", key.key_id, "default")
    assert limit["remaining"] == QUOTA - 2


def test_its_own_budget_gives_429_and_leaves_the_main_one_alone(
    api: TestClient, bearer: Callable[..., tuple[admin.NewClient, Headers]]
) -> None:
    _, headers = bearer()
    for n in range(READS):
        shown = api.get("/rate_limit", headers=headers)
        assert shown.status_code == 200
        assert shown.json()["rate_limit_reads"]["remaining"] == READS - 1 - n
    refused = api.get("/rate_limit", headers=headers)
    assert_error(refused, 429, "GET /rate_limit")
    assert refused.headers["RateLimit-Policy"] == f'"rate_limit_reads";q={READS};w=60'
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # None of it was the caller's main budget.
    assert api.get("/products", headers=headers).headers["X-RateLimit-Remaining"] == str(
        QUOTA - GRANT - 1
    )


def test_no_credential_is_401(api: TestClient) -> None:
    refused = api.get("/rate_limit")
    assert_error(refused, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_failed_authentication_counts_as_on_any_route(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth_failure_limit": "2/minute"}))
    with app.test_client() as api:
        bad = {"Authorization": "Bearer sk_not-a-key"}
        for _ in range(2):
            assert_error(api.get("/rate_limit", headers=bad), 401)
        assert_error(api.get("/rate_limit", headers=bad), 429)


def test_an_unreachable_store_serving_without_limits_has_nothing_to_show(
    settings: Settings,
    make_client: Callable[..., admin.NewClient],
    make_api_key: Callable[..., admin.NewApiKey],
) -> None:
    headers = {"X-API-Key": make_api_key(make_client("read").client_id).api_key}
    cut_off = settings.model_copy(
        update={"rate_limit_storage_url": "redis://127.0.0.1:1", "rate_limit_fail_open": True}
    )
    with create_app(cut_off).test_client() as api:
        assert api.get("/products", headers=headers).status_code == 200  # served, unlimited
        assert_error(api.get("/rate_limit", headers=headers), 503, "Rate limiting")
