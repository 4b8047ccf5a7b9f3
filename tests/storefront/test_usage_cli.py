"""``storefront usage``: the bar chart and the JSON, from counts stored in the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.settings import Settings
from persistence import usage
from persistence.usage import DayCount
from storefront import admin
from storefront.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def stored(env: Path, capsys: pytest.CaptureFixture[str]) -> list[DayCount]:
    """Counts of two days ago, yesterday and today, and one from 40 days ago."""
    assert run(capsys, "db", "upgrade")[0] == 0
    today = datetime.now(UTC).date()
    rows = [
        DayCount(today - timedelta(days=40), "cli_old", "", 7, 0),
        DayCount(today - timedelta(days=2), "cli_a", "key_a1", 40, 0),
        DayCount(today - timedelta(days=1), "cli_a", "", 10, 0),
        DayCount(today - timedelta(days=1), "cli_a", "key_a1", 20, 10),
        DayCount(today, "cli_b", "key_b1", 0, 3),
    ]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    admin.run(settings, lambda s: usage.add_counts(s, counts=rows))
    return rows


def day(ago: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=ago)).isoformat()


def test_the_chart_shows_each_day_client_and_key_with_bars_to_scale(
    stored: list[DayCount], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "usage")
    assert code == 0, err
    assert out.splitlines() == [
        f"Requests from {day(29)} to {day(0)} (UTC days): █ accepted, ░ refused",
        "",
        "DAY         CLIENT ID  KEY ID  ACCEPTED  REFUSED",
        f"{day(2)}  cli_a      key_a1        40        0  " + "█" * 40,
        f"{day(1)}  cli_a      -             10        0  " + "█" * 10,
        f"{day(1)}  cli_a      key_a1        20       10  " + "█" * 20 + "░" * 10,
        # A count above 0 is never an empty bar.
        f"{day(0)}  cli_b      key_b1         0        3  " + "░" * 3,
        "total                                70       13",
    ]


def test_json_has_the_numbers_and_options_narrow_them(
    stored: list[DayCount], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "usage", "--json")
    assert code == 0, err
    assert json.loads(out) == [
        {"day": day(2), "client_id": "cli_a", "key_id": "key_a1", "accepted": 40, "refused": 0},
        {"day": day(1), "client_id": "cli_a", "key_id": None, "accepted": 10, "refused": 0},
        {"day": day(1), "client_id": "cli_a", "key_id": "key_a1", "accepted": 20, "refused": 10},
        {"day": day(0), "client_id": "cli_b", "key_id": "key_b1", "accepted": 0, "refused": 3},
    ]

    def days(*argv: str) -> list[tuple[str, str, str | None]]:
        code, out, err = run(capsys, "usage", "--json", *argv)
        assert code == 0, err
        return [(row["day"], row["client_id"], row["key_id"]) for row in json.loads(out)]

    assert days("--days", "2") == [
        (day(1), "cli_a", None),
        (day(1), "cli_a", "key_a1"),
        (day(0), "cli_b", "key_b1"),
    ]
    assert days("--days", "41") == [(day(40), "cli_old", None), *days()]
    assert days("--client-id", "cli_b") == [(day(0), "cli_b", "key_b1")]
    assert days("--key-id", "key_a1") == [(day(2), "cli_a", "key_a1"), (day(1), "cli_a", "key_a1")]
    assert days("--client-id", "cli_nobody") == []


def test_nothing_counted_says_so(
    stored: list[DayCount], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "usage", "--client-id", "cli_nobody", "--days", "1")
    assert code == 0
    assert out == f"No requests counted from {day(0)} to {day(0)} (UTC days).\n"


@pytest.mark.parametrize("days", ["0", "x", "3661", "-1"])
def test_a_bad_number_of_days_is_one_line(
    days: str, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["usage", "--days", days])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--days wants a whole number from 1 to 3660" in err
