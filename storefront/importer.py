"""``storefront products import``: a JSON or CSV catalogue, loaded all or nothing.

The file is streamed: rows are read, checked and upserted a chunk at a time, all in one
transaction, so memory stays flat however long the file is (bench/import_memory.py: 1,000,000
rows) and a bad row, or a failed write, rolls everything back and leaves the catalogue as it
was. Errors are ``InvalidInput`` with one line naming the file, the row and the field (and the
line of a CSV row); when several rows are bad, the first one in the file is named.

A row without an ``id`` gets one derived from its name and category (see ``derived_id``), so
that importing the same file twice updates those products rather than adding them again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.product_rules import (
    MAX_PRICE,
    PRICE_RULE,
    BadField,
    clean_category,
    clean_description,
    clean_name,
    clean_price,
)
from core.settings import Settings
from persistence.db import Database
from persistence.products import ImportedIds, ProductData, UpsertCounts, upsert_products

if TYPE_CHECKING:
    from _csv import Reader

FIELDS = ("id", "name", "description", "price", "category")
REQUIRED = ("name", "price", "category")
UNKNOWN_FIELD = f"is not a product field (expected {', '.join(FIELDS)})"
ID_PATTERN = re.compile(r"prod_[A-Za-z0-9_-]{1,59}")
# Plain decimal notation only: Decimal() alone would also take "NaN", "Infinity" and "1_000".
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Rows checked, then written, together: the memory an import holds besides the driver's.
WRITE_CHUNK = 5000
#: Characters of a JSON file read at a time.
JSON_BLOCK = 1 << 20
#: A JSON array item is read whole before it is checked: one larger than this (no valid
#: product comes near it) is reported as the JSON error where the reading stopped.
MAX_JSON_ITEM = 16 << 20


def import_file(settings: Settings, path: Path, *, progress: bool) -> UpsertCounts:
    """Load the products in ``path`` (JSON array or CSV); says how many were inserted, updated
    and already stored unchanged.

    Raises ``InvalidInput`` for an unreadable or malformed file or an invalid row; nothing is
    written then.
    """
    path = Path(path)
    as_json = _is_json(path)
    # Opened before anything else: a missing file is said as such, with no bar and no
    # connection made.
    with _reading(path):
        raw = path.open("rb")
    with (
        raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>10,} rows"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not progress,
        ) as bar,
    ):
        size = path.stat().st_size
        task = bar.add_task("importing", total=size or None, rows=0)

        def advanced(rows: int) -> None:
            bar.update(task, completed=raw.tell(), rows=rows)

        rows = (_json_rows if as_json else _csv_rows)(handle, path)
        counts = asyncio.run(_write(settings, rows, advanced))
        bar.update(task, completed=size, rows=counts.total)
        return counts


async def _write(
    settings: Settings, rows: Iterator[_Row], advanced: Callable[[int], None]
) -> UpsertCounts:
    db = Database.from_settings(settings)
    try:
        return await db.write(_write_all, rows, advanced)
    finally:
        await db.dispose()


def _write_all(
    session: Session, rows: Iterator[_Row], advanced: Callable[[int], None]
) -> UpsertCounts:
    """Every row, a chunk at a time, in the one transaction ``session`` is in."""
    written = ImportedIds(session)
    counts = UpsertCounts()
    chunk: list[_Row] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) == WRITE_CHUNK:
                counts += _write_chunk(session, written, chunk)
                advanced(counts.total)
                chunk = []
    except InvalidInput:
        # A row of the chunk not yet written may repeat an id: that row comes first.
        _refuse_repeated_ids(written, chunk)
        raise
    counts += _write_chunk(session, written, chunk)
    written.close()
    return counts


def _write_chunk(session: Session, written: ImportedIds, chunk: list[_Row]) -> UpsertCounts:
    first_rows: dict[str, int] = {}
    for row in chunk:
        if first_rows.setdefault(row.product.id, row.row) != row.row:
            _refuse_repeated_ids(written, chunk)  # repeated within the chunk
    if not written.add((row.product.id, row.row) for row in chunk):
        _refuse_repeated_ids(written, chunk)  # repeating an earlier chunk's
    return upsert_products(session, products=[row.product for row in chunk])


def _refuse_repeated_ids(written: ImportedIds, chunk: list[_Row]) -> None:
    """``InvalidInput`` for the first row of ``chunk`` whose id an earlier row of the file
    has, in this chunk or one already written."""
    first_rows = written.first_rows({row.product.id for row in chunk})
    for row in chunk:
        product_id = row.product.id
        first = first_rows.setdefault(product_id, row.row)
        if first == row.row:
            continue
        if row.given_id:
            problem = f"{product_id!r} is already used by row {first}"
        else:
            problem = (
                f"is missing, and row {first} has the same name and category, so both would be "
                f"{product_id!r}: give them ids, or merge the rows"
            )
        raise InvalidInput(f"{row.source}: {_where(row.row, row.line)}, field 'id': {problem}")


# Reading


@dataclass(frozen=True, slots=True)
class _Row:
    """A checked row: its product, and where in the file it is."""

    source: str
    row: int
    #: The line a CSV row starts on; None in JSON.
    line: int | None
    product: ProductData
    #: Whether the row named its id (else it was derived from the name and category).
    given_id: bool


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


def _not_utf8(path: Path) -> str:
    """Where ``path`` stops being UTF-8, found by reading it again line by line: the decoder
    that failed reads blocks, and knows only how far into its block it got."""
    offset = 0
    # Latin-1 reads any byte, and UTF-8's multi-byte sequences never hold a CR or LF byte, so
    # each line (ended as the CSV reader ends them) decodes on its own exactly when the file
    # decodes up to there.
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="latin-1", newline="") as lines:
        for number, line in enumerate(lines, start=1):
            data = line.encode("latin-1")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"{path.name}: not UTF-8 text on line {number} (byte {offset + exc.start})"
            offset += len(data)
    return f"{path.name}: not UTF-8 text"


def _csv_rows(handle: IO[str], path: Path) -> Iterator[_Row]:
    source = path.name
    check = _RowChecker(source)
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
            yield check.row(dict(zip(header, fields, strict=True)), row, line, from_csv=True)
    except csv.Error as exc:
        raise InvalidInput(f"{source}: line {reader.line_num}: not valid CSV: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(_not_utf8(path)) from None


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


def _json_rows(handle: IO[str], path: Path) -> Iterator[_Row]:
    source = path.name
    check = _RowChecker(source)
    items = enumerate(_JsonArray(handle, source), start=1)
    try:
        for row, item in items:
            if not isinstance(item, dict):
                raise InvalidInput(f"{source}: row {row}: must be a JSON object, got {_kind(item)}")
            unknown = next((key for key in item if key not in FIELDS), None)
            if unknown is not None:
                raise check.error(row, None, unknown, UNKNOWN_FIELD)
            yield check.row(item, row, None, from_csv=False)
    except UnicodeDecodeError:
        raise InvalidInput(_not_utf8(path)) from None


_WHITESPACE = " \t\n\r"


class _JsonArray:
    """The items of the JSON array in ``handle``, decoded one at a time: what is held is one
    item and a block of text, not the document. Errors are those ``json.loads`` would give
    (its messages, the line and column in the whole file), as ``InvalidInput``."""

    def __init__(self, handle: IO[str], source: str) -> None:
        self.handle = handle
        self.source = source
        self.text = ""
        self.pos = 0
        self.ended = False
        #: Where ``text`` starts in the file: lines before it, and characters before it on its
        #: first line.
        self.lines = 0
        self.column = 0
        # Decimal keeps 19.99 exact; NaN and Infinity stay floats, which validation refuses.
        self.decoder = json.JSONDecoder(parse_float=_json_number, parse_int=_json_number)

    def __iter__(self) -> Iterator[object]:
        first = self._peek()
        if first != "[":
            value = self._value(whole=True)
            if self._peek():
                raise self._invalid("Extra data", self.pos)
            raise InvalidInput(
                f"{self.source}: expected a JSON array of product objects, got {_kind(value)}"
            )
        self.pos += 1
        if self._peek() == "]":
            self.pos += 1
        else:
            while True:
                self._peek()
                yield self._value()
                after = self._peek()
                if after == ",":
                    self.pos += 1
                    continue
                if after == "]":
                    self.pos += 1
                    break
                raise self._invalid("Expecting ',' delimiter", self.pos)
        if self._peek():
            raise self._invalid("Extra data", self.pos)

    def _more(self) -> bool:
        """Read another block, dropping the text already decoded; False at the file's end."""
        if self.ended:
            return False
        block = self.handle.read(JSON_BLOCK)
        if not block:
            self.ended = True
            return False
        done = self.text[: self.pos]
        newlines = done.count("\n")
        if newlines:
            self.lines += newlines
            self.column = len(done) - done.rfind("\n") - 1
        else:
            self.column += len(done)
        self.text = self.text[self.pos :] + block
        self.pos = 0
        return True

    def _peek(self) -> str:
        """The next character that is not whitespace, not consumed; "" at the file's end."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._more():
                return ""

    def _value(self, *, whole: bool = False) -> object:
        """The JSON value at the current position, consumed. ``whole``: the rest of the file
        is read first (for the one value of a document that is not an array)."""
        while whole and self._more():
            pass
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self._cut_short(exc) and self._more():
                    continue  # the value goes on in the next block
                raise self._invalid(exc.msg, exc.pos) from None
            except RecursionError:
                raise InvalidInput(f"{self.source}: not valid JSON: nested too deeply") from None
            # A value ending at (or just before) the end of the text read so far may go on
            # after it: a number cut after "12", "1." or "1e" decodes as 12 or 1.
            if end >= len(self.text) - 2 and self._more():
                continue
            self.pos = end
            return value

    def _cut_short(self, exc: json.JSONDecodeError) -> bool:
        """Whether the error may be the end of the text read so far, not of the value."""
        if len(self.text) - self.pos >= MAX_JSON_ITEM:
            return False
        # Unterminated strings are reported where they start; anything else cut short fails
        # at the end (an escape within its six characters of it).
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(self.text) - 6

    def _invalid(self, message: str, pos: int) -> InvalidInput:
        line = self.lines + self.text.count("\n", 0, pos) + 1
        start = self.text.rfind("\n", 0, pos)
        column = pos - start if start >= 0 else self.column + pos + 1
        return InvalidInput(
            f"{self.source}: not valid JSON: {message} at line {line} column {column}"
        )


# Validating


def _where(row: int, line: int | None) -> str:
    return f"row {row}" if line is None else f"row {row} (line {line})"


class _RowChecker:
    """Turns raw rows into checked ``_Row``\\ s. Repeated ids are the writer's to find
    (``_refuse_repeated_ids``): it sees every row, however many."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, row: int, line: int | None, field: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {_where(row, line)}, field {field!r}: {problem}")

    def row(self, raw: Mapping[str, object], row: int, line: int | None, *, from_csv: bool) -> _Row:
        """The product in ``raw``, the ``row``-th of the file (starting on ``line`` in a CSV)."""
        try:
            for field in REQUIRED:
                if field not in raw:
                    raise BadField(field, "is required but missing")
            given_id = _given_id(raw.get("id"))
            name = clean_name(_string(raw["name"], "name"))
            description = clean_description(_optional_string(raw.get("description")))
            price = _price(raw["price"], from_csv=from_csv)
            category = clean_category(_string(raw["category"], "category"))
        except BadField as exc:
            raise self.error(row, line, exc.field, exc.problem) from None
        product_id = given_id or derived_id(name, category)
        product = ProductData(product_id, name, description, price, category)
        return _Row(self.source, row, line, product, given_id=given_id is not None)


def _given_id(value: object) -> str | None:
    """The row's id, or None when it has none (absent, null, or blank)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise BadField("id", f"must be a string, got {_kind(value)}")
    product_id = value.strip()
    if not ID_PATTERN.fullmatch(product_id):
        raise BadField(
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


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadField(field, f"must be a string, got {_kind(value)}")
    return value


def _optional_string(value: object) -> str | None:
    return None if value is None else _string(value, "description")


def _price(value: object, *, from_csv: bool) -> Decimal:
    if from_csv:
        assert isinstance(value, str)
        text = value.strip()
        if not NUMBER.fullmatch(text):
            raise BadField("price", f"{PRICE_RULE}, got {_shown(value)}")
        number = _decimal(text)
        if number is None:
            raise BadField("price", f"must be at most {MAX_PRICE}, got {_shown(value)}")
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, _HugeNumber):
        raise BadField("price", f"must be at most {MAX_PRICE}, got {_shown(value)}")
    else:
        raise BadField("price", f"must be a JSON number, got {_kind(value)}")
    return clean_price(number, _shown(value))


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
