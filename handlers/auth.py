"""/auth/token, /auth/revoke and /auth/introspect"""

from __future__ import annotations

from types import MappingProxyType

from handlers._common import Body
from storefront.access import revocation
from storefront.access.oauth import ClientCredentials, client_credentials_grant, credentials
from storefront.http.deps import form_values, header_fields, request_scope, services

#: RFC 6749 §5.1. Read-only, and returned as a copy: Connexion adds Content-Type to the
#: headers dict a handler returns, in place (see handlers._common.PRIVATE).
NO_STORE = MappingProxyType({"Cache-Control": "no-store", "Pragma": "no-cache"})


def _form(body: Body) -> tuple[Body, ClientCredentials]:
    # RFC 6749 §3.2: a parameter sent without a value is treated as if it were omitted.
    body = {name: value for name, value in body.items() if value != ""}
    creds = credentials(
        authorization=header_fields("authorization"),
        client_id=body.get("client_id"),
        client_secret=body.get("client_secret"),
        client_assertion_type=body.get("client_assertion_type"),
        client_assertion=body.get("client_assertion"),
    )
    return body, creds


def _resources(body: Body) -> list[str]:
    """RFC 8707's ``resource`` values, each as sent: the field may be repeated (the body
    joins repeated values with ",", which a URI may hold)."""
    sent = form_values("resource")
    if sent is None:
        sent = [body["resource"]] if "resource" in body else []
    return [value for value in sent if value != ""]


async def issue_token(body: Body) -> tuple[Body, int, dict[str, str]]:
    body, creds = _form(body)
    svc, scope = services(), request_scope()
    # A DPoP proof (RFC 9449) binds the token to the client's key.
    jkt = await svc.dpop.token_request(scope, svc.replay)
    token = await client_credentials_grant(
        svc,
        scope,
        grant_type=body.get("grant_type"),
        creds=creds,
        scope=body.get("scope"),
        resources=_resources(body),
        dpop_jkt=jkt,
    )
    headers = dict(NO_STORE)
    nonce = svc.dpop.current_nonce() if jkt is not None else None
    if nonce is not None:
        headers["DPoP-Nonce"] = nonce
    return (
        {
            "access_token": token.access_token,
            "token_type": "bearer" if jkt is None else "DPoP",
            "expires_in": token.expires_in,
            "scope": token.scope,
        },
        200,
        headers,
    )


async def revoke_token(body: Body) -> tuple[Body, int, dict[str, str]]:
    body, creds = _form(body)
    await revocation.revoke(services(), request_scope(), creds=creds, token=body.get("token"))
    return {}, 200, dict(NO_STORE)


async def introspect_token(body: Body) -> tuple[Body, int, dict[str, str]]:
    body, creds = _form(body)
    answer = await revocation.introspect(
        services(), request_scope(), creds=creds, token=body.get("token")
    )
    return answer, 200, dict(NO_STORE)
