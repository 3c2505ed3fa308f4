#!/usr/bin/env python3
"""MCP gateway benchmark: a trivial tool call (`add`) sent straight to an upstream MCP server and
through Flowgate's MCP gateway to the same server, in one run, interleaved over rounds, one call at
a time on a keep-alive connection (`wrk -t1 -c1`); plus calls of a cacheable tool answered from
the tool-call cache. Prints the p50 / p90 / p99 of each (medians over rounds) and the gateway's
added p50, with PASS/FAIL against the targets: added p50 <= 1 ms over the direct call, cache hit
p50 <= 0.5 ms.

    scripts/bench-mcp.py                        # cargo build --release -p flowgate, then measure
    scripts/bench-mcp.py --bin target/debug/flowgate --seconds 2 --rounds 1    # smoke (no build)

The upstream is the official MCP Python SDK's `MCPServer` (tests/sdk/mcp_upstream.py) answering
JSON (`json_response`), so the direct and the gateway calls pay the same server and client costs.
Needs the `mcp` and `httpx` packages (tests/requirements.txt) and `wrk` (Debian package). Exits non-zero only when the setup
fails, not when a target is missed. Method and results: docs/benchmarks.md ("MCP gateway").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
from sdk_support import free_port, spawn, wait_until  # noqa: E402

UPSTREAM_SERVER = """
import sys
from mcp.server.mcpserver import MCPServer
server = MCPServer("bench", log_level="WARNING")

@server.tool()
def add(a: int, b: int) -> int:
    return a + b

@server.tool()
def lookup(key: str) -> str:
    return "value-of-" + key

