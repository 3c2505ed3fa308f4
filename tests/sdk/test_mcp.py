"""The MCP gateway as users run it: a real upstream MCP server written with the official SDK
(`mcp` on PyPI, its `MCPServer` API) over Streamable HTTP, a second one started by Flowgate over
stdio, and the SDK's own client against `flowgate all` at /api/mcp."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from sdk_support import free_port, start_stack, wait_until

UPSTREAM = Path(__file__).with_name("mcp_upstream.py")

CONFIG = """
model_list:
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "hi"}
mcp:
  enabled: true
mcp_servers:
  weather:
    url: http://127.0.0.1:{weather_port}/mcp
    headers:
      X-Upstream-Token: os.environ/WEATHER_TOKEN
    cacheable_tools:
      forecast: 300
    tool_costs:
      add: 0.001
  legacy:
    url: http://127.0.0.1:{legacy_port}/sse
    transport: sse
  files:
    transport: stdio
    command: {python}
    args: ["{upstream_script}", "stdio"]
    env:
      MCP_GREETING: hello from the environment
"""


def serve_upstream(transport: str):
    """Starts mcp_upstream.py over `transport` on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), transport, str(port)])

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    assert wait_until(up, timeout=20), f"the upstream MCP server ({transport}) did not start"
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def weather_port():
    yield from serve_upstream("http")


@pytest.fixture(scope="module")
def legacy_port():
    yield from serve_upstream("sse")


@pytest.fixture(scope="module")
def stack(weather_port, legacy_port):
    config = (
        CONFIG.replace("{weather_port}", str(weather_port))
        .replace("{legacy_port}", str(legacy_port))
        .replace("{python}", sys.executable)
        .replace("{upstream_script}", str(UPSTREAM))
    )
    stack = start_stack(config, {"WEATHER_TOKEN": "upstream-secret"})
    yield stack
    stack.stop()


@asynccontextmanager
async def connect(url: str, key: str):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text_of(result) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


def run(coroutine_fn):
    return anyio.run(coroutine_fn)


def test_tools_of_every_upstream_are_listed_namespaced_and_called(stack):
    key = stack.create_key(mcp_denied_tools=["weather__delete_*"])["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            assert session.initialize_result.server_info.name == "flowgate"
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"weather__forecast", "weather__add", "files__shout", "files__greeting"} <= names, names
            assert "weather__delete_everything" not in names
            assert text_of(await session.call_tool("weather__add", {"a": 2, "b": 40})) == "42"
            assert text_of(await session.call_tool("files__shout", {"text": "quiet"})) == "QUIET"
            # An upstream on the older HTTP+SSE transport.
            assert "legacy__add" in names
            assert text_of(await session.call_tool("legacy__add", {"a": 1, "b": 2})) == "3"
            # The stdio server was started with the configured environment.
            assert text_of(await session.call_tool("files__greeting", {})) == "hello from the environment"
            failed = await session.call_tool("weather__fail", {})
            assert failed.is_error
            # The configured header (from the environment) reached the upstream; the client's key did not.
            assert text_of(await session.call_tool("weather__upstream_token", {})) == "upstream-secret"

    run(scenario)


def test_a_tool_the_key_may_not_use_is_absent_and_refused_with_a_clear_error(stack):
    key = stack.create_key(mcp_servers=["files"])["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert names == {"files__shout", "files__greeting", "files__crash"}, names
            with pytest.raises(MCPError) as refused:
                await session.call_tool("weather__add", {"a": 1, "b": 1})
            assert refused.value.error.code == -32003
            assert "weather" in refused.value.error.message and "mcp_servers" in refused.value.error.message

    run(scenario)
    denied = stack.create_key(mcp_denied_tools=["*__delete_*"])["key"]

    async def denied_scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", denied) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("weather__delete_everything", {})
            assert "mcp_denied_tools" in refused.value.error.message

    run(denied_scenario)


def test_one_upstream_alone_keeps_its_own_tool_names(stack):
    key = stack.create_key()["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp/weather", key) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"forecast", "add", "delete_everything"} <= names, names
            assert text_of(await session.call_tool("add", {"a": 1, "b": 2})) == "3"

    run(scenario)


