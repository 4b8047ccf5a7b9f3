"""Storefront API: the runtime around the spec (app factory, settings, security, CLI)."""

import sys

__version__ = "0.1.0"

# Connexion imports httpx, and httpx imports its command-line client, which loads click, rich
# and pygments whenever they are installed (they are: the importer's progress bar, the dev
# tools): 5 MB of every worker's memory for a program no worker runs (bench/memory.py). A None
# in sys.modules makes that import fail, and httpx then defines the stub it defines when those
# packages are missing. Only if nothing has imported it yet.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
