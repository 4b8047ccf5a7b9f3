"""``storefront products import``: JSON and CSV, upserts, all-or-nothing, one-line errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.settings import Settings
from persistence.db import Database
from persistence.migrate import upgrade
from persistence.products import UpsertCounts, list_products
from storefront import importer
from storefront.cli import DEMO_CATALOGUE
from storefront.importer import WRITE_CHUNK, derived_id, import_file
from tests.helpers import db_rows
from tests.servers import clean_env, run_storefront

HEADER = "id,name,description,price,category"
#: The id of a row without one: derived from its name and category.
GENERATED_ID = re.compile(r"prod_[0-9a-f]{24}")
Row = tuple[object, ...]


@pytest.fixture(autouse=True)
def _in_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No .env of the developer's is read: the working directory is the test's own.
    monkeypatch.chdir(tmp_path)


def products(settings: Settings) -> dict[str, Row]:
    rows = db_rows(
        settings,
        "SELECT id, name, description, CAST(price AS FLOAT), category FROM products",
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def count(settings: Settings) -> int:
    [(n,)] = db_rows(settings, "SELECT count(*) FROM products")
    return int(n)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_json(tmp_path: Path, data: object, name: str = "products.json") -> Path:
    return write(tmp_path, name, json.dumps(data))


def write_csv(tmp_path: Path, *lines: str, name: str = "products.csv") -> Path:
    return write(tmp_path, name, "\n".join(lines) + "\n")


def seed(settings: Settings, tmp_path: Path) -> None:
    """Two products already in the table, so that 'nothing written' is visible."""
    path = write_json(
        tmp_path,
        [
            {"id": "prod_keep1", "name": "Kept", "price": 1, "category": "Home"},
            {"id": "prod_keep2", "name": "Kept too", "price": 2, "category": "Home"},
        ],
        name="seed.json",
    )
    import_file(settings, path, progress=False)


# Happy paths


def test_imports_a_json_array(settings: Settings, tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        [
            {
                "id": "prod_xyz789",
                "name": "Gadget Pro",
                "description": "The latest and greatest gadget.",
                "price": 99.99,
                "category": "Electronics",
            },
            {"id": "prod_b", "name": "  Trimmed  ", "price": 0, "category": " Home "},
            {
                "id": "prod_c",
                "name": "Null description",
                "description": None,
                "price": 5.5,
                "category": "Books",
            },
        ],
    )

    assert import_file(settings, path, progress=False) == UpsertCounts(inserted=3)

    assert products(settings) == {
        "prod_xyz789": ("Gadget Pro", "The latest and greatest gadget.", 99.99, "Electronics"),
        "prod_b": ("Trimmed", "", 0, "Home"),
        "prod_c": ("Null description", "", 5.5, "Books"),
    }


def test_imports_a_csv_file(settings: Settings, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER,
        'prod_a,Widget,"Small, blue; with ""quotes""",19.99,Home',
        'prod_b,Multi-line,"first line',
        'second line",5,Books',
        "",  # blank lines are skipped
        "prod_c,Cheap,,0.5,Books",
        "prod_d,Trailing zero,,19.990,Books",
    )

    assert import_file(settings, path, progress=False) == UpsertCounts(inserted=4)

    assert products(settings) == {
        "prod_a": ("Widget", 'Small, blue; with "quotes"', 19.99, "Home"),
        "prod_b": ("Multi-line", "first line\nsecond line", 5, "Books"),
        "prod_c": ("Cheap", "", 0.5, "Books"),
        "prod_d": ("Trailing zero", "", 19.99, "Books"),
    }


