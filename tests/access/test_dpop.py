"""storefront.access.dpop: the proof check itself, and the DPoP scheme on both HTTP stacks.

The refusals through the real server, on SQLite and PostgreSQL, are in tests/test_dpop.py.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from jwt.algorithms import get_default_algorithms

from core.errors import DPoPProofRefused
from core.settings import Settings
from storefront.access.dpop import (
    ALGORITHMS,
    KEYS_MAX,
    DPoPVerifier,
    NonceClock,
    _verifier,
    token_hash,
)
from storefront.access.replay import ReplayGuard
from storefront.app import create_app
from tests.dpop_client import DPoPKey

PUBLIC = "https://API.Example.test:443/base/"
URL = "https://api.example.test/base/users"


def verifier(**kwargs: Any) -> DPoPVerifier:
    return DPoPVerifier(base_url=PUBLIC.rstrip("/"), window=60, nonces=None, **kwargs)


def check(v: DPoPVerifier, proof: str, guard: ReplayGuard | None = None, **kwargs: Any) -> str:
    guard = guard or ReplayGuard(None, "test")
    found = asyncio.run(
        v.check([proof.encode()], method="GET", path="/users", replay=guard, **kwargs)
    )
    return found.jkt


def refusal(v: DPoPVerifier, proof: str, **kwargs: Any) -> DPoPProofRefused:
    with pytest.raises(DPoPProofRefused) as caught:
        check(v, proof, **kwargs)
    return caught.value


def test_htu_is_compared_as_rfc_3986_normalises_it_and_without_query_or_fragment() -> None:
    key = DPoPKey()
    for htu in (
        URL,
        "HTTPS://api.EXAMPLE.test/base/users",
        "https://api.example.test:443/base/users?limit=2#top",
    ):
        assert check(verifier(), key.proof("GET", htu)) == key.thumbprint
    for htu in (
        "http://api.example.test/base/users",  # another scheme
        "https://api.example.test:8443/base/users",  # another port
        "https://api.example.test/users",  # without the base's path
        "https://api.example.test:port/base/users",  # no port at all
        42,
    ):
        assert (
            "'htu' must be this request's URL, " + URL
            in refusal(verifier(), key.proof("GET", "x", htu=htu)).message
        )


def test_without_a_public_url_no_proof_is_taken() -> None:
    bare = DPoPVerifier(base_url="", window=60, nonces=None)
    assert not bare.enabled
    assert "STOREFRONT_PUBLIC_URL" in refusal(bare, DPoPKey().proof("GET", URL)).message


def test_a_small_rsa_key_and_a_key_of_another_type_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = DPoPKey("RS256")
    small.private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small.public_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(small.private.public_key(), as_dict=True)
    with warnings.catch_warnings():  # PyJWT warns of the short key it signs with: the point
        warnings.simplefilter("ignore")
        proof = small.proof("GET", URL)
    assert "2048 bits" in refusal(verifier(), proof).message
    ec = DPoPKey("ES256")
    mismatched = ec.proof("GET", URL, header={"alg": "ES256", "jwk": DPoPKey("EdDSA").public_jwk})
    assert "must be an EC P-256 key" in refusal(verifier(), mismatched).message


def test_the_key_cache_is_bounded_and_holds_only_keys_whose_proofs_verified() -> None:
    v = verifier()
    forged = DPoPKey().proof("GET", URL)
    forged = forged[: forged.rindex(".") + 1] + "A" * 86
    refusal(v, forged)
    assert len(v._keys) == 0
    for _ in range(3):
        check(v, DPoPKey("EdDSA").proof("GET", URL))
    assert len(v._keys) == 3
    v._keys.update({str(n): v._keys[next(iter(v._keys))] for n in range(KEYS_MAX)})
    check(v, DPoPKey("EdDSA").proof("GET", URL))
    assert len(v._keys) == KEYS_MAX


def test_a_remembered_key_checks_every_signature_and_is_no_other_key() -> None:
    v, key, other = verifier(), DPoPKey(), DPoPKey()
    assert check(v, key.proof("GET", URL)) == key.thumbprint
    assert len(v._keys) == 1
    # key's header (remembered), other's signature: refused as it would be uncached.
    good, by_other = key.proof("GET", URL), other.proof("GET", URL)
    forged = good[: good.rindex(".")] + by_other[by_other.rindex(".") :]
    assert "does not verify" in refusal(v, forged).message
    assert "does not verify" in refusal(verifier(), forged).message
    # Another key, with a header of its own, is that key.
    assert check(v, other.proof("GET", URL)) == other.thumbprint
    assert check(v, key.proof("GET", URL)) == key.thumbprint
    assert len(v._keys) == 2


def test_a_refused_key_is_refused_every_time_and_never_remembered() -> None:
    v, key = verifier(), DPoPKey()
    weak = DPoPKey("RS256")
    refused = {
        "private": key.proof("GET", URL, header={"jwk": {**key.public_jwk, "d": "AAAA"}}),
        "must be an EC P-256 key": key.proof("GET", URL, header={"jwk": weak.public_jwk}),
    }
    for message, proof in refused.items():
        for _ in range(2):
            assert message in refusal(v, proof).message
    assert len(v._keys) == 0


def test_ath_is_remembered_per_token_in_a_bounded_cache() -> None:
    assert token_hash("a.b.c") == "hF4wRIgJ4ryJWOsCW_x5UjXROwd6U9DDq70jhRcNybg"
    assert token_hash("a.b.d") != token_hash("a.b.c")
    assert token_hash.cache_info().maxsize == KEYS_MAX


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_signature_is_checked_as_pyjwt_checks_it(alg: str) -> None:
    """The check made once per key (cryptography, its padding and hash objects made once)
    takes and refuses exactly what PyJWT's algorithm does."""
    algorithm = get_default_algorithms()[alg]
    client = DPoPKey(alg)
    public = algorithm.from_jwk(client.public_jwk)
    verify = _verifier(alg, public)
    data = b"eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJqdGkiOiJ4In0"
    good = algorithm.sign(data, client.private)
    cases = [
        (good, data),
        (good, data + b"x"),  # another message
        (algorithm.sign(data, DPoPKey(alg).private), data),  # another key
        (good[:-1], data),  # a byte short
        (good + b"\0", data),  # a byte long
        (bytes(len(good)), data),  # zeros: r = s = 0 for ECDSA
        (b"", data),
    ]
    for signature, message in cases:
        try:
            verify(signature, message)
            taken = True
        except InvalidSignature:
            taken = False
        assert taken == algorithm.verify(message, public, signature), (signature, message)
    assert sum(algorithm.verify(m, public, sig) for sig, m in cases) == 1


