// The Worker's handler against real local HTTP origins (node:http), with in-memory stand-ins
// for the rate-limit and KV bindings. The end-to-end test (tests/edge/) runs it in workerd.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { handle } from "../src/index.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));
const GOOD = vectors.valid[0];
const OTHER = vectors.valid[1];

const seen = [];
let origin;
let originUrl;

before(async () => {
  origin = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (req.url.startsWith("/v1/chat/completions") && req.headers["x-test-stream"]) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: first\n\n");
        setTimeout(() => res.end("data: [DONE]\n\n"), 400);
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "x-request-id": req.headers["x-request-id"] ?? "" });
      res.end(JSON.stringify({ ok: true }));
    });
  });
  await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
  originUrl = `http://127.0.0.1:${origin.address().port}`;
});

after(() => origin.close());

function limiter(limit) {
  const counts = new Map();
  return {
    async limit({ key }) {
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      return { success: n <= limit };
    },
  };
}

function env(extra = {}) {
  return {
    ORIGINS: JSON.stringify([{ url: originUrl, continent: "EU" }]),
    MAX_BODY_BYTES: "2048",
    RATE_LIMIT_PERIOD_SECONDS: "10",
    EDGE_TOKEN: "edge-secret",
    KEY_LIMITER: limiter(1000),
    IP_LIMITER: limiter(1000),
    ...extra,
  };
}

const post = (path, key, init = {}) =>
  new Request(`https://edge.example.com${path}`, {
    method: "POST",
    body: JSON.stringify({ model: "m", messages: [] }),
    ...init,
    headers: { authorization: `Bearer ${key}`, "cf-connecting-ip": "203.0.113.9", ...(init.headers ?? {}) },
  });

test("malformed and wrong-checksum keys are answered 401 and never reach the origin", async () => {
  const before = seen.length;
  for (const key of [...vectors.malformed.filter((k) => k.trim() !== ""), ...vectors.wrong_checksum]) {
    const response = await handle(post("/v1/chat/completions", key), env());
    assert.equal(response.status, 401, key);
    const body = await response.json();
    assert.equal(body.error.code, "invalid_api_key");
  }
  const anthropic = await handle(post("/anthropic/v1/messages", "nope"), env());
  assert.equal(anthropic.status, 401);
  assert.equal((await anthropic.json()).error.type, "authentication_error");
  assert.equal(seen.length, before, "the origin saw none of them");
});

test("a good key is forwarded with the edge's secret, client IP and request id, never the client's", async () => {
  const response = await handle(
    post("/oai/v1/chat/completions?x=1", GOOD.key, {
      headers: { "x-flowgate-client-ip": "6.6.6.6", "x-flowgate-edge": "forged", "x-request-id": "mine" },
    }),
    env(),
  );
  assert.equal(response.status, 200);
  const got = seen.at(-1);
  assert.equal(got.url, "/oai/v1/chat/completions?x=1");
  assert.equal(got.headers["x-flowgate-edge"], "edge-secret");
  assert.equal(got.headers["x-flowgate-client-ip"], "203.0.113.9");
  assert.match(got.headers["x-request-id"], /^[0-9a-f-]{36}$/);
  assert.equal(response.headers.get("x-request-id"), got.headers["x-request-id"]);
  assert.equal(got.body, JSON.stringify({ model: "m", messages: [] }));
});

test("bodies over the cap are refused, declared or not", async () => {
  const before = seen.length;
  const big = "x".repeat(4096);
  const declared = await handle(post("/v1/embeddings", GOOD.key, { body: big }), env());
  assert.equal(declared.status, 413);
  const stream = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(big));
      controller.close();
    },
  });
  const chunked = await handle(post("/v1/embeddings", GOOD.key, { body: stream, duplex: "half" }), env());
  assert.equal(chunked.status, 413);
  assert.equal((await chunked.json()).error.code, "request_too_large");
  assert.equal(seen.length, before);
});

