"""The official `openai` SDK against a running gateway."""

from __future__ import annotations

import json

import openai
import pytest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "local-mock"])
def test_plain_chat(oai: openai.OpenAI, model: str) -> None:
    reply = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello sdk"}])
    text = reply.choices[0].message.content
    assert text in ("Mock answer to: hello sdk", "The quick brown fox jumps over the lazy dog")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "local-mock"])
def test_streamed_chat_with_usage(oai: openai.OpenAI, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert len(pieces) > 1, "the answer arrived in several chunks"
    assert "".join(pieces) in ("Mock answer to: stream please", "The quick brown fox jumps over the lazy dog")
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens > 0


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_tool_call(oai: openai.OpenAI, model: str) -> None:
    reply = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER_TOOL]
    )
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}

    # Send the tool result back: the conversation round-trips through the translation.
    follow_up = oai.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content.startswith("Mock answer")


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_streamed_tool_call_arguments_arrive_whole(oai: openai.OpenAI, model: str) -> None:
    with oai.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_embeddings_and_models(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="embed-test", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 16
    ids = {m.id for m in oai.models.list()}
    assert {"gpt-test", "claude-test", "local-mock", "embed-test"} <= ids


def test_fallback_serves_the_request_when_a_model_is_down(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="broken", messages=[{"role": "user", "content": "still there?"}])
    assert reply.choices[0].message.content == "Mock answer to: still there?"


def test_errors_are_raised_as_the_sdk_expects(stack, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    bad = openai.OpenAI(api_key="sk-fg-not-a-real-key", base_url=f"{stack.proxy_url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-test", messages="not a list")  # type: ignore[arg-type]


def test_a_key_limited_to_some_models(stack) -> None:
    limited = stack.create_key(allowed_models=["gpt-test"])["key"]
    client = openai.OpenAI(api_key=limited, base_url=f"{stack.proxy_url}/v1", max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-test"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "x"}])


def test_bad_fields_are_named_in_param(oai: openai.OpenAI) -> None:
    for fields, param in [({"n": 0}, "n"), ({"max_tokens": 0}, "max_tokens"), ({"top_p": 3}, "top_p")]:
        with pytest.raises(openai.BadRequestError) as bad:
            oai.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], **fields)
        assert bad.value.param == param
    # Fields the gateway does not know pass through (the SDK's `extra_body`).
    reply = oai.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}], extra_body={"a_field_from_next_month": 1}
    )
    assert reply.choices[0].message.content == "Mock answer to: x"


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_legacy_completion(oai: openai.OpenAI, include_usage: bool) -> None:
    stream = oai.completions.create(
        model="gpt-test",
        prompt="once upon",
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.NOT_GIVEN,
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        pieces.extend(choice.text for choice in chunk.choices)
    assert "".join(pieces) == "Mock completion of: once upon"
    assert len([p for p in pieces if p]) > 1, "the text arrived in pieces"
    assert (usage is not None and usage.completion_tokens == 5) == include_usage
