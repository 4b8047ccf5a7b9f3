"""The compiled stack: Connexion's request path with each operation's work done once.

The one package that replaces part of Connexion. ``STOREFRONT_HTTP_STACK=connexion`` serves
the same app through Connexion's stock middlewares instead, and the tests run both and compare
them; ``storefront.internals`` lists every non-public Connexion name used here, and why.
"""

from storefront.http.compiled.app import CompiledApp
from storefront.http.compiled.security import SECURITY_MAP

__all__ = ["SECURITY_MAP", "CompiledApp"]
