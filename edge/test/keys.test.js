// The Worker's key check against the vectors the Rust test suite writes (flowgate-common keys).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { KEY_LEN, parseKey, presentedKey } from "../src/keys.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));

test("the key length is the Rust one", () => {
  assert.equal(KEY_LEN, vectors.key_length);
});

test("valid keys parse to their id", async () => {
  assert.ok(vectors.valid.length >= 5);
  for (const { key, id } of vectors.valid) {
    assert.deepEqual(await parseKey(key), { ok: true, id }, key);
  }
});

test("each kind of malformed key is malformed", async () => {
  assert.ok(vectors.malformed.length >= 10);
  for (const key of vectors.malformed) {
    assert.deepEqual(await parseKey(key), { ok: false, reason: "malformed" }, JSON.stringify(key));
  }
});

test("a wrong checksum is a checksum failure", async () => {
  assert.ok(vectors.wrong_checksum.length >= 5);
  for (const key of vectors.wrong_checksum) {
    assert.deepEqual(await parseKey(key), { ok: false, reason: "checksum" }, key);
  }
});

test("non-strings are malformed", async () => {
  for (const key of [null, undefined, 42, {}]) {
    assert.equal((await parseKey(key)).ok, false);
  }
});

test("the key is read from Authorization: Bearer, else x-api-key, as the proxy reads it", () => {
  const h = (entries) => new Headers(entries);
  assert.equal(presentedKey(h({ authorization: "Bearer sk-fg-a" })), "sk-fg-a");
  assert.equal(presentedKey(h({ authorization: "bearer   sk-fg-a  " })), "sk-fg-a");
  assert.equal(presentedKey(h({ "x-api-key": " sk-fg-b " })), "sk-fg-b");
  assert.equal(presentedKey(h({ authorization: "Basic abc", "x-api-key": "sk-fg-c" })), "sk-fg-c");
  assert.equal(presentedKey(h({ authorization: "Bearer sk-fg-a", "x-api-key": "sk-fg-c" })), "sk-fg-a");
  assert.equal(presentedKey(h({})), null);
});
