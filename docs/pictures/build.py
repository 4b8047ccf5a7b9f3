"""Render every picture of the docs from its source in this directory.

    python docs/pictures/build.py            # render them all (needs `dot` and matplotlib)
    python docs/pictures/build.py --check    # render nothing: name each stale picture, exit 1

The diagrams are Graphviz sources (``*.dot``), rendered by ``dot -Tsvg`` (Debian:
``apt-get install graphviz``); the benchmark chart is drawn by ``chart.py`` from
``benchmark.json`` with matplotlib (the ``bench`` extra). Each SVG is checked in beside its
source, and carries as its second line the SHA-256 of its inputs (the source, the data and
the scripts that draw it), so ``tests/test_pictures.py`` tells a picture older than its
source without ``dot`` or matplotlib.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMAND = "python docs/pictures/build.py"

#: Each picture -> what it is drawn from (besides this script, an input of every picture).
PICTURES: dict[str, tuple[str, ...]] = {
    "request-path.svg": ("request-path.dot",),
    "token-lifecycle.svg": ("token-lifecycle.dot",),
    "topology.svg": ("topology.dot",),
    "benchmark.svg": ("chart.py", "benchmark.json"),
}

STAMP = re.compile(r"<!-- source-sha256: ([0-9a-f]{64}) ")


def inputs_of(picture: str) -> list[str]:
    return [*PICTURES[picture], Path(__file__).name]


def source_digest(picture: str) -> str:
    """The SHA-256 of a picture's inputs: each file's name and contents (line endings as
    in the repository, whatever a checkout made of them)."""
    digest = hashlib.sha256()
    for name in inputs_of(picture):
        data = (HERE / name).read_bytes().replace(b"\r\n", b"\n")
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def stamped_digest(picture: str) -> str | None:
    """The digest written in a rendered picture, or None (no picture, or no stamp)."""
    path = HERE / picture
    if not path.exists():
        return None
    found = STAMP.search(path.read_text(encoding="utf-8")[:4096])
    return found.group(1) if found else None


def stale() -> list[str]:
    return [p for p in PICTURES if stamped_digest(p) != source_digest(p)]


def stamp(svg: str, picture: str) -> str:
    """The SVG with its inputs' digest as a comment after the XML declaration."""
    comment = (
        f"<!-- source-sha256: {source_digest(picture)} "
        f"({', '.join(inputs_of(picture))}; regenerate with: {COMMAND}) -->"
    )
    declaration, newline, rest = svg.partition("\n")
    if not declaration.startswith("<?xml"):
        return f"{comment}\n{svg}"
    return f"{declaration}{newline}{comment}\n{rest}"


def render_dot(source: Path) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise SystemExit("`dot` is not installed: apt-get install graphviz")
    done = subprocess.run(  # noqa: S603 - Graphviz's dot on a file of this directory
        [dot, "-Tsvg", source.name], cwd=HERE, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"dot failed on {source.name}:\n{done.stderr}")
    return done.stdout


def render(picture: str) -> None:
    source = HERE / PICTURES[picture][0]
    if source.suffix == ".dot":
        svg = render_dot(source)
    else:
        sys.path.insert(0, str(HERE))
        import chart  # matplotlib is imported only here: the check needs none of it

        svg = chart.render(HERE / "benchmark.json")
    (HERE / picture).write_text(stamp(svg, picture), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="render nothing; exit 1 if a picture is stale"
    )
    args = parser.parse_args()
    if args.check:
        old = stale()
        for picture in old:
            print(f"docs/pictures/{picture} is older than its sources: run {COMMAND}")
        raise SystemExit(1 if old else 0)
    for picture in PICTURES:
        render(picture)
        print(f"docs/pictures/{picture}")


if __name__ == "__main__":
    main()
