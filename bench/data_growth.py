"""Growth with data: list and search latency at 10k, 100k and 1M products and users.

Prints figures; asserts nothing.

    .venv/bin/python bench/data_growth.py [--sizes 10000,100000,1000000]
        [--backends sqlite,postgresql] [--quick] [--runs 30] [--explain]
        [--only TEXT] [--budget SECONDS]

For each size N and each backend (PostgreSQL when 127.0.0.1:5432 answers;
STOREFRONT_BENCH_POSTGRES_URL names another server): a fresh database (a SQLite file in a
temporary directory, or a throwaway PostgreSQL database, dropped at the end) migrated as
`storefront db upgrade` does up to 0002; N products and N users written in bulk beside the
API (sqlite3 ``executemany`` in one transaction; PostgreSQL binary COPY); then the upgrade to
head, so that migration 0003 builds its search indexes and 0004 its row counters over the
loaded catalogue, as they do when an existing deployment upgrades (its time is printed);
on PostgreSQL ``VACUUM ANALYZE``, as autovacuum does after a load.

Then, in process, each scenario calls the persistence function its handler calls, through
``persistence.db.Database.read`` as a request does, or ``Database.scan`` for a search (the
HTTP layer, the same at every size, is left out), ``--runs`` times after a warm-up. A search
has the server's budget (STOREFRONT_SEARCH_BUDGET's default, or ``--budget``): one that
overruns it is stopped and refused (the API's 422), and its row says "422" instead of the
matches, with the time it took to be refused. The table shows p50 and p90 of the first ask
(cold: every run counts its search afresh), the matches (X-Total-Count), the p50 of the
X-Total-Count query alone, p50 over the same backend's p50 at the smallest N, and the same two
for a repeat (warm: the term asked again, its exact count and its page's ids remembered for
the catalogue's version, the page's rows read again by id), so that the cache never hides
the cold cost. ``--only`` keeps the scenarios whose name contains that text (e.g. ``--only
search=`` for the searches). ``--explain`` prints the plan of every statement of every
scenario at the largest N.

The catalogue: names and descriptions from a vocabulary of random words; ten categories of
about 10% each and one of exactly 20 products; "waterproof" in 1% of descriptions (a term
whose matches grow with the catalogue), "stratocaster" in the names of exactly 20 products
(a term whose matches do not), "qz" as a two-letter term and "e" as a one-letter one (no
trigram: they read every product, or every product of the category they are narrowed to).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import Connection, create_engine, event, select
from sqlalchemy.engine import make_url

from core.errors import SearchTooBroad
from core.settings import Settings
from persistence import counts, products, users
from persistence.db import Database
from persistence.migrate import upgrade
from persistence.models import Product, User

POSTGRES_URL = os.environ.get(
    "STOREFRONT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SIZES = (10_000, 100_000, 1_000_000)
SCALING_TERM = "waterproof"
SELECTIVE_TERM = "stratocaster"
SHORT_TERM = "qz"
ONE_LETTER = "e"
#: What a search may cost unless --budget says otherwise: the server's default.
BUDGET: float = Settings.model_fields["search_budget"].default
BIG_CATEGORIES = (
    "Electronics",
    "Apparel",
    "Kitchen",
    "Garden",
    "Toys",
    "Books",
    "Sports",
    "Beauty",
    "Automotive",
    "Office",
)
SMALL_CATEGORY = "Limited Edition"
FIXED = 20  # products with the selective term, and in the small category
#: A stand-in argon2id hash: the bench never logs anyone in.
PASSWORD_HASH = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0$YmVuY2hoYXNoYmVuY2hoYXNo"
START = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 20_000
PRODUCT_COLUMNS = ("id", "name", "description", "price", "category")


# --- data -----------------------------------------------------------------------------------


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
        if SCALING_TERM not in word and SELECTIVE_TERM not in word:
            words.add(word)
    return sorted(words)


def scattered_id(prefix: str, i: int) -> str:
    # i -> i * an odd constant mod 2**48 is one-to-one: unique ids in no particular order.
    return f"{prefix}{(i * 0x9E3779B97F4B) % (1 << 48):012x}"


def product_rows(n: int) -> Iterator[tuple[str, str, str, Decimal, str]]:
    rng = random.Random(5)
    words = vocabulary(rng)
    selective = {k * n // FIXED + 7 for k in range(FIXED)}
    small = {k * n // FIXED + 3 for k in range(FIXED)}
    for i in range(n):
        name = " ".join(w.capitalize() for w in rng.choices(words, k=2))
        name += f" {rng.choice('ABCDEFGHJKLMNPRSTUVWXY')}-{rng.randint(100, 999)}"
        if i in selective:
            name += f" {SELECTIVE_TERM.capitalize()}"
        description = " ".join(rng.choices(words, k=rng.randint(8, 14)))
        if i % 100 == 0:
            description += f", {SCALING_TERM}"
        description = description.capitalize() + "."
        category = SMALL_CATEGORY if i in small else BIG_CATEGORIES[i % len(BIG_CATEGORIES)]
        price = Decimal(rng.randint(100, 99_999)) / 100
        yield scattered_id("prod_", i), name, description, price, category


def user_rows(n: int) -> Iterator[tuple[str, str, str, str, datetime]]:
    rng = random.Random(6)
    words = vocabulary(rng, 500)
    for i in range(n):
        created = START + timedelta(seconds=i * 30, microseconds=rng.randrange(1_000_000))
        name = " ".join(w.capitalize() for w in rng.choices(words, k=2))
        yield scattered_id("user_", i), name, f"user{i}@example.com", PASSWORD_HASH, created


@dataclass
class Data:
    products: list[tuple[str, str, str, Decimal, str]]
    users: list[tuple[str, str, str, str, datetime]]


def batched(rows: Iterator[Any], size: int = BATCH) -> Iterator[list[Any]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_sqlite(path: Path, data: Data) -> float:
    start = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")  # a throwaway file
        connection.execute("BEGIN")
        connection.executemany(
            "insert into products (id, name, description, price, category) values (?,?,?,?,?)",
            ((i, nm, d, str(p), c) for i, nm, d, p, c in data.products),
        )
        # As UTCDateTime stores them on SQLite: naive UTC, microseconds always written.
        connection.executemany(
            "insert into users (id, name, email, password_hash, created_at) values (?,?,?,?,?)",
            (
                (i, nm, e, h, c.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"))
                for i, nm, e, h, c in data.users
            ),
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return time.perf_counter() - start


async def load_postgres(url: str, data: Data) -> float:
    start = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        for batch in batched(iter(data.products)):
            await connection.copy_records_to_table(
                "products",
                records=batch,
                columns=["id", "name", "description", "price", "category"],
            )
        for batch in batched(iter(data.users)):
            await connection.copy_records_to_table(
                "users",
                records=batch,
                columns=["id", "name", "email", "password_hash", "created_at"],
            )
    finally:
        await connection.close()
    return time.perf_counter() - start


async def vacuum_analyze(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE products")
        await connection.execute("VACUUM ANALYZE users")
    finally:
        await connection.close()


# --- databases ------------------------------------------------------------------------------


def postgres_reachable() -> bool:
    parts = urlsplit(POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


async def postgres_admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


# --- scenarios ------------------------------------------------------------------------------

#: A read as the handler runs it: a unit of work (a function of a Connection, run with
#: Database.read or .scan), or a read that runs its statement alone (a function of the Database).
Read = Callable[[Connection], Any] | Callable[[Database], Awaitable[Any]]


@dataclass
class Scenario:
    name: str
    page: Read  # what the handler's read does
    count: Read  # the X-Total-Count query alone
    runs: int | None = None  # fewer runs for the slow fallback
    search: bool = False  # run through Database.scan, within the search budget, as the handler does


def product_count(**filters: Any) -> Read:
    def count(connection: Connection) -> int:
        return products.count_products(connection, **filters)

    return count


def user_count(connection: Connection) -> int:
    return counts.table_total(connection, User)


def product_list(**kwargs: Any) -> Read:
    def page(connection: Connection) -> Any:
        return products.list_products(connection, limit=20, **kwargs)

    return page


def user_list(**kwargs: Any) -> Read:
    async def page(db: Database) -> Any:
        return await users.list_users(db, limit=20, **kwargs)

    return page


#: User N-21, whose key the `next` link of the page ending there carries.
DEEP_USER = (
    select(User.created_at, User.id)
    .order_by(User.created_at.desc(), User.id.desc())
    .limit(1)
    .offset(20)
)


async def deep_user_key(db: Database, n: int) -> users.UserKey:
    """The key of user N-21: the cursor the `next` link of the page ending there carries."""

    def key(connection: Connection) -> users.UserKey:
        row = connection.execute(DEEP_USER).one()
        return (row.created_at, row.id)

    return await db.read(key)


async def deep_product_id(db: Database) -> str:
    def key(connection: Connection) -> str:
        return str(
            connection.scalar(select(Product.id).order_by(Product.id.desc()).limit(1).offset(20))
        )

    return await db.read(key)


def scenarios(n: int, user_key: users.UserKey, product_id: str) -> list[Scenario]:
    return [
        Scenario(
            f"products?search={SCALING_TERM} (1%)",
            product_list(search=SCALING_TERM),
            product_count(category=None, search=SCALING_TERM),
            search=True,
        ),
        Scenario(
            f"products?search={SELECTIVE_TERM} ({FIXED})",
            product_list(search=SELECTIVE_TERM),
            product_count(category=None, search=SELECTIVE_TERM),
            search=True,
        ),
        Scenario(
            f"products?search={SHORT_TERM} (2 chars, scan)",
            product_list(search=SHORT_TERM),
            product_count(category=None, search=SHORT_TERM),
            runs=5,
            search=True,
        ),
        Scenario(
            f"products?search={ONE_LETTER} (1 char, scan)",
            product_list(search=ONE_LETTER),
            product_count(category=None, search=ONE_LETTER),
            runs=5,
            search=True,
        ),
        Scenario(
            f"products?search={SHORT_TERM}&category=Garden",
            product_list(search=SHORT_TERM, category="garden"),
            product_count(category="garden", search=SHORT_TERM),
            runs=5,
            search=True,
        ),
        Scenario(
            "products?category=Garden (10%)",
            product_list(category="garden"),
            product_count(category="garden", search=None),
        ),
        Scenario(
            f"products?category={SMALL_CATEGORY} ({FIXED})",
            product_list(category=SMALL_CATEGORY),
            product_count(category=SMALL_CATEGORY, search=None),
        ),
        Scenario(
            "products?after=<row N-20>",
            product_list(after=product_id),
            product_count(category=None, search=None),
        ),
        Scenario("users (first page)", user_list(), user_count),
        Scenario("users?offset=<N-20>", user_list(offset=n - 20), user_count),
        Scenario("users?after=<row N-21>", user_list(after=user_key), user_count),
    ]


async def timed(
    db: Database, work: Read, runs: int, *, search: bool = False, cold: bool = True
) -> tuple[float, float, Any]:
    """p50 and p90 in ms, and the last result: None when the search budget stopped it (the
    times are then those of the refusals). ``cold``: every run counts its search afresh (the
    remembered search counts and pages are forgotten first), as the first ask of a term does;
    otherwise a repeat of a term, its count and page remembered
    (persistence.products.Remembered)."""
    run = db.scan if search else db.read
    result = None
    samples = []
    for i in range(runs + 1):  # the first is a warm-up: caches, prepared statements
        if cold:
            products.forget_searches()
        start = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(work):
                result = await work(db)
            else:
                result = await run(work)
        except SearchTooBroad:
            result = None
        if i:
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p90 = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
    return statistics.median(samples), p90, result


@dataclass
class Figure:
    backend: str
    n: int
    scenario: str
    matches: int | None  # None: refused, past the search budget (the API's 422)
    p50: float
    p90: float
    count_p50: float
    #: p50 of a repeat: the term asked again, its exact count and its page's ids remembered.
    warm_p50: float


async def measure(
    backend: str, url: str, n: int, runs: int, *, only: str, budget: float
) -> list[Figure]:
    db = Database(url, scan_budget=budget)
    figures = []
    try:
        user_key = await deep_user_key(db, n)
        product_id = await deep_product_id(db)
        for scenario in scenarios(n, user_key, product_id):
            if only not in scenario.name:
                continue
            times = scenario.runs or runs
            p50, p90, page = await timed(db, scenario.page, times, search=scenario.search)
            count_p50, _, _ = await timed(db, scenario.count, times, search=scenario.search)
            warm_p50, _, _ = await timed(
                db, scenario.page, times, search=scenario.search, cold=False
            )
            assert page is None or len(page.rows) > 0, scenario.name
            matches = None if page is None else page.total
            figures.append(
                Figure(backend, n, scenario.name, matches, p50, p90, count_p50, warm_p50)
            )
    finally:
        await db.dispose()
    return figures


def explain(url: str, n: int) -> None:
    """The plan of every statement a scenario's read runs (a synchronous engine: psycopg)."""
    sync_url = make_url(url)
    if sync_url.get_backend_name() == "postgresql":
        sync_url = sync_url.set(drivername="postgresql+psycopg")
    engine = create_engine(sync_url)
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    try:
        with engine.connect() as connection:
            row = connection.execute(DEEP_USER).one()
            user_key = (row.created_at, row.id)
            product_id = str(
                connection.scalar(select(Product.id).order_by(Product.id.desc()).offset(20))
            )
            for scenario in scenarios(n, user_key, product_id):
                statements.clear()
                scenario.page(connection)
                print(f"--- {engine.dialect.name} N={n:,}: {scenario.name}")
                for statement, parameters in list(statements):
                    print("    " + " ".join(statement.split()))
                    plan = connection.exec_driver_sql(prefix + statement, parameters).all()
                    for row in plan:
                        print("      " + str(row[-1]))
    finally:
        engine.dispose()


