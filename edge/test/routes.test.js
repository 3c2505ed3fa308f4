import assert from "node:assert/strict";
import { test } from "node:test";

import { errorBody } from "../src/errors.js";
import { formatOf, matchRoute } from "../src/routes.js";

test("the proxy's routes are allowed under every OpenAI prefix", () => {
  for (const prefix of ["/v1", "/oai/v1", "/cursor/v1"]) {
    for (const [method, path] of [
      ["POST", "/chat/completions"],
      ["POST", "/completions"],
      ["POST", "/responses"],
      ["GET", "/responses"],
      ["GET", "/responses/resp_1"],
      ["DELETE", "/responses/resp_1"],
      ["GET", "/responses/resp_1/input_items"],
      ["POST", "/embeddings"],
      ["GET", "/models"],
      ["GET", "/guardrails"],
    ]) {
      const route = matchRoute(method, prefix + path);
      assert.deepEqual(route, { allowed: true, format: "openai", needsKey: true }, `${method} ${prefix}${path}`);
    }
  }
});

test("Anthropic, MCP and A2A routes are allowed; agent cards need no key", () => {
  assert.deepEqual(matchRoute("POST", "/anthropic/v1/messages"), { allowed: true, format: "anthropic", needsKey: true });
  assert.equal(matchRoute("POST", "/anthropic/v1/messages/count_tokens").allowed, true);
  assert.equal(matchRoute("GET", "/anthropic/v1/models").allowed, true);
  assert.equal(matchRoute("POST", "/chat/completions").allowed, true);
  assert.equal(matchRoute("POST", "/api/mcp").needsKey, true);
  assert.equal(matchRoute("GET", "/api/mcp").allowed, true);
  assert.equal(matchRoute("DELETE", "/api/mcp").allowed, true);
  assert.equal(matchRoute("POST", "/api/mcp/github").allowed, true);
  assert.equal(matchRoute("GET", "/api/mcp/tools").allowed, false);
  assert.equal(matchRoute("GET", "/api/mcp/tools/cache").allowed, false);
  assert.equal(matchRoute("GET", "/api/mcp/auth/callback").allowed, false);
  assert.equal(matchRoute("POST", "/a2a/agents/helper").needsKey, true);
  assert.deepEqual(matchRoute("GET", "/.well-known/agent.json"), { allowed: true, format: "openai", needsKey: false });
});

test("anything else is refused: 404 for unknown paths, 405 for a known path's wrong method", () => {
  assert.deepEqual(matchRoute("GET", "/metrics"), { allowed: false, format: "openai", status: 404 });
  assert.deepEqual(matchRoute("GET", "/api/enterprise/vkeys"), { allowed: false, format: "openai", status: 404 });
  assert.deepEqual(matchRoute("GET", "/health"), { allowed: false, format: "openai", status: 404 });
  assert.deepEqual(matchRoute("GET", "/v1/chat/completions"), { allowed: false, format: "openai", status: 405 });
  assert.deepEqual(matchRoute("PUT", "/v1/models"), { allowed: false, format: "openai", status: 405 });
  assert.deepEqual(matchRoute("GET", "/anthropic/v1/messages"), { allowed: false, format: "anthropic", status: 405 });
  assert.deepEqual(matchRoute("POST", "/anthropic/v2/x"), { allowed: false, format: "anthropic", status: 404 });
  assert.equal(matchRoute("POST", "/v1/chat/completions/../../admin").allowed, false);
});

test("errors have each format's shape", () => {
  assert.equal(formatOf("/anthropic/v1/messages"), "anthropic");
  assert.equal(formatOf("/v1/messages"), "openai");
  const openai = errorBody("openai", 401, "invalid_api_key", "invalid API key");
  assert.deepEqual(openai, {
    error: { message: "invalid API key", type: "invalid_request_error", param: null, code: "invalid_api_key" },
  });
  const anthropic = errorBody("anthropic", 429, "rate_limit_exceeded", "slow down");
  assert.deepEqual(anthropic, {
    type: "error",
    error: { type: "rate_limit_error", message: "slow down", code: "rate_limit_exceeded" },
  });
});
