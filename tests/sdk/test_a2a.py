"""A2A agent routing as users run it: a real A2A agent written with the official SDK (`a2a-sdk`,
tests/sdk/a2a_upstream.py) as the upstream, declared in the config file with its own credential,
and the SDK's client against `flowgate all` at /a2a/{agent}: the card, a message, a streamed task
(passed through as it arrives), tasks/get and tasks/cancel, and a key that may not reach the
agent refused."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from a2a.client import A2AClientError, ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import CancelTaskRequest, GetTaskRequest, Role, SendMessageRequest, TaskState
from sdk_support import free_port, start_stack, wait_until

UPSTREAM = Path(__file__).with_name("a2a_upstream.py")
AGENT_TOKEN = "agent-own-secret"

CONFIG = """
model_list:
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "hi"}
mcp:
  enabled: true
a2a_agents:
  echo:
    card_url: http://127.0.0.1:{agent_port}/.well-known/agent-card.json
    description: Echoes messages
    headers:
      X-Agent-Token: os.environ/ECHO_AGENT_TOKEN
  other:
    card_url: http://127.0.0.1:{agent_port}/.well-known/agent-card.json
"""


@pytest.fixture(scope="module")
def agent_port():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), str(port), AGENT_TOKEN])

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    assert wait_until(up, timeout=30), "the upstream A2A agent did not start"
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(agent_port):
    stack = start_stack(CONFIG.replace("{agent_port}", str(agent_port)), {"ECHO_AGENT_TOKEN": AGENT_TOKEN})
    yield stack
    stack.stop()


def user_message(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


async def collect(client, text: str) -> list:
    return [event async for event in client.send_message(user_message(text))]


def test_the_agent_card_is_served_with_the_gateway_as_its_endpoint(stack):
    key = stack.create_key()["key"]
    card = httpx.get(
        f"{stack.proxy_url}/a2a/echo/.well-known/agent-card.json",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    assert card["name"] == "echo"
    assert card["supportedInterfaces"] == [
        {"url": f"{stack.proxy_url}/a2a/echo", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert "flowgateVirtualKey" in card["securitySchemes"]
    # Without a key, nothing is told.
    assert httpx.get(f"{stack.proxy_url}/a2a/echo/.well-known/agent-card.json", timeout=10).status_code == 401


def test_the_sdk_client_sends_messages_and_streams_tasks_through_the_gateway(stack):
    key = stack.create_key()["key"]

    async def scenario():
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            # Not streamed: message/send (SendMessage).
            client = await create_client(f"{stack.proxy_url}/a2a/echo", ClientConfig(httpx_client=http, streaming=False))
            (event,) = await collect(client, "hello")
            assert get_message_text(event.message) == "echo: hello"

            # Streamed: every event arrives as the agent sends it (the second artifact chunk comes a
            # second after the first), not all at once at the end.
            streaming = await create_client(f"{stack.proxy_url}/a2a/echo", ClientConfig(httpx_client=http, streaming=True))
            arrivals = []
            task_id = None
            async for event in streaming.send_message(user_message("task: go")):
                arrivals.append((time.monotonic(), event))
                if event.HasField("task"):
                    task_id = event.task.id
            kinds = [event.WhichOneof("payload") for _, event in arrivals]
            assert kinds[0] == "task" and "artifact_update" in kinds, kinds
            first_artifact = next(at for at, event in arrivals if event.HasField("artifact_update"))
            assert arrivals[-1][0] - first_artifact >= 0.5, "the stream was buffered"
            final = arrivals[-1][1]
            assert final.status_update.status.state == TaskState.TASK_STATE_COMPLETED

            # tasks/get (GetTask) reads the task the stream ran.
            task = await client.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            texts = [part.text for artifact in task.artifacts for part in artifact.parts]
            assert texts == ["part one", "part two"], texts

            # tasks/cancel (CancelTask) on a task waiting for input.
            (waiting,) = await collect(client, "task: wait for me")
            assert waiting.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            cancelled = await client.cancel_task(CancelTaskRequest(id=waiting.task.id))
            assert cancelled.status.state == TaskState.TASK_STATE_CANCELED

    anyio.run(scenario)


def test_a_key_that_may_not_reach_the_agent_is_refused(stack):
    key = stack.create_key(a2a_agents=["other"])["key"]

    async def scenario():
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            with pytest.raises(A2AClientError):
                await create_client(f"{stack.proxy_url}/a2a/echo", ClientConfig(httpx_client=http, streaming=False))

    anyio.run(scenario)
    call = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "hi"}]}}}
    refused = httpx.post(f"{stack.proxy_url}/a2a/echo", json=call, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert refused.status_code == 403
    assert "a2a_agents" in refused.json()["error"]["message"]
    # A bad key and no key.
    assert httpx.post(f"{stack.proxy_url}/a2a/echo", json=call, timeout=10).status_code == 401
    bad = httpx.post(f"{stack.proxy_url}/a2a/echo", json=call, headers={"Authorization": "Bearer sk-fg-nope"}, timeout=10)
    assert bad.status_code == 401


def test_the_gateway_card_lists_the_agents_the_key_may_reach(stack):
    key = stack.create_key(a2a_agents=["echo"])["key"]
    card = httpx.get(f"{stack.proxy_url}/.well-known/agent-card.json", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert [skill["id"] for skill in card["skills"]] == ["echo"]
    assert card["skills"][0]["description"] == "Echoes messages"
    anonymous = httpx.get(f"{stack.proxy_url}/.well-known/agent-card.json", timeout=10).json()
    assert anonymous["name"] == "Flowgate" and anonymous["skills"] == []


def test_every_call_is_audited_and_counted(stack):
    created = stack.create_key()
    call = {"jsonrpc": "2.0", "id": "a", "method": "SendMessage", "params": {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "audit me"}]}}}
    answer = httpx.post(
        f"{stack.proxy_url}/a2a/echo",
        json=call,
        headers={"Authorization": f"Bearer {created['key']}", "A2A-Version": "1.0"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["message"]["parts"] == [{"text": "echo: audit me"}]

    def records():
        response = httpx.get(
            f"{stack.api_url}/api/audit",
            params={"key_id": created["id"]},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=10,
        )
        return response.json()["items"]

    assert wait_until(lambda: len(records()) >= 1, timeout=10)
    (record,) = records()
    assert record["route"] == "/a2a/echo"
    assert record["status"] == 200
    assert record["metadata"]["a2a_method"] == "SendMessage"
    metrics = httpx.get(f"{stack.proxy_url}/metrics", timeout=10).text
    assert 'flowgate_a2a_calls_total{agent="echo",method="SendMessage",outcome="success"}' in metrics


def test_guardrails_redact_text_parts_before_they_reach_the_agent(stack):
    key = stack.create_key(guardrail_policy={"mandatory_guardrails": ["pii-redact"]})["key"]
    call = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "mail jane.doe@example.com now"}]}}}
    answer = httpx.post(
        f"{stack.proxy_url}/a2a/echo",
        json=call,
        headers={"Authorization": f"Bearer {key}", "A2A-Version": "1.0"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    echoed = answer.json()["result"]["message"]["parts"][0]["text"]
    assert "jane.doe@example.com" not in echoed, echoed
    assert echoed.startswith("echo: mail "), echoed


def test_agents_registered_through_the_api_are_served_without_a_restart(stack, agent_port):
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    key = stack.create_key()["key"]
    agents = f"{stack.api_url}/api/admin/a2a/agents"
    card_url = f"http://127.0.0.1:{agent_port}/.well-known/agent-card.json"
    created = httpx.post(
        agents,
        headers=admin,
        json={"name": "registered", "card_url": card_url, "headers": {"X-Agent-Token": AGENT_TOKEN}},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    # Write-only: the header's name is shown, never its value.
    assert body["header_names"] == ["X-Agent-Token"]
    assert AGENT_TOKEN not in created.text
    assert AGENT_TOKEN not in httpx.get(agents, headers=admin, timeout=10).text
    # The config file's agents are read-only through the API.
    assert httpx.delete(f"{agents}/echo", headers=admin, timeout=10).status_code == 409

    call = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "live"}]}}}
    client = {"Authorization": f"Bearer {key}", "A2A-Version": "1.0"}

    def send() -> httpx.Response:
        return httpx.post(f"{stack.proxy_url}/a2a/registered", json=call, headers=client, timeout=10)

    assert wait_until(lambda: send().status_code == 200, timeout=10), send().text
    assert send().json()["result"]["message"]["parts"] == [{"text": "echo: live"}]

    # New credentials reach the proxies too: a wrong token makes the agent refuse its card.
    patched = httpx.patch(f"{agents}/registered", headers=admin, json={"bearer_token": "wrong"}, timeout=10)
    assert patched.status_code == 200 and patched.json()["header_names"] == ["Authorization"]
    assert wait_until(lambda: send().status_code == 502, timeout=10), send().text

    assert httpx.delete(f"{agents}/registered", headers=admin, timeout=10).status_code == 204
    assert wait_until(lambda: send().status_code == 404, timeout=10), send().text


def test_guardrails_check_each_streamed_event_as_it_passes(stack):
    key = stack.create_key(guardrail_policy={"mandatory_guardrails": ["pii-redact"]})["key"]

    async def scenario():
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            client = await create_client(f"{stack.proxy_url}/a2a/echo", ClientConfig(httpx_client=http, streaming=True))
            arrivals = []
            async for event in client.send_message(user_message("task: contact")):
                arrivals.append((time.monotonic(), event))
            texts = [
                part.text
                for _, event in arrivals
                if event.HasField("artifact_update")
                for part in event.artifact_update.artifact.parts
            ]
            assert texts and texts[0].startswith("write to "), texts
            assert "agent.smith@example.com" not in texts[0], texts
            # Still a stream: the first chunk arrived a second before the second.
            chunks = [at for at, event in arrivals if event.HasField("artifact_update")]
            assert chunks[-1] - chunks[0] >= 0.5

    anyio.run(scenario)
