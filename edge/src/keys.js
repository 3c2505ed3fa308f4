// The virtual-key format, checked the way `flowgate-common::keys::parse` checks it:
// `sk-fg-{id}_{secret}{checksum}`, id 12 of [0-9a-z], secret 32 base62, checksum 6 base62 digits of
// the first 8 bytes (big-endian) of SHA-256 over everything before the checksum, least
// significant digit first. test/vectors.json, written by the Rust test suite, proves they agree.

export const PREFIX = "sk-fg-";
const ID_LEN = 12;
const SECRET_LEN = 32;
const CHECKSUM_LEN = 6;
export const KEY_LEN = PREFIX.length + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_RE = /^[0-9a-z]{12}$/;
const SECRET_RE = /^[0-9A-Za-z]+$/;
const encoder = new TextEncoder();

/** The six checksum characters of `body` (`sk-fg-{id}_{secret}`). */
export async function checksum(body) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(body)));
  let n = new DataView(digest.buffer).getBigUint64(0, false);
  let out = "";
  for (let i = 0; i < CHECKSUM_LEN; i++) {
    out += BASE62[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

/**
 * Checks a presented key's format and checksum without any lookup.
 * Returns `{ ok: true, id }` or `{ ok: false, reason: "malformed" | "checksum" }`.
 */
export async function parseKey(key) {
  if (typeof key !== "string" || key.length !== KEY_LEN || !key.startsWith(PREFIX)) {
    return { ok: false, reason: "malformed" };
  }
  const id = key.slice(PREFIX.length, PREFIX.length + ID_LEN);
  const sep = key.charAt(PREFIX.length + ID_LEN);
  const tail = key.slice(PREFIX.length + ID_LEN + 1);
  if (!ID_RE.test(id) || sep !== "_" || !SECRET_RE.test(tail)) {
    return { ok: false, reason: "malformed" };
  }
  const body = key.slice(0, KEY_LEN - CHECKSUM_LEN);
  const expected = await checksum(body);
  if (expected !== key.slice(KEY_LEN - CHECKSUM_LEN)) {
    return { ok: false, reason: "checksum" };
  }
  return { ok: true, id };
}

/**
 * The key a request presents, as the proxy reads it: `Authorization: Bearer …` (scheme in any
 * case), else `x-api-key`; null when neither is there.
 */
export function presentedKey(headers) {
  const auth = (headers.get("authorization") ?? "").trim();
  const space = auth.indexOf(" ");
  if (space > 0 && auth.slice(0, space).toLowerCase() === "bearer") {
    return auth.slice(space + 1).trim();
  }
  const apiKey = headers.get("x-api-key");
  return apiKey === null ? null : apiKey.trim();
}
