"""The benchmark chart: req/s per route, Storefront beside the peers, one panel per engine.

Drawn from ``benchmark.json`` (written by ``bench/compare_peers.py --record``) by
``build.py``, which stamps the result. The SVG is deterministic: a fixed ``svg.hashsalt``, no
date in its metadata, text drawn as paths (the same on every viewer, no font needed).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

#: Server key in benchmark.json -> its name in the legend, and its colour (Okabe-Ito: told
#: apart by readers with any colour vision, on a white page).
SERVERS = {
    "storefront": ("Storefront", "#0072B2"),
    "starlette": ("hand-written Starlette", "#E69F00"),
    "fastapi": ("idiomatic FastAPI", "#009E73"),
}


def _route_label(route: str) -> str:
    """``GET /users?limit=20`` on two lines, the query string on the second."""
    path, mark, query = route.partition("?")
    return f"{path}\n{mark}{query}"


def render(data_file: Path, png: Path | None = None) -> str:
    """The chart as SVG text; also written to ``png`` when given (to look at it)."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = json.loads(data_file.read_text(encoding="utf-8"))
    engines = data["engines"]
    matplotlib.rcParams.update(
        {
            "svg.hashsalt": "storefront-benchmark",
            "svg.fonttype": "path",
            "font.family": "DejaVu Sans",
            "font.size": 9,
            "axes.edgecolor": "#7a8794",
            "axes.labelcolor": "#1f2933",
            "xtick.color": "#1f2933",
            "ytick.color": "#52606d",
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    figure, axes = plt.subplots(
        1, len(engines), figsize=(5.0 * len(engines), 3.9), sharey=True, layout="constrained"
    )
    axes = list(axes) if len(engines) > 1 else [axes]
    width = 0.26
    for ax, (_, engine) in zip(axes, engines.items(), strict=True):
        routes = list(engine["req_s"])
        for i, (server, (name, colour)) in enumerate(SERVERS.items()):
            xs = [r + (i - 1) * width for r in range(len(routes))]
            values = [engine["req_s"][route][server] for route in routes]
            bars = ax.bar(xs, values, width, label=name, color=colour, zorder=2)
            ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=6.3, padding=2)
        ax.set_xticks(range(len(routes)), [_route_label(r) for r in routes], fontsize=7.5)
        ax.set_title(f"{engine['title']}\n", fontsize=10.5, fontweight="bold", loc="left")
        ax.text(
            0,
            1.02,
            f"measured {engine['measured']}",
            transform=ax.transAxes,
            fontsize=7.5,
            color="#52606d",
        )
        ax.grid(axis="y", color="#e4e7eb", zorder=0)
        ax.tick_params(axis="x", length=0)
    axes[0].set_ylabel("requests per second, one worker (more is better)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(SERVERS), frameon=False)
    if png is not None:
        figure.savefig(png, format="png", dpi=110)
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return out.getvalue()
