"""``storefront products import``: a JSON or CSV catalogue, loaded all or nothing.

Every row is validated before anything is written; then all of them are upserted in one
transaction, so a bad row, or a failed write, leaves the catalogue as it was. Errors are
``InvalidInput`` with one line naming the file, the row and the field.

A row without an ``id`` gets one derived from its name and category (see ``derived_id``), so
that importing the same file twice updates those products rather than adding them again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.settings import Settings
from persistence.db import Database
from persistence.products import ProductData, UpsertCounts, upsert_products

if TYPE_CHECKING:
    from _csv import Reader

FIELDS = ("id", "name", "description", "price", "category")
REQUIRED = ("name", "price", "category")
UNKNOWN_FIELD = f"is not a product field (expected {', '.join(FIELDS)})"
ID_PATTERN = re.compile(r"prod_[A-Za-z0-9_-]{1,59}")
# Plain decimal notation only: Decimal() alone would also take "NaN", "Infinity" and "1_000".
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2)
CENT = Decimal("0.01")
PRICE_RULE = "must be a number >= 0 with at most two decimals"
NAME_MAX, DESCRIPTION_MAX, CATEGORY_MAX = 200, 5000, 100
WRITE_CHUNK = 5000
#: Rows between progress-bar updates while validating: an update per row would cost seconds.
PROGRESS_STEP = 5000


def import_file(settings: Settings, path: Path, *, progress: bool) -> UpsertCounts:
    """Load the products in ``path`` (JSON array or CSV); says how many were inserted, updated
    and already stored unchanged.

    Raises ``InvalidInput`` for an unreadable or malformed file or an invalid row; nothing is
    written then.
    """
    path = Path(path)
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    ) as bar:
        products = _read(path, bar)
        return asyncio.run(_write(settings, products, bar))


async def _write(settings: Settings, products: list[ProductData], bar: Progress) -> UpsertCounts:
    task = bar.add_task("writing", total=len(products))
    db = Database.from_settings(settings)
    try:

        def write_all(session: Session) -> UpsertCounts:
            counts = UpsertCounts()
            for start in range(0, len(products), WRITE_CHUNK):
                chunk = products[start : start + WRITE_CHUNK]
                counts += upsert_products(session, products=chunk)
                bar.update(task, completed=counts.total)
            return counts

        return await db.write(write_all)
    finally:
        await db.dispose()


# Reading


def _read(path: Path, bar: Progress) -> list[ProductData]:
    if _is_json(path):
        return _read_json(path, bar)
    return _read_csv(path, bar)


def _is_json(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in {".json", ".csv"}:
        return suffix == ".json"
    with _reading(path), path.open("rb") as handle:
        start = handle.read(4096)
    head = start.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    return head[:1] in {"[", "{"}


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns the OS errors of opening and reading ``path`` into a one-line ``InvalidInput``."""
    try:
        yield
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the file: {exc.strerror or exc}") from None


def _read_json(path: Path, bar: Progress) -> list[ProductData]:
    source = path.name
    with _reading(path):
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: not UTF-8 text (byte {exc.start})") from None
    del raw
    try:
        # Decimal keeps 19.99 exact; NaN and Infinity stay floats, which validation refuses.
        data = json.loads(text, parse_float=_json_number, parse_int=_json_number)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput(f"{source}: not valid JSON: nested too deeply") from None
    del text
    if not isinstance(data, list):
        raise InvalidInput(f"{source}: expected a JSON array of product objects, got {_kind(data)}")

    check = _RowChecker(source)
    task = bar.add_task("validating", total=len(data))
    products: list[ProductData] = []
    for row, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InvalidInput(f"{source}: row {row}: must be a JSON object, got {_kind(item)}")
        unknown = next((key for key in item if key not in FIELDS), None)
        if unknown is not None:
            raise check.error(row, None, unknown, UNKNOWN_FIELD)
        products.append(check.product(item, row, None, from_csv=False))
        if row % PROGRESS_STEP == 0:
            bar.update(task, completed=row)
    bar.update(task, completed=len(data))
    return products


def _read_csv(path: Path, bar: Progress) -> list[ProductData]:
    source = path.name
    task = bar.add_task("validating", total=_estimated_rows(path) if not bar.disable else None)
    check = _RowChecker(source)
    products: list[ProductData] = []
    with _reading(path), path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header, header_line = _read_header(reader, source)
            width = len(header)
            row = 0
            previous_line = reader.line_num
            for fields in reader:
                # line_num is the row's last line; a quoted field may span several.
                line, previous_line = previous_line + 1, reader.line_num
                if not fields:
                    continue
                row += 1
                if len(fields) > width:
                    raise InvalidInput(
                        f"{source}: {_where(row, line)}: has {len(fields)} fields, "
                        f"but the header on line {header_line} names {width}"
                    )
                if len(fields) < width:
                    raise check.error(
                        row,
                        line,
                        header[len(fields)],
                        f"is missing: the row has {len(fields)} of the header's {width} fields",
                    )
                products.append(
                    check.product(dict(zip(header, fields, strict=True)), row, line, from_csv=True)
                )
                if row % PROGRESS_STEP == 0:
                    bar.update(task, completed=row)
        except csv.Error as exc:
            raise InvalidInput(f"{source}: line {reader.line_num}: not valid CSV: {exc}") from None
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{source}: not UTF-8 text (near line {reader.line_num + 1})"
            ) from None
    bar.update(task, total=len(products), completed=len(products))
    return products


def _estimated_rows(path: Path) -> int:
    """Lines after the header, for the progress bar: cheap, and close enough."""
    lines = 0
    with _reading(path), path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


