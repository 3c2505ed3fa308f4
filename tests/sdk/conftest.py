"""Fixtures for the SDK suites: one gateway for the module, in front of a mock upstream that speaks
both APIs, with models served natively and across formats."""

from __future__ import annotations

import anthropic
import openai
import pytest
from sdk_support import CONFIG, Stack, start_stack



@pytest.fixture(scope="session")
def stack() -> Stack:
    stack = start_stack(CONFIG)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def key(stack: Stack) -> str:
    return stack.create_key()["key"]


@pytest.fixture()
def oai(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{stack.proxy_url}/v1", max_retries=0)


@pytest.fixture()
def claude(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=f"{stack.proxy_url}/anthropic", max_retries=0)
