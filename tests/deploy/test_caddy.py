"""Caddyfile (TLS) and Caddyfile.local (HTTP): `caddy validate` with Debian's caddy (offline: no
certificate is requested while validating), both files' routes compared after `caddy adapt`, and
Caddy run for real in front of

  * four stub upstreams (always): every route family, streaming, compression, X-Forwarded-For;
  * the `flowgate` binary in `all` mode (FLOWGATE_BIN, default target/debug/flowgate): every route
    family reaches the service named by the response's x-flowgate-service header, and streamed
    answers on every data-plane route family (a `mock/` model streaming five chunks 100 ms apart)
    arrive event by event. These tests fail, never skip, when the binary is missing.

Ports come from the environment when set (FLOWGATE_TEST_PROXY_PORT, FLOWGATE_TEST_API_SERVER_PORT,
FLOWGATE_TEST_COMPLIANCE_PORT, FLOWGATE_TEST_POLICY_PORT, FLOWGATE_TEST_CADDY_PORT), else free ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import REPO_ROOT, SERVICES, flowgate_binary, port_from_env, wait_for_port

CADDYFILE = REPO_ROOT / "Caddyfile"
CADDYFILE_LOCAL = REPO_ROOT / "Caddyfile.local"
SERVICE_HEADER = "x-flowgate-service"

# (method, path, service that must answer). Status codes do not matter here, only who answers.
ROUTES: list[tuple[str, str, str]] = [
    # data plane
    ("GET", "/v1/models", "proxy"),
    ("POST", "/v1/chat/completions", "proxy"),
    ("POST", "/v1/embeddings", "proxy"),
    ("POST", "/anthropic/v1/messages", "proxy"),
    ("GET", "/cursor/v1/models", "proxy"),
    ("GET", "/oai/v1/models", "proxy"),
    ("GET", "/a2a/agents", "proxy"),
    ("GET", "/a2a/helper/.well-known/agent-card.json", "proxy"),
    ("POST", "/a2a/helper", "proxy"),
    ("POST", "/api/mcp", "proxy"),
    ("GET", "/api/mcp/cache/stats", "proxy"),
    ("GET", "/api/mcp/foo", "proxy"),
    ("GET", "/api/mcp/servers/x/sse", "proxy"),
    ("GET", "/.well-known/agent.json", "proxy"),
    ("GET", "/.well-known/agent-card.json", "proxy"),
    ("GET", "/health", "proxy"),
    ("GET", "/readyz", "proxy"),
    ("GET", "/no/such/route", "proxy"),
    # management plane (the specific MCP paths beat /api/mcp/*)
    ("GET", "/api/mcp/tools", "api-server"),
    ("GET", "/api/mcp/tools/list", "api-server"),
    ("GET", "/api/mcp/auth/callback", "api-server"),
    ("GET", "/api/admin/mcp/servers", "api-server"),
    ("GET", "/api/admin/a2a/agents", "api-server"),
    ("PATCH", "/api/admin/a2a/agents/helper", "api-server"),
    ("GET", "/api/enterprise/vkeys", "api-server"),
    ("POST", "/api/enterprise/vkeys/abc/revoke", "api-server"),
    ("GET", "/api/enterprise/tenants", "api-server"),
    ("GET", "/api/guardrails", "api-server"),
    ("GET", "/api/policies", "api-server"),
    ("GET", "/api/policies/p1", "api-server"),
    ("GET", "/api/auth/me", "api-server"),
    ("GET", "/api/routing", "api-server"),
    ("GET", "/api/metacache/stats", "api-server"),
    ("GET", "/api/audit", "api-server"),
    ("GET", "/api/analytics/spend", "api-server"),
    ("GET", "/api/providers/perf", "api-server"),
    ("GET", "/api/health/comprehensive", "api-server"),
    ("GET", "/api/openapi.json", "api-server"),
    ("GET", "/ui/keys", "api-server"),
    ("GET", "/api/anything-else", "api-server"),
    # guardrails
    ("GET", "/api/compliance/intelligent/health", "compliance"),
    ("POST", "/api/compliance/scan", "compliance"),
    ("POST", "/api/policy/evaluate", "policy"),
    ("GET", "/api/policy", "policy"),
]
# Answered by Caddy itself: metrics are for the private network only.
BLOCKED = ["/metrics", "/metrics/extra"]


def caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
    }
    env.update(extra)
    return env


def adapt(caddy_bin: str, caddyfile: Path, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [caddy_bin, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def site_routes(adapted: dict[str, Any]) -> list[dict[str, Any]]:
    """The routes of the one site, without host wrapper, HSTS and group names."""
    (server,) = adapted["apps"]["http"]["servers"].values()
    routes = server["routes"]
    if len(routes) == 1 and "host" in routes[0].get("match", [{}])[0]:
        (subroute,) = routes[0]["handle"]
        routes = subroute["routes"]
    routes = json.loads(json.dumps(routes))
    for node in walk(routes):
        node.pop("group", None)
        if "handle" in node:
            node["handle"] = [
                h
                for h in node["handle"]
                if not (
                    h.get("handler") == "headers"
                    and "Strict-Transport-Security" in h.get("response", {}).get("set", {})
                )
            ]
    return routes


# --------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caddyfile", "env"),
    [
        (CADDYFILE, {"FLOWGATE_DOMAIN": "gateway.example.com"}),
        (CADDYFILE_LOCAL, {}),
        (
            CADDYFILE_LOCAL,
            {
                "FLOWGATE_LOCAL_PORT": "18080",
                "CADDY_ADMIN": "off",
                "FLOWGATE_PROXY_UPSTREAM": "127.0.0.1:7775",
                "FLOWGATE_API_SERVER_UPSTREAM": "127.0.0.1:7778",
                "FLOWGATE_COMPLIANCE_UPSTREAM": "127.0.0.1:7777",
                "FLOWGATE_POLICY_UPSTREAM": "127.0.0.1:7782",
            },
        ),
    ],
    ids=["tls", "local-defaults", "local-127.0.0.1"],
)
def test_caddy_validate(caddy_bin, tmp_path, caddyfile, env):
    result = subprocess.run(
        [caddy_bin, "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=caddy_env(tmp_path, **env),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_validate_is_live(caddy_bin, tmp_path):
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE_LOCAL.read_text().replace("flush_interval -1", "flush_interval sometimes"))
    result = subprocess.run(
        [caddy_bin, "validate", "--config", str(broken), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=caddy_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("caddyfile", [CADDYFILE, CADDYFILE_LOCAL], ids=["tls", "local"])
def test_caddyfile_is_formatted(caddy_bin, caddyfile):
    result = subprocess.run([caddy_bin, "fmt", str(caddyfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == caddyfile.read_text(), f"run: caddy fmt --overwrite {caddyfile.name}"


def test_tls_and_local_variants_have_the_same_routes(caddy_bin, tmp_path):
    env = caddy_env(tmp_path, FLOWGATE_DOMAIN="gateway.example.com")
    tls = adapt(caddy_bin, CADDYFILE, env)
    local = adapt(caddy_bin, CADDYFILE_LOCAL, env)
    assert site_routes(tls) == site_routes(local)
    # TLS variant: a real domain site (automatic HTTPS) with HSTS; local: HTTP only, no HSTS.
    (tls_server,) = tls["apps"]["http"]["servers"].values()
    assert tls_server["listen"] == [":443"]
    assert tls_server["routes"][0]["match"] == [{"host": ["gateway.example.com"]}]
    hsts = [n for n in walk(tls) if "Strict-Transport-Security" in n.get("set", {})]
    assert hsts and hsts[0]["set"]["Strict-Transport-Security"][0].startswith("max-age=31536000")
    (local_server,) = local["apps"]["http"]["servers"].values()
    assert local_server["listen"] == [":8080"]
    assert local_server["automatic_https"]["disable"] is True
    assert not [n for n in walk(local) if "Strict-Transport-Security" in n.get("set", {})]


def test_streaming_safe_proxying(caddy_bin, tmp_path):
    adapted = adapt(caddy_bin, CADDYFILE, caddy_env(tmp_path, FLOWGATE_DOMAIN="gateway.example.com"))
    proxies = [n for n in walk(adapted) if n.get("handler") == "reverse_proxy"]
    assert len(proxies) == CADDYFILE.read_text().count("import flowgate_upstream") >= 27
    six_hundred_s = 600 * 10**9
    for rp in proxies:
        assert rp["flush_interval"] == -1
        assert rp["transport"]["read_timeout"] == six_hundred_s
        assert rp["transport"]["write_timeout"] == six_hundred_s
        # h2c to the services: Caddy 2.6 cuts some HTTP/1.1 streams short (see the Caddyfile).
        assert rp["transport"]["versions"] == ["h2c", "2"]
    dials = {rp["upstreams"][0]["dial"] for rp in proxies}
    assert dials == {"proxy:7775", "api-server:7778", "compliance:7777", "policy:7782"}
    (encode,) = [n for n in walk(adapted) if n.get("handler") == "encode"]
    assert set(encode["encodings"]) == {"gzip", "zstd"}
    content_types = encode["match"]["headers"]["Content-Type"]
    assert "application/json*" in content_types
    assert not any(ct.startswith("text/event-stream") or ct in ("text/*", "*") for ct in content_types)


def test_bare_wildcard_matchers():
    for caddyfile in (CADDYFILE, CADDYFILE_LOCAL):
        text = caddyfile.read_text()
        for prefix in (
            "guardrails",
            "policies",
            "auth",
            "enterprise",
            "routing",
            "metacache",
            "audit",
            "analytics",
            "providers",
            "health",
            "compliance",
            "policy",
            "mcp/tools",
            "mcp/auth",
            "admin/mcp",
        ):
            assert f"handle /api/{prefix}* {{" in text, (caddyfile.name, prefix)
            assert f"/api/{prefix}/*" not in text, (caddyfile.name, prefix)


# --------------------------------------------------------------------------------------------
# Live: Caddy in front of stub upstreams
# --------------------------------------------------------------------------------------------


class _StubHandler(BaseHTTPRequestHandler):
    service = "unset"
    protocol_version = "HTTP/1.0"  # close-delimited bodies, so SSE needs no chunking code

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/v1/__sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header(SERVICE_HEADER, self.service)
            self.end_headers()
            for i in range(3):
                # Padded past the encoder's minimum length, so compression would kick in if it could.
                self.wfile.write(f'data: {{"n": {i}, "pad": "{"x" * 2048}"}}\n\n'.encode())
                self.wfile.flush()
                time.sleep(0.7)
            self.wfile.write(b"data: [DONE]\n\n")
            return
        body: dict[str, Any] = {
            "service": self.service,
            "path": self.path,
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
        }
        if self.path.startswith("/v1/__big"):
            body["pad"] = "y" * 8192
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(SERVICE_HEADER, self.service)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def stub_upstreams() -> Iterator[dict[str, int]]:
    servers = []
    ports = {}
    for name in SERVICES:
        handler = type(f"Stub_{name}", (_StubHandler,), {"service": name})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        ports[name] = server.server_address[1]
    yield ports
    for server in servers:
        server.shutdown()
        server.server_close()


def start_caddy(
    spawn, caddy_bin: str, tmp_path: Path, upstream_ports: dict[str, int], upstream_http: str | None = None
) -> str:
    """Caddy with Caddyfile.local in front of the given ports. `upstream_http="1.1"` for upstreams
    that do not speak h2c (the stubs); Flowgate gets the Caddyfile's default, h2c."""
    port = port_from_env("FLOWGATE_TEST_CADDY_PORT")
    extra = {"FLOWGATE_UPSTREAM_HTTP": upstream_http} if upstream_http else {}
    env = caddy_env(
        tmp_path,
        FLOWGATE_LOCAL_PORT=str(port),
        CADDY_ADMIN="off",
        **extra,
        **{
            f"FLOWGATE_{name.upper().replace('-', '_')}_UPSTREAM": f"127.0.0.1:{p}"
            for name, p in upstream_ports.items()
        },
    )
    caddy = spawn("caddy", [caddy_bin, "run", "--config", str(CADDYFILE_LOCAL), "--adapter", "caddyfile"], env)
    try:
        wait_for_port(port, timeout=30, proc=caddy.proc)
    except (RuntimeError, TimeoutError) as err:
        pytest.fail(f"caddy did not start: {err}\n{caddy.log_tail()}")
    return f"http://127.0.0.1:{port}"