async def prepare(backend: str, data: Data, directory: Path) -> tuple[str, str]:
    """A database of ``data`` at head; returns its URL and how long each step took."""
    n = len(data.products)
    if backend == "sqlite":
        path = directory / f"growth_{n}.db"
        url = f"sqlite:///{path}"
    else:
        name = f"sf_growth_{os.getpid()}_{n}"
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}"')
        await postgres_admin(f'CREATE DATABASE "{name}"')
        url = postgres_url(name)
    await asyncio.to_thread(upgrade, url, "0002")  # what `storefront db upgrade` runs
    if backend == "sqlite":
        loaded = await asyncio.to_thread(load_sqlite, path, data)
    else:
        loaded = await load_postgres(url, data)
    start = time.perf_counter()
    await asyncio.to_thread(upgrade, url)  # 0003 indexes, 0004 counts what is there
    upgraded = time.perf_counter() - start
    steps = f"bulk insert {loaded:.1f} s, upgrade to head (0003, 0004) {upgraded:.1f} s"
    if backend == "postgresql":
        start = time.perf_counter()
        await vacuum_analyze(url)
        steps += f", VACUUM ANALYZE {time.perf_counter() - start:.1f} s"
    else:
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        steps += f", file {size / 1e6:.0f} MB"
    return url, steps


