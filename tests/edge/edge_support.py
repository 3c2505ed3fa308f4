"""Starts the edge end to end: `wrangler dev --local` (workerd, from edge/node_modules) in front of
two `flowgate all` origins that share one throwaway PostgreSQL database, a `flowgate mock-upstream`
behind them, and a local server speaking Cloudflare's KV bulk API for `flowgate edge sync`.
Named uniquely so other suites' helpers cannot shadow it."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EDGE_DIR = REPO_ROOT / "edge"
VECTORS_PATH = EDGE_DIR / "test" / "vectors.json"
sys.path.insert(0, str(REPO_ROOT / "tests" / "sdk"))

from sdk_support import Process, flowgate_bin, free_port, spawn  # noqa: E402,F401

EDGE_TOKEN = "edge-e2e-shared-secret-0123456789"
KEY_HASH_SECRET = "edge-e2e-key-hash-secret-0123456789"
ADMIN_KEY = "edge-admin-key"
# The key limit of `[env.test]` in edge/wrangler.toml.
EDGE_KEY_LIMIT = 20

CONFIG = """
model_list:
  - model_name: gpt-test
    litellm_params: {model: openai/gpt-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: claude-test
    litellm_params: {model: anthropic/claude-upstream, api_base: "{upstream}", api_key: upstream-key}
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "The quick brown fox jumps over the lazy dog"}
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """A missing tool fails under CI=true and skips elsewhere."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: the edge tests must run; scripts/install-edge-tools.sh installs them)")
    pytest.skip(what)


def node() -> str:
    path = shutil.which("node")
    if path is None:
        missing("node is not installed")
    return path


def wrangler() -> Path:
    path = EDGE_DIR / "node_modules" / "wrangler" / "bin" / "wrangler.js"
    if not path.exists() or not (EDGE_DIR / "node_modules" / "@cloudflare" / "workerd-linux-64").exists():
        missing(f"wrangler/workerd not installed in {EDGE_DIR / 'node_modules'}: run scripts/install-edge-tools.sh")
    return path


def psql(sql: str, database: str = "postgres") -> str:
    if shutil.which("psql") is None:
        missing("psql is not installed")
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        missing(f"PostgreSQL on 127.0.0.1:5432 is not usable: {out.stderr.strip()}")
    return out.stdout.strip()


class FakeCloudflare:
    """Cloudflare's KV bulk-write API (`PUT /client/v4/accounts/{a}/storage/kv/namespaces/{n}/bulk`)
    on a local port, accepting one token and keeping what it was sent."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.writes: list[tuple[str, list]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok_path = self.path.startswith("/client/v4/accounts/") and self.path.endswith("/bulk")
                if self.headers.get("authorization") != f"Bearer {outer.token}" or not ok_path:
                    answer = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
                    status = 403
                else:
                    pairs = json.loads(body)
                    outer.writes.append((self.path, pairs))
                    result = {"successful_key_count": len(pairs), "unsuccessful_keys": []}
                    answer = {"success": True, "errors": [], "messages": [], "result": result}
                    status = 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"

    def stop(self) -> None:
        self.server.shutdown()


@dataclass
class Wrangler:
    proc: subprocess.Popen
    port: int
    persist: str
    logs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wrangler_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "CI")}
    env.update(
        {
            "HOME": home,
            "XDG_CONFIG_HOME": home,
            "WRANGLER_SEND_METRICS": "false",
            "WRANGLER_LOG_PATH": home,
            "NO_COLOR": "1",
        }
    )
    return env