def request(client: httpx.Client, method: str, path: str) -> httpx.Response:
    headers = {"Authorization": "Bearer test-admin"} if path.startswith("/api/") else {}
    if method == "GET":
        return client.request(method, path, headers=headers)
    return client.request(method, path, headers=headers, json={})


def assert_routes(base_url: str, context: str = "") -> None:
    wrong = []
    with httpx.Client(base_url=base_url, timeout=15) as client:
        for method, path, expected in ROUTES:
            response = request(client, method, path)
            got = response.headers.get(SERVICE_HEADER)
            if got != expected:
                wrong.append(f"{method} {path}: expected {expected}, got {got} (HTTP {response.status_code})")
        for path in BLOCKED:
            response = client.get(path)
            if response.status_code != 404 or SERVICE_HEADER in response.headers:
                wrong.append(f"GET {path}: expected Caddy's own 404, got {response.status_code} {response.headers}")
    assert not wrong, "\n".join(wrong) + context


def test_routes_through_caddy_to_stub_upstreams(spawn, caddy_bin, tmp_path, stub_upstreams):
    base = start_caddy(spawn, caddy_bin, tmp_path, stub_upstreams, upstream_http="1.1")
    assert_routes(base)
    with httpx.Client(base_url=base, timeout=15) as client:
        # The upstream sees the path unchanged.
        assert client.get("/api/mcp/tools/list").json()["path"] == "/api/mcp/tools/list"


