"""The Grafana dashboard in docs/ only queries metrics that Flowgate really exports: every metric
name in its PromQL appears in a running gateway's /metrics after some traffic (or, for families
that appear only on events, is registered in the source)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from observability_support import running_gateway

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "flowgate-dashboard.json"


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(flowgate_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_dashboard_is_valid_and_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "the dashboard has panels"
    wanted = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            wanted |= metric_names(target["expr"])
    with running_gateway() as gateway:
        exported = gateway.metrics_after_traffic()
    # prometheus-client writes counters as <name>_total in samples and <name> in HELP/TYPE.
    exported_families = set(re.findall(r"^# TYPE (flowgate_[a-z0-9_]+) ", exported, flags=re.M))
    exported_families |= {f"{n}_total" for n in exported_families}
    missing = sorted(name for name in wanted if name not in exported_families)
    # Families that only appear after an event (a cooldown, a fallback) must at least be registered.
    source = "\n".join(p.read_text() for p in (REPO / "crates").rglob("*.rs"))
    registered = {
        name for name in missing
        if re.search(r'register\(\s*"' + re.escape(re.sub(r"^flowgate_|_total$", "", name)) + '"', source)
    }
    missing = [name for name in missing if name not in registered]
    assert not missing, f"dashboard queries metrics the gateway does not export: {missing}"


@pytest.mark.parametrize("label", ["key_id", "api_key", "tenant_id"])
def test_no_high_cardinality_labels(label: str) -> None:
    with running_gateway() as gateway:
        exported = gateway.metrics_after_traffic()
    assert f'{label}="' not in exported