def start_wrangler(origins: list[dict], home: str, persist: str, env_name: str = "test") -> Wrangler:
    """`wrangler dev --local --env ENV_NAME` with these origins and the edge secret."""
    port = free_port()
    args = [
        node(),
        str(wrangler()),
        "dev",
        "--local",
        "--env",
        env_name,
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--inspector-port",
        str(free_port()),
        "--persist-to",
        persist,
        "--var",
        f"EDGE_TOKEN:{EDGE_TOKEN}",
        "--var",
        f"ORIGINS:{json.dumps(origins)}",
        "--log-level",
        "warn",
    ]
    proc = subprocess.Popen(
        args, cwd=EDGE_DIR, env=wrangler_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    w = Wrangler(proc, port, persist)
    threading.Thread(target=lambda: [w.logs.append(line.rstrip()) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("wrangler dev exited:\n" + "\n".join(w.logs[-40:]))
        try:
            httpx.get(f"{w.url}/v1/models", timeout=2)
            return w
        except httpx.HTTPError:
            time.sleep(0.3)
    w.stop()
    raise RuntimeError("wrangler dev did not start:\n" + "\n".join(w.logs[-40:]))


def kv_bulk_put(pairs: list, home: str, persist: str) -> None:
    """Writes pairs into the Worker's local REVOKED_KEYS namespace, as Cloudflare stores them."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(pairs, f)
    out = subprocess.run(
        [node(), str(wrangler()), "kv", "bulk", "put", f.name, "--binding", "REVOKED_KEYS", "--local", "--env", "test",
         "--persist-to", persist],
        cwd=EDGE_DIR,
        env=wrangler_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    os.unlink(f.name)
    assert out.returncode == 0, out.stdout + out.stderr


@dataclass
class EdgeStack:
    upstream: Process
    origins: list[Process]
    edge: Wrangler
    database: str
    home: tempfile.TemporaryDirectory
    data_dirs: list[tempfile.TemporaryDirectory]

    def proxy_url(self, i: int) -> str:
        return f"http://{self.origins[i].addrs['proxy']}"

    def api_url(self, i: int = 0) -> str:
        return f"http://{self.origins[i].addrs['api-server']}"

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{self.database}"

    def admin(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(
            method, f"{self.api_url()}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json=body, timeout=10
        )

    def create_key(self, **fields) -> dict:
        response = self.admin("POST", "/api/enterprise/vkeys", {"name": "edge-test", **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def audit_count(self) -> int:
        return int(psql("SELECT count(*) FROM audit_records", self.database))

    def settled_audit_count(self) -> int:
        """The audit count once earlier requests' records are written (they go in batches)."""
        last = self.audit_count()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.75)
            now = self.audit_count()
            if now == last:
                return now
            last = now
        return last

    def audit_row(self, request_id: str) -> list[str] | None:
        out = psql(f"SELECT request_id, client_ip, status FROM audit_records WHERE request_id = '{request_id}'",
                   self.database)
        return out.split("|") if out else None

    def stop(self) -> None:
        self.edge.stop()
        for origin in self.origins:
            origin.stop()
        self.upstream.stop()
        for d in self.data_dirs:
            d.cleanup()
        self.home.cleanup()
        psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def start_edge_stack(env_name: str = "test") -> EdgeStack:
    """Two origins on one database and the Worker in front (`[env.ENV_NAME]` of wrangler.toml)."""
    flowgate_bin()
    wrangler()
    node()
    database = f"flowgate_edge_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {database}")
    upstream = spawn(["mock-upstream", "--port", "0", "--chunks", "6", "--chunk-delay-ms", "5"], {}, ["mock-upstream"])
    home = tempfile.TemporaryDirectory(prefix="flowgate-edge-home-")
    data_dirs: list[tempfile.TemporaryDirectory] = []
    origins: list[Process] = []
    try:
        for _ in range(2):
            data_dir = tempfile.TemporaryDirectory(prefix="flowgate-edge-")
            data_dirs.append(data_dir)
            config = Path(data_dir.name) / "flowgate.yaml"
            config.write_text(CONFIG.replace("{upstream}", f"http://{upstream.addrs['mock-upstream']}"))
            env = {
                "FLOWGATE_DATA_DIR": data_dir.name,
                "FLOWGATE_CONFIG": str(config),
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
                "ADMIN_API_KEY": ADMIN_KEY,
                "FLOWGATE__SECURITY__KEY_HASH_SECRET": KEY_HASH_SECRET,
                "FLOWGATE__PROXY__EDGE_TOKEN": EDGE_TOKEN,
                "FLOWGATE__SERVER__HOST": "127.0.0.1",
                "FLOWGATE__PROXY__PORT": "0",
                "FLOWGATE__API_SERVER__PORT": "0",
                "FLOWGATE__COMPLIANCE__PORT": "0",
                "FLOWGATE__POLICY__PORT": "0",
            }
            origins.append(spawn(["all"], env, ["proxy", "api-server", "compliance", "policy"], timeout=60))
        # Both origins on one continent; the weights put the first one first.
        origin_list = [
            {"url": f"http://{origins[0].addrs['proxy']}", "continent": "NA", "weight": 1000},
            {"url": f"http://{origins[1].addrs['proxy']}", "continent": "NA", "weight": 0.001},
        ]
        persist = str(Path(home.name) / "state")
        edge = start_wrangler(origin_list, home.name, persist, env_name)
    except BaseException:
        for origin in origins:
            origin.stop()
        upstream.stop()
        for d in data_dirs:
            d.cleanup()
        home.cleanup()
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        raise
    return EdgeStack(upstream, origins, edge, database, home, data_dirs)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` (any suffix like `_total`) whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[-1])
    return total


def run_flowgate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    base.update(env)
    return subprocess.run([flowgate_bin(), *args], env=base, capture_output=True, text=True, timeout=60)
