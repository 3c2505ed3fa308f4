// Flowgate's edge pre-filter: a Cloudflare Worker in front of self-hosted Flowgate origins.
//
// It decides on its own only what needs no secret and no state of the gateway's: the route and
// method are the proxy's, the body is under the cap, the virtual key is well formed with a valid
// checksum, the key and the client IP are under the coarse edge limits, and the key id is not on
// the revoked list. Everything else (key lookup, budgets, guardrails, audit) stays in the gateway.
// Accepted requests go to the nearest healthy origin, carrying the client's IP, a request id and
// the edge's shared secret; answers, streams included, pass through unbuffered.

import { errorResponse } from "./errors.js";
import { parseKey, presentedKey } from "./keys.js";
import { fetchWithFailover, orderOrigins, parseOrigins } from "./origins.js";
import { matchRoute } from "./routes.js";

const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
const DEFAULT_RATE_LIMIT_PERIOD = 60;

// Headers a client may not set: the edge sets them itself.
const EDGE_HEADERS = ["x-flowgate-edge", "x-flowgate-client-ip", "x-request-id"];
// Hop-by-hop headers and those the runtime sets for the origin request, not passed on.
const HOP_HEADERS = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "host",
  "content-length",
];

let originsCache = { text: null, origins: null, error: null };

/** `ORIGINS`, parsed once per isolate (and again if the var changes). */
function origins(env) {
  if (originsCache.text !== env.ORIGINS) {
    try {
      originsCache = { text: env.ORIGINS, origins: parseOrigins(env.ORIGINS), error: null };
    } catch (error) {
      originsCache = { text: env.ORIGINS, origins: null, error };
    }
  }
  return originsCache;
}

function positiveInt(value, fallback) {
  const n = Number.parseInt(value ?? "", 10);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Reads the body up to `cap` bytes; null when it is longer. */
async function readCapped(body, cap) {
  if (body === null) return new ArrayBuffer(0);
  const reader = body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}

/** The headers sent to the origin: the client's, less hop-by-hop and edge ones, plus the edge's. */
function originHeaders(request, env, requestId) {
  const headers = new Headers(request.headers);
  for (const name of [...EDGE_HEADERS, ...HOP_HEADERS]) headers.delete(name);
  headers.set("x-request-id", requestId);
  const clientIp = request.headers.get("cf-connecting-ip");
  if (clientIp) headers.set("x-flowgate-client-ip", clientIp);
  if (env.EDGE_TOKEN) headers.set("x-flowgate-edge", env.EDGE_TOKEN);
  return headers;
}

/** Runs one limiter binding; true when the request may go on (a missing binding limits nothing). */
async function underLimit(limiter, key) {
  if (!limiter) return true;
  try {
    const { success } = await limiter.limit({ key });
    return success;
  } catch (error) {
    // A limiter outage must not take the API down: the gateway still enforces its own limits.
    console.error("edge rate limiter failed", String(error));
    return true;
  }
}

/** Whether the key id is on the revoked list (a missing namespace lists nothing). */
async function isRevoked(kv, id) {
  if (!kv) return false;
  try {
    return (await kv.get(id, { cacheTtl: 60 })) !== null;
  } catch (error) {
    console.error("edge revoked-key lookup failed", String(error));
    return false;
  }
}

/** Handles one request. Exported for the unit tests. */
export async function handle(request, env) {
  const url = new URL(request.url);
  const method = request.method.toUpperCase();
  const requestId = crypto.randomUUID();
  const idHeader = { "x-request-id": requestId };
  const route = matchRoute(method, url.pathname);
  if (!route.allowed) {
    return route.status === 405
      ? errorResponse(route.format, 405, "method_not_allowed", `${method} is not allowed on ${url.pathname}`, idHeader)
      : errorResponse(route.format, 404, "not_found", `no route for ${url.pathname}`, idHeader);
  }
  const format = route.format;

  const cap = positiveInt(env.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES);
  const tooLarge = () =>
    errorResponse(format, 413, "request_too_large", `request body is larger than ${cap} bytes`, idHeader);
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > cap) return tooLarge();

  let keyId = null;
  if (route.needsKey) {
    const key = presentedKey(request.headers);
    if (!key) {
      return errorResponse(
        format,
        401,
        "invalid_api_key",
        "missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)",
        idHeader,
      );
    }
    const parsed = await parseKey(key);
    if (!parsed.ok) return errorResponse(format, 401, "invalid_api_key", "invalid API key", idHeader);
    keyId = parsed.id;
  }

  const period = positiveInt(env.RATE_LIMIT_PERIOD_SECONDS, DEFAULT_RATE_LIMIT_PERIOD);
  const limited = (what) =>
    errorResponse(format, 429, "rate_limit_exceeded", `edge rate limit exceeded for this ${what}`, {
      ...idHeader,
      "retry-after": String(period),
    });
  const clientIp = request.headers.get("cf-connecting-ip");
  if (clientIp && !(await underLimit(env.IP_LIMITER, clientIp))) return limited("client address");
  if (keyId !== null) {
    if (!(await underLimit(env.KEY_LIMITER, keyId))) return limited("key");
    if (await isRevoked(env.REVOKED_KEYS, keyId)) {
      return errorResponse(format, 401, "invalid_api_key", "API key has been revoked", idHeader);
    }
  }

  const { origins: list, error: configError } = origins(env);
  if (list === null) {
    console.error("edge configuration:", configError.message);
    return errorResponse(format, 503, "edge_misconfigured", "the edge has no usable origin list", idHeader);
  }
  const order = orderOrigins(list, request.cf?.continent ?? null);
  const headers = originHeaders(request, env, requestId);
  const target = (origin) => origin.url + url.pathname + url.search;

  // A WebSocket upgrade (Responses over WebSocket) goes through as it is: nothing to retry.
  if ((request.headers.get("upgrade") ?? "").toLowerCase() === "websocket") {
    try {
      return await fetch(new Request(target(order[0]), { method, headers }));
    } catch (error) {
      console.error("edge: WebSocket origin unreachable", String(error));
      return errorResponse(format, 502, "upstream_unavailable", "no Flowgate origin could be reached", idHeader);
    }
  }

  let body = null;
  if (method !== "GET" && method !== "HEAD") {
    body = await readCapped(request.body, cap);
    if (body === null) return tooLarge();
  }
  // Each attempt has its own id (`{id}.2`, `{id}.3` after a failover), so the audit trail, where
  // an id is unique, keeps a record of every origin that answered.
  const { response, error } = await fetchWithFailover(order, (origin, attempt) => {
    const attemptHeaders = new Headers(headers);
    if (attempt > 1) attemptHeaders.set("x-request-id", `${requestId}.${attempt}`);
    return new Request(target(origin), { method, headers: attemptHeaders, body, redirect: "manual" });
  });
  if (response === null) {
    console.error("edge: no origin answered", String(error));
    return errorResponse(format, 502, "upstream_unavailable", "no Flowgate origin could be reached", idHeader);
  }
  // Pass the answer through as it comes (a stream stays a stream).
  const answer = new Response(response.body, response);
  if (!answer.headers.has("x-request-id")) answer.headers.set("x-request-id", requestId);
  return answer;
}

export default {
  fetch: handle,
};