def test_a_cacheable_tool_answers_the_second_call_from_the_cache(stack):
    key = stack.create_key()["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            before = int(text_of(await session.call_tool("weather__forecast_calls", {})))
            first = text_of(await session.call_tool("weather__forecast", {"city": "Bergen"}))
            second = text_of(await session.call_tool("weather__forecast", {"city": "Bergen"}))
            assert first == second
            after = int(text_of(await session.call_tool("weather__forecast_calls", {})))
            assert after == before + 1, "the second call reached the upstream"

    run(scenario)
    stats = httpx.get(
        f"{stack.proxy_url}/api/mcp/cache/stats", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    tool = stats["tools"]["weather__forecast"]
    assert tool["hits"] >= 1 and tool["misses"] >= 1, stats
    assert stats["entries"] >= 1 and stats["bytes"] > 0 and 0 < stats["hit_rate"] < 1
    assert tool["saved_upstream_ms"] > 0


def test_every_tool_call_is_audited(stack):
    created = stack.create_key()
    key = created["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            await session.call_tool("weather__add", {"a": 5, "b": 5})

    run(scenario)

    def records():
        response = httpx.get(
            f"{stack.api_url}/api/audit",
            params={"key_id": created["id"]},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=10,
        )
        return response.json()["items"]

    assert wait_until(lambda: len(records()) >= 1, timeout=10)
    (record,) = records()
    assert record["route"] == "/api/mcp"
    assert record["model_requested"] == "weather__add"
    assert record["status"] == 200
    assert record["metadata"]["mcp_server"] == "weather"
    metrics = httpx.get(f"{stack.proxy_url}/metrics", timeout=10).text
    assert 'flowgate_mcp_tool_calls_total{server="weather",tool="add",outcome="success"}' in metrics


def test_the_transport_refuses_bad_requests_in_json_rpc(stack):
    key = stack.create_key()["key"]
    url = f"{stack.proxy_url}/api/mcp"
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    # No key.
    response = httpx.post(url, json=ping, timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] < 0
    # No session.
    response = httpx.post(url, json=ping, headers=headers, timeout=10)
    assert response.status_code == 400 and "Mcp-Session-Id" in response.json()["error"]["message"]
    # A forged session.
    response = httpx.post(url, json=ping, headers={**headers, "Mcp-Session-Id": "abc.def"}, timeout=10)
    assert response.status_code == 404
    # Too large (proxy.max_body_bytes, 10 MiB by default): refused in JSON-RPC's shape.
    response = httpx.post(url, content=b" " * (11 * 1024 * 1024), headers=headers, timeout=30)
    assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]["message"]
    # Not JSON.
    response = httpx.post(url, content=b"{nope", headers=headers, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700
    # A session, then a version the gateway does not serve.
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}}
    response = httpx.post(url, json=init, headers=headers, timeout=10)
    assert response.json()["result"]["protocolVersion"] == "2025-06-18"
    session = response.headers["mcp-session-id"]
    response = httpx.post(url, json=ping, headers={**headers, "Mcp-Session-Id": session}, timeout=10)
    assert response.status_code == 200 and response.json()["result"] == {}
    response = httpx.post(
        url, json=ping, headers={**headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": "1999-01-01"}, timeout=10
    )
    assert response.status_code == 400
    # Another key cannot use this session.
    other = stack.create_key()["key"]
    response = httpx.post(url, json=ping, headers={**headers, "Authorization": f"Bearer {other}", "Mcp-Session-Id": session}, timeout=10)
    assert response.status_code == 404
    # Unknown server: 404 for a key, 401 (nothing said about servers) without one.
    response = httpx.post(f"{url}/nope", json=init, headers=headers, timeout=10)
    assert response.status_code == 404
    assert httpx.post(f"{url}/nope", json=init, timeout=10).status_code == 401


def test_a_stdio_server_that_exits_is_restarted_and_its_stderr_logged(stack):
    key = stack.create_key()["key"]

    async def crash():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            with pytest.raises(MCPError) as broken:
                await session.call_tool("files__crash", {})
            assert broken.value.error.code == -32004 and "files" in broken.value.error.message

    run(crash)

    async def shout() -> str:
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            return text_of(await session.call_tool("files__shout", {"text": "back"}))

    def recovered() -> bool:
        try:
            return run(shout) == "BACK"
        except Exception:
            return False

    assert wait_until(recovered, timeout=15, interval=0.3), "the stdio server was not restarted"
    logs = "\n".join(stack.gateway.logs)
    assert "crashing on purpose" in logs
    assert "MCP stdio server stopped; restarting" in logs


def test_the_keys_guardrails_run_on_tool_arguments_and_results(stack):
    created = stack.create_key(guardrail_policy={"mandatory_guardrails": ["pii-redact", "prompt-injection"]})
    key = created["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            # Personal data in the arguments is redacted before it reaches the upstream.
            echoed = text_of(await session.call_tool("weather__echo", {"text": "write to jane.doe@example.com"}))
            assert "jane.doe@example.com" not in echoed and "<EMAIL_1>" in echoed, echoed
            # A result carrying a prompt injection is refused, saying why.
            with pytest.raises(MCPError) as blocked:
                await session.call_tool("weather__poisoned_page", {})
            assert blocked.value.error.code == -32005
            assert "prompt-injection" in blocked.value.error.message, blocked.value.error.message
            # A clean call still passes.
            assert text_of(await session.call_tool("weather__add", {"a": 1, "b": 1})) == "2"

    run(scenario)

    def records():
        response = httpx.get(
            f"{stack.api_url}/api/audit",
            params={"key_id": created["id"]},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=10,
        )
        return response.json()["items"]

    assert wait_until(lambda: len(records()) >= 3, timeout=10)
    by_tool = {r["model_requested"]: r for r in records()}
    assert by_tool["weather__poisoned_page"]["status"] == 400
    assert by_tool["weather__poisoned_page"]["error_code"] == "guardrail_blocked"
    assert by_tool["weather__echo"]["guardrail_actions"], by_tool["weather__echo"]


def test_rate_limits_and_budgets_apply_to_tool_calls(stack):
    limited = stack.create_key(rpm=2)["key"]

    async def over_the_limit():
        async with connect(f"{stack.proxy_url}/api/mcp", limited) as session:
            for _ in range(2):
                assert text_of(await session.call_tool("weather__add", {"a": 1, "b": 1})) == "2"
            with pytest.raises(MCPError) as refused:
                await session.call_tool("weather__add", {"a": 1, "b": 1})
            assert refused.value.error.code == -32006
            assert refused.value.error.data["code"] == "rate_limit_exceeded"

    run(over_the_limit)
    created = stack.create_key(budget_usd=1)
    budgeted = created["key"]

    async def spend():
        async with connect(f"{stack.proxy_url}/api/mcp", budgeted) as session:
            for _ in range(3):
                await session.call_tool("weather__add", {"a": 2, "b": 2})

    run(spend)

    def spent() -> float:
        response = httpx.get(
            f"{stack.api_url}/api/enterprise/vkeys/{created['id']}/budget",
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=10,
        )
        return response.json()["spent_usd"]

    assert wait_until(lambda: abs(spent() - 0.003) < 1e-9, timeout=10), spent()


def inspector() -> Path:
    """The MCP Inspector from the agent-clients folder (scripts/install-agent-clients.sh)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowgate" / "agent-clients"
    path = Path(os.environ.get("FLOWGATE_AGENT_CLIENTS", default)) / "node_modules" / ".bin" / "mcp-inspector"
    if not path.exists() or shutil.which("node") is None:
        message = f"mcp-inspector not installed in {path.parent} (run scripts/install-agent-clients.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_mcp_inspector_cli_lists_and_calls_tools_through_the_gateway(stack):
    key = stack.create_key(mcp_denied_tools=["weather__delete_*"])["key"]
    base = [str(inspector()), "--cli", f"{stack.proxy_url}/api/mcp", "--transport", "http",
            "--header", f"Authorization: Bearer {key}"]

    def inspect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)

    listed = inspect("--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert {"weather__add", "files__shout"} <= names and "weather__delete_everything" not in names, names
    called = inspect("--method", "tools/call", "--tool-name", "weather__add", "--tool-arg", "a=20", "b=22")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["content"][0]["text"] == "42"
    refused = inspect("--method", "tools/call", "--tool-name", "weather__delete_everything")
    assert refused.returncode != 0


def test_prompts_and_resources_of_the_upstreams_are_passed_through(stack):
    key = stack.create_key()["key"]
    files_only = stack.create_key(mcp_servers=["files"])["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            prompts = {p.name for p in (await session.list_prompts()).prompts}
            assert "weather__briefing" in prompts, prompts
            prompt = await session.get_prompt("weather__briefing", {"city": "Oslo"})
            assert "Oslo" in prompt.messages[0].content.text
            resources = {str(r.uri) for r in (await session.list_resources()).resources}
            assert "weather://stations" in resources, resources
            read = await session.read_resource("weather://stations")
            assert "Bergen" in read.contents[0].text
        async with connect(f"{stack.proxy_url}/api/mcp", files_only) as session:
            assert "weather__briefing" not in {p.name for p in (await session.list_prompts()).prompts}
            with pytest.raises(MCPError):
                await session.get_prompt("weather__briefing", {"city": "Oslo"})
            with pytest.raises(MCPError):
                await session.read_resource("weather://stations")

    run(scenario)


def test_calls_are_stored_redacted_only_for_tenants_that_store_prompts(stack):
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    tenant = httpx.post(
        f"{stack.api_url}/api/enterprise/tenants", headers=admin, json={"name": "keeps-prompts", "store_prompts": True}, timeout=10
    ).json()
    keeping = stack.create_key(tenant_id=tenant["id"])
    plain = stack.create_key()

    async def call(key: str):
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            await session.call_tool("weather__echo", {"text": "mail jane.doe@example.com"})

    run(lambda: call(keeping["key"]))
    run(lambda: call(plain["key"]))

    def record(key_id: str):
        items = httpx.get(f"{stack.api_url}/api/audit", params={"key_id": key_id}, headers=admin, timeout=10).json()["items"]
        return items[0] if items else None

    assert wait_until(lambda: record(keeping["id"]) is not None and record(plain["id"]) is not None, timeout=10)
    stored = record(keeping["id"])
    assert stored["prompt"] and "weather__echo" in stored["prompt"], stored
    assert "jane.doe@example.com" not in stored["prompt"] and "jane.doe@example.com" not in stored["response"]
    assert "received" in stored["response"]
    assert "prompt" not in record(plain["id"]), "stored for a tenant that does not store prompts"


def test_clients_of_the_older_http_sse_transport_are_served(stack):
    key = stack.create_key(mcp_denied_tools=["*__delete_*"])["key"]
    other = stack.create_key()["key"]

    async def scenario():
        async with sse_client(f"{stack.proxy_url}/api/mcp/sse", headers={"Authorization": f"Bearer {key}"}) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {tool.name for tool in (await session.list_tools()).tools}
                assert "weather__add" in names and "weather__delete_everything" not in names
                assert text_of(await session.call_tool("weather__add", {"a": 3, "b": 4})) == "7"
        async with sse_client(f"{stack.proxy_url}/api/mcp/files/sse", headers={"Authorization": f"Bearer {key}"}) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert text_of(await session.call_tool("shout", {"text": "sse"})) == "SSE"

    run(scenario)
    # Another key cannot post into a stream it does not own.
    with httpx.stream("GET", f"{stack.proxy_url}/api/mcp/sse", headers={"Authorization": f"Bearer {key}"}, timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: endpoint"
        endpoint = next(lines).removeprefix("data: ")
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        refused = httpx.post(f"{stack.proxy_url}{endpoint}", json=ping, headers={"Authorization": f"Bearer {other}"}, timeout=10)
        assert refused.status_code == 404
        accepted = httpx.post(f"{stack.proxy_url}{endpoint}", json=ping, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert accepted.status_code == 202


def test_a_tenants_lists_bound_every_key_of_the_tenant(stack):
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    tenant = httpx.post(
        f"{stack.api_url}/api/enterprise/tenants",
        headers=admin,
        json={"name": "weather-only", "mcp_tools": ["weather__add", "weather__forecast"]},
        timeout=10,
    ).json()
    assert tenant["mcp_tools"] == ["weather__add", "weather__forecast"]
    key = stack.create_key(tenant_id=tenant["id"])["key"]

    async def scenario():
        async with connect(f"{stack.proxy_url}/api/mcp", key) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert names == {"weather__add", "weather__forecast"}, names
            with pytest.raises(MCPError) as refused:
                await session.call_tool("files__shout", {"text": "x"})
            assert "tenant's mcp_tools" in refused.value.error.message

    run(scenario)
