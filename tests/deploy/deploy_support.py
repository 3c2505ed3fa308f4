"""Helpers shared by the tests in tests/deploy (imported by name: a uniquely named module, so that
other conftest.py files in the repository cannot shadow it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "flowgate"
INSTALL_HINT = "run scripts/install-deploy-tools.sh and use its virtualenv's python for pytest"

# The four Flowgate services: component name, HTTP port, and the config section of its port
# override (FLOWGATE__<SECTION>__PORT).
SERVICES = {
    "proxy": {"port": 7775, "section": "PROXY"},
    "api-server": {"port": 7778, "section": "API_SERVER"},
    "compliance": {"port": 7777, "section": "COMPLIANCE"},
    "policy": {"port": 7782, "section": "POLICY"},
}


def find_tool(name: str) -> str:
    """Path of a command-line tool: the test interpreter's bin dir first, then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found ({INSTALL_HINT})")
    return found


@dataclass
class Manifests:
    """Rendered chart output: the Kubernetes objects and the NOTES.txt text."""

    objects: list[dict[str, Any]]
    notes: str
    sources: dict[int, str] = field(default_factory=dict)  # id(object) -> template path

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def component(self, kind: str, component: str) -> dict[str, Any]:
        matches = [
            o
            for o in self.kind(kind)
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        assert len(matches) == 1, f"expected one {kind} for {component}, found {len(matches)}"
        return matches[0]


def flowgate_binary() -> Path:
    """The flowgate binary under test: FLOWGATE_BIN, default target/debug/flowgate. A missing
    binary fails the test (it is never skipped)."""
    configured = os.environ.get("FLOWGATE_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "flowgate"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"flowgate binary not found at {path}: build it (cargo build -p flowgate) or set FLOWGATE_BIN")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_from_env(var: str) -> int:
    """A port from the environment (to avoid clashes on a shared machine), else a free one."""
    value = os.environ.get(var)
    return int(value) if value else free_port()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Started:
    """A process started by the `spawn` fixture, with its combined stdout/stderr log."""

    proc: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