async def discard(backend: str, url: str) -> None:
    if backend == "sqlite":
        path = make_url(url).database or ""
        for suffix in ("", "-wal", "-shm"):
            await asyncio.to_thread(Path(path + suffix).unlink, missing_ok=True)
    else:
        name = make_url(url).database
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"loadavg {load}, nproc {os.cpu_count()}"


def print_table(figures: list[Figure]) -> None:
    smallest = min(f.n for f in figures)
    base = {(f.backend, f.scenario): f.p50 for f in figures if f.n == smallest}
    warm_base = {(f.backend, f.scenario): f.warm_p50 for f in figures if f.n == smallest}
    header = (
        f"{'backend':<10} {'N':>9}  {'scenario':<38} {'matches':>9} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'count p50':>9} {f'x{smallest // 1000}k':>7} {'warm p50':>9}"
        f" {f'warm x{smallest // 1000}k':>10}"
    )
    print(header)
    print("-" * len(header))
    for f in sorted(figures, key=lambda f: (f.backend != "sqlite", f.backend, f.n)):
        ratio = f.p50 / base[(f.backend, f.scenario)]
        matches = "422" if f.matches is None else f"{f.matches:,}"
        print(
            f"{f.backend:<10} {f.n:>9,}  {f.scenario:<38} {matches:>9} {f.p50:>8.2f} "
            f"{f.p90:>8.2f} {f.count_p50:>9.2f} {ratio:>7.1f} {f.warm_p50:>9.2f}"
            f" {f.warm_p50 / warm_base[(f.backend, f.scenario)]:>10.1f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="10k and 100k only")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per scenario")
    parser.add_argument("--explain", action="store_true", help="plans at the largest N")
    parser.add_argument("--only", default="", help="only scenarios whose name contains this")
    parser.add_argument(
        "--budget", type=float, default=BUDGET, help=f"a search's budget, seconds ({BUDGET})"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.quick:
        sizes = [s for s in sizes if s <= 100_000]
    backends = args.backends.split(",")
    if "postgresql" in backends and not postgres_reachable():
        print(f"PostgreSQL at {POSTGRES_URL} is not reachable: skipped")
        backends.remove("postgresql")

    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, SQLite {sqlite3.sqlite_version}, "
        f"search budget {args.budget * 1000:g} ms"
    )
    started = time.perf_counter()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="sf_growth_") as directory:
        for n in sizes:
            start = time.perf_counter()
            data = Data(list(product_rows(n)), list(user_rows(n)))
            print(f"N={n:,}: generated in {time.perf_counter() - start:.1f} s", flush=True)
            for backend in backends:
                url, steps = await prepare(backend, data, Path(directory))
                try:
                    print(f"  {backend}: {steps}", flush=True)
                    figures += await measure(
                        backend, url, n, args.runs, only=args.only, budget=args.budget
                    )
                    if args.explain and n == sizes[-1]:
                        await asyncio.to_thread(explain, url, n)
                finally:
                    await discard(backend, url)
            del data
    print()
    print_table(figures)
    print()
    print(
        f"x{sizes[0] // 1000}k: p50 over the same backend's p50 at N={sizes[0]:,}. "
        "count p50: the X-Total-Count query alone (a part of p50). "
        f"422: refused past the search budget ({args.budget * 1000:g} ms), in the time shown. "
        f"{time.perf_counter() - started:.0f} s in all; now {machine()}."
    )


if __name__ == "__main__":
    asyncio.run(main())
