"""scripts/integration_test.sh (bash + curl) and scripts/integration_test.py (official SDKs) run as
an operator runs them after a deploy: as subprocesses, configured only through the environment,
against `flowgate all` directly and through Caddy (Caddyfile.local). They must pass against a
healthy gateway and fail (non-zero exit, FAIL lines) when something is wrong."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest
from integration_support import ADMIN_CHECKS, ADMIN_KEY, BASE_CHECKS, SCRIPTS, Gateway, run_script

KINDS = ["sh", "py"]


def assert_all_passed(run, checks: list[str]) -> None:
    passed = run.lines("PASS")
    assert run.returncode == 0, str(run)
    assert set(passed) == set(checks), str(run)
    assert run.lines("FAIL") == {}, str(run)
    assert run.summary == f"{len(checks)} passed, 0 failed", str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_passes_against_the_proxy_with_the_management_api(gateway: Gateway, virtual_key: str, kind: str) -> None:
    run = run_script(
        kind,
        {
            "FLOWGATE_URL": gateway.proxy_url,
            "VIRTUAL_KEY": virtual_key,
            "FLOWGATE_API_URL": gateway.api_url,
            "ADMIN_API_KEY": ADMIN_KEY,
        },
        gateway.home,
    )
    assert_all_passed(run, BASE_CHECKS + ADMIN_CHECKS)
    # The default model is the first one /v1/models lists.
    assert "mock-fast" in run.lines("PASS")["models"], str(run)
    assert virtual_key not in run.stdout + run.stderr, "the virtual key must never be printed"


@pytest.mark.parametrize("kind", KINDS)
def test_without_an_admin_key_the_management_checks_are_skipped(
    gateway: Gateway, virtual_key: str, kind: str
) -> None:
    run = run_script(kind, {"FLOWGATE_URL": gateway.proxy_url, "VIRTUAL_KEY": virtual_key}, gateway.home)
    assert_all_passed(run, BASE_CHECKS)
    assert "admin checks" in run.lines("SKIP"), str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_smartflow_host_alias_v1_suffix_and_explicit_model(gateway: Gateway, virtual_key: str, kind: str) -> None:
    host = gateway.process.addrs["proxy"]  # host:port, no scheme
    run = run_script(
        kind,
        {"SMARTFLOW_HOST": f"{host}/v1/", "VIRTUAL_KEY": virtual_key, "FLOWGATE_MODEL": "mock-slow"},
        gateway.home,
    )
    assert_all_passed(run, BASE_CHECKS)
    assert "mock-slow" in run.lines("PASS")["models"], str(run)


def test_shell_script_without_python_json_parsing(gateway: Gateway, virtual_key: str) -> None:
    """The bash script also works on a host without python3 (grep/sed parsing)."""
    run = run_script(
        "sh",
        {
            "FLOWGATE_URL": gateway.proxy_url,
            "VIRTUAL_KEY": virtual_key,
            "FLOWGATE_API_URL": gateway.api_url,
            "ADMIN_API_KEY": ADMIN_KEY,
            "FLOWGATE_JSON_PARSER": "grep",
        },
        gateway.home,
    )
    assert_all_passed(run, BASE_CHECKS + ADMIN_CHECKS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_virtual_key_fails(gateway: Gateway, kind: str) -> None:
    wrong = "sk-fg-000000000000_notarealkeynotarealkeynotarealkey0"
    run = run_script(kind, {"FLOWGATE_URL": gateway.proxy_url, "VIRTUAL_KEY": wrong}, gateway.home)
    assert run.returncode == 1, str(run)
    failed = run.lines("FAIL")
    for check in ("models", "chat", "chat stream", "anthropic messages", "anthropic stream"):
        assert check in failed and "401" in failed[check], (check, str(run))
    # The gateway itself is fine: health passes, and a made-up key is still rejected.
    assert {"health", "readyz", "bad key rejected"} <= set(run.lines("PASS")), str(run)
    assert run.summary == f"3 passed, {len(failed)} failed", str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_revoked_virtual_key_fails(gateway: Gateway, kind: str) -> None:
    created = gateway.create_key(name="integration-revoked")
    response = httpx.post(
        f"{gateway.api_url}/api/enterprise/vkeys/{created['id']}/revoke",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    run = run_script(kind, {"FLOWGATE_URL": gateway.proxy_url, "VIRTUAL_KEY": created["key"]}, gateway.home)
    assert run.returncode == 1, str(run)
    assert "chat" in run.lines("FAIL"), str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_admin_key_or_api_url_fails(gateway: Gateway, virtual_key: str, kind: str) -> None:
    wrong_admin = run_script(
        kind,
        {
            "FLOWGATE_URL": gateway.proxy_url,
            "VIRTUAL_KEY": virtual_key,
            "FLOWGATE_API_URL": gateway.api_url,
            "ADMIN_API_KEY": "not-the-admin-key",
        },
        gateway.home,
    )
    assert wrong_admin.returncode == 1, str(wrong_admin)
    assert "401" in wrong_admin.lines("FAIL")["admin create key"], str(wrong_admin)

    # The proxy port does not serve the management API: the failure says what to set.
    no_api_url = run_script(
        kind,
        {"FLOWGATE_URL": gateway.proxy_url, "VIRTUAL_KEY": virtual_key, "ADMIN_API_KEY": ADMIN_KEY},
        gateway.home,
    )
    assert no_api_url.returncode == 1, str(no_api_url)
    assert "FLOWGATE_API_URL" in no_api_url.lines("FAIL")["admin create key"], str(no_api_url)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unreachable_gateway_fails(gateway: Gateway, kind: str) -> None:
    run = run_script(
        kind, {"FLOWGATE_URL": "http://127.0.0.1:9", "VIRTUAL_KEY": "sk-fg-x", "FLOWGATE_TIMEOUT": "5"}, gateway.home
    )
    assert run.returncode == 1, str(run)
    assert run.lines("PASS") == {}, str(run)
    assert "no answer" in run.lines("FAIL")["health"], str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_environment_exits_2(gateway: Gateway, kind: str) -> None:
    run = run_script(kind, {}, gateway.home)
    assert run.returncode == 2, str(run)
    assert "FLOWGATE_URL" in run.stderr and "VIRTUAL_KEY" in run.stderr, str(run)
    assert run.stdout == "", str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_help_names_every_variable(kind: str) -> None:
    result = subprocess.run([*SCRIPTS[kind], "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    for var in (
        "FLOWGATE_URL",
        "SMARTFLOW_HOST",
        "VIRTUAL_KEY",
        "FLOWGATE_MODEL",
        "ADMIN_API_KEY",
        "FLOWGATE_API_URL",
        "FLOWGATE_TIMEOUT",
        "FLOWGATE_INSECURE",
    ):
        assert var in result.stdout, (kind, var)


# --------------------------------------------------------------------------------------------
# Behind Caddy: one base URL for the data plane and the management API
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_passes_through_caddy_with_the_base_url_only(
    gateway: Gateway, caddy_url: str, virtual_key: str, kind: str
) -> None:
    run = run_script(
        kind, {"FLOWGATE_URL": caddy_url, "VIRTUAL_KEY": virtual_key, "ADMIN_API_KEY": ADMIN_KEY}, gateway.home
    )
    assert_all_passed(run, BASE_CHECKS + ADMIN_CHECKS)


@pytest.mark.parametrize("kind", KINDS)
def test_streams_a_slow_model_through_caddy(gateway: Gateway, caddy_url: str, virtual_key: str, kind: str) -> None:
    run = run_script(
        kind, {"FLOWGATE_URL": caddy_url, "VIRTUAL_KEY": virtual_key, "FLOWGATE_MODEL": "mock-slow"}, gateway.home
    )
    assert_all_passed(run, BASE_CHECKS)
    # The answer arrived in several pieces, not as one buffered block.
    line = run.lines("PASS")["chat stream"]
    pieces = re.search(r"(\d+) (content chunks|with content)", line)
    assert pieces and int(pieces.group(1)) >= 3, str(run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_key_fails_through_caddy(gateway: Gateway, caddy_url: str, kind: str) -> None:
    run = run_script(kind, {"FLOWGATE_URL": caddy_url, "VIRTUAL_KEY": "sk-fg-wrong"}, gateway.home)
    assert run.returncode == 1, str(run)
    assert "401" in run.lines("FAIL")["chat"], str(run)
