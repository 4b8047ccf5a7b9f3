"""One worker's resident memory under a long run of mixed requests (looking for a leak).

The issue's target: after 100,000 requests one worker's RSS is under 120 MB, and it grows by
less than 5% between 100,000 and 200,000 requests. This prints the figures and PASS/FAIL lines
as information; it exits 0 either way.

    apt-get install wrk
    .venv/bin/python bench/memory.py [--total 200000]

The server is `storefront serve` (one uvicorn worker, in the process started here) with the
production settings of bench/compare_peers.py: SQLite with 1,000 users and 3,000 products,
limits counted but never reached, access log on (to /dev/null). `wrk -t1 -c32` cycles through
a mix: GET /users/{id} (six in ten, several ids), GET /users?limit=20, GET /products?search=…,
a 404 (unknown id) and a 401 (bad token). wrk has no request budget, so it runs in slices of
whole seconds, sized from the rate so far, until each milestone (0, 5%, 25%, 50%, 75% and 100%
of --total) is passed; the exact request count is printed beside each sample. RSS is VmRSS
from /proc/<pid>/status of the process that holds the listening socket, shown in MiB; the
120 MB target is read strictly, as 120 x 10**6 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_peers import (
    SEARCH_TERM,
    USER_ID,
    Load,
    lua_string,
    machine_state,
    project_token,
    seed_products,
    seed_project,
    serving,
    write_script,
    wrk,
)

LIMIT_MB = 120.0  # read strictly: 120 x 10**6 bytes (114.4 MiB)
GROWTH_LIMIT = 0.05
FRACTIONS = (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)  # of --total: 0, 10k, 50k, 100k, 150k, 200k
EXPECTED = {200, 401, 404}
#: (path, good token?, expected status), cycled through in this order.
MIX = [
    (f"/users/{USER_ID}", True, 200),
    ("/users/user_000007", True, 200),
    ("/users?limit=20", True, 200),
    ("/users/user_000913", True, 200),
    (f"/products?search={SEARCH_TERM}", True, 200),
    ("/users/user_000500", True, 200),
    ("/users/user_doesnotexist00", True, 404),
    ("/users/user_000123", True, 200),
    (f"/users/{USER_ID}", False, 401),
    ("/users/user_000999", True, 200),
]


def mix_script(token: str) -> str:
    """A wrk script cycling through MIX and counting the statuses it gets back."""
    entries = ",\n".join(
        f"  {{{lua_string(path)}, {'true' if good else 'false'}}}" for path, good, _ in MIX
    )
    return f"""
local mix = {{
{entries}
}}
local good = {{Authorization = {lua_string(f"Bearer {token}")}}}
local bad = {{Authorization = "Bearer not-a-valid-token"}}
local prepared = {{}}
local i = 0
statuses = {{}}
threads = {{}}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  for _, entry in ipairs(mix) do
    table.insert(prepared, wrk.format("GET", entry[1], entry[2] and good or bad))
  end
end

request = function()
  i = i % #prepared + 1
  return prepared[i]
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("status %d %d\\n", status, count))
    end
  end
end
"""


def socket_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on this TCP port (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def descendants(pid: int) -> list[int]:
    """pid and all its descendants, parents first."""
    found = [pid]
    for current in found:
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def listening_pid(root: int, port: int) -> int:
    """Which of root and its descendants holds the listening socket (the one serving)."""
    wanted = {f"socket:[{inode}]" for inode in socket_inodes(port)}
    for pid in descendants(root):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                if fd.readlink().as_posix() in wanted:
                    return pid
    raise RuntimeError(f"no process under {root} listens on port {port}")


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    peak = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    if rss is None or peak is None:
        raise RuntimeError(f"no VmRSS/VmHWM in /proc/{pid}/status")
    return int(rss.group(1)), int(peak.group(1))


def statuses(output: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, count in re.findall(r"^status (\d+) (\d+)$", output, re.M):
        counts[int(status)] = counts.get(int(status), 0) + int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--total", type=int, default=200_000, help="requests in all")
    args = parser.parse_args()
    milestones = sorted({round(args.total * fraction) for fraction in FRACTIONS})

    machine_state("start")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = seed_project(directory)
        seed_products(directory)
        with serving(env) as (process, base):
            port = int(base.rsplit(":", 1)[1])
            pid = listening_pid(process.pid, port)
            print(
                f"storefront serve: started pid {process.pid}, listening pid {pid}"
                f" ({'the same process' if pid == process.pid else 'a child'})",
                flush=True,
            )
            load = Load(
                f"{base}/healthz",  # the script supplies every request's path
                script=write_script(directory, "mix", mix_script(project_token(env, base))),
            )
            done = 0
            rate = 0.0
            seen: dict[int, int] = {}
            samples: list[tuple[int, int, int]] = []
            for milestone in milestones:
                while done < milestone:
                    # Slices of whole seconds (wrk's unit) sized to end just past the milestone.
                    # Rounded down: the last slice overshoots by less than a second's worth.
                    seconds = 2 if rate == 0 else max(1, math.floor((milestone - done) / rate))
                    run = wrk(load, min(seconds, 30), check_status=False)
                    got = statuses(run.output)
                    unexpected = {s: n for s, n in got.items() if s not in EXPECTED}
                    if unexpected or sum(got.values()) == 0:
                        raise RuntimeError(f"unexpected statuses {got}:\n{run.output}")
                    for status, count in got.items():
                        seen[status] = seen.get(status, 0) + count
                    done += run.requests
                    rate = run.rps
                rss, peak = memory_kib(pid)
                samples.append((done, rss, peak))
                print(f"{done:>9,} requests: RSS {rss / 1024:.1f} MiB", flush=True)
    machine_state("end")

    print()
    shares = ", ".join(f"{status}: {count:,}" for status, count in sorted(seen.items()))
    print(f"statuses seen: {shares} (plus a few setup requests outside wrk)")
    middle = next(s for s in samples if s[0] >= round(args.total * 0.5))
    print(f"{'requests':>9} {'RSS MiB':>8} {'peak MiB':>8} {'vs ' + f'{middle[0]:,}':>12}")
    for count, rss, peak in samples:
        growth = (rss - middle[1]) / middle[1] * 100
        print(f"{count:>9,} {rss / 1024:8.1f} {peak / 1024:8.1f} {growth:+11.1f}%")

    last = samples[-1]
    growth = (last[1] - middle[1]) / middle[1]
    note = "" if args.total == 200_000 else " (the issue's figures are at 100,000 and 200,000)"
    print()
    megabytes = middle[1] * 1024 / 1e6
    verdict = "PASS" if megabytes < LIMIT_MB else "FAIL"
    print(
        f"{verdict}: RSS at {middle[0]:,} requests is {megabytes:.1f} MB"
        f" = {middle[1] / 1024:.1f} MiB (target < {LIMIT_MB:.0f} MB){note}"
    )
    verdict = "PASS" if growth < GROWTH_LIMIT else "FAIL"
    print(
        f"{verdict}: RSS grew {growth * 100:+.1f}% from {middle[0]:,} to {last[0]:,} requests"
        f" (target < {GROWTH_LIMIT * 100:.0f}%){note}"
    )


if __name__ == "__main__":
    main()
