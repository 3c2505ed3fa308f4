"""docker-compose.simple.yaml: normalised by the real Docker Compose CLI (`docker-compose config`,
which needs no Docker engine) with .env.example, then checked service by service."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO_ROOT, SERVICES

COMPOSE_FILE = REPO_ROOT / "docker-compose.simple.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
FLOWGATE_SERVICES = ("migrate", *SERVICES, "worker")
SECRET_VARS = (
    "ADMIN_API_KEY",
    "POSTGRES_PASSWORD",
    "FLOWGATE__SECURITY__KEY_HASH_SECRET",
    "FLOWGATE__SECURITY__INTERNAL_TOKEN",
)
MIB = 1024 * 1024


def compose_env() -> dict[str, str]:
    """The test's environment without anything that compose would interpolate."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def run_compose(compose_bin: str, env_file: Path | str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [compose_bin, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=compose_env(),
        cwd=str(REPO_ROOT),
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config(compose_bin) -> dict[str, Any]:
    result = run_compose(compose_bin, ENV_EXAMPLE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    with open(COMPOSE_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_compose_config_is_valid(config):
    assert config["name"] == "flowgate"
    assert set(config["services"]) == {*FLOWGATE_SERVICES, "postgres", "redis", "caddy"}


def test_compose_refuses_to_start_without_secrets(compose_bin, tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run_compose(compose_bin, empty, "config", "--quiet")
    assert result.returncode != 0
    for var in (*SECRET_VARS, "FLOWGATE_DOMAIN"):
        assert f"required variable {var} is missing" in result.stderr, var


def test_one_image_for_every_flowgate_service(config):
    images = {config["services"][name]["image"] for name in FLOWGATE_SERVICES}
    assert images == {"flowgate:local"}
    build = config["services"]["migrate"]["build"]
    assert build["dockerfile"] == "Dockerfile.runtime"
    assert Path(build["context"]).resolve() == REPO_ROOT


def test_every_mode_has_its_service_type(config):
    for name in FLOWGATE_SERVICES:
        assert config["services"][name]["environment"]["SERVICE_TYPE"] == name


def test_limits(config):
    s = config["services"]

    def mem(name, key="mem_limit"):
        return int(s[name][key])  # compose normalises "1g" to bytes

    proxy = s["proxy"]
    assert mem("proxy") == 1024 * MIB
    assert mem("proxy", "memswap_limit") == mem("proxy"), "no swap for the proxy"
    assert float(proxy["cpus"]) == 2.0
    assert proxy["ulimits"]["nofile"] == {"soft": 65536, "hard": 65536}
    assert mem("api-server") == 512 * MIB
    assert mem("compliance") == 768 * MIB
    assert mem("policy") == 256 * MIB
    assert mem("worker") == 256 * MIB
    for name in (*FLOWGATE_SERVICES, "postgres", "redis", "caddy"):
        assert mem(name) > 0, name
        assert mem(name, "memswap_limit") == mem(name), name


def test_health_checks(config):
    s = config["services"]
    for name in SERVICES:
        hc = s[name]["healthcheck"]
        assert hc["test"] == ["CMD", "flowgate", "healthcheck"], name
        assert hc["retries"] >= 3
    assert "pg_isready" in " ".join(s["postgres"]["healthcheck"]["test"])
    assert s["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert s["migrate"]["healthcheck"] == {"disable": True}
    assert s["caddy"]["healthcheck"]["test"]


def test_start_order(config):
    s = config["services"]
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        deps = s[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
    for peer in ("api-server", "compliance", "policy"):
        assert s["proxy"]["depends_on"][peer]["condition"] == "service_healthy"
    assert s["caddy"]["depends_on"]["proxy"]["condition"] == "service_healthy"


def test_restart_policies(config):
    s = config["services"]
    for name in (*SERVICES, "postgres", "redis", "caddy"):
        assert s[name]["restart"] == "unless-stopped", name
    assert s["migrate"]["restart"] == "no", "a one-shot must not restart"


def test_volumes_for_database_and_audit_spool(config):
    s = config["services"]

    def mounts(name):
        return {v["target"]: v for v in s[name].get("volumes", [])}

    assert mounts("postgres")["/var/lib/postgresql/data"]["type"] == "volume"
    spool = mounts("proxy")["/data"]
    assert spool["type"] == "volume" and spool["source"] == "audit-spool"
    assert mounts("redis")["/data"]["type"] == "volume"
    assert {"postgres-data", "audit-spool", "redis-data"} <= set(config["volumes"])
    caddyfile = mounts("caddy")["/etc/caddy/Caddyfile"]
    assert Path(caddyfile["source"]).resolve() == REPO_ROOT / "Caddyfile" and caddyfile["read_only"]


def test_only_caddy_publishes_ports(config):
    s = config["services"]
    for name, svc in s.items():
        if name != "caddy":
            assert not svc.get("ports"), name
    published = {(p["published"], p["target"], p["protocol"]) for p in s["caddy"]["ports"]}
    assert {("80", 80, "tcp"), ("443", 443, "tcp")} <= published


def test_proxy_wiring(config):
    s = config["services"]
    env = s["proxy"]["environment"]
    assert env["FLOWGATE__PROXY__API_SERVER_URL"] == "http://api-server:7778"
    assert env["FLOWGATE__PROXY__COMPLIANCE_URL"] == "http://compliance:7777"
    assert env["FLOWGATE__PROXY__POLICY_URL"] == "http://policy:7782"
    subnet = config["networks"]["flowgate"]["ipam"]["config"][0]["subnet"]
    assert env["FLOWGATE__PROXY__TRUSTED_PROXIES"] == subnet
    caddy_env = s["caddy"]["environment"]
    for name, spec in SERVICES.items():
        var = f"FLOWGATE_{name.upper().replace('-', '_')}_UPSTREAM"
        assert caddy_env[var] == f"{name}:{spec['port']}"
        assert str(spec["port"]) in s[name].get("expose", []), name


def test_services_get_secrets_and_datastores(config):
    values = env_example()
    s = config["services"]
    for name in SERVICES:
        env = s[name]["environment"]
        assert env["ADMIN_API_KEY"] == values["ADMIN_API_KEY"]
        assert env["FLOWGATE__SECURITY__KEY_HASH_SECRET"] == values["FLOWGATE__SECURITY__KEY_HASH_SECRET"]
        assert env["FLOWGATE__SECURITY__INTERNAL_TOKEN"] == values["FLOWGATE__SECURITY__INTERNAL_TOKEN"]
        # The binary binds 127.0.0.1 by default; the containers must be reachable by their peers.
        assert env["FLOWGATE__SERVER__HOST"] == "0.0.0.0"
        assert env["DATABASE_URL"] == f"postgres://flowgate:{values['POSTGRES_PASSWORD']}@postgres:5432/flowgate"
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert env["LOG_FORMAT"] == "json"
    assert s["migrate"]["environment"]["DATABASE_URL"] == s["proxy"]["environment"]["DATABASE_URL"]
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD"] == values["POSTGRES_PASSWORD"]


def test_every_service_shares_datastores_secrets_and_log_format(config):
    """Every service reaches the same PostgreSQL and Redis (the proxy writes spend and audit rows,
    policy reads rule sets, all subscribe to Redis channels), gets the admin key, and hashes
    virtual keys with the one secret: a proxy and an api-server with different hash secrets would
    reject every key the api-server issues. The internal token is one too: a service refuses
    internal gRPC calls carrying another."""
    s = config["services"]
    shared = (
        "DATABASE_URL",
        "REDIS_URL",
        "ADMIN_API_KEY",
        "FLOWGATE__SECURITY__KEY_HASH_SECRET",
        "FLOWGATE__SECURITY__INTERNAL_TOKEN",
        "LOG_FORMAT",
    )
    for var in shared:
        values = {name: s[name]["environment"].get(var) for name in SERVICES}
        assert None not in values.values(), (var, values)
        assert len(set(values.values())) == 1, (var, values)
    assert s["proxy"]["environment"]["LOG_FORMAT"] == "json"
    assert s["migrate"]["environment"]["LOG_FORMAT"] == "json"
    # Peers by their compose service names, the same on every service (the proxy calls them; the
    # api-server's health overview checks them); only the proxy trusts X-Forwarded-For.
    for peer in ("api-server", "compliance", "policy"):
        var = f"FLOWGATE__PROXY__{peer.upper().replace('-', '_')}_URL"
        for name in SERVICES:
            assert s[name]["environment"][var] == f"http://{peer}:{SERVICES[peer]['port']}", (name, var)
    for name in ("api-server", "compliance", "policy"):
        assert "FLOWGATE__PROXY__TRUSTED_PROXIES" not in s[name]["environment"], name


def test_no_secrets_inline(raw):
    """Every secret-looking setting in the file is a ${VAR} reference to .env, never a literal."""
    secretish = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN)", re.IGNORECASE)
    found = 0

    def walk(node, path):
        nonlocal found
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, (str, int, float)) and secretish.search(str(key)):
                    found += 1
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}", str(value)), f"{path}.{key} = {value!r}"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(raw, "")
    assert found >= 5
    # DSNs embed the password only through interpolation.
    text = COMPOSE_FILE.read_text()
    for dsn in re.findall(r"postgres://\S+", text):
        assert "${POSTGRES_PASSWORD" in dsn, dsn


def test_env_example_covers_every_variable(raw):
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert set(SECRET_VARS) <= required
    values = env_example()
    assert required <= set(values), required - set(values)
    for var in SECRET_VARS:
        assert "change-me" in values[var], f"{var} in .env.example must be an obvious placeholder"


def test_the_worker_runs_after_the_migration_and_is_not_routed(config):
    worker = config["services"]["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["healthcheck"]["test"] == ["CMD", "flowgate", "healthcheck"]
    assert worker["expose"] == ["7779"]
    assert not worker.get("ports"), "the worker serves only its health routes, inside the network"
    assert "worker" not in config["services"]["caddy"]["depends_on"]