test("routes outside the allow-list are refused at the edge", async () => {
  const metrics = await handle(new Request("https://edge.example.com/metrics"), env());
  assert.equal(metrics.status, 404);
  const wrong = await handle(new Request("https://edge.example.com/anthropic/v1/messages"), env());
  assert.equal(wrong.status, 405);
  assert.equal((await wrong.json()).type, "error");
});

test("over the key or IP limit: 429 with Retry-After, in the caller's format", async () => {
  const e = env({ KEY_LIMITER: limiter(2) });
  assert.equal((await handle(post("/anthropic/v1/messages", GOOD.key), e)).status, 200);
  assert.equal((await handle(post("/anthropic/v1/messages", GOOD.key), e)).status, 200);
  const refused = await handle(post("/anthropic/v1/messages", GOOD.key), e);
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get("retry-after"), "10");
  assert.equal((await refused.json()).error.type, "rate_limit_error");
  assert.equal((await handle(post("/anthropic/v1/messages", OTHER.key), e)).status, 200, "another key is not limited");

  const byIp = env({ IP_LIMITER: limiter(1) });
  assert.equal((await handle(post("/v1/chat/completions", GOOD.key), byIp)).status, 200);
  const second = await handle(post("/v1/chat/completions", OTHER.key), byIp);
  assert.equal(second.status, 429);
  assert.equal((await second.json()).error.type, "rate_limit_error");
});

test("a key id on the revoked list is refused", async () => {
  const kv = { get: async (id) => (id === GOOD.id ? "revoked" : null) };
  const refused = await handle(post("/v1/chat/completions", GOOD.key), env({ REVOKED_KEYS: kv }));
  assert.equal(refused.status, 401);
  assert.match((await refused.json()).error.message, /revoked/);
  assert.equal((await handle(post("/v1/chat/completions", OTHER.key), env({ REVOKED_KEYS: kv }))).status, 200);
});

test("a stream is passed on as it comes", async () => {
  const started = Date.now();
  const response = await handle(post("/v1/chat/completions", GOOD.key, { headers: { "x-test-stream": "1" } }), env());
  const reader = response.body.getReader();
  const first = await reader.read();
  const firstAt = Date.now() - started;
  assert.match(new TextDecoder().decode(first.value), /first/);
  assert.ok(firstAt < 300, `first chunk after ${firstAt} ms; the origin sent the rest 400 ms later`);
  let rest = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += new TextDecoder().decode(value);
  }
  assert.match(rest, /DONE/);
});

test("a refused connection fails over to the next origin; no origin at all is a 502", async () => {
  const dead = createServer();
  await new Promise((resolve) => dead.listen(0, "127.0.0.1", resolve));
  const deadUrl = `http://127.0.0.1:${dead.address().port}`;
  await new Promise((resolve) => dead.close(resolve));
  const origins = JSON.stringify([
    // No continent outside Cloudflare: the weights put the dead origin first.
    { url: deadUrl, continent: "EU", weight: 1000 },
    { url: originUrl, continent: "NA", weight: 0.001 },
  ]);
  const response = await handle(post("/v1/chat/completions", GOOD.key), env({ ORIGINS: origins }));
  assert.equal(response.status, 200);
  // The second attempt has its own id, so each origin's audit record is kept.
  assert.match(seen.at(-1).headers["x-request-id"], /^[0-9a-f-]{36}\.2$/);
  assert.equal(response.headers.get("x-request-id"), seen.at(-1).headers["x-request-id"]);
  const none = await handle(
    post("/v1/chat/completions", GOOD.key),
    env({ ORIGINS: JSON.stringify([{ url: deadUrl, continent: "EU" }]) }),
  );
  assert.equal(none.status, 502);
  assert.equal((await none.json()).error.code, "upstream_unavailable");
  const broken = await handle(post("/v1/chat/completions", GOOD.key), env({ ORIGINS: "[{" }));
  assert.equal(broken.status, 503);
});
