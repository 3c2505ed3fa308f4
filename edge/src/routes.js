// The method/route allow-list: the proxy's routes (and the MCP and A2A endpoints), nothing else.
// Each route says whether it needs a virtual key and in which format its errors are answered.

const OPENAI_PREFIXES = ["/v1", "/oai/v1", "/cursor/v1"];

// Paths under each OpenAI prefix, with the methods the proxy serves there.
const OPENAI_ROUTES = [
  [/^\/chat\/completions$/, ["POST"]],
  [/^\/completions$/, ["POST"]],
  [/^\/responses$/, ["POST", "GET"]],
  [/^\/responses\/[^/]+$/, ["GET", "DELETE"]],
  [/^\/responses\/[^/]+\/input_items$/, ["GET"]],
  [/^\/embeddings$/, ["POST"]],
  [/^\/models$/, ["GET"]],
  [/^\/guardrails$/, ["GET"]],
];

const ANTHROPIC_ROUTES = [
  [/^\/anthropic\/v1\/messages$/, ["POST"]],
  [/^\/anthropic\/v1\/messages\/count_tokens$/, ["POST"]],
  [/^\/anthropic\/v1\/models$/, ["GET"]],
];

// MCP (Streamable HTTP) and A2A carry a virtual key; agent cards are public.
const OTHER_ROUTES = [
  [/^\/chat\/completions$/, ["POST"], "openai", true],
  // The MCP endpoint and its per-server paths; `/api/mcp/tools*` and `/api/mcp/auth*` belong to
  // the management API and stay off the edge.
  [/^\/api\/mcp(\/(?!tools|auth)[^]*)?$/, ["POST", "GET", "DELETE"], "openai", true],
  [/^\/a2a\/.+$/, ["POST", "GET"], "openai", true],
  [/^\/\.well-known\/(agent\.json|agent-card\.json)$/, ["GET"], "openai", false],
];

/** The caller's error format for `path`: Anthropic under `/anthropic/`, OpenAI elsewhere. */
export function formatOf(path) {
  return path === "/anthropic" || path.startsWith("/anthropic/") ? "anthropic" : "openai";
}

/**
 * Looks `method path` up. Returns `{ allowed: true, format, needsKey }`, or
 * `{ allowed: false, format, status: 404 | 405 }`.
 */
export function matchRoute(method, path) {
  const format = formatOf(path);
  let known = false;
  const check = (re, methods, needsKey) => {
    if (!re.test(path)) return null;
    known = true;
    return methods.includes(method) ? { allowed: true, format, needsKey } : null;
  };
  for (const prefix of OPENAI_PREFIXES) {
    if (path.startsWith(prefix + "/")) {
      const rest = path.slice(prefix.length);
      for (const [re, methods] of OPENAI_ROUTES) {
        if (re.test(rest)) {
          known = true;
          if (methods.includes(method)) return { allowed: true, format, needsKey: true };
        }
      }
    }
  }
  for (const [re, methods] of ANTHROPIC_ROUTES) {
    const hit = check(re, methods, true);
    if (hit) return hit;
  }
  for (const [re, methods, , needsKey] of OTHER_ROUTES) {
    const hit = check(re, methods, needsKey);
    if (hit) return hit;
  }
  return { allowed: false, format, status: known ? 405 : 404 };
}
