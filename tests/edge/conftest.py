"""Fixtures for the edge suite: `wrangler dev --local` in front of two `flowgate all` origins."""

from __future__ import annotations

import pytest
from edge_support import EdgeStack, start_edge_stack


@pytest.fixture(scope="module")
def edge() -> EdgeStack:
    stack = start_edge_stack()
    yield stack
    stack.stop()
