"""Where slow requests come from: every request's latency as the kernel saw it, beside wrk's.

Runs `storefront serve` (production settings, SQLite, the bench's data), loads one route with
`wrk -t1 -c32`, and captures the loopback traffic with tcpdump. Each request's latency is the
time from its packet to the last response packet before the next request on the same
connection (HTTP/1.1 keep-alive, no pipelining). Then:

- the distribution as the kernel saw it (p50, p99) beside wrk's own;
- do slow requests (the slowest 1%) cluster in time (a stall: GC, a blocked loop, the machine
  taking the CPU away) or by connection (unfair scheduling)? Counted by 100 ms window and by
  connection, with the longest pauses in the server's output.

    apt-get install wrk tcpdump        # root: tcpdump captures on lo
    .venv/bin/python bench/tails.py [--path '/users?limit=20'] [--seconds 8]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_peers as cp  # bench/ is not a package

LINE = re.compile(r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): tcp (\d+)")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latencies(capture: str, port: int) -> list[tuple[float, int, float]]:
    """(start time, client port, latency in ms) of every complete request in the capture."""
    pending: dict[int, float] = {}  # client port -> its request's time
    last_out: dict[int, float] = {}  # client port -> the last response packet's time
    done: list[tuple[float, int, float]] = []
    for line in capture.splitlines():
        match = LINE.match(line)
        if match is None or match.group(4) == "0":
            continue
        when, src, dst = float(match.group(1)), int(match.group(2)), int(match.group(3))
        if dst == port:  # a request: the previous one on this connection is complete
            if src in pending and src in last_out:
                done.append((pending[src], src, (last_out[src] - pending[src]) * 1000))
            pending[src] = when
            last_out.pop(src, None)
        elif src == port and dst in pending:
            last_out[dst] = when
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--path", default="/users?limit=20&offset=0")
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    cp.machine_state("start")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = cp.seed_project(directory)
        cp.seed_products(directory)
        with cp.serving(env) as (_, base):
            port = int(base.rsplit(":", 1)[1])
            token = cp.project_token(env, base)
            load = cp.Load(base + args.path, {"Authorization": f"Bearer {token}"})
            cp.wrk(load, 2)  # warm up, not captured
            pcap = directory / "capture.pcap"
            # Written raw to a file with a large buffer: a text pipe drops packets under load.
            dump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-nn", "-B", "65536", "-w", str(pcap), f"tcp port {port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
            result = cp.wrk(load, args.seconds)
            time.sleep(0.5)
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=30)
            capture = subprocess.run(
                ["tcpdump", "-r", str(pcap), "-nn", "-tt", "-q"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    cp.machine_state("end")
    seen = latencies(capture, port)
    if not seen:
        raise SystemExit("no requests in the capture (is tcpdump allowed to capture on lo?)")
    values = [ms for _, _, ms in seen]
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    print(f"\nGET {args.path}, wrk -t1 -c32 {args.seconds}s: {result.rps:.0f} req/s")
    print(f"{'':24} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>8}")
    print(
        f"{'wrk (client side)':24} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
        f"{result.p99_ms / result.p50_ms:8.1f}"
    )
    print(
        f"{'kernel (loopback)':24} {p50:8.2f} {p99:8.2f} {p99 / p50:8.1f}   "
        f"({len(values)} requests)"
    )

    # The first request on each connection waits for the server to accept the connection:
    # wrk opens all 32 at once, so a server that accepts one connection per turn of its
    # loop (uvloop's libuv since 1.45) answers the k-th after k turns of other work
    # (storefront.eventloop).
    opening: dict[int, tuple[float, float]] = {}
    for start, conn, ms in seen:
        if conn not in opening or start < opening[conn][0]:
            opening[conn] = (start, ms)
    openers = sorted(ms for _, ms in opening.values())
    print(
        f"{'first request of each':24} {percentile(openers, 0.5):8.2f} {max(openers):8.2f}"
        f"   (max; {len(openers)} connections, opened together)"
    )

    slow = [(start, conn, ms) for start, conn, ms in seen if ms >= p99]
    slow_openers = sum(1 for start, conn, _ in slow if opening[conn][0] == start)
    first = min(start for start, _, _ in seen)
    by_window = collections.Counter(int((start - first) * 10) for start, _, _ in slow)
    by_connection = collections.Counter(conn for _, conn, _ in slow)
    windows = len({int((start - first) * 10) for start, _, _ in seen})
    print(
        f"\nslowest 1% ({len(slow)} requests, >= {p99:.1f} ms), "
        f"{slow_openers} of them the first on their connection:"
    )
    print(
        f"  in time: {len(by_window)} of {windows} 100-ms windows hold them; busiest windows "
        + ", ".join(f"{w / 10:.1f}s: {n}" for w, n in by_window.most_common(5))
    )
    print(
        f"  by connection: {len(by_connection)} of "
        f"{len({conn for _, conn, _ in seen})} connections; most "
        + ", ".join(str(n) for _, n in by_connection.most_common(5))
    )
    # Pauses: the longest gaps between one response packet and the next, server-wide.
    outs = sorted(
        float(m.group(1))
        for line in capture.splitlines()
        if (m := LINE.match(line)) and int(m.group(2)) == port and m.group(4) != "0"
        if float(m.group(1)) >= first  # after the first request of the run
    )
    gaps = sorted(((b - a) * 1000, a - first) for a, b in itertools.pairwise(outs))
    print(
        "  longest pauses in the server's output: "
        + ", ".join(f"{ms:.1f} ms at {at:.2f}s" for ms, at in gaps[-5:][::-1])
    )
    print(f"  median gap between responses: {statistics.median(g for g, _ in gaps):.3f} ms")


if __name__ == "__main__":
    main()