def test_client_ip_forwarded_and_spoofing_dropped(spawn, caddy_bin, tmp_path, stub_upstreams):
    base = start_caddy(spawn, caddy_bin, tmp_path, stub_upstreams, upstream_http="1.1")
    with httpx.Client(base_url=base, timeout=15) as client:
        seen = client.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.66"}).json()
    assert seen["x_forwarded_for"] == "127.0.0.1"


def test_json_is_compressed_but_event_streams_are_not_buffered(spawn, caddy_bin, tmp_path, stub_upstreams):
    base = start_caddy(spawn, caddy_bin, tmp_path, stub_upstreams, upstream_http="1.1")
    with httpx.Client(base_url=base, timeout=15) as client:
        big = client.get("/v1/__big", headers={"Accept-Encoding": "gzip"})
        assert big.headers.get("content-encoding") == "gzip"
        assert big.json()["service"] == "proxy"

        started = time.monotonic()
        arrivals = []
        with client.stream(
            "POST", "/v1/__sse", json={"stream": True}, headers={"Accept-Encoding": "gzip, zstd"}
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in resp.headers
            assert resp.headers[SERVICE_HEADER] == "proxy"
            buffer = b""
            for chunk in resp.iter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    arrivals.append((time.monotonic() - started, event))
    assert [e for _, e in arrivals][-1] == b"data: [DONE]"
    assert len(arrivals) == 4
    # The upstream writes an event every 0.7 s: each must arrive as it is written, not at the end.
    first, total = arrivals[0][0], arrivals[-1][0]
    assert total >= 2.0
    assert first < 0.6, f"first event after {first:.2f}s: the stream was buffered"
    assert arrivals[1][0] < total - 0.5


# --------------------------------------------------------------------------------------------
# Live: Caddy in front of `flowgate all`
# --------------------------------------------------------------------------------------------


# A `mock/` model that streams five chunks 100 ms apart: long enough to tell a stream passed
# through event by event from one that was buffered and flushed at the end.
FLOWGATE_CONFIG = """
model_list:
  - model_name: mock-slow
    litellm_params: {model: mock/slow, mock_chunk_delay_ms: 100, mock_chunks: 5}
"""
ADMIN_KEY = "test-admin"

# Streamed requests through every data-plane route family: (path, body, auth header, last event).
STREAMS: list[tuple[str, dict[str, Any], str, bytes]] = [
    (
        path,
        {"model": "mock-slow", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]},
        "authorization",
        b"data: [DONE]",
    )
    for path in ("/v1/chat/completions", "/oai/v1/chat/completions", "/cursor/v1/chat/completions")
] + [
    (
        "/anthropic/v1/messages",
        {
            "model": "mock-slow",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "one two three four five"}],
        },
        "x-api-key",
        b'event: message_stop\ndata: {"type":"message_stop"}',
    ),
]


