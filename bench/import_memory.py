"""The memory and time of `storefront products import` on a large catalogue.

The issue's target: importing 1,000,000 CSV rows (about 80 MB) peaks under 200 MB of resident
memory, whatever the number of rows. This prints the figures and a PASS/FAIL line as
information; it exits 0 either way (it is not a test: timings depend on the machine; the
CPU seconds of the import process depend less on what else runs than its wall time does).

    .venv/bin/python bench/import_memory.py [--rows 1000000] [--format csv|json]
        [--database-url postgresql://postgres@127.0.0.1:5432/DB]

It writes the file into a temporary directory, migrates a fresh database there (SQLite by
default; with --database-url, that database, which must exist and be empty or hold an earlier
run's products), then runs the real command as a child process and waits for it with
wait4(), whose rusage gives that process's own peak RSS (ru_maxrss), not this script's nor the
migration's. Seconds are wall-clock time of the import command alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LIMIT_MB = 200.0  # read strictly: 200 x 10**6 bytes
CATEGORIES = ["Home", "Kitchen", "Apparel", "Electronics", "Outdoor", "Office", "Toys", "Garden"]


def row(i: int) -> list[str]:
    """One product of about 80 bytes as CSV, like the issue's file: an id, a name, a short
    description, a price and a category."""
    return [
        f"prod_{i:08d}",
        f"Product number {i}",
        f"A sturdy item, batch {i % 997}, colour {i % 13}",
        f"{i % 5000}.{i % 100:02d}",
        CATEGORIES[i % len(CATEGORIES)],
    ]


def write_catalogue(path: Path, rows: int, fmt: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            writer = csv.writer(handle)
            writer.writerow(["id", "name", "description", "price", "category"])
            for i in range(rows):
                writer.writerow(row(i))
            return
        handle.write("[\n")
        for i in range(rows):
            product_id, name, description, price, category = row(i)
            item = {
                "id": product_id,
                "name": name,
                "description": description,
                "price": float(price),
                "category": category,
            }
            handle.write(json.dumps(item) + (",\n" if i + 1 < rows else "\n"))
        handle.write("]\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["csv", "json"], default="csv")
    parser.add_argument("--database-url", help="default: a new SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="import-memory-") as tmp:
        directory = Path(tmp)
        database_url = args.database_url or f"sqlite:///{directory / 'bench.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
        env |= {
            "STOREFRONT_DATABASE_URL": database_url,
            "STOREFRONT_KEY_DIR": str(directory / "keys"),
            # Big statements on a loaded machine: no 10 s statement timeout here.
            "STOREFRONT_DATABASE_TIMEOUT": "300",
        }
        catalogue = directory / f"catalogue.{args.format}"
        write_catalogue(catalogue, args.rows, args.format)
        size_mb = catalogue.stat().st_size / 10**6
        subprocess.run(
            [BIN / "storefront", "db", "upgrade"], env=env, cwd=directory, check=True, stdout=-3
        )

        started = time.perf_counter()
        process = subprocess.Popen(
            [BIN / "storefront", "products", "import", str(catalogue)],
            env=env,
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Read the pipes only after the child is reaped: its output is a line or two.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out = process.stdout.read().decode() if process.stdout else ""
        err = process.stderr.read().decode() if process.stderr else ""

    peak_mb = usage.ru_maxrss * 1024 / 10**6  # ru_maxrss is in KiB on Linux
    engine = database_url.split(":", 1)[0]
    print(f"command:  storefront products import catalogue.{args.format} ({engine})")
    print(f"rows:     {args.rows:,} ({size_mb:.1f} MB of {args.format.upper()})")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"seconds:  {seconds:.1f} wall, {cpu:.1f} CPU (user+sys of the import process)")
    print(f"peak RSS: {peak_mb:.1f} MB ({usage.ru_maxrss / 1024:.1f} MiB)")
    print(f"exit:     {process.returncode}")
    for line in (out + err).strip().splitlines()[-3:]:
        print(f"  | {line}")
    verdict = "PASS" if process.returncode == 0 and peak_mb < LIMIT_MB else "FAIL"
    print(f"{verdict}: peak RSS {peak_mb:.1f} MB (target: under {LIMIT_MB:.0f} MB)")


if __name__ == "__main__":
    main()
