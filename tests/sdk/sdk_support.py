"""Starts real processes for the SDK suites: `flowgate mock-upstream` (a fake provider that speaks
both the OpenAI and the Anthropic API over HTTP) and `flowgate all` in front of it, with free
ports, a throwaway data directory and JSON logs. Named uniquely so other suites' helpers cannot
shadow it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


# The suite's gateway: models served natively and across formats by the mock upstream.
CONFIG = """
model_list:
  - model_name: gpt-test
    litellm_params: {model: openai/gpt-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: claude-test
    litellm_params: {model: anthropic/claude-upstream, api_base: "{upstream}", api_key: upstream-key}
  - model_name: resp-test
    litellm_params: {model: openai/resp-upstream, api_base: "{upstream}/v1", api_key: upstream-key, api: responses}
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "The quick brown fox jumps over the lazy dog"}
  - model_name: embed-test
    litellm_params: {model: openai/embed-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: broken
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9/v1", api_key: k}
router_settings:
  num_retries: 1
  fallbacks: [{broken: [gpt-test]}]
"""


def flowgate_bin() -> str:
    path = Path(os.environ.get("FLOWGATE_BIN", REPO_ROOT / "target" / "debug" / "flowgate"))
    if not path.exists():
        raise RuntimeError(f"flowgate binary not found at {path}: run `cargo build -p flowgate` or set FLOWGATE_BIN")
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    proc: subprocess.Popen
    logs: list[str] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def spawn(args: list[str], env: dict[str, str], services: list[str], timeout: float = 30.0) -> Process:
    """Starts `flowgate ARGS` and waits until each of `services` logged its listening address."""
    full_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    full_env.update({"LOG_FORMAT": "json", "LOG_LEVEL": "info"})
    full_env.update(env)
    proc = subprocess.Popen(
        [flowgate_bin(), *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    process = Process(proc)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            process.logs.append(line.rstrip())
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "listening":
                process.addrs[record["service"]] = record["addr"]
                if all(s in process.addrs for s in services):
                    ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        process.stop()
        raise RuntimeError("flowgate did not start:\n" + "\n".join(process.logs[-50:]))
    return process


@dataclass
class Stack:
    upstream: Process
    gateway: Process
    data_dir: tempfile.TemporaryDirectory
    admin_key: str

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream.addrs['mock-upstream']}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.gateway.addrs['proxy']}"

    @property
    def api_url(self) -> str:
        return f"http://{self.gateway.addrs['api-server']}"

    def create_key(self, **fields) -> dict:
        response = httpx.post(
            f"{self.api_url}/api/enterprise/vkeys",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            json={"name": "sdk-test", **fields},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def stop(self) -> None:
        self.gateway.stop()
        self.upstream.stop()
        self.data_dir.cleanup()


def start_stack(config_template: str, extra_env: dict[str, str] | None = None) -> Stack:
    """Starts the mock upstream, then `flowgate all` with `config_template` (`{upstream}` is
    replaced by the upstream's base URL)."""
    upstream = spawn(["mock-upstream", "--port", "0", "--chunks", "6", "--chunk-delay-ms", "5"], {}, ["mock-upstream"])
    data_dir = tempfile.TemporaryDirectory(prefix="flowgate-sdk-")
    config = Path(data_dir.name) / "flowgate.yaml"
    config.write_text(config_template.replace("{upstream}", f"http://{upstream.addrs['mock-upstream']}"))
    admin_key = "sdk-admin-key"
    env = {
        "FLOWGATE_DATA_DIR": data_dir.name,
        "FLOWGATE_CONFIG": str(config),
        "ADMIN_API_KEY": admin_key,
        "FLOWGATE__SERVER__HOST": "127.0.0.1",
        "FLOWGATE__PROXY__PORT": "0",
        "FLOWGATE__API_SERVER__PORT": "0",
        "FLOWGATE__COMPLIANCE__PORT": "0",
        "FLOWGATE__POLICY__PORT": "0",
        **(extra_env or {}),
    }
    try:
        gateway = spawn(["all"], env, ["proxy", "api-server", "compliance", "policy"])
    except Exception:
        upstream.stop()
        data_dir.cleanup()
        raise
    return Stack(upstream, gateway, data_dir, admin_key)


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