def _read_header(reader: Reader, source: str) -> tuple[list[str], int]:
    """The column names, in order, and the line they are on."""
    expected = ",".join(FIELDS)
    for fields in reader:
        if fields:
            break
    else:
        raise InvalidInput(f"{source}: empty file: expected the CSV header {expected}")
    line_num = reader.line_num
    header = [name.strip() for name in fields]
    where = f"{source}: line {line_num} (the header)"
    for index, name in enumerate(header):
        if name not in FIELDS:
            raise InvalidInput(
                f"{where}: unknown column {_shown(name)}; expected the header {expected}"
            )
        if name in header[:index]:
            raise InvalidInput(f"{where}: column {name!r} appears twice")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise InvalidInput(f"{where}: no {missing[0]!r} column; expected the header {expected}")
    return header, line_num


# Validating


def _where(row: int, line: int | None) -> str:
    return f"row {row}" if line is None else f"row {row} (line {line})"


class _BadField(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class _RowChecker:
    """Turns raw rows into ``ProductData``, remembering ids to refuse duplicates."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._first_row: dict[str, int] = {}

    def error(self, row: int, line: int | None, field: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {_where(row, line)}, field {field!r}: {problem}")

    def product(
        self, raw: Mapping[str, object], row: int, line: int | None, *, from_csv: bool
    ) -> ProductData:
        """The product in ``raw``, the ``row``-th of the file (starting on ``line`` in a CSV)."""
        try:
            for field in REQUIRED:
                if field not in raw:
                    raise _BadField(field, "is required but missing")
            given_id = _given_id(raw.get("id"))
            name = _text(raw["name"], "name", NAME_MAX)
            description = _description(raw.get("description"))
            price = _price(raw["price"], from_csv=from_csv)
            category = _text(raw["category"], "category", CATEGORY_MAX)
            product_id = given_id or derived_id(name, category)
            first = self._first_row.setdefault(product_id, row)
            if first != row and given_id:
                raise _BadField("id", f"{product_id!r} is already used by row {first}")
            if first != row:
                raise _BadField(
                    "id",
                    f"is missing, and row {first} has the same name and category, so both "
                    f"would be {product_id!r}: give them ids, or merge the rows",
                )
        except _BadField as exc:
            raise self.error(row, line, exc.field, exc.problem) from None
        return ProductData(product_id, name, description, price, category)


def _given_id(value: object) -> str | None:
    """The row's id, or None when it has none (absent, null, or blank)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise _BadField("id", f"must be a string, got {_kind(value)}")
    product_id = value.strip()
    if not ID_PATTERN.fullmatch(product_id):
        raise _BadField(
            "id",
            f"must be 'prod_' and 1 to 59 letters, digits, '_' or '-', got {_shown(value)}",
        )
    return product_id


def derived_id(name: str, category: str) -> str:
    """The id of a row that has none: ``prod_`` and 24 hex digits of the SHA-256 of its name
    and category, compared case-insensitively (trimmed, as stored).

    Stable, so that importing a file again updates those products instead of adding copies;
    a row whose name or category changes is a new product. (A random id here made every
    re-import add the id-less rows again.)
    """
    key = f"{name.casefold()}\x1f{category.casefold()}".encode()
    return "prod_" + hashlib.sha256(key).hexdigest()[:24]


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _BadField(field, f"must be a string, got {_kind(value)}")
    text = value.strip()
    if not 1 <= len(text) <= limit:
        raise _BadField(field, f"must be 1 to {limit} characters (spaces trimmed), got {len(text)}")
    return text


def _description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadField("description", f"must be a string, got {_kind(value)}")
    if len(value) > DESCRIPTION_MAX:
        raise _BadField(
            "description", f"must be at most {DESCRIPTION_MAX} characters, got {len(value)}"
        )
    return value


def _price(value: object, *, from_csv: bool) -> Decimal:
    if from_csv:
        assert isinstance(value, str)
        text = value.strip()
        if not NUMBER.fullmatch(text):
            raise _BadField("price", f"{PRICE_RULE}, got {_shown(value)}")
        number = _decimal(text)
        if number is None:
            raise _BadField("price", f"must be at most {MAX_PRICE}, got {_shown(value)}")
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, _HugeNumber):
        raise _BadField("price", f"must be at most {MAX_PRICE}, got {_shown(value)}")
    else:
        raise _BadField("price", f"must be a JSON number, got {_kind(value)}")
    if number < 0:
        raise _BadField("price", f"{PRICE_RULE}, got {_shown(value)}")
    # Compared before quantize(), which fails on numbers too long for the Decimal context.
    if number > MAX_PRICE:
        raise _BadField("price", f"must be at most {MAX_PRICE}, got {_shown(value)}")
    cents = number.quantize(CENT)
    if cents != number:
        raise _BadField("price", f"{PRICE_RULE}, got {_shown(value)}")
    return cents if cents else Decimal("0.00")  # and not -0.00


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal holds, like 1e999999999999
        return None


class _HugeNumber:
    """A JSON number ``Decimal`` cannot hold; kept so that validation can name its row."""

    def __init__(self, text: str) -> None:
        self.text = text


def _json_number(text: str) -> Decimal | _HugeNumber:
    number = _decimal(text)
    return _HugeNumber(text) if number is None else number


def _shown(value: object) -> str:
    """A value for an error message: short, and on one line."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    if isinstance(value, Decimal | _HugeNumber):
        text = value.text if isinstance(value, _HugeNumber) else str(value)
        return text if len(text) <= 40 else text[:40] + "…"
    return _kind(value)


def _kind(value: object) -> str:
    """What a JSON value is, for 'must be a string, got …'."""
    if isinstance(value, str):
        return f"a string ({_shown(value)})"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        # json.loads makes floats here only of NaN and Infinity.
        return json.dumps(value)
    if isinstance(value, Decimal | _HugeNumber):
        return f"a number ({_shown(value)})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
