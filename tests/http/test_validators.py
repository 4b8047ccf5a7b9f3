"""Request validation messages: they name the field and never echo what was sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

SECRET = "hunter2"  # 7 characters: one too few, so the request is rejected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "A", "email": "a@example.com", "password": SECRET},
            "'password' must be at least 8",
        ),
        (
            {"name": "A", "email": "a@example.com", "password": SECRET * 20},
            "'password' must be at most 128",
        ),
        (
            {"name": " \t", "email": "a@example.com", "password": "long-enough"},
            "'name' must be 1 to 100 characters",
        ),
        (
            {"name": "A", "email": "not-an-email", "password": "long-enough"},
            "'email' is not a valid",
        ),
        (
            {"name": 7, "email": "a@example.com", "password": "long-enough"},
            "'name' must be of type",
        ),
        ({"email": "a@example.com", "password": "long-enough"}, "'name' is a required property"),
        (
            {"name": "A", "email": "a@example.com", "password": "long-enough", "id": "x"},
            "'id' was unexpected",
        ),
        ([], "The request body must be of type object"),
    ],
)
def test_body_errors_name_the_field(
    api: TestClient,
    auth: Callable[..., dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    body: object,
    message: str,
) -> None:
    response = api.post("/users", headers=auth(), json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert message in response.json()["message"]
    assert SECRET not in response.text
    assert SECRET not in caplog.text


def test_parameter_errors_name_the_parameter(
    api: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    response = api.get("/users", params={"limit": "lots"}, headers=auth())
    assert response.status_code == 400
    assert "'limit'" in response.json()["message"]


def test_a_body_that_is_not_utf8_is_a_400(
    api: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = api.post("/users", headers=headers, content=b'{"name": "\xff"}')
    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": "The request body is not valid UTF-8.",
    }
