#!/usr/bin/env python3
"""The edge pre-filter's cost and benefit, side by side with the same load sent straight to the
origin, in one run (docs/benchmarks.md, "The edge pre-filter"):

1. added latency at c=1: non-streamed chat requests (`local-mock`, the gateway's in-process mock
   model) through `wrangler dev --local` and straight to the origin, interleaved in rounds; p50/p99;
2. invalid-key rejections (401) per second at c=N (keys with a wrong checksum) through the edge,
   and the CPU the origin spent meanwhile; then the same load straight to the origin. Connections
   the server closed are reopened and counted under status 0.

The load generator is a Python loop (threads over keep-alive `http.client` connections; neither
wrk nor oha is needed); on a small machine it shares the cores with what it measures, so absolute
rates are lower bounds. Run with the test venv (scripts/python-tests.sh builds it):

    FLOWGATE_BIN=target/release/flowgate ~/.cache/flowgate/deploy-venv/bin/python scripts/bench-edge.py
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "edge"))

from edge_support import VECTORS_PATH, start_edge_stack  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and all its descendants (wrangler, its workerd)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0.0
    for pid in tree:
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue
    return total


def connection(url: str) -> http.client.HTTPConnection:
    parsed = urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)


def post(conn: http.client.HTTPConnection, path: str, key: str, body: bytes) -> int:
    conn.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def latencies(url: str, key: str, n: int) -> list[float]:
    body = json.dumps({"model": "local-mock", "messages": [{"role": "user", "content": "hi"}]}).encode()
    conn = connection(url)
    out = []
    for _ in range(n):
        started = time.perf_counter()
        status = post(conn, "/v1/chat/completions", key, body)
        out.append(time.perf_counter() - started)
        assert status == 200, status
    conn.close()
    return out


def rejections(url: str, keys: list[str], concurrency: int, seconds: float) -> tuple[float, dict[int, int]]:
    body = json.dumps({"model": "local-mock", "messages": [{"role": "user", "content": "hi"}]}).encode()
    counts: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = connection(url)
        local: dict[int, int] = {}
        j = i
        while time.monotonic() < deadline:
            try:
                status = post(conn, "/v1/chat/completions", keys[j % len(keys)], body)
            except (OSError, http.client.HTTPException):
                # A connection the server closed: counted, reopened.
                status = 0
                conn.close()
                conn = connection(url)
            local[status] = local.get(status, 0) + 1
            j += 1
        conn.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return sum(v for k, v in counts.items() if k == 401) / elapsed, counts


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per latency round (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds, alternating the order (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections for the rejection test")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each rejection run")
    args = parser.parse_args()

    stack = start_edge_stack("bench")
    try:
        origin = stack.proxy_url(0)
        edge = stack.edge.url
        origin_pid = stack.origins[0].proc.pid
        edge_pid = stack.edge.proc.pid
        stack.origins[1].stop()  # one origin: nothing else shares the machine
        key = stack.create_key()["key"]
        latencies(origin, key, 50)  # warm both paths
        latencies(edge, key, 50)
        direct: list[float] = []
        through: list[float] = []
        for r in range(args.rounds):
            order = [(origin, direct), (edge, through)]
            for url, sink in order if r % 2 == 0 else reversed(order):
                sink.extend(latencies(url, key, args.requests))

        bad = json.loads(VECTORS_PATH.read_text())["wrong_checksum"]
        results = {}
        for name, url in (("edge", edge), ("direct", origin)):
            before, edge_before = cpu_seconds(origin_pid), tree_cpu_seconds(edge_pid)
            rate, counts = rejections(url, bad, args.concurrency, args.seconds)
            used = cpu_seconds(origin_pid) - before
            edge_used = tree_cpu_seconds(edge_pid) - edge_before
            results[name] = {
                "rejected_per_s": round(rate),
                "statuses": counts,
                "origin_cpu_s": round(used, 2),
                "edge_cpu_s": round(edge_used, 2),
                "origin_cpu_us_per_request": round(used / max(1, sum(counts.values())) * 1e6, 1),
            }

        report = {
            "latency_ms_c1": {
                "direct": {"p50": round(pct(direct, 0.5), 2), "p99": round(pct(direct, 0.99), 2)},
                "edge": {"p50": round(pct(through, 0.5), 2), "p99": round(pct(through, 0.99), 2)},
                "added_p50": round(pct(through, 0.5) - pct(direct, 0.5), 2),
                "added_p99": round(pct(through, 0.99) - pct(direct, 0.99), 2),
                "requests_each": len(direct),
                "mean_direct": round(statistics.mean(direct) * 1000, 2),
            },
            "invalid_keys": {**results, "concurrency": args.concurrency, "seconds": args.seconds},
        }
        print(json.dumps(report, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
