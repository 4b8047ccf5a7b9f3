"""Connexion validates the whole OpenAPI document at every app build; the tests build one app
per test, over a thousand a run, of one unchanging document.

``validate_each_document_once`` has Connexion's validation remember the documents it has
passed, by the SHA-256 of their canonical JSON: the same document is validated once a run
rather than at every build (0.13 s each, a sixth of the suite's time). A document that differs
in any byte is validated afresh, and one that fails is never remembered, so that every test
of a broken document still sees it refused. Servers the tests start in processes of their own
(tests/servers.py) validate as in production: this runs in the pytest process only.

``Specification._validate_spec`` is Connexion's (3.x) own hook, not documented API: when it is
gone, ``validate_each_document_once`` fails the run at start rather than leave it slow in
silence, and tests/test_openapi.py proves a broken document is still refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from connexion.spec import Specification

#: What the run has validated, by digest.
VALIDATED: set[str] = set()
#: How many times the whole validation ran (the tests read it).
RUNS = [0]


def validate_each_document_once() -> None:
    original = Specification.__dict__.get("_validate_spec")
    if not isinstance(original, classmethod):
        raise RuntimeError(
            "connexion.spec.Specification._validate_spec is no longer a classmethod: "
            "see tests/spec_validation.py"
        )
    validate = original.__func__

    def remembered(cls: type[Specification], spec: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()
        if digest in VALIDATED:
            return
        RUNS[0] += 1
        validate(cls, spec)  # raises InvalidSpecification: not remembered
        VALIDATED.add(digest)

    Specification._validate_spec = classmethod(remembered)  # type: ignore[method-assign,assignment]
