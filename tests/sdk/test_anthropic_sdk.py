"""The official `anthropic` SDK against a running gateway."""

from __future__ import annotations

import anthropic
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize("model", ["claude-test", "gpt-test", "local-mock"])
def test_plain_message(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi claude"}])
    assert message.type == "message"
    assert message.content[0].text in ("Mock answer to: hi claude", "The quick brown fox jumps over the lazy dog")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-test", "gpt-test", "local-mock"])
def test_streamed_message(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_tool_use_plain_and_streamed(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "weather in Rome?"}]
    )
    tool_use = next(block for block in message.content if block.type == "tool_use")
    assert message.stop_reason == "tool_use"
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "mock"}

    with claude.messages.stream(
        model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = stream.get_final_message()
    streamed = next(block for block in final.content if block.type == "tool_use")
    assert streamed.input == {"city": "mock"}
    assert final.stop_reason == "tool_use"

    reply = claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather in Rome?"},
            {"role": "assistant", "content": [block.model_dump() for block in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "warm"}]},
        ],
    )
    assert reply.content[0].type == "text"


def test_errors_are_raised_as_the_sdk_expects(stack, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(api_key="sk-fg-nope", base_url=f"{stack.proxy_url}/anthropic", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_a_system_turn_inside_messages_reaches_an_openai_model(claude: anthropic.Anthropic) -> None:
    # Claude Code sends `role: "system"` inside `messages`; the SDK passes it as given.
    message = claude.messages.create(
        model="gpt-test",
        max_tokens=50,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}],  # type: ignore[list-item]
    )
    assert message.content[0].text == "Mock answer to: hi there"


def test_bad_fields_and_keys_are_named_in_anthropic_errors(stack, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(
            model="claude-test",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"temperature": 1.5},
        )
    assert "temperature" in str(bad.value)
    bad_key = anthropic.Anthropic(api_key="sk-fg-nope", base_url=f"{stack.proxy_url}/anthropic", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad_key.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "x-api-key" in str(refused.value)
