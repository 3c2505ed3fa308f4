"""MCP servers managed at run time: registered, changed and removed through the api-server's
/api/admin/mcp/servers while `flowgate all` runs, picked up by the proxy without a restart, and
announced to connected clients (the official MCP SDK's client) with
`notifications/tools/list_changed` on the Streamable HTTP listening stream and on the older
HTTP+SSE stream."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from sdk_support import free_port, start_stack, wait_until

UPSTREAM = Path(__file__).with_name("mcp_upstream.py")

CONFIG = """
model_list:
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "hi"}
mcp:
  enabled: true
mcp_servers:
  fixed:
    url: http://127.0.0.1:{port}/mcp
    cacheable_tools:
      upstream_token: 300   # answers differ per credential: the cache must keep them apart
"""


@pytest.fixture(scope="module")
def upstream_port():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), "http", str(port)])

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    assert wait_until(up, timeout=20), "the upstream MCP server did not start"
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(upstream_port):
    stack = start_stack(CONFIG.replace("{port}", str(upstream_port)))
    yield stack
    stack.stop()


def servers_url(stack) -> str:
    return f"{stack.api_url}/api/admin/mcp/servers"


def admin(stack) -> dict:
    return {"Authorization": f"Bearer {stack.admin_key}"}


class Notices:
    """The list_changed notifications a client received."""

    def __init__(self):
        self.methods: list[str] = []
        self.event = anyio.Event()

    async def __call__(self, message) -> None:
        method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
        if method:
            self.methods.append(method)
            if method == "notifications/tools/list_changed":
                self.event.set()

    def reset(self) -> None:
        self.event = anyio.Event()


async def tool_names(session) -> set[str]:
    return {tool.name for tool in (await session.list_tools()).tools}


async def wait_for(condition, timeout: float = 10.0) -> bool:
    with anyio.move_on_after(timeout):
        while not await condition():
            await anyio.sleep(0.1)
        return True
    return False


def test_servers_registered_at_run_time_are_served_and_announced(stack, upstream_port):
    key = stack.create_key()["key"]
    url = f"http://127.0.0.1:{upstream_port}/mcp"

    async def scenario():
        notices = Notices()
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
            async with streamable_http_client(f"{stack.proxy_url}/api/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write, message_handler=notices) as session:
                    initialized = await session.initialize()
                    assert initialized.capabilities.tools.list_changed is True
                    assert "fixed__add" in await tool_names(session)
                    assert "live__add" not in await tool_names(session)
                    # Let the client open its listening stream before the change.
                    await anyio.sleep(0.5)

                    async with httpx.AsyncClient(timeout=10) as api:
                        created = await api.post(
                            servers_url(stack),
                            headers=admin(stack),
                            json={"name": "live", "url": url, "headers": {"X-Upstream-Token": "live-secret"},
                                  "disallowed_tools": ["delete_*"]},
                        )
                        assert created.status_code == 201, created.text
                        assert created.json()["header_names"] == ["X-Upstream-Token"]
                        assert "live-secret" not in created.text

                        with anyio.fail_after(10):
                            await notices.event.wait()
                        names = await tool_names(session)
                        assert "live__add" in names and "live__delete_everything" not in names, names
                        answer = await session.call_tool("live__upstream_token", {})
                        assert answer.content[0].text == "live-secret"

                        # A changed header reaches the proxy without a restart.
                        patched = await api.patch(
                            f"{servers_url(stack)}/live", headers=admin(stack), json={"headers": {"X-Upstream-Token": "rotated"}}
                        )
                        assert patched.status_code == 200, patched.text

                        async def rotated() -> bool:
                            result = await session.call_tool("live__upstream_token", {})
                            return result.content[0].text == "rotated"

                        assert await wait_for(rotated)

                        notices.reset()
                        deleted = await api.delete(f"{servers_url(stack)}/live", headers=admin(stack))
                        assert deleted.status_code == 204
                        with anyio.fail_after(10):
                            await notices.event.wait()
                        assert "live__add" not in await tool_names(session)

    anyio.run(scenario)


def test_the_older_sse_transport_hears_of_changes_too(stack, upstream_port):
    key = stack.create_key()["key"]

    async def scenario():
        notices = Notices()
        async with sse_client(f"{stack.proxy_url}/api/mcp/sse", headers={"Authorization": f"Bearer {key}"}) as (read, write):
            async with ClientSession(read, write, message_handler=notices) as session:
                await session.initialize()
                async with httpx.AsyncClient(timeout=10) as api:
                    created = await api.post(
                        servers_url(stack),
                        headers=admin(stack),
                        json={"name": "legacy-live", "url": f"http://127.0.0.1:{upstream_port}/mcp"},
                    )
                    assert created.status_code == 201, created.text
                    with anyio.fail_after(10):
                        await notices.event.wait()
                    assert "legacy-live__add" in await tool_names(session)
                    notices.reset()
                    assert (await api.delete(f"{servers_url(stack)}/legacy-live", headers=admin(stack))).status_code == 204
                    with anyio.fail_after(10):
                        await notices.event.wait()
                    assert "legacy-live__add" not in await tool_names(session)
                    # The prompts and resources notices of the same change arrive before the session closes.
                    await anyio.sleep(0.3)

    anyio.run(scenario)


def test_the_api_refuses_config_file_servers_stdio_and_bad_fields(stack):
    headers = admin(stack)
    assert httpx.delete(f"{servers_url(stack)}/fixed", headers=headers, timeout=10).status_code == 409
    taken = httpx.post(servers_url(stack), headers=headers, json={"name": "fixed", "url": "http://x/mcp"}, timeout=10)
    assert taken.status_code == 409
    stdio = httpx.post(servers_url(stack), headers=headers, json={"name": "s", "url": "http://x", "transport": "stdio"}, timeout=10)
    assert stdio.status_code == 400
    bad = httpx.post(servers_url(stack), headers=headers, json={"name": "b", "url": "http://x", "cacheable_tools": {"t": 0}}, timeout=10)
    assert bad.status_code == 400 and "cacheable_tools.t" in bad.json()["error"]["message"]
    listed = httpx.get(servers_url(stack), headers=headers, timeout=10).json()["data"]
    assert all(server["name"] != "fixed" for server in listed)


def test_the_listening_stream_needs_a_session_and_an_event_stream_accept(stack):
    key = stack.create_key()["key"]
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    assert httpx.get(f"{stack.proxy_url}/api/mcp", headers=headers, timeout=10).status_code == 400
    bad_session = httpx.get(f"{stack.proxy_url}/api/mcp", headers={**headers, "Mcp-Session-Id": "nope"}, timeout=10)
    assert bad_session.status_code == 404
    json_only = httpx.get(f"{stack.proxy_url}/api/mcp", headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}, timeout=10)
    assert json_only.status_code == 406


def test_the_tool_catalog_lists_each_tool_with_the_keys_that_may_use_it(stack):
    everything = stack.create_key(name="catalog-all")
    limited = stack.create_key(name="catalog-limited", mcp_tools=["fixed__add"])
    denied = stack.create_key(name="catalog-denied", mcp_denied_tools=["fixed__*"])
    headers = admin(stack)

    def catalog(**params) -> dict:
        response = httpx.get(f"{stack.api_url}/api/mcp/tools", headers=headers, params=params, timeout=10)
        assert response.status_code == 200, response.text
        return {tool["name"]: tool for tool in response.json()["data"]}

    # Written by the proxy when its servers were loaded.
    assert wait_until(lambda: "fixed__add" in catalog(), timeout=15)
    tools = catalog(server="fixed")
    add_keys = {key["id"] for key in tools["fixed__add"]["keys"]}
    forecast_keys = {key["id"] for key in tools["fixed__forecast"]["keys"]}
    assert {everything["id"], limited["id"]} <= add_keys and denied["id"] not in add_keys
    assert everything["id"] in forecast_keys and limited["id"] not in forecast_keys
    assert tools["fixed__add"]["server"] == "fixed" and tools["fixed__add"]["tool"] == "add"
    only = catalog(key_id=limited["id"])
    assert [key["id"] for key in only["fixed__add"]["keys"]] == [limited["id"]]
    assert only["fixed__forecast"]["keys"] == []
    # Admin only.
    assert httpx.get(f"{stack.api_url}/api/mcp/tools", timeout=10).status_code == 401


@asynccontextmanager
async def connect(stack, key: str):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(f"{stack.proxy_url}/api/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def test_a_key_or_tenant_credential_replaces_the_servers_own(stack):
    tenant = httpx.post(
        f"{stack.api_url}/api/enterprise/tenants", headers=admin(stack), json={"name": "creds-tenant"}, timeout=10
    ).json()
    own = stack.create_key(name="own-credential")
    tenant_key = stack.create_key(name="tenant-credential", tenant_id=tenant["id"])
    plain = stack.create_key(name="no-credential")
    auth = f"{stack.api_url}/api/mcp/auth/fixed"

    # A key's holder stores its own credential with the key itself; an admin stores the tenant's.
    stored = httpx.put(auth, headers={"Authorization": f"Bearer {own['key']}"}, json={"headers": {"X-Upstream-Token": "key-secret"}}, timeout=10)
    assert stored.status_code == 200, stored.text
    assert stored.json()["owner_id"] == own["id"] and "key-secret" not in stored.text
    tenant_cred = httpx.put(auth, headers=admin(stack), json={"tenant_id": tenant["id"], "bearer_token": "t"}, timeout=10)
    assert tenant_cred.status_code == 200, tenant_cred.text
    assert httpx.put(auth, headers=admin(stack), json={"tenant_id": tenant["id"], "headers": {"X-Upstream-Token": "tenant-secret"}}, timeout=10).status_code == 200
    # A key may not act for another.
    other = httpx.put(auth, headers={"Authorization": f"Bearer {own['key']}"}, json={"key_id": plain["id"], "bearer_token": "x"}, timeout=10)
    assert other.status_code == 403
    assert httpx.put(auth, json={"bearer_token": "x"}, timeout=10).status_code == 401
    mine = httpx.get(auth, headers={"Authorization": f"Bearer {own['key']}"}, timeout=10).json()["data"]
    assert [(c["owner_kind"], c["owner_id"]) for c in mine] == [("key", own["id"])]

    async def token_for(key: str) -> str:
        async with connect(stack, key) as session:
            result = await session.call_tool("fixed__upstream_token", {})
            return result.content[0].text

    async def scenario():
        # Each twice: the second answers come from the tool-call cache, kept apart per credential
        # (`own` and `plain` share a tenant).
        for _ in range(2):
            assert await token_for(own["key"]) == "key-secret"
            assert await token_for(plain["key"]) == "<none>"
            assert await token_for(tenant_key["key"]) == "tenant-secret"

    anyio.run(scenario)

    # Removed: the key's calls carry the server's own headers again.
    removed = httpx.delete(auth, headers={"Authorization": f"Bearer {own['key']}"}, timeout=10)
    assert removed.status_code == 204

    async def back_to_none():
        async def check() -> bool:
            return await token_for(own["key"]) == "<none>"

        assert await wait_for(check)

    anyio.run(back_to_none)
