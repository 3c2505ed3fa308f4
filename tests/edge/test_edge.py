"""The edge pre-filter end to end: the Worker in workerd (`wrangler dev --local`) in front of two
`flowgate all` origins, driven by the official openai and anthropic SDKs."""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import anthropic
import httpx
import openai
import pytest
from edge_support import (
    EDGE_DIR,
    EDGE_KEY_LIMIT,
    EDGE_TOKEN,
    EdgeStack,
    FakeCloudflare,
    kv_bulk_put,
    metric,
    node,
    run_flowgate,
    wrangler,
    wrangler_env,
)

VECTORS = json.loads((EDGE_DIR / "test" / "vectors.json").read_text())


def test_the_workers_own_unit_tests_pass() -> None:
    wrangler()  # the same install the Worker runs from
    out = subprocess.run([node(), "--test", "test/"], cwd=EDGE_DIR, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout


def test_the_worker_bundles_for_wrangler_deploy(tmp_path) -> None:
    """`wrangler deploy --dry-run`: the configuration is valid and the Worker bundles for publishing
    (everything `wrangler deploy` does short of the upload)."""
    out = subprocess.run(
        [node(), str(wrangler()), "deploy", "--dry-run", "--env", "", "--outdir", str(tmp_path / "out")],
        cwd=EDGE_DIR,
        env=wrangler_env(str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "out" / "index.js").exists()
    for binding in ("REVOKED_KEYS", "KEY_LIMITER", "IP_LIMITER", "ORIGINS"):
        assert binding in out.stdout, out.stdout


def sdk(edge: EdgeStack, key: str) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(api_key=key, base_url=f"{edge.edge.url}/v1", max_retries=0),
        anthropic.Anthropic(api_key=key, base_url=f"{edge.edge.url}/anthropic", max_retries=0),
    )


def test_a_good_key_answers_normally_and_streamed_through_the_edge(edge: EdgeStack) -> None:
    key = edge.create_key()["key"]
    oai, claude = sdk(edge, key)
    chat = oai.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hello edge"}])
    assert chat.choices[0].message.content
    text = ""
    for chunk in oai.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "stream me"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text
    message = claude.messages.create(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hello from anthropic"}]
    )
    assert message.content[0].text
    with claude.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        streamed = "".join(stream.text_stream)
    assert streamed


def test_bad_keys_are_refused_at_the_edge_and_the_gateway_never_sees_them(edge: EdgeStack) -> None:
    metrics_url = f"{edge.proxy_url(0)}/metrics"
    rejected_before = metric(httpx.get(metrics_url).text, "flowgate_requests_rejected", code="invalid_api_key")
    audit_before = edge.settled_audit_count()
    bad = ["garbage", "sk-fg-short", *VECTORS["malformed"][3:8], *VECTORS["wrong_checksum"]]
    for key in bad:
        oai, claude = sdk(edge, key)
        with pytest.raises(openai.AuthenticationError) as refused:
            oai.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
        assert refused.value.response.headers.get("x-flowgate-edge-decision") == "invalid_api_key"
        assert refused.value.code == "invalid_api_key"
        with pytest.raises(anthropic.AuthenticationError) as refused:
            claude.messages.create(model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert refused.value.body["error"]["type"] == "authentication_error"
        assert refused.value.response.headers.get("x-flowgate-edge-decision") == "invalid_api_key"
    # The same well-formed but unknown key does reach the gateway, which refuses it itself.
    unknown = VECTORS["valid"][0]["key"]
    response = httpx.post(
        f"{edge.edge.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {unknown}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 401 and "x-flowgate-edge-decision" not in response.headers
    assert edge.settled_audit_count() == audit_before + 1, "only the well-formed key reached the gateway"
    rejected_after = metric(httpx.get(metrics_url).text, "flowgate_requests_rejected", code="invalid_api_key")
    assert rejected_after == rejected_before + 1


def test_routes_outside_the_proxys_and_big_bodies_stop_at_the_edge(edge: EdgeStack) -> None:
    assert httpx.get(f"{edge.edge.url}/metrics").status_code == 404
    assert httpx.get(f"{edge.edge.url}/api/enterprise/vkeys").status_code == 404
    assert httpx.get(f"{edge.edge.url}/v1/chat/completions").status_code == 405
    key = edge.create_key()["key"]
    big = httpx.post(
        f"{edge.edge.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 70_000}]},
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_too_large"


def test_a_burst_beyond_the_edge_limit_gets_429_at_the_edge(edge: EdgeStack) -> None:
    key = edge.create_key()["key"]
    statuses: list[int] = []
    retry_after = None
    with httpx.Client(timeout=10) as client:
        # Fixed windows: even split across a window edge, 2.25x the limit overflows one of them.
        for _ in range(EDGE_KEY_LIMIT * 9 // 4):
            r = client.post(
                f"{edge.edge.url}/anthropic/v1/messages",
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                json={"model": "local-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after = r.headers.get("retry-after")
                assert r.json()["error"]["type"] == "rate_limit_error"
                assert r.headers.get("x-flowgate-edge-decision") == "rate_limit_exceeded"
    assert statuses.count(429) >= EDGE_KEY_LIMIT // 4, statuses
    assert statuses.count(200) <= 2 * EDGE_KEY_LIMIT, statuses
    assert retry_after == "60"
    # Another key is not limited by this one's burst.
    other = edge.create_key()["key"]
    oai, _ = sdk(edge, other)
    assert oai.chat.completions.create(model="local-mock", messages=[{"role": "user", "content": "x"}]).choices


def test_a_revoked_key_synced_to_kv_is_refused_at_the_edge(edge: EdgeStack) -> None:
    created = edge.create_key()
    key, key_id = created["key"], created["id"]
    oai, _ = sdk(edge, key)
    assert oai.chat.completions.create(model="local-mock", messages=[{"role": "user", "content": "x"}]).choices
    assert edge.admin("POST", f"/api/enterprise/vkeys/{key_id}/revoke").status_code in (200, 204)

    # `flowgate edge sync` writes the revoked id through Cloudflare's KV API (a local stand-in)...
    token = "cloudflare-api-token-e2e-0123456789"
    fake = FakeCloudflare(token)
    try:
        out = run_flowgate(
            ["edge", "sync", "--account-id", "acct", "--namespace-id", "ns"],
            {
                "FLOWGATE_API_URL": edge.api_url(),
                "ADMIN_API_KEY": "edge-admin-key",
                "CLOUDFLARE_API_TOKEN": token,
                "CLOUDFLARE_API_BASE_URL": fake.url,
                "FLOWGATE_DATA_DIR": edge.data_dirs[0].name,
            },
        )
    finally:
        fake.stop()
    assert out.returncode == 0, out.stderr
    assert token not in out.stdout + out.stderr
    assert len(fake.writes) == 1
    path, pairs = fake.writes[0]
    assert path == "/client/v4/accounts/acct/storage/kv/namespaces/ns/bulk"
    assert key_id in [p["key"] for p in pairs]
    # ... and what Cloudflare would store there reaches the Worker's namespace.
    kv_bulk_put(pairs, edge.home.name, edge.edge.persist)

    audit_before = edge.settled_audit_count()
    with pytest.raises(openai.AuthenticationError) as refused:
        oai.chat.completions.create(model="local-mock", messages=[{"role": "user", "content": "x"}])
    assert refused.value.response.headers.get("x-flowgate-edge-decision") == "invalid_api_key"
    assert "revoked" in str(refused.value)
    assert edge.settled_audit_count() == audit_before, "the gateway never saw it"


def test_the_edge_client_ip_is_honoured_and_a_forged_one_straight_to_the_origin_is_not(edge: EdgeStack) -> None:
    key = edge.create_key(ip_allowlist=["203.0.113.0/24"])["key"]
    body = {"model": "local-mock", "messages": [{"role": "user", "content": "x"}]}
    auth = {"Authorization": f"Bearer {key}"}
    # Through the edge, the client's address (CF-Connecting-IP, set by Cloudflare's network; given
    # here by the test, as wrangler dev lets it) passes the key's allow-list.
    through = httpx.post(
        f"{edge.edge.url}/v1/chat/completions", headers={**auth, "CF-Connecting-IP": "203.0.113.7"}, json=body
    )
    assert through.status_code == 200, through.text
    request_id = through.headers["x-request-id"]
    # Straight to the origin, the same header, or the edge's own header, is ignored.
    for forged in ({"x-flowgate-client-ip": "203.0.113.7"}, {"CF-Connecting-IP": "203.0.113.7"},
                   {"x-flowgate-client-ip": "203.0.113.7", "x-flowgate-edge": "guessed-secret-0123456789"}):
        direct = httpx.post(f"{edge.proxy_url(0)}/v1/chat/completions", headers={**auth, **forged}, json=body)
        assert direct.status_code == 403, direct.text
    # Through the edge from an address outside the allow-list: refused by the gateway.
    outside = httpx.post(
        f"{edge.edge.url}/v1/chat/completions", headers={**auth, "CF-Connecting-IP": "198.51.100.1"}, json=body
    )
    assert outside.status_code == 403
    # The edge's request id is the audit record's, with the client's address.
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        row = edge.audit_row(request_id)
        time.sleep(0.2)
    assert row is not None, f"no audit record for the edge's request id {request_id}"
    assert row[0] == request_id and row[1] == "203.0.113.7" and row[2] == "200"
    assert all(EDGE_TOKEN not in line for origin in edge.origins for line in origin.logs)


def ttft(url: str, key: str) -> float:
    client = openai.OpenAI(api_key=key, base_url=url, max_retries=0)
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "one two three four five six"}], stream=True
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    assert first is not None
    return first


def test_streams_are_not_buffered_at_the_edge(edge: EdgeStack) -> None:
    key = edge.create_key()["key"]
    direct = [ttft(f"{edge.proxy_url(0)}/v1", key) for _ in range(7)]
    through = [ttft(f"{edge.edge.url}/v1", key) for _ in range(7)]
    added = statistics.median(through) - statistics.median(direct)
    # The mock upstream streams six chunks 5 ms apart: a buffering edge would add them all.
    assert added < 0.025, f"time to first token: direct {direct}, through the edge {through}"


def test_stopping_the_first_origin_sends_new_requests_to_the_second(edge: EdgeStack) -> None:
    key = edge.create_key()["key"]
    oai, _ = sdk(edge, key)

    def served(i: int) -> float:
        return metric(httpx.get(f"{edge.proxy_url(i)}/metrics").text, "flowgate_upstream_attempts")

    a0, b0 = served(0), served(1)
    oai.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert (served(0), served(1)) == (a0 + 1, b0), "the first origin serves while it is up"
    edge.origins[0].stop()
    for _ in range(3):
        assert oai.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}]).choices
    assert served(1) == b0 + 3, "the second origin took over"