def test_csv_header_may_reorder_and_omit_optional_columns(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    # A byte-order mark and CRLF line ends, as spreadsheet programs write them.
    path.write_bytes("\ufeffcategory, price ,name\r\nHome,3,Lamp\r\n".encode())

    assert import_file(settings, path, progress=False).inserted == 1

    [(product_id, row)] = products(settings).items()
    assert GENERATED_ID.fullmatch(product_id)
    assert row == ("Lamp", "", 3, "Home")


def test_generates_missing_ids(settings: Settings, tmp_path: Path) -> None:
    json_path = write_json(
        tmp_path,
        [
            {"name": "No id", "price": 1, "category": "Home"},
            {"id": None, "name": "Null id", "price": 1, "category": "Home"},
            {"id": "", "name": "Empty id", "price": 1, "category": "Home"},
        ],
    )
    csv_path = write_csv(tmp_path, HEADER, ",Blank id,,1,Home", "  ,Spaces id,,1,Home")

    import_file(settings, json_path, progress=False)
    import_file(settings, csv_path, progress=False)

    ids = products(settings)
    assert len(ids) == 5
    assert all(GENERATED_ID.fullmatch(product_id) for product_id in ids)


def test_updates_an_existing_id(settings: Settings, tmp_path: Path) -> None:
    seed(settings, tmp_path)
    path = write_csv(
        tmp_path, HEADER, "prod_keep1,Renamed,Now described,3.25,Garden", ",New,,1,Home"
    )

    assert import_file(settings, path, progress=False) == UpsertCounts(inserted=1, updated=1)

    rows = products(settings)
    assert len(rows) == 3
    assert rows["prod_keep1"] == ("Renamed", "Now described", 3.25, "Garden")
    assert rows["prod_keep2"] == ("Kept too", "", 2, "Home")


def test_counts_inserted_updated_and_unchanged(settings: Settings, tmp_path: Path) -> None:
    seed(settings, tmp_path)  # prod_keep1 and prod_keep2
    path = write_csv(
        tmp_path,
        HEADER,
        "prod_keep1,Kept,,1.00,Home",  # as stored: 1 and 1.00 are one price
        "prod_keep2,Kept too,,2.50,Home",  # a new price
        "prod_new,New,,3,Home",
    )

    assert import_file(settings, path, progress=False) == UpsertCounts(
        inserted=1, updated=1, unchanged=1
    )
    assert products(settings)["prod_keep2"] == ("Kept too", "", 2.5, "Home")


def test_rows_without_ids_are_updated_not_duplicated_on_reimport(
    settings: Settings, tmp_path: Path
) -> None:
    first = write_csv(tmp_path, HEADER, ",Mug,,9.50,Home", ",Lamp,,20,Home", name="a.csv")
    assert import_file(settings, first, progress=False) == UpsertCounts(inserted=2)
    ids = set(products(settings))
    assert ids == {derived_id("Mug", "Home"), derived_id("Lamp", "Home")}

    # The same two products again: one with a new price, one with its name and category in
    # another case (the same id, so the stored name's case is updated).
    again = write_json(
        tmp_path,
        [
            {"name": "mug", "price": 9.5, "category": "HOME"},
            {"name": "Lamp", "price": 25, "category": "Home"},
        ],
    )
    counts = import_file(settings, again, progress=False)

    assert counts == UpsertCounts(updated=2)
    assert set(products(settings)) == ids
    assert products(settings)[derived_id("Lamp", "Home")][2] == 25


def test_two_rows_without_ids_that_would_share_one_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER, ",Mug,,9.50,Home", ",Mug,Bigger,12,home")

    with pytest.raises(InvalidInput) as refused:
        import_file(settings, path, progress=False)

    assert refused.value.message.startswith("products.csv: row 2 (line 3), field 'id': ")
    assert "row 1 has the same name and category" in refused.value.message
    assert count(settings) == 0


def test_search_follows_every_upsert(settings: Settings, tmp_path: Path) -> None:
    seed(settings, tmp_path)
    path = write_json(
        tmp_path,
        [
            {"id": "prod_new", "name": "Brass lantern", "price": 2, "category": "Garden"},
            {"id": "prod_keep1", "name": "Renamed kettle", "price": 4, "category": "Home"},
        ],
    )
    import_file(settings, path, progress=False)

    assert products(settings)["prod_keep1"] == ("Renamed kettle", "", 4, "Home")

    async def search(term: str) -> list[str]:
        db = Database(settings.database_url)
        try:
            page = await db.read(list_products, search=term, limit=100)
            return [row.id for row in page.rows]
        finally:
            await db.dispose()

    # On SQLite through the FTS5 index, which triggers keep in step with the upserts.
    assert asyncio.run(search("kettle")) == ["prod_keep1"]
    assert asyncio.run(search("lantern")) == ["prod_new"]
    assert asyncio.run(search("Kept")) == ["prod_keep2"]  # prod_keep1 is no longer "Kept"