server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response=True)
"""

ADMIN = "bench-mcp-admin-key"
ACCEPT = "application/json, text/event-stream"


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
for name, value in string.gmatch(os.getenv("BENCH_HEADERS"), "([^\\n:]+): ([^\\n]+)") do
  wrk.headers[name] = value
end
function done(summary, latency, requests)
  io.write(string.format('BENCH_JSON {"requests":%d,"non_2xx":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def run_wrk(script: Path, url: str, headers: dict[str, str], body: dict, seconds: int) -> dict:
    env = {**os.environ, "BENCH_BODY": json.dumps(body), "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "-s", str(script), url],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH_JSON "))
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    if figures["non_2xx"] or figures["errors"] or not figures["requests"]:
        raise RuntimeError(f"{url}: {figures}")
    return figures


class Session:
    """One MCP session over a keep-alive connection, raw JSON-RPC."""

    def __init__(self, url: str, key: str | None) -> None:
        headers = {"Accept": ACCEPT}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.url = url
        self.client = httpx.Client(headers=headers, timeout=30)
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
        response = self.client.post(url, json=init)
        response.raise_for_status()
        self.client.headers["Mcp-Session-Id"] = response.headers.get("mcp-session-id", "")
        self.client.headers["MCP-Protocol-Version"] = "2025-11-25"
        self.client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.next_id = 1

    def headers(self) -> dict[str, str]:
        return {k: v for k, v in self.client.headers.items() if k.lower() not in ("host", "content-length", "accept-encoding", "connection", "user-agent")} | {"Content-Type": "application/json"}

    def call(self, name: str, arguments: dict) -> float:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        started = time.perf_counter()
        response = self.client.post(self.url, json=body)
        elapsed = time.perf_counter() - started
        answer = response.json()
        if "result" not in answer:
            raise RuntimeError(f"{name}: {answer}")
        return elapsed * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", help="flowgate binary (default: build and use target/release/flowgate)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    if args.bin:
        binary = args.bin
    else:
        subprocess.run(["cargo", "build", "--release", "-p", "flowgate"], cwd=ROOT, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        binary = str(target / "release" / "flowgate")
    os.environ["FLOWGATE_BIN"] = binary

    work = tempfile.TemporaryDirectory(prefix="flowgate-bench-mcp-")
    script = Path(work.name) / "upstream.py"
    script.write_text(UPSTREAM_SERVER)
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(script), str(port)])
    gateway = None
    try:
        def up() -> bool:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=0.5)
                return True
            except httpx.HTTPError:
                return False

        if not wait_until(up, timeout=30):
            raise RuntimeError("the upstream MCP server did not start")
        config = Path(work.name) / "flowgate.yaml"
        config.write_text(
            f"mcp:\n  enabled: true\nmcp_servers:\n  bench:\n    url: http://127.0.0.1:{port}/mcp\n"
            "    cacheable_tools:\n      lookup: 3600\n"
        )
        gateway = spawn(["all"], {
            "FLOWGATE_CONFIG": str(config), "FLOWGATE_DATA_DIR": work.name, "ADMIN_API_KEY": ADMIN,
            "FLOWGATE__SERVER__HOST": "127.0.0.1", "FLOWGATE__PROXY__PORT": "0",
            "FLOWGATE__API_SERVER__PORT": "0", "FLOWGATE__COMPLIANCE__PORT": "0", "FLOWGATE__POLICY__PORT": "0",
        }, ["proxy", "api-server", "compliance", "policy"])
        created = httpx.post(f"http://{gateway.addrs['api-server']}/api/enterprise/vkeys",
                             headers={"Authorization": f"Bearer {ADMIN}"}, json={"name": "bench-mcp"}, timeout=10)
        created.raise_for_status()
        key = created.json()["key"]
        direct = Session(f"http://127.0.0.1:{port}/mcp", None)
        through = Session(f"http://{gateway.addrs['proxy']}/api/mcp", key)
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed (Debian package `wrk`)")
        lua = Path(work.name) / "call.lua"
        lua.write_text(WRK_SCRIPT)

        def call(name: str, arguments: dict) -> dict:
            return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}

        kinds = {
            "direct": (direct, call("add", {"a": 1, "b": 2})),
            "gateway": (through, call("bench__add", {"a": 1, "b": 2})),
            "cache_hit": (through, call("bench__lookup", {"key": "k"})),
        }
        for name, (session, body) in kinds.items():  # the upstream session, the cache entry
            answer = session.client.post(session.url, json=body)
            answer.raise_for_status()
            if "result" not in answer.json():
                raise RuntimeError(f"{name}: {answer.text}")
        rounds: dict[str, list[dict]] = {name: [] for name in kinds}
        for _ in range(args.rounds):
            for name, (session, body) in kinds.items():
                rounds[name].append(run_wrk(lua, session.url, session.headers(), body, args.seconds))
        result = {
            name: {f"{q}_ms": statistics.median(r[q] for r in rounds[name]) / 1000.0 for q in ("p50", "p90", "p99")}
            for name in kinds
        }
        # wrk sees HTTP statuses only: the gateway's own counters say every call was answered as meant.
        metrics = httpx.get(f"http://{gateway.addrs['proxy']}/metrics", timeout=10).text
        counted = {
            outcome: sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                         if line.startswith("flowgate_mcp_tool_calls_total{") and f'outcome="{outcome}"' in line)
            for outcome in ("success", "cache_hit", "refused", "limited", "upstream_error", "timeout", "tool_error")
        }
        answered = {name: sum(r["requests"] for r in rounds[name]) for name in kinds}
        if counted["cache_hit"] < answered["cache_hit"] or counted["success"] < answered["gateway"]:
            raise RuntimeError(f"calls not answered as expected: {counted} for {answered}")
        result["calls"] = answered
        added = result["gateway"]["p50_ms"] - result["direct"]["p50_ms"]
        hit = result["cache_hit"]["p50_ms"]
        result["added_p50_ms"] = added
        result["binary"] = binary
        print(f"{'':12}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for name in kinds:
            r = result[name]
            print(f"{name:12}{r['p50_ms']:10.3f}{r['p90_ms']:10.3f}{r['p99_ms']:10.3f}")
        print(f"gateway adds {added:.3f} ms at p50 (target <= 1 ms): {'PASS' if added <= 1.0 else 'FAIL'}")
        print(f"cache hit p50 {hit:.3f} ms (target <= 0.5 ms): {'PASS' if hit <= 0.5 else 'FAIL'}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if gateway:
            gateway.stop()
        upstream.terminate()
        upstream.wait(timeout=10)
        work.cleanup()


if __name__ == "__main__":
    sys.exit(main())
