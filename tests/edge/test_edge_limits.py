"""The edge's per-client-IP limit in workerd: a Worker configured with a small IP limit and no
reachable origin (requests that pass the edge's checks get its own 502), so no gateway is needed."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time

import httpx
import pytest
from edge_support import EDGE_DIR, EDGE_TOKEN, VECTORS_PATH, free_port, node, wrangler, wrangler_env

IP_LIMIT = 8

CONFIG = """
name = "flowgate-edge-ip-limit-test"
main = "{main}"
compatibility_date = "2025-04-01"

[vars]
ORIGINS = '[{{"url": "http://127.0.0.1:{dead_port}", "continent": "EU"}}]'
RATE_LIMIT_PERIOD_SECONDS = "60"

[[ratelimits]]
name = "KEY_LIMITER"
namespace_id = "4001"
simple = {{ limit = 100000, period = 60 }}

[[ratelimits]]
name = "IP_LIMITER"
namespace_id = "4002"
simple = {{ limit = {ip_limit}, period = 60 }}
"""


@pytest.fixture(scope="module")
def worker():
    home = tempfile.TemporaryDirectory(prefix="flowgate-edge-ip-")
    config = f"{home.name}/wrangler.toml"
    with open(config, "w") as f:
        f.write(CONFIG.format(main=EDGE_DIR / "src" / "index.js", dead_port=free_port(), ip_limit=IP_LIMIT))
    port = free_port()
    proc = subprocess.Popen(
        [node(), str(wrangler()), "dev", "--local", "--config", config, "--ip", "127.0.0.1", "--port", str(port),
         "--inspector-port", str(free_port()), "--persist-to", f"{home.name}/state", "--var",
         f"EDGE_TOKEN:{EDGE_TOKEN}", "--log-level", "warn"],
        cwd=EDGE_DIR,
        env=wrangler_env(home.name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    logs: list[str] = []
    threading.Thread(target=lambda: [logs.append(line) for line in proc.stdout], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{url}/nothing-here", timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("wrangler dev did not start:\n" + "".join(logs[-40:]))
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    home.cleanup()


def test_a_burst_from_one_address_gets_429_and_other_addresses_do_not(worker: str) -> None:
    key = json.loads(VECTORS_PATH.read_text())["valid"][1]["key"]

    def send(ip: str) -> httpx.Response:
        return httpx.post(
            f"{worker}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}", "CF-Connecting-IP": ip},
            json={"model": "m", "messages": []},
            timeout=10,
        )

    # Fixed windows: 2.5x the limit overflows even when a window edge splits the burst.
    answers = [send("198.18.0.1") for _ in range(IP_LIMIT * 5 // 2)]
    statuses = [a.status_code for a in answers]
    # Passing the edge's checks means trying the (unreachable) origin: the edge's own 502.
    assert set(statuses) <= {502, 429}, statuses
    assert statuses.count(429) >= IP_LIMIT // 2, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["x-flowgate-edge-decision"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert send("198.18.0.2").status_code == 502, "another address is not limited"
