"""Client authentication with a signed assertion (``private_key_jwt``, RFC 7523, with the
audience of draft-ietf-oauth-rfc7523bis) at /auth/token, /auth/revoke and /auth/introspect.

Each refusal is shown beside the acceptance it differs from: the same client, a good
assertion accepted, then the one thing wrong refused, with the message that names it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from core.settings import Settings
from storefront import admin
from storefront.app import create_app
from tests.client_keys import KeyPair, assertion, assertion_form, jwks
from tests.handlers.test_auth import assert_oauth_error, basic

GRANT = {"grant_type": "client_credentials"}
ISSUER = "storefront-api"  # the settings' default issuer
MakeKeyClient = Callable[..., admin.NewKeyClient]


@pytest.fixture
def make_key_client(settings: Settings) -> MakeKeyClient:
    """A client with no secret and these keys (or the URL of its key set)."""

    def make(*pairs: KeyPair, jwks_uri: str | None = None, scopes: str = "read") -> Any:
        keys = admin.ClientKeySource(jwks=jwks(*pairs) if pairs else None, jwks_uri=jwks_uri)
        parsed = admin.parse_scopes(scopes)
        return admin.run(
            settings, lambda s: admin.create_key_client(s, name="k", scopes=parsed, keys=keys)
        )

    return make


def token(api: TestClient, signed: str, **extra: str) -> Response:
    return api.post("/auth/token", data={**GRANT, **assertion_form(signed), **extra})


def assert_refused(response: Response, words: str) -> None:
    body = assert_oauth_error(response, 401, "invalid_client")
    assert words in body["message"], body["message"]


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256", "PS256"])
def test_a_client_without_a_secret_gets_a_token_with_an_assertion(
    api: TestClient, make_key_client: MakeKeyClient, algorithm: str
) -> None:
    pair = KeyPair.new(algorithm)
    client = make_key_client(pair, scopes="read write")
    response = token(api, assertion(pair, client.client_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "read write"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == client.client_id
    users = api.get("/users", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert users.status_code == 200


def test_the_form_client_id_may_be_sent_and_must_match(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    ok = token(api, assertion(pair, client.client_id), client_id=client.client_id)
    assert ok.status_code == 200, ok.text
    other = token(api, assertion(pair, client.client_id), client_id="cli_someoneelse")
    assert_refused(other, "'sub' is not the form's client_id")


def test_a_replayed_assertion_is_refused(api: TestClient, make_key_client: MakeKeyClient) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    signed = assertion(pair, client.client_id)
    assert token(api, signed).status_code == 200
    assert_refused(token(api, signed), "was used before")
    # The same jti signed anew is the same assertion to the server.
    jti = jwt.decode(signed, options={"verify_signature": False})["jti"]
    assert_refused(token(api, assertion(pair, client.client_id, jti=jti)), "was used before")


def test_the_jti_is_remembered_by_every_instance_on_the_store(
    api: TestClient, settings: Settings, make_key_client: MakeKeyClient, backend: str
) -> None:
    """Two apps on one database and one rate-limit store: on the SQLite run the store is in
    memory, one per process, so the second app here shares the first's process but not its
    memory; the PostgreSQL run shares Redis, as instances on several machines would."""
    if backend == "sqlite":
        pytest.skip("memory:// is each app's own; tests/test_oauth_client_keys.py covers Redis")
    pair = KeyPair.new()
    client = make_key_client(pair)
    signed = assertion(pair, client.client_id)
    with create_app(settings).test_client() as other_instance:
        assert token(api, signed).status_code == 200
        assert_refused(token(other_instance, signed), "was used before")


def test_an_expired_assertion_is_refused(api: TestClient, make_key_client: MakeKeyClient) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    # A few seconds of clock skew are tolerated.
    assert token(api, assertion(pair, client.client_id, expires_in=-2)).status_code == 200
    assert_refused(token(api, assertion(pair, client.client_id, expires_in=-30)), "has expired")


def test_an_assertion_valid_for_more_than_five_minutes_is_refused(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id, expires_in=295)).status_code == 200
    too_long = assertion(pair, client.client_id, expires_in=3600)  # Authlib's default
    assert_refused(token(api, too_long), "at most 300 seconds ahead")


def test_the_audience_is_the_issuer_identifier(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id, aud=ISSUER)).status_code == 200
    for wrong in ("https://other.example", "http://testserver/auth/token"):
        refused = token(api, assertion(pair, client.client_id, aud=wrong))
        assert_refused(refused, f"'aud' must be this server's issuer identifier: '{ISSUER}'")
    # rfc7523bis: the issuer as the one audience, not one of several.
    several = assertion(pair, client.client_id, aud=[ISSUER, "https://other.example"])
    assert_refused(token(api, several), "must be one value")
    assert token(api, assertion(pair, client.client_id, aud=[ISSUER])).status_code == 200
    assert_refused(token(api, assertion(pair, client.client_id, aud=None)), "no 'aud' claim")


def test_the_token_endpoint_url_is_an_audience_too_when_it_is_absolute(
    settings: Settings, make_key_client: MakeKeyClient
) -> None:
    public = settings.model_copy(
        update={"public_url": "https://api.example.com", "issuer": "https://id.example.com"}
    )
    pair = KeyPair.new()
    client = make_key_client(pair)
    with create_app(public).test_client() as api:
        for aud in ("https://id.example.com", "https://api.example.com/auth/token"):
            assert token(api, assertion(pair, client.client_id, aud=aud)).status_code == 200
        refused = token(api, assertion(pair, client.client_id, aud="storefront-api"))
        assert_refused(refused, "'https://id.example.com' or 'https://api.example.com/auth/token'")


def test_an_assertion_signed_by_another_key_is_refused(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    # Another key under the registered key's kid: the signature does not verify.
    impostor = KeyPair.new(kid=pair.kid)
    assert_refused(token(api, assertion(impostor, client.client_id)), "does not verify")
    # A key the client never registered.
    stranger = KeyPair.new()
    assert_refused(token(api, assertion(stranger, client.client_id)), "this server does not hold")
    # The registered key's kind, another algorithm than its own.
    eddsa = KeyPair.new("EdDSA", kid=pair.kid)
    assert_refused(token(api, assertion(eddsa, client.client_id)), "signs with EdDSA")


def test_unsigned_and_hmac_assertions_are_refused(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    claims = jwt.decode(assertion(pair, client.client_id), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_refused(token(api, unsigned), "signed with 'none'")
    hmac = jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": pair.kid})
    assert_refused(token(api, hmac), "signed with 'HS256'")
    assert_refused(token(api, "not-a-jwt"), "not a signed JWT")


def test_iss_and_sub_are_the_client_id(api: TestClient, make_key_client: MakeKeyClient) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    other_iss = assertion(pair, client.client_id, iss="someone")
    assert_refused(token(api, other_iss), "'iss' must be the client id")
    # Another client's id as sub: that client's keys do not verify it.
    stranger = make_key_client(KeyPair.new())
    assert_refused(token(api, assertion(pair, stranger.client_id)), "this server does not hold")


def test_a_client_without_a_secret_cannot_authenticate_with_one(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    for secret in ("", "guess", " "):
        by_basic = api.post("/auth/token", data=GRANT, headers=basic(client.client_id, secret))
        assert_refused(by_basic, "Client authentication failed.")
    by_form = api.post(
        "/auth/token", data={**GRANT, "client_id": client.client_id, "client_secret": "x"}
    )
    assert_refused(by_form, "Client authentication failed.")


def test_a_client_with_a_secret_needs_keys_to_use_an_assertion(
    api: TestClient, settings: Settings, make_client: Callable[..., admin.NewClient]
) -> None:
    client = make_client("read")
    pair = KeyPair.new()
    refused = token(api, assertion(pair, client.client_id))
    assert_refused(refused, "has no registered keys")
    # Given keys, it may use either.
    keys = admin.ClientKeySource(jwks=jwks(pair))
    admin.run(settings, lambda s: admin.set_client_keys(s, client_id=client.client_id, keys=keys))
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    secret = {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret}
    assert api.post("/auth/token", data=secret).status_code == 200


def test_one_means_of_authentication_at_a_time(
    api: TestClient, settings: Settings, make_client: Callable[..., admin.NewClient]
) -> None:
    client = make_client("read")
    pair = KeyPair.new()
    keys = admin.ClientKeySource(jwks=jwks(pair))
    admin.run(settings, lambda s: admin.set_client_keys(s, client_id=client.client_id, keys=keys))
    signed = assertion(pair, client.client_id)
    both = token(api, signed, client_secret=client.client_secret, client_id=client.client_id)
    assert_oauth_error(both, 400, "invalid_request")
    with_basic = api.post(
        "/auth/token",
        data={**GRANT, **assertion_form(signed)},
        headers=basic(client.client_id, client.client_secret),
    )
    assert (
        "Authenticate by one means"
        in assert_oauth_error(with_basic, 400, "invalid_request")["message"]
    )
    half = api.post("/auth/token", data={**GRANT, "client_assertion": signed})
    assert "together" in assert_oauth_error(half, 400, "invalid_request")["message"]
    other_type = api.post(
        "/auth/token",
        data={**GRANT, **assertion_form(signed), "client_assertion_type": "urn:x:saml2-bearer"},
    )
    assert_refused(other_type, "jwt-bearer")
    assert token(api, signed).status_code == 200  # none of the above spent the jti


def test_a_disabled_client_cannot_authenticate_with_an_assertion(
    api: TestClient, settings: Settings, make_key_client: MakeKeyClient
) -> None:
    from persistence import clients

    pair = KeyPair.new()
    client = make_key_client(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    admin.run(settings, lambda s: clients.disable_client(s, client_id=client.client_id))
    assert_refused(token(api, assertion(pair, client.client_id)), "Client authentication failed.")


def test_revoke_and_introspect_take_assertions(
    api: TestClient, make_key_client: MakeKeyClient
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    access = token(api, assertion(pair, client.client_id)).json()["access_token"]
    looked = api.post(
        "/auth/introspect",
        data={"token": access, **assertion_form(assertion(pair, client.client_id))},
    )
    assert looked.status_code == 200, looked.text
    assert looked.json()["active"] is True
    assert looked.json()["client_id"] == client.client_id
    signed = assertion(pair, client.client_id)
    revoked = api.post("/auth/revoke", data={"token": access, **assertion_form(signed)})
    assert revoked.status_code == 200, revoked.text
    again = api.post(
        "/auth/introspect",
        data={"token": access, **assertion_form(assertion(pair, client.client_id))},
    )
    assert again.json() == {"active": False}
    # The revocation's assertion was spent there: replayed at introspection, it is refused.
    replayed = api.post("/auth/introspect", data={"token": access, **assertion_form(signed)})
    assert_refused(replayed, "was used before")
    expired = assertion(pair, client.client_id, expires_in=-60)
    assert_refused(
        api.post("/auth/revoke", data={"token": access, **assertion_form(expired)}), "expired"
    )


def test_refused_assertions_count_against_the_failure_budget(
    settings: Settings, make_key_client: MakeKeyClient, rate_limit_storage_url: str
) -> None:
    limited = settings.model_copy(
        update={
            "auth_failure_limit": "3/minute",
            "rate_limit_storage_url": rate_limit_storage_url,
            "rate_limit_key_prefix": f"test-{uuid.uuid4().hex}",
        }
    )
    pair = KeyPair.new()
    client = make_key_client(pair)
    with TestClient(create_app(limited), client=("198.51.100.20", 50000)) as api:
        signed = assertion(pair, client.client_id)
        assert token(api, signed).status_code == 200
        for _ in range(3):
            assert_refused(token(api, signed), "was used before")
        over = token(api, assertion(pair, client.client_id))  # a good one, past the budget
        assert over.status_code == 429, over.text
        assert over.headers["RateLimit-Policy"] == '"auth-failures";q=3;w=60'


def test_set_jwks_replaces_the_keys_on_every_instance_at_once(
    api: TestClient, settings: Settings, make_key_client: MakeKeyClient
) -> None:
    old, new = KeyPair.new("ES256"), KeyPair.new("EdDSA")
    client = make_key_client(old)
    with create_app(settings).test_client() as other_instance:
        for instance in (api, other_instance):
            assert token(instance, assertion(old, client.client_id)).status_code == 200
        keys = admin.ClientKeySource(jwks=jwks(new))
        admin.run(
            settings, lambda s: admin.set_client_keys(s, client_id=client.client_id, keys=keys)
        )
        for instance in (api, other_instance):
            assert token(instance, assertion(new, client.client_id)).status_code == 200
            assert_refused(token(instance, assertion(old, client.client_id)), "does not hold")


# --- keys published at a URL (jwks_uri) ------------------------------------------------------


class KeySetServer:
    """A client's key set at a URL of its own, changed as the client changes it."""

    def __init__(self) -> None:
        self.document = '{"keys": []}'
        self.status = 200
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = owner.document.encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, *pairs: KeyPair) -> None:
        self.document = jwks(*pairs)


