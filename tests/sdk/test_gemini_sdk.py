"""The official OpenAI and Anthropic SDKs against a Gemini deployment: the gateway in front of a
fake Gemini API (a real HTTP server replaying the documented answers and `alt=sse` event streams
of `crates/flowgate/tests/fixtures/gemini`), whole answers, streams and tool calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import openai
import pytest
from sdk_support import REPO_ROOT, Stack, start_stack

FIXTURES = REPO_ROOT / "crates" / "flowgate" / "tests" / "fixtures" / "gemini"
GEMINI_KEY = "sdk-gemini-key"


class FakeGemini(BaseHTTPRequestHandler):
    """`POST /v1beta/models/{model}:generateContent|streamGenerateContent?alt=sse`."""

    seen: list[tuple[str, dict]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.headers.get("x-goog-api-key") != GEMINI_KEY:
            error = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}
            return self._send(400, json.dumps(error).encode(), "application/json")
        if "messages" in request or "contents" not in request:
            error = {"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}}
            return self._send(400, json.dumps(error).encode(), "application/json")
        FakeGemini.seen.append((self.path, request))
        tools = "tools" in request and "functionResponse" not in json.dumps(request)
        if self.path.endswith(":streamGenerateContent?alt=sse"):
            name = "stream_function_call.sse" if tools else "stream_text.sse"
            return self._send(200, (FIXTURES / name).read_bytes(), "text/event-stream")
        name = "generate_function_call.json" if tools else "generate_text.json"
        return self._send(200, (FIXTURES / name).read_bytes(), "application/json")


@pytest.fixture(scope="module")
def gemini_stack() -> Stack:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    config = f"""
model_list:
  - model_name: gemini-flash
    litellm_params: {{model: gemini/gemini-2.0-flash, api_base: "{base}", api_key: os.environ/GEMINI_API_KEY}}
"""
    stack = start_stack(config, {"GEMINI_API_KEY": GEMINI_KEY})
    yield stack
    stack.stop()
    server.shutdown()


@pytest.fixture(scope="module")
def gemini_key(gemini_stack: Stack) -> str:
    return gemini_stack.create_key()["key"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_openai_sdk_chat_whole_and_streamed(gemini_stack: Stack, gemini_key: str) -> None:
    client = openai.OpenAI(api_key=gemini_key, base_url=f"{gemini_stack.proxy_url}/v1", max_retries=0)
    answer = client.chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert answer.choices[0].message.content == "Paris is the capital of France."
    assert answer.usage is not None and answer.usage.prompt_tokens == 11 and answer.usage.completion_tokens == 7

    stream = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == "Paris is the capital of France."
    assert usage is not None and usage.total_tokens == 18
    path, request = FakeGemini.seen[-1]
    assert path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert request["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]


def test_openai_sdk_tool_call_streamed(gemini_stack: Stack, gemini_key: str) -> None:
    client = openai.OpenAI(api_key=gemini_key, base_url=f"{gemini_stack.proxy_url}/v1", max_retries=0)
    stream = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        stream=True,
    )
    name, arguments, finish = None, "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            name = call.function.name or name
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert finish == "tool_calls"
    assert FakeGemini.seen[-1][1]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


def test_anthropic_sdk_tool_use_whole_and_text_streamed(gemini_stack: Stack, gemini_key: str) -> None:
    client = anthropic.Anthropic(api_key=gemini_key, base_url=f"{gemini_stack.proxy_url}/anthropic", max_retries=0)
    message = client.messages.create(
        model="gemini-flash",
        max_tokens=100,
        tools=[{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER["function"]["parameters"]}],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    tool_use = next(block for block in message.content if block.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris", "unit": "celsius"}
    assert message.stop_reason == "tool_use"

    with client.messages.stream(
        model="gemini-flash", max_tokens=100, messages=[{"role": "user", "content": "Capital of France?"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Paris is the capital of France."
    assert final.usage.output_tokens == 7
