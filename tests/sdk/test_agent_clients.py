"""The agent clients of today, run as their users run them, through the gateway: the Codex CLI
(`codex exec`, Responses API), Claude Code (`claude -p`, Anthropic Messages API) and the Vercel AI
SDK (`generateText`/`streamText` with the default `openai()` provider, Responses API).

The mock upstream is scripted through the prompt (`mock_tool:NAME {arguments}`): it calls the
client's own tool with those arguments, and answers `Tool output: ...` once the client sends the
result back, so each test sees a real tool round trip: the client ran the command (a file appears)
and the model got its output (the final answer quotes it). The clients are installed by
scripts/install-agent-clients.sh (pinned in tests/clients/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from sdk_support import REPO_ROOT, Stack, start_stack, wait_until

CONFIG = """
model_list:
  - model_name: gpt-test
    litellm_params: {model: openai/gpt-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: resp-test
    litellm_params: {model: openai/resp-upstream, api_base: "{upstream}/v1", api_key: upstream-key, api: responses}
  - model_name: "claude-*"
    litellm_params: {model: "anthropic/claude-*", api_base: "{upstream}", api_key: upstream-key}
"""


def clients_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowgate" / "agent-clients"
    return Path(os.environ.get("FLOWGATE_AGENT_CLIENTS", default))


def client(name: str) -> Path:
    path = clients_dir() / "node_modules" / ".bin" / name
    if not path.exists() or shutil.which("node") is None:
        message = f"{name} not installed in {clients_dir()} (run scripts/install-agent-clients.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def agents() -> Stack:
    stack = start_stack(CONFIG)
    yield stack
    stack.stop()


@pytest.fixture()
def agent_key(agents: Stack) -> tuple[str, str]:
    """A key of its own for each test (the key and its id), so its audit records are its own."""
    created = agents.create_key(name="agent-clients")
    return created["key"], created["id"]


def sessions_in_audit(stack: Stack, key_id: str, route: str) -> set[str]:
    """The session ids the audit trail recorded for `key_id`'s requests on `route`, once the
    writer has flushed them."""
    found: set[str] = set()

    def flushed() -> bool:
        response = httpx.get(
            f"{stack.api_url}/api/audit",
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            params={"key_id": key_id, "limit": 500},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        rows = [r for r in response.json()["items"] if r["route"] == route]
        found.update(r["metadata"].get("session_id", "") for r in rows)
        return bool(rows)

    assert wait_until(flushed, timeout=10), f"no audit record for {route}"
    return found


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: the clients keep their state in a throwaway home and send nothing
    anywhere but the gateway."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM")}
    env.update(
        HOME=str(home),
        CODEX_HOME=str(home / ".codex"),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        NO_COLOR="1",
        **extra,
    )
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    return env


@pytest.mark.parametrize("model", ["gpt-test", "resp-test", "claude-sonnet-4-5"])
def test_codex_exec_runs_a_shell_command_through_the_gateway(agents: Stack, agent_key: tuple[str, str], model: str, tmp_path: Path) -> None:
    codex = client("codex")
    work = tmp_path / "work"
    work.mkdir()
    last = tmp_path / "last-message.txt"
    provider = (
        'model_providers.flowgate={name="Flowgate", base_url="%s/v1", env_key="FLOWGATE_KEY", wire_api="responses"}'
        % agents.proxy_url
    )
    prompt = 'Please run mock_tool:exec_command {"cmd": "echo flowgate-codex-$((6*7)) > proof.txt && cat proof.txt"}'
    run = subprocess.run(
        [
            str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "-c", "model_provider=flowgate", "-c", provider, "-m", model, "-o", str(last), prompt,
        ],
        cwd=work, env=isolated_env(tmp_path / "home", FLOWGATE_KEY=agent_key[0]),
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "proof.txt").read_text().strip() == "flowgate-codex-42", "Codex ran the command"
    final = last.read_text()
    assert final.startswith("Tool output:") and "flowgate-codex-42" in final, final
    sessions = sessions_in_audit(agents, agent_key[1], "/v1/responses")
    assert len(sessions) == 1 and len(next(iter(sessions))) >= 32, f"one Codex session, by id: {sessions}"


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-test"])
def test_claude_code_runs_bash_through_the_gateway(agents: Stack, agent_key: tuple[str, str], model: str, tmp_path: Path) -> None:
    claude = client("claude")
    work = tmp_path / "work"
    work.mkdir()
    prompt = (
        'Please run mock_tool:Bash {"command": "echo flowgate-claude-$((6*7)) > proof.txt && cat proof.txt", '
        '"description": "Write the proof file"}'
    )
    env = isolated_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=f"{agents.proxy_url}/anthropic", ANTHROPIC_API_KEY=agent_key[0]
    )
    run = subprocess.run(
        [str(claude), "-p", prompt, "--model", model, "--allowedTools", "Bash", "--output-format", "json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["is_error"] is False and result["num_turns"] >= 2, result
    assert (work / "proof.txt").read_text().strip() == "flowgate-claude-42", "Claude Code ran the command"
    assert result["result"].startswith("Tool output:") and "flowgate-claude-42" in result["result"], result["result"]
    assert sessions_in_audit(agents, agent_key[1], "/anthropic/v1/messages") == {result["session_id"]}


@pytest.mark.parametrize("model", ["gpt-test", "resp-test", "claude-sonnet-4-5"])
def test_ai_sdk_generate_and_stream_text_with_a_tool(agents: Stack, agent_key: tuple[str, str], model: str, tmp_path: Path) -> None:
    client("codex")  # the install is one unit: its presence says the folder is complete
    script = clients_dir() / "ai_sdk_tool.mjs"
    shutil.copyfile(REPO_ROOT / "tests" / "clients" / "ai_sdk_tool.mjs", script)
    env = isolated_env(
        tmp_path / "home",
        FLOWGATE_URL=f"{agents.proxy_url}/v1",
        FLOWGATE_KEY=agent_key[0],
        MODEL=model,
        PROMPT='Weather please: mock_tool:get_weather {"city": "Paris"}',
    )
    run = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [r["kind"] for r in results] == ["generateText", "streamText"]
    for result in results:
        assert result["executed"] == ["Paris"], result
        assert result["toolCalls"] == ["get_weather"] and result["steps"] == 2, result
        assert result["text"].startswith("Tool output:") and "sunny" in result["text"], result
        assert result["usage"]["inputTokens"] > 0 and result["usage"]["outputTokens"] > 0, result
    assert results[1]["deltas"] > 1, "the streamed answer arrived in pieces"
