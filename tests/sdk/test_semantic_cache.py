"""The semantic cache as SDK users meet it, with the real local model (all-MiniLM-L6-v2, fetched by
scripts/fetch-embedding-model.sh): a paraphrased second question is answered from the cache
(`x-flowgate-cache: hit-semantic`, the same content, no cost, an audit record with the phase),
streamed and not, through the official openai and anthropic clients; another tenant asking the
same never hits; with Redis unreachable requests still flow and phases 1 and 3 still answer.
(Two replicas on one Redis are tested in crates/flowgate/tests/binary/semantic_cache.rs.)"""

from __future__ import annotations

import os
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from sdk_support import CONFIG, start_stack, wait_until


def model_dir() -> str:
    configured = os.environ.get("FLOWGATE_EMBEDDING_MODEL_DIR")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = Path(configured) if configured else cache / "flowgate/models/all-minilm-l6-v2"
    if not (path / "model.safetensors").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no embedding model in {path}: run scripts/fetch-embedding-model.sh")
        pytest.skip(f"no embedding model in {path}: run scripts/fetch-embedding-model.sh")
    return str(path)


def semantic_config() -> str:
    return CONFIG + (
        "cache:\n  enabled: true\n"
        f"  semantic: {{enabled: true, local_model_dir: '{model_dir()}', embed_timeout_ms: 5000}}\n"
    )


@pytest.fixture(scope="module")
def stack():
    stack = start_stack(semantic_config())
    yield stack
    stack.stop()


def admin(stack, path: str) -> dict:
    response = httpx.get(f"{stack.api_url}{path}", headers={"Authorization": f"Bearer {stack.admin_key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def entries(stack) -> int:
    return admin(stack, "/api/metacache/stats")["semantic"]["entries"]


def stored_after(stack, ask):
    """Runs `ask()` (a miss), then waits until its answer is in the semantic cache."""
    before = entries(stack)
    result = ask()
    assert wait_until(lambda: entries(stack) > before, timeout=10), "the answer was never stored"
    return result


def test_openai_paraphrases_are_answered_from_the_cache_plain_and_streamed(stack) -> None:
    created = stack.create_key()
    key = created["key"]
    client = openai.OpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)

    def ask(question: str):
        return client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": question}]
        )

    first = stored_after(stack, lambda: ask("How do I reset my password?"))
    assert first.headers["x-flowgate-cache"] == "miss"
    second = ask("How can I reset my password?")
    assert second.headers["x-flowgate-cache"] == "hit-semantic"
    assert 0.9 <= float(second.headers["x-flowgate-cache-similarity"]) <= 1.0
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    # A near miss (another number) is not the same question.
    assert ask("How do I reset my password 3 times?").headers["x-flowgate-cache"] == "miss"

    def streamed(question: str) -> tuple[str, str]:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=[{"role": "user", "content": question}], stream=True
        ) as response:
            text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
            return response.headers["x-flowgate-cache"], text

    cache, live = stored_after(stack, lambda: streamed("What payment methods do you accept?"))
    assert (cache, bool(live)) == ("miss", True)
    assert streamed("Which payment methods do you accept?") == ("hit-semantic", live)

    # The audit trail has the hits, with their phase and no cost.
    def hits() -> list[dict]:
        items = admin(stack, f"/api/audit?key_id={created['id']}&limit=100")["items"]
        return [item for item in items if item["cache_hit"]]

    assert wait_until(lambda: len(hits()) >= 2, timeout=10)
    assert {item["metadata"].get("cache_phase") for item in hits()} == {"semantic"}
    assert all(item["cost_usd"] == 0 for item in hits())


def test_anthropic_paraphrases_are_answered_from_the_cache_plain_and_streamed(stack) -> None:
    key = stack.create_key()["key"]
    client = anthropic.Anthropic(api_key=key, base_url=f"{stack.proxy_url}/anthropic", max_retries=0)

    def ask(question: str):
        return client.messages.with_raw_response.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": question}]
        )

    first = stored_after(stack, lambda: ask("What is the capital of France?"))
    assert first.headers["x-flowgate-cache"] == "miss"
    second = ask("What's the capital of France?")
    assert second.headers["x-flowgate-cache"] == "hit-semantic"
    assert second.parse().content[0].text == first.parse().content[0].text
    assert ask("What is the capital of Germany?").headers["x-flowgate-cache"] == "miss"

    def streamed(question: str) -> tuple[str, str]:
        with client.messages.with_streaming_response.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": question}], stream=True
        ) as response:
            text = "".join(
                event.delta.text
                for event in response.parse()
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            )
            return response.headers["x-flowgate-cache"], text

    cache, live = stored_after(stack, lambda: streamed("How do I cancel my subscription?"))
    assert (cache, bool(live)) == ("miss", True)
    assert streamed("How can I cancel my subscription?") == ("hit-semantic", live)


def test_another_tenant_asking_the_same_never_hits(stack) -> None:
    key = stack.create_key()["key"]
    client = openai.OpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)
    messages = [{"role": "user", "content": "Where is the nearest train station?"}]
    stored_after(stack, lambda: client.chat.completions.create(model="gpt-test", messages=messages))
    tenant = httpx.post(
        f"{stack.api_url}/api/enterprise/tenants",
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        json={"name": "semantic-other"},
        timeout=10,
    ).json()
    other = stack.create_key(tenant_id=tenant["id"])["key"]
    other_client = openai.OpenAI(api_key=other, base_url=f"{stack.proxy_url}/v1", max_retries=0)
    paraphrase = [{"role": "user", "content": "Where's the nearest train station?"}]
    answer = other_client.chat.completions.with_raw_response.create(model="gpt-test", messages=paraphrase)
    assert answer.headers["x-flowgate-cache"] == "miss"


def test_with_redis_unreachable_requests_flow_and_phases_1_and_3_still_hit() -> None:
    # Nothing listens on port 9: phases 2 and 4 are skipped.
    stack = start_stack(semantic_config(), {"REDIS_URL": "redis://127.0.0.1:9"})
    try:
        key = stack.create_key()["key"]
        client = openai.OpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)

        def ask(question: str) -> str:
            return client.chat.completions.with_raw_response.create(
                model="gpt-test", messages=[{"role": "user", "content": question}]
            ).headers["x-flowgate-cache"]

        assert ask("How long does shipping take?") == "miss"
        assert wait_until(lambda: ask("How long does shipping take?") == "hit-exact", timeout=10)
        assert ask("How long does it take to ship?") == "hit-semantic"
    finally:
        stack.stop()
