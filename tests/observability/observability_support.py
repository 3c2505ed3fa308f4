"""Starts `flowgate all` with a mock model, sends a little traffic (a success, a stream, an
unknown model, a bad key) and returns the proxy's /metrics text."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gateway:
    def __init__(self, proxy: str, api: str, admin: str) -> None:
        self.proxy, self.api, self.admin = proxy, api, admin

    def metrics_after_traffic(self) -> str:
        key = httpx.post(f"{self.api}/api/enterprise/vkeys", headers={"Authorization": f"Bearer {self.admin}"},
                         json={"name": "obs", "guardrail_policy": {"mandatory_guardrails": ["pii-redact"]}}).json()["key"]
        headers = {"Authorization": f"Bearer {key}"}
        chat = {"model": "m", "messages": [{"role": "user", "content": "mail a@example.com"}]}
        for _ in range(20):
            if httpx.post(f"{self.proxy}/v1/chat/completions", headers=headers, json=chat).status_code == 200:
                break
            time.sleep(0.2)
        httpx.post(f"{self.proxy}/v1/chat/completions", headers=headers, json={**chat, "stream": True})
        httpx.post(f"{self.proxy}/v1/chat/completions", headers=headers, json={**chat, "model": "nope"})
        httpx.post(f"{self.proxy}/v1/chat/completions", headers={"Authorization": "Bearer sk-fg-bad"}, json=chat)
        httpx.get(f"{self.proxy}/readyz")
        time.sleep(0.5)
        return httpx.get(f"{self.proxy}/metrics").text


@contextlib.contextmanager
def running_gateway():
    binary = os.environ.get("FLOWGATE_BIN", str(REPO / "target" / "debug" / "flowgate"))
    assert Path(binary).exists(), f"flowgate binary missing at {binary}"
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "flowgate.yaml"
        config.write_text("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n")
        ports = {name: _free_port() for name in ("proxy", "api", "compliance", "policy")}
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
        env.update({
            "FLOWGATE_DATA_DIR": data, "FLOWGATE_CONFIG": str(config), "ADMIN_API_KEY": "obs-admin",
            "FLOWGATE__SERVER__HOST": "127.0.0.1", "LOG_LEVEL": "warn",
            "FLOWGATE__PROXY__PORT": str(ports["proxy"]), "FLOWGATE__API_SERVER__PORT": str(ports["api"]),
            "FLOWGATE__COMPLIANCE__PORT": str(ports["compliance"]), "FLOWGATE__POLICY__PORT": str(ports["policy"]),
        })
        process = subprocess.Popen([binary, "all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proxy = f"http://127.0.0.1:{ports['proxy']}"
            for _ in range(100):
                try:
                    if httpx.get(f"{proxy}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield Gateway(proxy, f"http://127.0.0.1:{ports['api']}", "obs-admin")
        finally:
            process.terminate()
            process.wait(timeout=20)
