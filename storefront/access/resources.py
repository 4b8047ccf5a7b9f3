"""Resource indicators (RFC 8707): which audience a token is for, and which audiences this
server's own API accepts.

Two lists, told apart on purpose:

- *issued for*: ``STOREFRONT_RESOURCES``, every resource a client may ask a token for with
  ``resource=``. Some may be other services that trust this server's tokens (through its
  JWKS) and accept those whose ``aud`` names them.
- *served here*: ``STOREFRONT_AUDIENCE`` (the audience of a token asked for without
  ``resource``) and those of ``STOREFRONT_RESOURCES`` that name this server: the public URL
  (``STOREFRONT_PUBLIC_URL``) itself or a URI under it (same scheme, host and port, and a
  path at or below its path). A token for another service's resource is refused here, as
  that service refuses one for this server: a stolen token works at one place only.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from core.errors import OAuthError
from core.settings import Settings, resource_uri_problem

INVALID_TARGET = "invalid_target"


def _origin_and_path(uri: str) -> tuple[tuple[str, str, int | None], str] | None:
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return (parts.scheme.lower(), parts.hostname.lower(), port), parts.path


def is_under(uri: str, base: str) -> bool:
    """Whether ``uri`` is ``base`` or under it: the same scheme, host and port, and a path
    that is ``base``'s or continues it past a "/"."""
    found, wanted = _origin_and_path(uri), _origin_and_path(base)
    if found is None or wanted is None or found[0] != wanted[0]:
        return False
    path, prefix = found[1].rstrip("/"), wanted[1].rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


class Resources:
    """What ``STOREFRONT_RESOURCES`` and ``STOREFRONT_AUDIENCE`` say, prepared once."""

    def __init__(self, *, audience: str, resources: Sequence[str], public_url: str | None) -> None:
        self.audience = audience
        self.issued: tuple[str, ...] = tuple(resources)
        self._issued = frozenset(self.issued)
        own = [r for r in self.issued if public_url and is_under(r, public_url)]
        #: The audiences this server's API accepts: a token whose aud holds one of them.
        self.served: frozenset[str] = frozenset({audience, *own})

    @classmethod
    def from_settings(cls, settings: Settings) -> Resources:
        return cls(
            audience=settings.audience,
            resources=settings.resources,
            public_url=settings.public_url,
        )

    def audience_for(self, requested: Sequence[str]) -> str | list[str] | None:
        """The ``aud`` of a token asked for with these ``resource`` values (None: none asked,
        the default audience); ``invalid_target`` for a value that is not an absolute URI
        without a fragment, or not a resource this server issues tokens for."""
        wanted = list(dict.fromkeys(requested))  # sent twice is asked once
        for uri in wanted:
            problem = resource_uri_problem(uri)
            if problem is not None:
                raise OAuthError(
                    INVALID_TARGET, f"The resource {_shown(uri)} {problem} (RFC 8707 §2)."
                )
            if uri not in self._issued:
                raise OAuthError(
                    INVALID_TARGET,
                    f"The resource {_shown(uri)} is not one this server issues tokens for; "
                    "resources are compared as written, character for character.",
                )
        if not wanted:
            return None
        return wanted[0] if len(wanted) == 1 else wanted

    def serves(self, aud: object) -> bool:
        """Whether this server's API accepts a token of audience ``aud`` (a string or a list
        of them, as RFC 7519 §4.1.3 allows): one of them is served here."""
        if isinstance(aud, str):
            return aud in self.served
        if isinstance(aud, list):
            return any(isinstance(one, str) and one in self.served for one in aud)
        return False


def _shown(uri: str) -> str:
    """A resource for a message: quoted, control characters escaped, long ones cut."""
    text = uri if len(uri) <= 200 else uri[:200] + "…"
    return repr(text.encode("unicode_escape").decode("ascii"))