@pytest.fixture
def key_set_server() -> Iterator[KeySetServer]:
    server = KeySetServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_keys_published_at_a_url_are_fetched_kept_and_refetched_for_a_new_kid(
    api: TestClient, make_key_client: MakeKeyClient, key_set_server: KeySetServer
) -> None:
    first = KeyPair.new()
    key_set_server.publish(first)
    client = make_key_client(jwks_uri=key_set_server.url)
    for _ in range(3):
        assert token(api, assertion(first, client.client_id)).status_code == 200
    assert key_set_server.fetches == 1  # kept (STOREFRONT_JWKS_CACHE_TTL)
    # The client publishes a second key and signs with it: fetched again at once.
    second = KeyPair.new("EdDSA")
    key_set_server.publish(first, second)
    assert token(api, assertion(second, client.client_id)).status_code == 200
    assert key_set_server.fetches == 2
    # An unknown kid refetches at most once per 10 seconds: guesses cost the client nothing.
    for _ in range(3):
        assert_refused(token(api, assertion(KeyPair.new(), client.client_id)), "does not hold")
    assert key_set_server.fetches == 2


def test_an_unreachable_or_bad_key_set_is_a_clear_401_not_a_500(
    api: TestClient, make_key_client: MakeKeyClient, key_set_server: KeySetServer
) -> None:
    pair = KeyPair.new()
    key_set_server.status = 404
    client = make_key_client(jwks_uri=key_set_server.url)
    assert_refused(token(api, assertion(pair, client.client_id)), "answered 404, not 200")
    key_set_server.status = 200
    key_set_server.document = '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'
    assert_refused(token(api, assertion(pair, client.client_id)), "private key material")
    key_set_server.publish(pair)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    gone = make_key_client(jwks_uri="http://127.0.0.1:9/jwks.json")  # the discard port
    assert_refused(token(api, assertion(pair, gone.client_id)), "could not be reached")


