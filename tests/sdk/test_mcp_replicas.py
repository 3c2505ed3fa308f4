"""An MCP session opened on one proxy replica keeps working on another: two `flowgate all`
processes on one PostgreSQL database and one Redis, the same secrets, a real upstream MCP server
(the SDK's `MCPServer`) behind both. The session id is signed, so no replica has to remember it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from sdk_support import free_port, spawn, wait_until

UPSTREAM = Path(__file__).with_name("mcp_upstream.py")
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-tAc"]


def services_available() -> bool:
    if shutil.which("psql") is None or shutil.which("redis-cli") is None:
        return False
    pg = subprocess.run([*PG, "select 1"], capture_output=True, text=True)
    redis = subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True)
    return pg.returncode == 0 and redis.stdout.strip() == "PONG"


@pytest.fixture(scope="module")
def replicas():
    if not services_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are required under CI=true")
        pytest.skip("PostgreSQL and Redis are not running here")
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(UPSTREAM), "http", str(port)])

    def up() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=0.5)
            return True
        except httpx.HTTPError:
            return False

    assert wait_until(up, timeout=20)
    database = f"fg_mcp_{uuid.uuid4().hex[:12]}"
    subprocess.run([*PG, f"CREATE DATABASE {database}"], check=True, capture_output=True)
    work = tempfile.TemporaryDirectory(prefix="flowgate-mcp-replicas-")
    config = Path(work.name) / "flowgate.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: local-mock
    litellm_params: {{model: mock/local, mock_response: "hi"}}
mcp:
  enabled: true
mcp_servers:
  weather:
    url: http://127.0.0.1:{port}/mcp
    cacheable_tools:
      forecast: 300
"""
    )
    common = {
        "FLOWGATE_CONFIG": str(config),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "REDIS_URL": "redis://127.0.0.1:6379",
        "FLOWGATE__REDIS__PREFIX": f"{database}:",
        "ADMIN_API_KEY": "replicas-admin-key",
        "FLOWGATE__SECURITY__KEY_HASH_SECRET": "replicas-key-hash-secret-0123456789abcdef",
        "FLOWGATE__SERVER__HOST": "127.0.0.1",
        "FLOWGATE__PROXY__PORT": "0",
        "FLOWGATE__API_SERVER__PORT": "0",
        "FLOWGATE__COMPLIANCE__PORT": "0",
        "FLOWGATE__POLICY__PORT": "0",
    }
    processes = []
    try:
        for index in range(2):
            data_dir = Path(work.name) / f"replica-{index}"
            data_dir.mkdir()
            processes.append(
                spawn(["all"], {**common, "FLOWGATE_DATA_DIR": str(data_dir)}, ["proxy", "api-server", "compliance", "policy"])
            )
        yield processes
    finally:
        for process in processes:
            process.stop()
        upstream.terminate()
        upstream.wait(timeout=10)
        subprocess.run([*PG, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)
        work.cleanup()


def test_a_session_from_one_replica_works_on_the_other(replicas):
    first, second = (f"http://{p.addrs['proxy']}/api/mcp" for p in replicas)
    created = httpx.post(
        f"http://{replicas[0].addrs['api-server']}/api/enterprise/vkeys",
        headers={"Authorization": "Bearer replicas-admin-key"},
        json={"name": "replicas", "mcp_tools": ["weather__add"]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}", "Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "lb-client", "version": "1"}},
    }
    opened = httpx.post(first, json=init, headers=headers, timeout=10)
    assert opened.status_code == 200, opened.text
    session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    assert httpx.post(first, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session, timeout=10).status_code == 202
    # The next requests land on the other replica, with the same session id.
    listed = httpx.post(second, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=session, timeout=10)
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["result"]["tools"]] == ["weather__add"]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": 20, "b": 22}}}
    answered = httpx.post(second, json=call, headers=session, timeout=10)
    assert answered.json()["result"]["content"][0]["text"] == "42", answered.text
    # And back on the first one.
    assert httpx.post(first, json={**call, "id": 3}, headers=session, timeout=10).json()["result"]["content"][0]["text"] == "42"


def test_a_cached_tool_result_is_shared_by_the_replicas_through_redis(replicas):
    first, second = (f"http://{p.addrs['proxy']}/api/mcp" for p in replicas)
    created = httpx.post(
        f"http://{replicas[0].addrs['api-server']}/api/enterprise/vkeys",
        headers={"Authorization": "Bearer replicas-admin-key"},
        json={"name": "replicas-cache"},
        timeout=10,
    )
    headers = {"Authorization": f"Bearer {created.json()['key']}", "Accept": "application/json, text/event-stream"}

    def session(url: str) -> dict:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}
        opened = httpx.post(url, json=init, headers=headers, timeout=10)
        return {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"]}

    def call(url: str, name: str, arguments: dict) -> str:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        answer = httpx.post(url, json=body, headers=session(url), timeout=10).json()
        return answer["result"]["content"][0]["text"]

    before = int(call(first, "weather__forecast_calls", {}))
    on_first = call(first, "weather__forecast", {"city": "Narvik"})
    on_second = call(second, "weather__forecast", {"city": "Narvik"})
    assert on_first == on_second
    assert int(call(second, "weather__forecast_calls", {})) == before + 1, "the second replica asked the upstream again"
