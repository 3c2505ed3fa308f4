"""Helpers for tests/integration: start `flowgate all` (FLOWGATE_BIN) on free ports with `mock/`
models, Caddy (Caddyfile.local) in front of it, and run scripts/integration_test.{sh,py} against
either as subprocesses. Named uniquely so that the other suites' helper modules cannot shadow it
(pytest puts every test directory on sys.path)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "sh": ["bash", str(REPO_ROOT / "scripts" / "integration_test.sh")],
    "py": [sys.executable, str(REPO_ROOT / "scripts" / "integration_test.py")],
}
SERVICES = ("proxy", "api-server", "compliance", "policy")
ADMIN_KEY = "integration-admin-key"

# `mock-fast` is listed first, so it is the scripts' default model; `mock-slow` streams five chunks
# 100 ms apart, to see streaming pass through Caddy unbuffered.
CONFIG = """
model_list:
  - model_name: mock-fast
    litellm_params: {model: mock/fast, mock_chunks: 4}
  - model_name: mock-slow
    litellm_params: {model: mock/slow, mock_chunk_delay_ms: 100, mock_chunks: 5}
router_settings: {num_retries: 0}
"""

# Every check both scripts run; with an admin key all of them pass.
BASE_CHECKS = [
    "health",
    "readyz",
    "models",
    "bad key rejected",
    "chat",
    "chat stream",
    "anthropic messages",
    "anthropic stream",
]
ADMIN_CHECKS = [
    "admin create key",
    "admin new key works",
    "admin revoke key",
    "admin revoked key rejected",
]


def flowgate_bin() -> Path:
    """FLOWGATE_BIN, default target/debug/flowgate. Missing: the test fails (never skips)."""
    configured = os.environ.get("FLOWGATE_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "flowgate"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"flowgate binary not found at {path}: build it (cargo build -p flowgate) or set FLOWGATE_BIN")
    return path


def find_caddy() -> str:
    candidate = Path(sys.executable).parent / "caddy"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("`caddy` not found: run scripts/install-deploy-tools.sh (Debian's caddy package)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing from the caller's FLOWGATE_*/ADMIN_API_KEY leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


@dataclass
class Process:
    """A process in its own session, its output collected line by line."""

    proc: subprocess.Popen
    logs: list[str] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.logs[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def start_process(argv: list[str], env: dict[str, str]) -> Process:
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    process = Process(proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            process.logs.append(line.rstrip())
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("message") == "listening":
                process.addrs[record.get("service", "")] = record.get("addr", "")

    threading.Thread(target=pump, daemon=True).start()
    return process


@dataclass
class Gateway:
    """`flowgate all` on free ports, with an admin key and the `mock/` models of CONFIG."""

    process: Process
    workdir: tempfile.TemporaryDirectory

    @property
    def home(self) -> Path:
        return Path(self.workdir.name)

    def url(self, service: str) -> str:
        return f"http://{self.process.addrs[service]}"

    @property
    def proxy_url(self) -> str:
        return self.url("proxy")

    @property
    def api_url(self) -> str:
        return self.url("api-server")

    def port(self, service: str) -> int:
        return int(self.process.addrs[service].rsplit(":", 1)[1])

    def create_key(self, name: str = "integration-test", api_url: str | None = None, **fields) -> dict:
        response = httpx.post(
            f"{api_url or self.api_url}/api/enterprise/vkeys",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            json={"name": name, **fields},
            timeout=15,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def stop(self) -> None:
        self.process.stop()
        self.workdir.cleanup()


def start_gateway(timeout: float = 60.0) -> Gateway:
    binary = flowgate_bin()
    workdir = tempfile.TemporaryDirectory(prefix="flowgate-integration-")
    home = Path(workdir.name)
    (home / "data").mkdir()
    config = home / "flowgate.yaml"
    config.write_text(CONFIG)
    env = base_env(home)
    env.update(
        {
            "FLOWGATE_CONFIG": str(config),
            "FLOWGATE_DATA_DIR": str(home / "data"),
            "ADMIN_API_KEY": ADMIN_KEY,
            "FLOWGATE__SECURITY__KEY_HASH_SECRET": "integration-key-hash-secret-0123456789abcdef",
            "FLOWGATE__SERVER__HOST": "127.0.0.1",
            # Caddy on 127.0.0.1 is trusted to set X-Forwarded-For, as in the deployment files.
            "FLOWGATE__PROXY__TRUSTED_PROXIES": "127.0.0.1/32",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            **{f"FLOWGATE__{s.upper().replace('-', '_')}__PORT": "0" for s in SERVICES},
        }
    )
    process = start_process([str(binary), "all"], env)
    gateway = Gateway(process, workdir)
    deadline = time.monotonic() + timeout
    while not all(s in process.addrs for s in SERVICES):
        if process.proc.poll() is not None or time.monotonic() > deadline:
            gateway.stop()
            pytest.fail(f"flowgate all did not start (exit {process.proc.poll()}):\n{process.tail()}")
        time.sleep(0.05)
    # Listening is not ready: wait for the proxy's /readyz (it checks its peers).
    while True:
        try:
            if httpx.get(f"{gateway.proxy_url}/readyz", timeout=2).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if process.proc.poll() is not None or time.monotonic() > deadline:
            gateway.stop()
            pytest.fail(f"flowgate all not ready in time:\n{process.tail()}")
        time.sleep(0.1)


def start_caddy(gateway: Gateway, timeout: float = 30.0) -> tuple[Process, str]:
    """Caddy with the repository's Caddyfile.local in front of `gateway`; returns its base URL."""
    port = free_port()
    home = gateway.home / f"caddy-{port}"
    home.mkdir()
    env = base_env(home)
    env.update(
        {
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "FLOWGATE_LOCAL_PORT": str(port),
            "CADDY_ADMIN": "off",
            **{f"FLOWGATE_{s.upper().replace('-', '_')}_UPSTREAM": gateway.process.addrs[s] for s in SERVICES},
        }
    )
    caddy = start_process(
        [find_caddy(), "run", "--config", str(REPO_ROOT / "Caddyfile.local"), "--adapter", "caddyfile"], env
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200 and response.headers.get("x-flowgate-service") == "proxy":
                return caddy, base
        except httpx.TransportError:
            pass
        if caddy.proc.poll() is not None or time.monotonic() > deadline:
            caddy.stop()
            pytest.fail(f"caddy did not come up in front of flowgate (exit {caddy.proc.poll()}):\n{caddy.tail()}")
        time.sleep(0.1)


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, verdict: str) -> dict[str, str]:
        """{check name: line} of the PASS/FAIL/SKIP lines."""
        found = {}
        for line in self.stdout.splitlines():
            if line.startswith(f"{verdict}  "):
                rest = line[len(verdict) + 2 :]
                name = rest.split(": ", 1)[0] if verdict != "PASS" else rest.split("  (", 1)[0]
                found[name] = line
        return found

    @property
    def summary(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.endswith(" failed")]
        return lines[-1] if lines else ""

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def run_script(kind: str, env: dict[str, str], home: Path, timeout: float = 180) -> ScriptRun:
    full_env = base_env(home)
    full_env.update(env)
    result = subprocess.run(
        SCRIPTS[kind],
        env=full_env,
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return ScriptRun(result.returncode, result.stdout, result.stderr)
