"""The Responses API through the gateway with the official `openai` SDK (`responses.create`,
`responses.stream`, `responses.parse`, `previous_response_id`) and with `openai-agents` in its
default Responses mode, against an OpenAI-format upstream, an Anthropic upstream and an upstream
that speaks Responses itself (the mock upstream speaks each wire format)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from pydantic import BaseModel

MODELS = ["gpt-test", "claude-test", "resp-test"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def storing_key(stack) -> str:
    """A key of a tenant that keeps prompts: its responses are stored."""
    response = httpx.post(
        f"{stack.api_url}/api/enterprise/tenants",
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        json={"name": "keeps-conversations", "store_prompts": True},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return stack.create_key(tenant_id=response.json()["id"])["key"]


@pytest.fixture()
def stored(stack, storing_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=storing_key, base_url=f"{stack.proxy_url}/v1", max_retries=0)


@pytest.mark.parametrize("model", MODELS + ["local-mock"])
def test_plain(oai: openai.OpenAI, model: str) -> None:
    response = oai.responses.create(model=model, instructions="Be brief.", input="hello responses")
    assert response.status == "completed"
    assert response.output_text in ("Mock answer to: hello responses", "The quick brown fox jumps over the lazy dog")
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("model", MODELS)
def test_streamed(oai: openai.OpenAI, model: str) -> None:
    stream = oai.responses.create(model=model, input="stream please", stream=True)
    kinds, text, final = [], [], None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert len(text) > 1, "the answer arrived in several deltas"
    assert "".join(text) == "Mock answer to: stream please"
    assert final is not None and final.output_text == "".join(text)
    assert final.usage.total_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_function_tool_over_two_turns_streamed_and_not(oai: openai.OpenAI, model: str) -> None:
    first = oai.responses.create(model=model, input="weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "mock"}

    with oai.responses.stream(model=model, input="weather in Paris?", tools=[WEATHER]) as stream:
        deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        streamed = stream.get_final_response()
    assert json.loads("".join(deltas)) == {"city": "mock"}
    assert [item.type for item in streamed.output] == ["function_call"]

    second = oai.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
    )
    assert second.output_text.startswith("Mock answer")


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_continues_a_stored_conversation(stored: openai.OpenAI, model: str) -> None:
    first = stored.responses.create(model=model, input="weather in Paris?", tools=[WEATHER], store=True)
    call = next(item for item in first.output if item.type == "function_call")
    fetched = stored.responses.retrieve(first.id)
    assert fetched.id == first.id and fetched.output[0].call_id == call.call_id

    # Only the tool's output is sent: the gateway brings back the rest of the conversation.
    second = stored.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "Mock answer to: weather in Paris?", second.output_text
    items = stored.responses.input_items.list(second.id, order="asc")
    kinds = [item.type for item in items.data]
    assert kinds == ["message", "function_call", "function_call_output"], kinds

    # Streamed continuation, then the conversation is deleted and cannot be continued.
    third = stored.responses.create(model=model, previous_response_id=second.id, input="and tomorrow?", stream=True)
    done = [event.response for event in third if event.type == "response.completed"]
    assert done and done[0].output_text == "Mock answer to: and tomorrow?"
    stored.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        stored.responses.retrieve(second.id)
    with pytest.raises(openai.BadRequestError) as error:
        stored.responses.create(model=model, previous_response_id=second.id, input="again")
    assert error.value.body["param"] == "previous_response_id"


def test_responses_of_a_tenant_that_keeps_no_prompts_are_not_stored(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-test", input="remember me", store=True)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(response.id)


class Weather(BaseModel):
    city: str
    sunny: bool


@pytest.mark.parametrize("model", ["gpt-test", "resp-test"])
def test_structured_output(oai: openai.OpenAI, model: str) -> None:
    parsed = oai.responses.parse(model=model, input="weather as JSON", text_format=Weather)
    assert parsed.output_parsed == Weather(city="mock", sunny=True)


# Not "resp-test": an upstream that speaks Responses takes hosted tools and custom tools itself.
@pytest.mark.parametrize("model", [m for m in MODELS if m != "resp-test"])
def test_what_a_chat_model_cannot_take_is_named(oai: openai.OpenAI, model: str) -> None:
    # A hosted tool is left out of the offer, and the answer says which.
    raw = oai.responses.with_raw_response.create(model=model, input="news?", tools=[{"type": "web_search"}, WEATHER])
    assert raw.headers["x-flowgate-dropped-tools"] == "web_search"
    assert [item.type for item in raw.parse().output] == ["function_call"], "the function tool was still offered"
    # A custom tool, or an item that only a Responses model can read, is refused by name.
    with pytest.raises(openai.BadRequestError) as error:
        oai.responses.create(model=model, input="patch it", tools=[{"type": "custom", "name": "apply_patch"}])
    assert "custom" in error.value.message and error.value.body["param"] == "tools[0]"
    with pytest.raises(openai.BadRequestError) as error:
        oai.responses.create(
            model=model, input=[{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "x"}]
        )
    assert "custom_tool_call" in error.value.message


def test_a_responses_upstream_gets_hosted_tools_as_sent(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(model="resp-test", input="news?", tools=[{"type": "web_search"}])
    assert "x-flowgate-dropped-tools" not in raw.headers
    assert raw.parse().status == "completed"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("streamed", [False, True])
def test_openai_agents_runs_a_function_tool(stack, key: str, model: str, streamed: bool) -> None:
    import agents  # openai-agents, from tests/requirements.txt: missing is a failure, never a skip
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=model, openai_client=client),
    )

    async def run() -> str:
        if streamed:
            result = agents.Runner.run_streamed(agent, "weather in Paris?")
            async for _ in result.stream_events():
                pass
            return result.final_output
        result = await agents.Runner.run(agent, "weather in Paris?")
        return result.final_output

    final = asyncio.run(run())
    assert calls == ["mock"], "the agent ran its tool once"
    assert final == "Mock answer to: weather in Paris?"