def start_flowgate_all(spawn, tmp_path: Path):
    """`flowgate all` with FLOWGATE_CONFIG, healthy on every port; returns (ports, process)."""
    binary = flowgate_binary()
    ports = {name: port_from_env(f"FLOWGATE_TEST_{name.upper().replace('-', '_')}_PORT") for name in SERVICES}
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "flowgate.yaml"
    config.write_text(FLOWGATE_CONFIG)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SERVICE_TYPE": "all",
        "FLOWGATE_CONFIG": str(config),
        "FLOWGATE_DATA_DIR": str(data_dir),
        "ADMIN_API_KEY": ADMIN_KEY,
        "FLOWGATE__SECURITY__KEY_HASH_SECRET": "deploy-e2e-key-hash-secret-0123456789",
        "FLOWGATE__PROXY__TRUSTED_PROXIES": "127.0.0.1/32",
        "FLOWGATE__PROXY__API_SERVER_URL": f"http://127.0.0.1:{ports['api-server']}",
        "FLOWGATE__PROXY__COMPLIANCE_URL": f"http://127.0.0.1:{ports['compliance']}",
        "FLOWGATE__PROXY__POLICY_URL": f"http://127.0.0.1:{ports['policy']}",
        "LOG_LEVEL": "info",
        **{f"FLOWGATE__{spec['section']}__PORT": str(ports[name]) for name, spec in SERVICES.items()},
    }
    flowgate = spawn("flowgate", [str(binary), "all"], env)

    # Every service answers GET /health with 200 JSON and names itself.
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=5) as client:
        for name, port in ports.items():
            while True:
                if flowgate.proc.poll() is not None:
                    pytest.fail(f"flowgate exited with {flowgate.proc.returncode}\n{flowgate.log_tail()}")
                try:
                    response = client.get(f"http://127.0.0.1:{port}/health")
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} on :{port} not healthy in time\n{flowgate.log_tail()}")
                time.sleep(0.25)
            assert response.headers.get(SERVICE_HEADER) == name, flowgate.log_tail()
            assert isinstance(response.json(), dict), flowgate.log_tail()
    return ports, flowgate