def test_nonces_rotate_with_the_period_and_the_previous_one_still_counts() -> None:
    now = [1000.0]
    clock = NonceClock(b"p" * 32, 300, clock=lambda: now[0])
    first = clock.current()
    assert clock.accepts(first)
    assert not clock.accepts("x")
    assert not clock.accepts(None)
    now[0] += 300
    second = clock.current()
    assert second != first
    assert clock.accepts(first)
    assert clock.accepts(second)
    now[0] += 300
    assert not clock.accepts(first)
    # Another instance with the same pepper gives and takes the same nonces; another pepper not.
    assert NonceClock(b"p" * 32, 300, clock=lambda: now[0]).current() == clock.current()
    assert NonceClock(b"q" * 32, 300, clock=lambda: now[0]).current() != clock.current()


def test_a_jti_is_spent_only_by_a_proof_that_passes() -> None:
    v, guard, key = verifier(), ReplayGuard(None, "test"), DPoPKey()
    refused = key.proof("GET", URL, jti="same", htm="POST")
    refusal(v, refused)
    good = key.proof("GET", URL, jti="same")
    assert check(v, good, guard) == key.thumbprint
    assert "used before" in refusal(v, good, guard=guard).message


@pytest.mark.stock_stack
def test_the_dpop_scheme_works_on_either_stack(
    settings: Settings, make_client: Any, http_stack: str, app: Any
) -> None:
    # ``app`` (the default one) puts the test on each stack; this one knows its public URL.
    app = create_app(settings.model_copy(update={"public_url": "https://api.example.test"}))
    client = make_client("read")
    key = DPoPKey("EdDSA")
    with app.test_client() as api:
        issued = api.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
            headers={"DPoP": key.proof("POST", "https://api.example.test/auth/token")},
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        url = "https://api.example.test/users"
        ok = api.get(
            "/users",
            headers={"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, token=token)},
        )
        assert ok.status_code == 200, ok.text
        refused = api.get(
            "/users",
            headers={"Authorization": f"DPoP {token}", "DPoP": key.proof("POST", url, token=token)},
        )
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('DPoP realm="storefront", error=')
        as_bearer = api.get("/users", headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401
        assert 'error="invalid_token"' in as_bearer.headers["www-authenticate"]
        # Scopes hold under DPoP as under Bearer: a read token cannot write.
        post = api.post(
            "/users",
            json={"name": "A", "email": "a@example.com", "password": "x" * 12},
            headers={
                "Authorization": f"DPoP {token}",
                "DPoP": key.proof("POST", url, token=token),
            },
        )
        assert post.status_code == 403
        assert "users:write" in post.json()["message"]