def test_chooses_the_format_by_content_without_a_known_extension(
    settings: Settings, tmp_path: Path
) -> None:
    json_path = write(
        tmp_path,
        "catalogue.txt",
        '\n  [{"id": "prod_j", "name": "J", "price": 1, "category": "A"}]',
    )
    csv_path = write_csv(tmp_path, HEADER, "prod_c,C,,1,A", name="catalogue")

    import_file(settings, json_path, progress=False)
    import_file(settings, csv_path, progress=False)

    assert set(products(settings)) == {"prod_j", "prod_c"}


def test_empty_inputs_import_nothing(settings: Settings, tmp_path: Path) -> None:
    assert import_file(settings, write_json(tmp_path, []), progress=False) == UpsertCounts()
    assert import_file(settings, write_csv(tmp_path, HEADER), progress=False) == UpsertCounts()
    assert count(settings) == 0


def test_the_demo_catalogue_imports_and_reimports_unchanged(settings: Settings) -> None:
    first = import_file(settings, DEMO_CATALOGUE, progress=False)
    before = products(settings)
    second = import_file(settings, DEMO_CATALOGUE, progress=False)

    assert first == UpsertCounts(inserted=len(before))
    assert second == UpsertCounts(unchanged=len(before))
    assert 12 <= len(before) <= 20
    assert products(settings) == before
    assert before["prod_xyz789"] == (
        "Gadget Pro",
        "The latest and greatest gadget.",
        99.99,
        "Electronics",
    )
    assert before["prod_abc111"] == (
        "Stylish T-Shirt",
        "Comfortable cotton t-shirt.",
        19.99,
        "Apparel",
    )
    assert {row[3] for row in before.values()} == {
        "Electronics",
        "Apparel",
        "Home",
        "Books",
        "Outdoor",
    }
    assert any("%" in name for name, *_ in before.values())
    assert any("_" in description for _, description, *_ in before.values())


