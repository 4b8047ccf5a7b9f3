"""CPU cost of issuing and verifying one access token, per signing algorithm. Prints figures;
asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/signing_cost.py [--number 2000]

Three figures per algorithm, in microseconds per token, best of five timeit runs:
- issue: TokenCodec.issue (claims, JSON, base64, the signature with the key prepared once);
- verify: the first check of a token (header, kid lookup, signature, claims);
- verify, remembered: every later check of the same token (a dict lookup and an expiry test).

Run with PYTHONPATH pointing at another checkout to compare its codec (the API used here,
TokenCodec(secret, issuer=…, audience=…, ttl=…, algorithm=…), is the same before and after the
signing keys moved to the database).
"""

from __future__ import annotations

import argparse
import timeit
from typing import Any

from core.crypto import TokenCodec

SECRET = b"bench-signing-secret-0123456789abcdef0123456789"


def measure(algorithm: Any, number: int) -> list[float]:
    """Microseconds per issue, first verify and remembered verify."""
    codec = TokenCodec(SECRET, issuer="iss", audience="aud", ttl=3600, algorithm=algorithm)
    tokens = [
        codec.issue(client_id="cli_bench", scopes=["read", "write"]).access_token
        for _ in range(number)
    ]
    fresh = iter(tokens * 6)
    token = tokens[0]
    codec.verify(token)

    def issue() -> None:
        codec.issue(client_id="cli_bench", scopes=["read", "write"])

    def verify() -> None:
        codec._verify(next(fresh))

    def remembered() -> None:
        codec.verify(token)

    return [
        min(timeit.repeat(work, number=number, repeat=5)) / number * 1e6
        for work in (issue, verify, remembered)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="tokens per timing run")
    args = parser.parse_args()
    print(f"{'algorithm':<10}{'issue µs':>10}{'verify µs':>11}{'remembered µs':>15}")
    for algorithm in ("EdDSA", "ES256", "HS256"):
        issue, verify, remembered = measure(algorithm, args.number)
        print(f"{algorithm:<10}{issue:>10.1f}{verify:>11.1f}{remembered:>15.2f}")


if __name__ == "__main__":
    main()
