#!/usr/bin/env python3
"""Post-deploy integration check for a running Flowgate gateway, through the official OpenAI and
Anthropic Python SDKs (and httpx for health and the management API).

    pip install httpx openai anthropic        # or: pip install -r tests/requirements.txt
    FLOWGATE_URL=https://gateway.example.com VIRTUAL_KEY=sk-fg-... scripts/integration_test.py

Environment:
  FLOWGATE_URL      the gateway's base URL: the proxy (http://127.0.0.1:7775) or the public URL
                    behind Caddy / the ingress (https://gateway.example.com). SMARTFLOW_HOST is
                    accepted as an alias. A trailing /v1 is ignored; without a scheme, http:// is
                    assumed for host:port and https:// for a bare host name.
  VIRTUAL_KEY       a virtual key (sk-fg-...) allowed to use FLOWGATE_MODEL.
  FLOWGATE_MODEL    the model to call (default: the first model /v1/models lists for the key).
  ADMIN_API_KEY     optional: also check the management API (create a key, use it, revoke it,
                    see 401 in both SDKs). The key it creates expires after an hour even if
                    revoking fails.
  FLOWGATE_API_URL  base URL of the management API (default: FLOWGATE_URL, which is right behind
                    Caddy; set it to http://127.0.0.1:7778 when FLOWGATE_URL is the proxy port).
  FLOWGATE_TIMEOUT  seconds per request (default 60).
  FLOWGATE_INSECURE=1  accept a self-signed TLS certificate.

Prints one PASS/FAIL/SKIP line per check and "N passed, M failed"; exits 0 when nothing failed,
1 when a check failed, 2 when the environment is incomplete or a package is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

PROMPT = "Say hello in five words."
BAD_KEY = "sk-fg-integration-test-not-a-key"


class Skip(Exception):
    """A check that does not apply (printed as SKIP, counted neither way)."""


class CheckFailed(Exception):
    """A check that ran and found something wrong."""


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")].rstrip("/")
    if url and "://" not in url:
        host = url.split("/", 1)[0]
        url = ("http://" if ":" in host else "https://") + url
    return url


def elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class Runner:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], str | None]) -> bool:
        try:
            detail = fn()
        except Skip as why:
            print(f"SKIP  {name}: {why}", flush=True)
            return False
        except Exception as err:  # every failure is reported, none stops the run
            self.failed += 1
            print(f"FAIL  {name}: {describe(err)}", flush=True)
            return False
        self.passed += 1
        print(f"PASS  {name}" + (f"  ({detail})" if detail else ""), flush=True)
        return True


def describe(err: Exception) -> str:
    """One line about an error: the HTTP status and body for API errors."""
    import anthropic
    import httpx
    import openai

    if isinstance(err, (openai.APIStatusError, anthropic.APIStatusError)):
        return f"HTTP {err.status_code} {err.response.text[:300]}"
    if isinstance(err, (openai.APIConnectionError, anthropic.APIConnectionError)):
        cause = err.__cause__ or err
        return f"no answer ({type(cause).__name__}: {cause})"
    if isinstance(err, httpx.TransportError):
        return f"no answer ({type(err).__name__}: {err})"
    text = str(err) or type(err).__name__
    return text.replace("\n", " ")[:400]


def expect_status(response: Any, status: int) -> None:
    if response.status_code != status:
        raise CheckFailed(f"expected HTTP {status}, got {response.status_code} {response.text[:300]}")


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    base = normalise_url(os.environ.get("FLOWGATE_URL") or os.environ.get("SMARTFLOW_HOST") or "")
    key = os.environ.get("VIRTUAL_KEY", "")
    missing = [name for name, value in (("FLOWGATE_URL (or SMARTFLOW_HOST)", base), ("VIRTUAL_KEY", key)) if not value]
    if missing:
        print(f"integration_test.py: set {' and '.join(missing)}", file=sys.stderr)
        print(f"  e.g. FLOWGATE_URL=http://127.0.0.1:7775 VIRTUAL_KEY=sk-fg-... {sys.argv[0]}", file=sys.stderr)
        return 2
    admin_key = os.environ.get("ADMIN_API_KEY", "")
    explicit_api_url = os.environ.get("FLOWGATE_API_URL", "")
    api_base = normalise_url(explicit_api_url or base)
    timeout = float(os.environ.get("FLOWGATE_TIMEOUT") or 60)
    verify = os.environ.get("FLOWGATE_INSECURE") != "1"
    model = os.environ.get("FLOWGATE_MODEL", "")

    try:  # after the environment check: the SDKs take a few seconds to import
        import anthropic
        import httpx
        import openai
    except ImportError as err:
        print(f"integration_test.py: {err.name} is not installed: pip install httpx openai anthropic", file=sys.stderr)
        return 2

    http = httpx.Client(timeout=timeout, verify=verify)

    def oai(api_key: str) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=api_key,
            base_url=f"{base}/v1",
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultHttpxClient(verify=verify),
        )

    def claude(api_key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=api_key,
            base_url=f"{base}/anthropic",
            max_retries=0,
            timeout=timeout,
            http_client=anthropic.DefaultHttpxClient(verify=verify),
        )

    client = oai(key)
    messages = [{"role": "user", "content": PROMPT}]
    runner = Runner()
    print(f"Flowgate integration test (python, openai {openai.__version__}, anthropic {anthropic.__version__}): {base}")

    # --- liveness and readiness ---------------------------------------------------------------
    def probe(path: str) -> Callable[[], str]:
        def run() -> str:
            response = http.get(f"{base}{path}")
            expect_status(response, 200)
            try:
                status = response.json().get("status")
            except ValueError:
                status = None
            return f"HTTP 200, status {status}"

        return run

    runner.check("health", probe("/health"))
    runner.check("readyz", probe("/readyz"))

    # --- models -------------------------------------------------------------------------------
    def models() -> str:
        nonlocal model
        ids = [m.id for m in client.models.list()]
        if not ids:
            raise CheckFailed("the key may use no model (empty /v1/models)")
        if model and model not in ids:
            raise CheckFailed(f"FLOWGATE_MODEL={model} is not among the key's models {ids}")
        model = model or ids[0]
        return f"{len(ids)} models, using {model}"

    runner.check("models", models)
    model = model or "unknown-model"

    def bad_key_rejected() -> str:
        try:
            oai(BAD_KEY).models.list()
        except openai.AuthenticationError as err:
            return f"HTTP {err.status_code} openai.AuthenticationError"
        raise CheckFailed("a made-up key was accepted")

    runner.check("bad key rejected", bad_key_rejected)

    # --- OpenAI format ------------------------------------------------------------------------
    def chat_with(api_key: str) -> Callable[[], str]:
        def run() -> str:
            reply = oai(api_key).chat.completions.create(model=model, messages=messages)
            text = reply.choices[0].message.content if reply.choices else None
            if not text:
                raise CheckFailed(f"no answer text in {reply.model_dump_json()[:300]}")
            return text[:60].replace("\n", " ")

        return run

    runner.check("chat", chat_with(key))

    def chat_stream() -> str:
        start = time.monotonic()
        first = None
        pieces: list[str] = []
        finish = usage = None
        stream = client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first = first if first is not None else elapsed_ms(start)
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        if not pieces:
            raise CheckFailed("the stream carried no content")
        if finish is None:
            raise CheckFailed(f"the stream ended without a finish_reason after {len(pieces)} chunks")
        tokens = f", {usage.total_tokens} tokens" if usage else ""
        return f"{len(pieces)} content chunks, first after {first} ms, done after {elapsed_ms(start)} ms{tokens}"

    runner.check("chat stream", chat_stream)

    # --- Anthropic format ---------------------------------------------------------------------
    anthropic_client = claude(key)

    def anthropic_messages() -> str:
        message = anthropic_client.messages.create(model=model, max_tokens=32, messages=messages)
        text = "".join(block.text for block in message.content if block.type == "text")
        if message.type != "message" or not text:
            raise CheckFailed(f"unexpected answer {message.model_dump_json()[:300]}")
        return text[:60].replace("\n", " ")

    runner.check("anthropic messages", anthropic_messages)

    def anthropic_stream() -> str:
        start = time.monotonic()
        first = None
        pieces: list[str] = []
        with anthropic_client.messages.stream(model=model, max_tokens=32, messages=messages) as stream:
            for text in stream.text_stream:
                if text:
                    first = first if first is not None else elapsed_ms(start)
                    pieces.append(text)
            final = stream.get_final_message()
        if not pieces:
            raise CheckFailed("the stream carried no text")
        if final.stop_reason is None:
            raise CheckFailed("the stream ended without message_delta/stop_reason")
        return f"{len(pieces)} text deltas, first after {first} ms, stop_reason {final.stop_reason}"

    runner.check("anthropic stream", anthropic_stream)

    # --- management API -----------------------------------------------------------------------
    if not admin_key:

        def no_admin_key() -> str:
            raise Skip("set ADMIN_API_KEY (and FLOWGATE_API_URL unless the management API is behind FLOWGATE_URL)")

        runner.check("admin checks", no_admin_key)
    else:
        admin = {"Authorization": f"Bearer {admin_key}"}
        created: dict[str, Any] = {}

        def create_key() -> str:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            response = http.post(
                f"{api_base}/api/enterprise/vkeys",
                headers=admin,
                json={
                    "name": f"integration-test-{stamp}",
                    "expires_at": int(time.time()) + 3600,
                    "metadata": {"created_by": "scripts/integration_test.py"},
                },
            )
            if response.status_code == 404 and not explicit_api_url:
                raise CheckFailed(
                    f"HTTP 404 {response.text[:200]} (is the management API at {api_base}? set FLOWGATE_API_URL)"
                )
            expect_status(response, 201)
            body = response.json()
            if not str(body.get("key", "")).startswith("sk-fg-") or not body.get("id"):
                raise CheckFailed(f"no key/id in {response.text[:300]}")
            created.update(body)
            return f"id {body['id']}"

        if runner.check("admin create key", create_key):
            runner.check("admin new key works", chat_with(created["key"]))

            def revoke() -> str:
                response = http.post(f"{api_base}/api/enterprise/vkeys/{created['id']}/revoke", headers=admin)
                expect_status(response, 200)
                if response.json().get("status") != "revoked":
                    raise CheckFailed(f"status is not revoked: {response.text[:300]}")
                return ""

            if runner.check("admin revoke key", revoke):

                def revoked_rejected() -> str:
                    # Revocation reaches every proxy replica within about a second.
                    deadline = time.monotonic() + 5
                    while True:
                        try:
                            oai(created["key"]).models.list()
                        except openai.AuthenticationError:
                            break
                        if time.monotonic() > deadline:
                            raise CheckFailed("the revoked key still works after 5 s")
                        time.sleep(0.5)
                    try:
                        claude(created["key"]).messages.create(model=model, max_tokens=8, messages=messages)
                    except anthropic.AuthenticationError as err:
                        return f"HTTP {err.status_code} in both SDKs"
                    raise CheckFailed("the revoked key still works on /anthropic/v1/messages")

                runner.check("admin revoked key rejected", revoked_rejected)
            else:
                http.delete(f"{api_base}/api/enterprise/vkeys/{created['id']}", headers=admin)

    print(f"{runner.passed} passed, {runner.failed} failed")
    return 0 if runner.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