def test_imports_20000_csv_rows(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        for i in range(20_000):
            writer.writerow(
                [f"prod_{i:06d}", f"Product {i}", "", f"{i % 1000}.{i % 100:02d}", "Bulk"]
            )

    assert import_file(settings, path, progress=False) == UpsertCounts(inserted=20_000)
    assert count(settings) == 20_000


def test_progress_goes_to_stderr(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path, HEADER, "prod_a,A,,1,Home")

    assert import_file(settings, path, progress=True).inserted == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "importing" in captured.err
    assert "100%" in captured.err


# Bad rows: one message naming the row and the field, and nothing written

LONG = "x" * 201


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "prod_b,B,,-1,Home",
            "products.csv: row 2 (line 3), field 'price': must be a number >= 0 with at most "
            "two decimals, got '-1'",
        ),
        ("prod_b,B,,1.234,Home", "row 2 (line 3), field 'price': must be a number >= 0"),
        ("prod_b,B,,abc,Home", "row 2 (line 3), field 'price': must be a number"),
        ("prod_b,B,,,Home", "row 2 (line 3), field 'price': must be a number"),
        ("prod_b,B,,NaN,Home", "row 2 (line 3), field 'price': must be a number"),
        ("prod_b,B,,Infinity,Home", "row 2 (line 3), field 'price': must be a number"),
        ("prod_b,B,,1_000,Home", "row 2 (line 3), field 'price': must be a number"),
        ("prod_b,B,,10000000000.00,Home", "row 2 (line 3), field 'price': must be at most"),
        ("prod_b,B,,1e999999999999,Home", "row 2 (line 3), field 'price': must be at most"),
        ("prod_b,   ,,1,Home", "row 2 (line 3), field 'name': must be 1 to 200 characters"),
        (f"prod_b,{LONG},,1,Home", "row 2 (line 3), field 'name': must be 1 to 200 characters"),
        ("prod_b,B,,1,", "row 2 (line 3), field 'category': must be 1 to 100 characters"),
        (f"prod_b,B,{'d' * 5001},1,Home", "row 2 (line 3), field 'description': must be at most"),
        ("item_1,B,,1,Home", "row 2 (line 3), field 'id': must be 'prod_'"),
        ("prod_has space,B,,1,Home", "row 2 (line 3), field 'id': must be 'prod_'"),
        (f"prod_{'a' * 60},B,,1,Home", "row 2 (line 3), field 'id': must be 'prod_'"),
        ("prod_a,B,,1,Home", "row 2 (line 3), field 'id': 'prod_a' is already used by row 1"),
        ("prod_b,B,,1", "row 2 (line 3), field 'category': is missing"),
        ("prod_b,B,,1,Home,extra", "row 2 (line 3): has 6 fields"),
    ],
)
def test_a_bad_csv_row_is_named_and_nothing_is_written(
    settings: Settings, tmp_path: Path, line: str, expected: str
) -> None:
    seed(settings, tmp_path)
    before = products(settings)
    path = write_csv(tmp_path, HEADER, "prod_a,Good,,1,Home", line, "prod_c,Also good,,1,Home")

    with pytest.raises(InvalidInput) as caught:
        import_file(settings, path, progress=False)

    assert expected in caught.value.message
    assert caught.value.message.startswith("products.csv: row 2 (line 3)")
    assert "\n" not in caught.value.message
    assert products(settings) == before


def test_the_line_of_a_row_after_a_multiline_field_is_its_first_line(
    settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER, 'prod_a,A,"two\nlines",1,Home', "prod_b,B,,-1,Home")

    with pytest.raises(InvalidInput, match=r"^products\.csv: row 2 \(line 4\), field 'price'"):
        import_file(settings, path, progress=False)


GOOD = {"id": "prod_a", "name": "Good", "price": 1, "category": "Home"}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"name": "B", "category": "Home"}, "row 2, field 'price': is required but missing"),
        ({"price": 1, "category": "Home"}, "row 2, field 'name': is required but missing"),
        ({"name": "B", "price": 1}, "row 2, field 'category': is required but missing"),
        (
            {"name": "B", "price": 1, "category": "Home", "colour": "red"},
            "row 2, field 'colour': is not a product field",
        ),
        (
            {"name": "B", "price": "19.99", "category": "Home"},
            "row 2, field 'price': must be a JSON number, got a string ('19.99')",
        ),
        (
            {"name": "B", "price": True, "category": "Home"},
            "row 2, field 'price': must be a JSON number, got true",
        ),
        (
            {"name": "B", "price": None, "category": "Home"},
            "row 2, field 'price': must be a JSON number, got null",
        ),
        (
            {"name": "B", "price": -0.01, "category": "Home"},
            "row 2, field 'price': must be a number >= 0 with at most two decimals, got -0.01",
        ),
        (
            {"name": "B", "price": 0.001, "category": "Home"},
            "row 2, field 'price': must be a number >= 0",
        ),
        (
            {"name": "B", "price": 1e10, "category": "Home"},
            "row 2, field 'price': must be at most 9999999999.99",
        ),
        (
            {"name": 7, "price": 1, "category": "Home"},
            "row 2, field 'name': must be a string, got a number (7)",
        ),
        (
            {"name": "B", "price": 1, "category": None},
            "row 2, field 'category': must be a string, got null",
        ),
        (
            {"name": "B", "price": 1, "category": "Home", "description": ["x"]},
            "row 2, field 'description': must be a string, got an array",
        ),
        (
            {"id": 5, "name": "B", "price": 1, "category": "Home"},
            "row 2, field 'id': must be a string",
        ),
        ({**GOOD, "name": "Twin"}, "row 2, field 'id': 'prod_a' is already used by row 1"),
    ],
)
def test_a_bad_json_row_is_named_and_nothing_is_written(
    settings: Settings, tmp_path: Path, item: dict[str, object], expected: str
) -> None:
    seed(settings, tmp_path)
    before = products(settings)
    path = write_json(tmp_path, [GOOD, item, {**GOOD, "id": "prod_c"}])

    with pytest.raises(InvalidInput) as caught:
        import_file(settings, path, progress=False)

    assert caught.value.message.startswith(f"products.json: {expected}")
    assert products(settings) == before


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ("NaN", "got NaN"),
        ("-Infinity", "got -Infinity"),
        ("1e999999999999", "got 1E+999999999999"),
        # Beyond what Decimal holds at all.
        ("1e" + "9" * 30, "got 1e" + "9" * 30),
    ],
)
def test_json_numbers_that_are_not_prices(
    settings: Settings, tmp_path: Path, literal: str, shown: str
) -> None:
    path = write(
        tmp_path, "products.json", f'[{{"name": "B", "price": {literal}, "category": "H"}}]'
    )

    with pytest.raises(InvalidInput, match=r"^products\.json: row 1, field 'price': ") as caught:
        import_file(settings, path, progress=False)

    assert shown in caught.value.message
    assert count(settings) == 0


