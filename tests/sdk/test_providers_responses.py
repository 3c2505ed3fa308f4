"""Responses-API clients (the official `openai` SDK's `responses.create`) against the providers
with wire formats of their own: a Gemini API deployment, a Vertex AI deployment (a Gemini model,
a service-account token minted at a fake token endpoint) and an Amazon Bedrock deployment
(Converse / ConverseStream, SigV4-signed). The fakes are real HTTP servers that check what the
gateway sends as the providers document it (the API key header; the JWT bearer grant and its
RS256 signature, then the bearer token; the SigV4 signature) and replay the documented answers
and streams of `crates/flowgate/tests/fixtures` (Bedrock's as event-stream frames)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import struct
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from sdk_support import REPO_ROOT, Stack, start_stack

FIXTURES = REPO_ROOT / "crates" / "flowgate" / "tests" / "fixtures"
GEMINI_KEY = "sdk-gemini-key"
VERTEX_TOKEN = "ya29.sdk-test-token"
AWS_KEY_ID = "AKIDEXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS_REGION = "us-west-2"
SERVICE_ACCOUNT = json.loads((FIXTURES / "vertex" / "service_account.json").read_text())

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}
MODELS = ["gemini-flash", "vertex-flash", "bedrock-claude"]
TEXT = "Paris is the capital of France."


# --- RS256 check of the service account's JWT, with the public half of the fixture's key -------


def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """One DER element at `at`: its tag, its contents and where the next one starts."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, data[at : at + length], at + length


def _public_key() -> tuple[int, int]:
    """(n, e) of the fixture's PKCS#8 RSA key."""
    pem = SERVICE_ACCOUNT["private_key"]
    der = base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))
    _, info, _ = _der(der, 0)  # PrivateKeyInfo
    _, _, at = _der(info, 0)  # version
    _, _, at = _der(info, at)  # algorithm
    _, rsa, _ = _der(info, at)  # privateKey (OCTET STRING)
    _, key, _ = _der(rsa, 0)  # RSAPrivateKey
    _, _, at = _der(key, 0)  # version
    _, n, at = _der(key, at)
    _, e, _ = _der(key, at)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rs256_valid(jwt: str) -> bool:
    n, e = _public_key()
    head, claims, signature = jwt.split(".")
    k = (n.bit_length() + 7) // 8
    decoded = pow(int.from_bytes(_b64url(signature), "big"), e, n).to_bytes(k, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(f"{head}.{claims}".encode()).digest()
    padding = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info) - len(digest)) + b"\x00"
    return decoded == padding + digest_info + digest


# --- SigV4 as AWS computes it, and the event-stream framing ------------------------------------


