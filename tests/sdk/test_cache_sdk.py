"""The exact-match response cache as SDK users meet it: the same request twice, plain and streamed,
through the official openai and anthropic clients; the second answer comes from the cache."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from sdk_support import CONFIG, start_stack, wait_until



@pytest.fixture(scope="module")
def cached():
    stack = start_stack(CONFIG + "cache: {enabled: true}\n")
    key = stack.create_key()["key"]
    yield stack, key
    stack.stop()


def entries(stack) -> int:
    stats = httpx.get(
        f"{stack.api_url}/api/metacache/stats", headers={"Authorization": f"Bearer {stack.admin_key}"}, timeout=10
    ).json()
    return stats["exact"]["entries"]


def replays_from_the_cache(stack, streamed) -> None:
    """`streamed()` -> (x-flowgate-cache, text): a miss with some text, then, once stored, a hit
    with the same text."""
    before = entries(stack)
    cache, live = streamed()
    assert (cache, bool(live)) == ("miss", True)
    assert wait_until(lambda: entries(stack) > before)
    assert streamed() == ("hit-exact", live)


def test_openai_answers_repeat_from_the_cache_plain_and_streamed(cached) -> None:
    stack, key = cached
    client = openai.OpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)
    messages = [{"role": "user", "content": "cache me, openai"}]
    before = entries(stack)
    first = client.chat.completions.with_raw_response.create(model="gpt-test", messages=messages)
    assert first.headers["x-flowgate-cache"] == "miss"
    assert wait_until(lambda: entries(stack) > before)
    second = client.chat.completions.with_raw_response.create(model="gpt-test", messages=messages)
    assert second.headers["x-flowgate-cache"] == "hit-exact"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content

    def streamed() -> tuple[str, str]:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=messages, stream=True
        ) as response:
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
            )
            return response.headers["x-flowgate-cache"], text

    replays_from_the_cache(stack, streamed)


def test_anthropic_streams_replay_from_the_cache(cached) -> None:
    stack, key = cached
    client = anthropic.Anthropic(api_key=key, base_url=f"{stack.proxy_url}/anthropic", max_retries=0)
    messages = [{"role": "user", "content": "cache me, anthropic"}]

    def streamed() -> tuple[str, str]:
        with client.messages.with_streaming_response.create(
            model="claude-test", max_tokens=64, messages=messages, stream=True
        ) as response:
            text = "".join(
                event.delta.text
                for event in response.parse()
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            )
            return response.headers["x-flowgate-cache"], text

    replays_from_the_cache(stack, streamed)