def test_negative_zero_is_stored_as_zero(settings: Settings, tmp_path: Path) -> None:
    import_file(settings, write_csv(tmp_path, HEADER, "prod_z,Z,,-0,Home"), progress=False)

    assert products(settings)["prod_z"][2] == 0


# Malformed files: one line, nothing written


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("products.json", "[{]", r"^products\.json: not valid JSON: .* at line 1 column \d+$"),
        ("products.json", "", r"^products\.json: not valid JSON: "),
        (
            "products.json",
            '{"id": "prod_a"}',
            r"^products\.json: expected a JSON array of product objects, got an object$",
        ),
        ("products.json", '"text"', r"^products\.json: expected a JSON array .*got a string"),
        (
            "products.json",
            '[{"name": "A", "price": 1, "category": "H"}, 3]',
            r"^products\.json: row 2: must be a JSON object, got a number \(3\)$",
        ),
        ("products.json", "[" * 100_000 + "]" * 100_000, r"^products\.json: "),
        (
            "products.csv",
            "",
            r"^products\.csv: empty file: expected the CSV header "
            r"id,name,description,price,category$",
        ),
        (
            "products.csv",
            "id,name,colour,price,category\n",
            r"^products\.csv: line 1 \(the header\): unknown column 'colour'",
        ),
        (
            "products.csv",
            "id,name,description,category\n",
            r"^products\.csv: line 1 \(the header\): no 'price' column",
        ),
        (
            "products.csv",
            "id,name,name,price,category\n",
            r"^products\.csv: line 1 \(the header\): column 'name' appears twice$",
        ),
        (
            "products.csv",
            "prod_a,A,,1,Home\n",
            r"^products\.csv: line 1 \(the header\): unknown column 'prod_a'",
        ),
        (
            "products.csv",
            f'{HEADER}\nprod_a,"A"x,,1,Home\n',
            r"^products\.csv: line 2: not valid CSV: ",
        ),
        (
            "products.csv",
            f'{HEADER}\nprod_a,"unclosed,,1,Home\n',
            r"^products\.csv: line \d+: not valid CSV: ",
        ),
    ],
)
def test_a_malformed_file_is_one_line(
    settings: Settings, tmp_path: Path, name: str, content: str, expected: str
) -> None:
    seed(settings, tmp_path)
    before = products(settings)
    path = write(tmp_path, name, content)

    with pytest.raises(InvalidInput, match=expected) as caught:
        import_file(settings, path, progress=False)

    assert "\n" not in caught.value.message
    assert products(settings) == before


