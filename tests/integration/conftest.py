"""Fixtures for tests/integration: one `flowgate all` (FLOWGATE_BIN, default target/debug/flowgate)
for the session, with `mock/` models, and Caddy (Caddyfile.local) in front of it. A missing binary
or Caddy fails the tests that need them; nothing is skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration_support import Gateway, start_caddy, start_gateway


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    started = start_gateway()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def virtual_key(gateway: Gateway) -> str:
    return gateway.create_key(name="integration-scripts")["key"]


@pytest.fixture(scope="session")
def caddy_url(gateway: Gateway) -> Iterator[str]:
    caddy, base = start_caddy(gateway)
    yield base
    caddy.stop()