def test_routes_through_caddy_to_flowgate_all(spawn, caddy_bin, tmp_path):
    ports, flowgate = start_flowgate_all(spawn, tmp_path)
    base = start_caddy(spawn, caddy_bin, tmp_path, ports)
    assert_routes(base, f"\n--- flowgate log ---\n{flowgate.log_tail()}")


def test_streams_through_caddy_to_flowgate_all_are_not_buffered(spawn, caddy_bin, tmp_path):
    """A streamed answer through Caddy arrives as the upstream produces it, on every route family
    (OpenAI format on /v1, /oai/v1 and /cursor/v1; Anthropic format on /anthropic/v1): several
    events, the first well before the last, no compression."""
    ports, flowgate = start_flowgate_all(spawn, tmp_path)
    base = start_caddy(spawn, caddy_bin, tmp_path, ports)
    context = f"\n--- flowgate log ---\n{flowgate.log_tail()}"
    with httpx.Client(base_url=base, timeout=30) as client:
        # The key is created through Caddy too (/api/enterprise* -> api-server).
        created = client.post(
            "/api/enterprise/vkeys", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json={"name": "caddy-stream"}
        )
        assert created.status_code == 201, created.text + context
        key = created.json()["key"]

        for path, body, auth_header, last_event in STREAMS:
            value = f"Bearer {key}" if auth_header == "authorization" else key
            headers = {auth_header: value, "Accept-Encoding": "gzip, zstd", "anthropic-version": "2023-06-01"}
            started = time.monotonic()
            arrivals: list[tuple[float, bytes]] = []
            with client.stream("POST", path, json=body, headers=headers) as resp:
                assert resp.status_code == 200, (path, resp.read(), context)
                assert resp.headers["content-type"].startswith("text/event-stream"), path
                assert "content-encoding" not in resp.headers, path
                assert resp.headers[SERVICE_HEADER] == "proxy", path
                buffer = b""
                for chunk in resp.iter_raw():
                    buffer += chunk
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        arrivals.append((time.monotonic() - started, event))
            events = [e for _, e in arrivals]
            assert len(events) >= 5, (path, events)
            assert events[-1] == last_event, (path, events[-3:])
            content = [t for t, e in arrivals if re.search(rb'"content":\s*"[^"]|"text_delta"', e)]
            assert len(content) >= 3, (path, events)
            # Chunks are produced 100 ms apart: buffering would deliver them all at the end.
            first, last = arrivals[0][0], arrivals[-1][0]
            assert last - first >= 0.3, (path, [round(t, 3) for t, _ in arrivals])
            assert content[0] < content[-1] - 0.2, (path, [round(t, 3) for t, _ in arrivals])