@pytest.mark.parametrize("name", ["products.csv", "products.json"])
def test_a_file_that_is_not_utf8(settings: Settings, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(HEADER.encode() + b"\nprod_a,Caf\xe9,,1,Home\n")

    with pytest.raises(InvalidInput, match=rf"^{re.escape(name)}: not UTF-8 text"):
        import_file(settings, path, progress=False)


def test_a_missing_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nope\.csv: no such file$"):
        import_file(settings, tmp_path / "nope.csv", progress=False)


def test_a_directory(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()

    with pytest.raises(InvalidInput, match=r"dir\.json: is a directory"):
        import_file(settings, tmp_path / "dir.json", progress=False)


# The real command


def run_import(tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        STOREFRONT_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        STOREFRONT_KEY_DIR=str(tmp_path / "keys"),
    )
    # Set up as `storefront db upgrade` would: no other command creates a database.
    upgrade(env["STOREFRONT_DATABASE_URL"])
    return run_storefront(env, "products", "import", str(path), cwd=tmp_path)


def test_the_command_imports_and_says_what_it_did(tmp_path: Path) -> None:
    first = run_import(tmp_path, DEMO_CATALOGUE)
    again = run_import(tmp_path, DEMO_CATALOGUE)

    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert first.stdout == (
        f"imported 16 products from {DEMO_CATALOGUE}: 16 inserted, 0 updated, 0 unchanged\n"
    )
    assert again.stdout.endswith(": 0 inserted, 0 updated, 16 unchanged\n")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("prod_b,B,,-1,Home", "price"),
        # Brackets in the data must reach the terminal as they are, not as console markup.
        ("prod_b,B,,[/bold],Home", "price"),
    ],
)
def test_the_command_reports_a_bad_row_in_one_line(tmp_path: Path, line: str, field: str) -> None:
    path = write_csv(tmp_path, HEADER, "prod_a,Good,,1,Home", line)

    result = run_import(tmp_path, path)

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    # Log records (the migration run before every command) are not part of the error.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"storefront: products.csv: row 2 (line 3), field '{field}': ")
    assert f"got '{line.split(',')[3]}'" in lines[0]
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (0,)


# The real command on each engine: what the database cannot hold, where a file stops being
# UTF-8, and rows far apart in a streamed import


def import_command(
    database_env: dict[str, str], tmp_path: Path, path: Path
) -> tuple[subprocess.CompletedProcess[str], Settings]:
    """``storefront products import PATH`` on the test's database: its run, and the settings
    to look at what it wrote."""
    env = clean_env(**database_env, STOREFRONT_KEY_DIR=str(tmp_path / "keys"))
    done = run_storefront(env, "products", "import", str(path), cwd=tmp_path)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_env.get(
            "STOREFRONT_MIGRATION_DATABASE_URL", database_env["STOREFRONT_DATABASE_URL"]
        ),
    )
    return done, settings


