"""Fixtures for the SDK suites: one gateway for the module, in front of a mock upstream that speaks
both APIs, with models served natively and across formats."""

from __future__ import annotations

import anthropic
import openai
import pytest
from sdk_support import Stack, start_stack

CONFIG = """
model_list:
  - model_name: gpt-test
    litellm_params: {model: openai/gpt-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: claude-test
    litellm_params: {model: anthropic/claude-upstream, api_base: "{upstream}", api_key: upstream-key}
  - model_name: local-mock
    litellm_params: {model: mock/local, mock_response: "The quick brown fox jumps over the lazy dog"}
  - model_name: embed-test
    litellm_params: {model: openai/embed-upstream, api_base: "{upstream}/v1", api_key: upstream-key}
  - model_name: broken
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9/v1", api_key: k}
router_settings:
  num_retries: 1
  fallbacks: [{broken: [gpt-test]}]
"""


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