def _encode(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def sigv4_valid(method: str, path: str, headers, body: bytes) -> bool:
    authorization = headers.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    parts = dict(p.split("=", 1) for p in authorization[len("AWS4-HMAC-SHA256 ") :].split(", "))
    key_id, date, region, service, _ = parts["Credential"].split("/")
    if (key_id, region, service) != (AWS_KEY_ID, AWS_REGION, "bedrock"):
        return False
    signed = parts["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return False
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    # Non-S3 services: each segment of the path as sent is encoded once more.
    canonical_path = "/".join(_encode(s) for s in path.split("/"))
    canonical = "\n".join(
        [method, canonical_path, "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()]
    )
    amz_date = headers.get("x-amz-date", "")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{AWS_SECRET}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), parts["Signature"])


def event_frame(event_type: str, payload: dict) -> bytes:
    """One `application/vnd.amazon.eventstream` message: prelude, its CRC, string headers,
    payload, message CRC."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(body) + 4, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


# --- The fake providers ---------------------------------------------------------------------------


class FakeProviders(BaseHTTPRequestHandler):
    """Gemini API (`/v1beta/models/...`), Vertex AI (`/token`, `/v1/projects/...`) and Bedrock
    (`/model/{id}/converse[-stream]`) on one port."""

    seen: list[tuple[str, dict]] = []
    token_uri = ""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _google_error(self, status: int, message: str, code: str) -> None:
        self._send(status, json.dumps({"error": {"code": status, "message": message, "status": code}}).encode())

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/token":
            return self._token(body)
        if self.path.startswith("/model/"):
            return self._bedrock(body)
        if self.path.startswith("/v1beta/models/"):
            if self.headers.get("x-goog-api-key") != GEMINI_KEY:
                return self._google_error(400, "API key not valid.", "INVALID_ARGUMENT")
        elif self.path.startswith("/v1/projects/flowgate-test/locations/us-central1/publishers/google/models/"):
            if self.headers.get("authorization") != f"Bearer {VERTEX_TOKEN}":
                return self._google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        else:
            return self._google_error(404, "not found", "NOT_FOUND")
        return self._gemini(json.loads(body or b"{}"))

    def _token(self, body: bytes) -> None:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        refuse = lambda why: self._send(400, json.dumps({"error": "invalid_grant", "error_description": why}).encode())  # noqa: E731
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return refuse("unsupported grant_type")
        jwt = form.get("assertion", "")
        if jwt.count(".") != 2 or not rs256_valid(jwt):
            return refuse("Invalid JWT Signature.")
        claims = json.loads(_b64url(jwt.split(".")[1]))
        if (
            claims.get("iss") != SERVICE_ACCOUNT["client_email"]
            or claims.get("aud") != FakeProviders.token_uri
            or claims.get("scope") != "https://www.googleapis.com/auth/cloud-platform"
        ):
            return refuse("bad claims")
        self._send(200, json.dumps({"access_token": VERTEX_TOKEN, "expires_in": 3599, "token_type": "Bearer"}).encode())

    def _gemini(self, request: dict) -> None:
        if any(k in request for k in ("messages", "model", "input", "stream")) or not request.get("contents"):
            return self._google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        if any(c.get("role") not in ("user", "model") for c in request["contents"]):
            return self._google_error(400, "Please use a valid role: user, model.", "INVALID_ARGUMENT")
        FakeProviders.seen.append((self.path, request))
        tools = "tools" in request and "functionResponse" not in json.dumps(request)
        if self.path.endswith(":streamGenerateContent?alt=sse"):
            name = "stream_function_call.sse" if tools else "stream_text.sse"
            return self._send(200, (FIXTURES / "gemini" / name).read_bytes(), "text/event-stream")
        if self.path.endswith(":generateContent"):
            name = "generate_function_call.json" if tools else "generate_text.json"
            return self._send(200, (FIXTURES / "gemini" / name).read_bytes())
        return self._google_error(404, "method not found", "NOT_FOUND")

    def _bedrock(self, body: bytes) -> None:
        def error(status: int, kind: str, message: str) -> None:
            self.send_response(status)
            self.send_header("x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")
            payload = json.dumps({"message": message}).encode()
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        headers = {k.lower(): v for k, v in self.headers.items()}
        if not sigv4_valid("POST", self.path, headers, body):
            return error(403, "InvalidSignatureException", "The request signature we calculated does not match.")
        request = json.loads(body or b"{}")
        if "model" in request or not request.get("messages"):
            return error(400, "ValidationException", "Malformed input request, please reformat your input.")
        FakeProviders.seen.append((self.path, request))
        tools = "toolConfig" in request
        if self.path.endswith("/converse-stream"):
            events = json.loads((FIXTURES / "bedrock" / ("stream_tool_use.json" if tools else "stream_text.json")).read_text())
            wire = b"".join(event_frame(kind, payload) for kind, payload in events)
            return self._send(200, wire, "application/vnd.amazon.eventstream")
        if self.path.endswith("/converse"):
            name = "converse_tool_use.json" if tools else "converse_text.json"
            return self._send(200, (FIXTURES / "bedrock" / name).read_bytes())
        return error(404, "UnknownOperationException", "unknown operation")


@pytest.fixture(scope="module")
def providers_stack() -> Stack:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProviders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    FakeProviders.token_uri = f"{base}/token"
    account = {**SERVICE_ACCOUNT, "token_uri": FakeProviders.token_uri}
    config = f"""
model_list:
  - model_name: gemini-flash
    litellm_params: {{model: gemini/gemini-2.0-flash, api_base: "{base}", api_key: os.environ/GEMINI_API_KEY}}
  - model_name: vertex-flash
    litellm_params:
      model: vertex_ai/gemini-2.0-flash
      vertex_project: flowgate-test
      vertex_location: us-central1
      vertex_credentials: os.environ/VERTEX_SERVICE_ACCOUNT
      api_base: "{base}"
  - model_name: bedrock-claude
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_bedrock_runtime_endpoint: "{base}"
      aws_region_name: {AWS_REGION}
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY
router_settings: {{num_retries: 0}}
"""
    env = {
        "GEMINI_API_KEY": GEMINI_KEY,
        "VERTEX_SERVICE_ACCOUNT": json.dumps(account),
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }
    stack = start_stack(config, env)
    yield stack
    stack.stop()
    server.shutdown()


@pytest.fixture(scope="module")
def client(providers_stack: Stack) -> openai.OpenAI:
    key = providers_stack.create_key()["key"]
    return openai.OpenAI(api_key=key, base_url=f"{providers_stack.proxy_url}/v1", max_retries=0)


def last_seen(model: str) -> tuple[str, dict]:
    marker = {"gemini-flash": "/v1beta/models/", "vertex-flash": "/v1/projects/", "bedrock-claude": "/model/"}[model]
    return next(seen for seen in reversed(FakeProviders.seen) if seen[0].startswith(marker))


@pytest.mark.parametrize("model", MODELS)
def test_plain(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, instructions="Be brief.", input="Capital of France?")
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    path, request = last_seen(model)
    if model == "bedrock-claude":
        assert path.endswith("/converse")
        assert request["system"] == [{"text": "Be brief."}]
        assert request["messages"][0]["content"] == [{"text": "Capital of France?"}]
    else:
        assert path.endswith(":generateContent")
        assert request["systemInstruction"]["parts"][0]["text"] == "Be brief."
        assert request["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]


@pytest.mark.parametrize("model", MODELS)
def test_streamed(client: openai.OpenAI, model: str) -> None:
    stream = client.responses.create(model=model, input="Capital of France?", stream=True)
    deltas, kinds, completed = [], [], None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == TEXT
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert completed is not None and completed.output_text == TEXT
    assert completed.usage is not None and completed.usage.total_tokens > 0
    path, _ = last_seen(model)
    assert path.endswith("/converse-stream" if model == "bedrock-claude" else ":streamGenerateContent?alt=sse")


@pytest.mark.parametrize("model", MODELS)
def test_function_tool_plain(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris", "unit": "celsius"}
    _, request = last_seen(model)
    if model == "bedrock-claude":
        assert request["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    else:
        assert request["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"

    # The tool's result goes back, and the model answers in text.
    follow_up = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"},
        ],
    )
    assert follow_up.status == "completed"
    _, request = last_seen(model)
    sent = json.dumps(request)
    if model == "bedrock-claude":
        assert "toolResult" in sent and "sunny, 21 C" in sent
    else:
        assert "functionResponse" in sent and "sunny, 21 C" in sent


@pytest.mark.parametrize("model", MODELS)
def test_function_tool_streamed(client: openai.OpenAI, model: str) -> None:
    stream = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER], stream=True)
    arguments, done_item, completed = "", None, None
    for event in stream:
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        if event.type == "response.output_item.done" and event.item.type == "function_call":
            done_item = event.item
        if event.type == "response.completed":
            completed = event.response
    assert done_item is not None and done_item.name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(done_item.arguments) == {"city": "Paris", "unit": "celsius"}
    assert completed is not None
    assert any(item.type == "function_call" for item in completed.output)
