// Origins: which self-hosted gateway a request goes to, and failing over to the next.
//
// `ORIGINS` (a wrangler.toml var) is a JSON list of `{ url, continent, weight, canary }`:
// - `continent`: the origin's continent code (AF, AN, AS, EU, NA, OC, SA); requests go to the
//   origins of their own continent first, then to the nearest others;
// - `weight`: share of traffic among origins equally near (default 1);
// - `canary`: a percentage (0-100): the origin is tried first for that share of requests only, and
//   otherwise kept as a last resort.

// Continents in order of distance from each (rough great-circle order between populated areas).
const NEAREST = {
  AF: ["AF", "EU", "AS", "SA", "NA", "OC", "AN"],
  AN: ["AN", "OC", "SA", "AF", "AS", "NA", "EU"],
  AS: ["AS", "OC", "EU", "AF", "NA", "SA", "AN"],
  EU: ["EU", "AF", "AS", "NA", "SA", "OC", "AN"],
  NA: ["NA", "SA", "EU", "AS", "OC", "AF", "AN"],
  OC: ["OC", "AS", "NA", "SA", "AN", "EU", "AF"],
  SA: ["SA", "NA", "AF", "EU", "AN", "OC", "AS"],
};

/** Parses and checks the `ORIGINS` var; throws an Error naming the bad field. */
export function parseOrigins(text) {
  let list;
  try {
    list = JSON.parse(text ?? "");
  } catch {
    throw new Error("ORIGINS: not JSON (expected a list of {url, continent, weight, canary})");
  }
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error("ORIGINS: must be a non-empty list");
  }
  return list.map((o, i) => {
    let url;
    try {
      url = new URL(o.url);
    } catch {
      throw new Error(`ORIGINS[${i}].url: not a URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new Error(`ORIGINS[${i}].url: must be http or https`);
    }
    const continent = String(o.continent ?? "").toUpperCase();
    if (!(continent in NEAREST)) {
      throw new Error(`ORIGINS[${i}].continent: one of ${Object.keys(NEAREST).join(", ")}`);
    }
    const weight = o.weight ?? 1;
    if (typeof weight !== "number" || !(weight > 0)) {
      throw new Error(`ORIGINS[${i}].weight: must be a number above 0`);
    }
    const canary = o.canary ?? null;
    if (canary !== null && (typeof canary !== "number" || canary < 0 || canary > 100)) {
      throw new Error(`ORIGINS[${i}].canary: a percentage from 0 to 100`);
    }
    return { url: url.href.replace(/\/$/, ""), continent, weight, canary };
  });
}

/**
 * The origins in the order to try them for a request from `continent` (null when unknown).
 * `random` is injectable for tests.
 */
export function orderOrigins(origins, continent, random = Math.random) {
  const ranks = NEAREST[continent] ?? null;
  const distance = (o) => (ranks ? ranks.indexOf(o.continent) : 0);
  const canaryFirst = [];
  const canaryLast = [];
  const regular = [];
  for (const o of origins) {
    if (o.canary === null) regular.push(o);
    else if (random() * 100 < o.canary) canaryFirst.push(o);
    else canaryLast.push(o);
  }
  // Weighted random order among equals (Efraimidis–Spirakis: sort by u^(1/w), largest first).
  const keyed = regular.map((o) => ({ o, d: distance(o), k: Math.pow(random(), 1 / o.weight) }));
  keyed.sort((a, b) => a.d - b.d || b.k - a.k);
  return [...canaryFirst, ...keyed.map((x) => x.o), ...canaryLast];
}

/** Statuses after which the next origin is tried (no byte of the body has been passed on yet). */
export const FAILOVER_STATUSES = new Set([502, 503, 504]);

/**
 * Sends the request to the first origin that connects and does not answer 502/503/504, trying them
 * in `order`. `makeRequest(origin, attempt)` builds a fresh Request for each attempt (1, 2, …; the
 * body is re-sendable). Returns `{ response, origin, attempts }`; when no origin could answer,
 * `response` is null and `error` says what the last failure was.
 */
export async function fetchWithFailover(order, makeRequest, fetcher = fetch) {
  let error = null;
  let attempts = 0;
  for (const [i, origin] of order.entries()) {
    attempts += 1;
    let response;
    try {
      response = await fetcher(makeRequest(origin, attempts));
    } catch (e) {
      error = e;
      continue;
    }
    if (FAILOVER_STATUSES.has(response.status) && i < order.length - 1) {
      // Headers only so far: drop this answer's body and try the next origin.
      await response.body?.cancel();
      error = new Error(`${origin.url} answered ${response.status}`);
      continue;
    }
    return { response, origin, attempts };
  }
  return { response: null, origin: null, attempts, error };
}
