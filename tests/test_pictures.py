"""The docs' pictures are as new as their sources, and the docs show each of them.

Git keeps no modification times, so each SVG carries the digest of the inputs it was drawn
from (docs/pictures/build.py writes it); here it is recomputed from the sources, without
Graphviz or matplotlib.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PICTURES = ROOT / "docs" / "pictures"


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pictures_build", PICTURES / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build()


@pytest.mark.parametrize("picture", sorted(build.PICTURES))
def test_picture_is_as_new_as_its_sources(picture: str) -> None:
    assert (PICTURES / picture).exists(), f"docs/pictures/{picture} is missing: run {build.COMMAND}"
    assert build.stamped_digest(picture) == build.source_digest(picture), (
        f"docs/pictures/{picture} is older than its sources "
        f"({', '.join(build.inputs_of(picture))}): run {build.COMMAND}"
    )


def test_every_source_is_drawn() -> None:
    sources = {path.name for path in PICTURES.glob("*.dot")}
    drawn = {name for inputs in build.PICTURES.values() for name in inputs}
    assert sources <= drawn, f"not in build.PICTURES: {sorted(sources - drawn)}"


def test_every_picture_is_shown_in_the_docs() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    linked = {
        Path(target).name
        for page in pages
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.svg)\)", page.read_text(encoding="utf-8"))
        if (page.parent / target).resolve().parent == PICTURES
    }
    assert set(build.PICTURES) <= linked, f"shown nowhere: {sorted(set(build.PICTURES) - linked)}"


def test_a_change_to_a_source_makes_its_picture_stale(tmp_path: Path) -> None:
    """The stamp covers the source: the same check on a copy with one source edited."""
    for name in {*build.PICTURES, *(n for i in build.PICTURES.values() for n in i), "build.py"}:
        (tmp_path / name).write_bytes((PICTURES / name).read_bytes())
    original = build.HERE
    build.HERE = tmp_path
    try:
        assert build.stale() == []
        source = tmp_path / "topology.dot"
        source.write_text(source.read_text(encoding="utf-8") + "// edited\n", encoding="utf-8")
        assert build.stale() == ["topology.svg"]
    finally:
        build.HERE = original


@pytest.mark.parametrize(
    ("engine", "heading"),
    [("sqlite", "**SQLite, limits in memory**"), ("postgresql", "**PostgreSQL + Redis**")],
)
def test_the_chart_shows_the_figures_of_the_performance_page(engine: str, heading: str) -> None:
    """benchmark.json (the chart) and performance.md's tables give Storefront the same req/s
    and the same ratios, route by route."""
    recorded = json.loads((PICTURES / "benchmark.json").read_text(encoding="utf-8"))
    figures = recorded["engines"][engine]
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    table = page[page.index(heading) :].split("\n\n")[1]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0].startswith("`"):
            route = cells[0].split("`")[1]
            ratios = [float(cell.strip("*\N{MULTIPLICATION SIGN}")) for cell in cells[-2:]]
            rows[route] = (int(cells[1].replace(",", "")), ratios)
    assert rows == {
        route: (
            figures["req_s"][route]["storefront"],
            [figures["ratio"][route]["starlette"], figures["ratio"][route]["fastapi"]],
        )
        for route in figures["req_s"]
    }