def test_a_kept_key_set_outlives_a_failed_fetch(
    api: TestClient, make_key_client: MakeKeyClient, key_set_server: KeySetServer
) -> None:
    pair = KeyPair.new()
    key_set_server.publish(pair)
    client = make_key_client(jwks_uri=key_set_server.url)
    assert token(api, assertion(pair, client.client_id)).status_code == 200
    key_set_server.status = 500
    # A new kid asks for the set again; the fetch fails; the kept set still serves.
    assert_refused(token(api, assertion(KeyPair.new(), client.client_id)), "does not hold")
    assert token(api, assertion(pair, client.client_id)).status_code == 200


@pytest.mark.parametrize("fail_open", [True, False])
def test_an_unreachable_replay_store_is_a_503_never_an_unchecked_assertion(
    settings: Settings,
    make_key_client: MakeKeyClient,
    make_client: Callable[..., admin.NewClient],
    fail_open: bool,
) -> None:
    pair = KeyPair.new()
    client = make_key_client(pair)
    with_secret = make_client("read")
    cut_off = settings.model_copy(
        update={"rate_limit_storage_url": "redis://127.0.0.1:1", "rate_limit_fail_open": fail_open}
    )
    with create_app(cut_off).test_client() as api:
        response = token(api, assertion(pair, client.client_id))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        # A client with a secret is served as the fail-open setting says: no jti to check.
        form = {
            **GRANT,
            "client_id": with_secret.client_id,
            "client_secret": with_secret.client_secret,
        }
        assert api.post("/auth/token", data=form).status_code == (200 if fail_open else 503)