def refused_in_one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("INFO")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "products.csv",
            f"{HEADER}\nprod_a,Good,,1,Home\nprod_b,Bad\x00name,,1,Home\n",
            "products.csv: row 2 (line 3), field 'name': must not contain a NUL character (\\x00)",
        ),
        (
            "products.csv",
            f"{HEADER}\nprod_a,Good,,1,Home\nprod_b,B,nul \x00 here,1,Home\n",
            "products.csv: row 2 (line 3), field 'description': must not contain a NUL "
            "character (\\x00)",
        ),
        (
            "products.json",
            json.dumps([GOOD, {"name": "B", "price": 1, "category": "Ho\x00me"}]),
            "products.json: row 2, field 'category': must not contain a NUL character (\\x00)",
        ),
        (
            "products.json",
            '[{"name": "A", "price": 1, "category": "H"}, '
            '{"name": "B\\ud800", "price": 1, "category": "H"}]',
            "products.json: row 2, field 'name': must be Unicode text, but holds a lone UTF-16 "
            "surrogate (\\ud800)",
        ),
    ],
)
def test_text_no_database_can_hold_is_refused_naming_row_and_field(
    database_env: dict[str, str], tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = write(tmp_path, name, content)

    done, settings = import_command(database_env, tmp_path, path)

    assert refused_in_one_line(done) == f"storefront: {expected}"
    assert count(settings) == 0


def test_the_line_where_a_file_stops_being_utf8_is_named(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    lines = [HEADER, "prod_a,Caf\u00e9,,1,Home", "prod_b,Caf\xe9,,1,Home", "prod_c,C,,1,Home"]
    good = "\n".join(lines[:2]).encode() + b"\n"
    path.write_bytes(good + b"prod_b,Caf\xe9,,1,Home\nprod_c,C,,1,Home\n")

    done, settings = import_command(database_env, tmp_path, path)

    error = refused_in_one_line(done)
    assert error == f"storefront: products.csv: not UTF-8 text on line 3 (byte {len(good) + 10})"
    assert count(settings) == 0


def test_an_id_repeated_chunks_apart_is_refused_and_nothing_is_written(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    # Rows are checked and written WRITE_CHUNK at a time: the repeat is in a later chunk
    # than its first row, which was already written in the import's transaction.
    rows = [f"prod_{i:06d},Product {i},,1.00,Bulk" for i in range(1, WRITE_CHUNK + 10)]
    rows[WRITE_CHUNK + 3] = "prod_000007,Again,,1.00,Bulk"  # row WRITE_CHUNK + 4
    path = write_csv(tmp_path, HEADER, *rows)

    done, settings = import_command(database_env, tmp_path, path)

    row = WRITE_CHUNK + 4
    assert refused_in_one_line(done) == (
        f"storefront: products.csv: row {row} (line {row + 1}), field 'id': "
        "'prod_000007' is already used by row 7"
    )
    assert count(settings) == 0


def test_the_first_bad_row_of_the_file_is_named_across_chunks(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    rows = [
        {"name": f"Product {i}", "price": 1, "category": "Bulk"} for i in range(WRITE_CHUNK + 9)
    ]
    rows[WRITE_CHUNK + 2] = dict(rows[1])  # derives row 2's id again: row WRITE_CHUNK + 3
    rows[WRITE_CHUNK + 5]["price"] = -1  # a later bad row, in the same unwritten chunk
    path = write_json(tmp_path, rows)

    done, settings = import_command(database_env, tmp_path, path)

    assert refused_in_one_line(done).startswith(
        f"storefront: products.json: row {WRITE_CHUNK + 3}, field 'id': is missing, and row 2 "
        "has the same name and category"
    )
    assert count(settings) == 0


JSON_DOCUMENTS = [
    "[]",
    ' [ {"a": 1} , {"b": [1, 2, {"c": "x,]"}]}, 12345, -0.5e3, "str\\"ing", true, null ] ',
    '[{"name": "caf\\u00e9 \\ud83d\\ude00", "price": 19.99}]\n',
    '[1,\n 2,\n {"a": tru}]',
    "[1,]",
    "[1 2]",
    "[{]",
    "[",
    "",
    "   \n  ",
    "[1]x",
    '["a\\u12"]',
    '["abc',
    "[[1,]",
    '{"id": "prod_a"}',
    '"text"',
    "[1] [2]",
]


@pytest.mark.parametrize("document", JSON_DOCUMENTS)
@pytest.mark.parametrize("block", [1, 2, 5, 1 << 20])
def test_the_streamed_json_reader_reads_as_json_loads_does(
    monkeypatch: pytest.MonkeyPatch, document: str, block: int
) -> None:
    # Blocks of a few characters put every boundary inside a number, a string, an escape.
    monkeypatch.setattr(importer, "JSON_BLOCK", block)

    def parse(loads: bool) -> tuple[str, object]:
        decode = importer._json_number
        try:
            if loads:
                value = json.loads(document, parse_float=decode, parse_int=decode)
                if not isinstance(value, list):
                    raise InvalidInput(
                        f"x: expected a JSON array of product objects, got {importer._kind(value)}"
                    )
                return "items", value
            return "items", list(importer._JsonArray(io.StringIO(document), "x"))
        except json.JSONDecodeError as exc:
            return "error", f"x: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        except InvalidInput as exc:
            return "error", exc.message

    assert parse(loads=False) == parse(loads=True)
