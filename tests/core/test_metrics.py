"""/metrics: Prometheus' format, the counters operators need, and who may read it."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from core.settings import Settings
from storefront import admin
from storefront.app import create_app

#: Of what the stacks do differently: also on Connexion's stock stack (tests/conftest.py).
pytestmark = pytest.mark.stock_stack


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


def test_requests_tokens_failures_and_refusals_are_counted(
    settings: Settings, make_client: Callable[..., admin.NewClient]
) -> None:
    limited = settings.model_copy(update={"rate_limit": "3/minute"})
    with TestClient(create_app(limited)) as api:
        before = api.get("/metrics").text
        client = make_client("read")
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        token = api.post("/auth/token", data=form).json()["access_token"]  # 1 of 3
        bearer = {"Authorization": f"Bearer {token}"}
        api.get("/users/user_missing000", headers=bearer)  # 2 of 3, a 404
        api.get("/users", headers=bearer)  # 3 of 3
        assert api.get("/users", headers=bearer).status_code == 429
        api.get("/users", headers={"Authorization": "Bearer forged"})
        api.get("/users")
        response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    requests = "storefront_requests_total"
    assert grew(requests, method="GET", path="/users/{id}", status="404") == 1
    assert grew(requests, method="GET", path="/users", status="429") == 1
    assert grew(requests, method="POST", path="/auth/token", status="200") == 1
    latency = "storefront_request_duration_seconds_count"
    assert grew(latency, method="GET", path="/users", status="200") == 1
    assert grew("storefront_tokens_issued_total") == 1
    assert grew("storefront_rate_limited_total", policy="default") == 1
    assert grew("storefront_auth_failures_total", reason="invalid_credentials") == 1
    assert grew("storefront_auth_failures_total", reason="no_credentials") == 1


def test_metrics_can_need_a_token(settings: Settings) -> None:
    guarded = settings.model_copy(
        update={
            "metrics_access": "token",
            "metrics_token": SecretStr("metrics-token-0123456789abcdef"),
        }
    )
    with TestClient(create_app(guarded)) as api:
        refused = api.get("/metrics")
        assert refused.status_code == 401
        assert set(refused.json()) == {"error", "message"}
        assert api.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        right = ("Authorization", "Bearer metrics-token-0123456789abcdef")
        allowed = api.get("/metrics", headers=[right])
        assert allowed.status_code == 200
        # The right token beside another is not taken: one field, one credential.
        twice = api.get("/metrics", headers=[right, ("Authorization", "Bearer wrong")])
        assert twice.status_code == 401


def test_metrics_can_be_off(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"metrics_access": "off"}))) as api:
        response = api.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


def test_cors_is_off_by_default(api: TestClient) -> None:
    response = api.get("/healthz", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins(
    settings: Settings, auth: Callable[..., dict[str, str]]
) -> None:
    cors = settings.model_copy(update={"cors_origins": ["https://shop.example"]})
    with TestClient(create_app(cors)) as api:
        preflight = api.options(
            "/users",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        response = api.get("/healthz", headers={"Origin": "https://shop.example"})
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        exposed = response.headers["access-control-expose-headers"]
        assert "X-RateLimit-Remaining" in exposed
        assert "X-Request-ID" in exposed
        stranger = api.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
