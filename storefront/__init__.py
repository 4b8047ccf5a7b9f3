"""Storefront API: the runtime around the spec (app factory, settings, security, CLI)."""

__version__ = "0.1.0"
