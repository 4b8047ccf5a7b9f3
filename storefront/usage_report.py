"""``storefront usage``: requests per UTC day, per client and per API key, accepted and
refused (``storefront.access.usage`` says which is which), as a bar chart or as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from core.settings import Settings
from persistence import usage
from storefront import admin

#: The longest bar, in characters: the day, client and key with the most requests.
BAR_WIDTH = 40
ACCEPTED = "█"
REFUSED = "░"
MAX_DAYS = 3660
#: The KEY ID shown for requests made with a client's access tokens.
TOKENS = "-"


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days wants a whole number from 1 to {MAX_DAYS}")
    return days


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``storefront usage``, on the parser ``storefront.cli`` made."""
    parser.add_argument(
        "--client-id", default=None, help="only this client (cli_…) (default: every client)"
    )
    parser.add_argument(
        "--key-id", default=None, help="only this API key (key_…) (default: every key)"
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=30,
        help="the last DAYS UTC days, today included",
        metavar="DAYS",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def show(settings: Settings, args: argparse.Namespace, *, today: date | None = None) -> None:
    today = today or datetime.now(UTC).date()
    since = today - timedelta(days=args.days - 1)
    rows = admin.run(
        settings,
        lambda s: usage.usage_since(s, since=since, client_id=args.client_id, key_id=args.key_id),
    )
    if args.json:
        print(json.dumps([_as_json(row) for row in rows], indent=2))
    else:
        print("\n".join(chart(rows, since=since, until=today)))


def _as_json(row: usage.DayCount) -> dict[str, object]:
    return {
        "day": row.day.isoformat(),
        "client_id": row.client_id,
        "key_id": row.key_id or None,
        "accepted": row.accepted,
        "refused": row.refused,
    }


def chart(rows: Sequence[usage.DayCount], *, since: date, until: date) -> list[str]:
    """The lines of the bar chart: one row per day, client and key, oldest day first."""
    period = f"from {since.isoformat()} to {until.isoformat()} (UTC days)"
    if not rows:
        return [f"No requests counted {period}."]
    header = ("DAY", "CLIENT ID", "KEY ID", "ACCEPTED", "REFUSED")
    cells = [
        (
            row.day.isoformat(),
            row.client_id,
            row.key_id or TOKENS,
            str(row.accepted),
            str(row.refused),
        )
        for row in rows
    ]
    total = ("total", "", "", str(sum(r.accepted for r in rows)), str(sum(r.refused for r in rows)))
    widths = [max(len(line[i]) for line in [header, *cells, total]) for i in range(5)]

    def line(values: Sequence[str], bar: str = "") -> str:
        text = [values[i].ljust(widths[i]) for i in range(3)]
        text += [values[i].rjust(widths[i]) for i in range(3, 5)]
        return "  ".join([*text, bar]).rstrip()

    most = max(row.accepted + row.refused for row in rows)
    lines = [
        f"Requests {period}: {ACCEPTED} accepted, {REFUSED} refused",
        "",
        line(header),
    ]
    lines += [line(values, _bar(row, most)) for values, row in zip(cells, rows, strict=True)]
    lines.append(line(total))
    return lines


def _bar(row: usage.DayCount, most: int) -> str:
    """The row's requests, to the scale of the busiest row; a count above 0 shows at least
    one character."""

    def length(count: int) -> int:
        return max(1, round(count * BAR_WIDTH / most)) if count else 0

    return ACCEPTED * length(row.accepted) + REFUSED * length(row.refused)
