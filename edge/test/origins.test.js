import assert from "node:assert/strict";
import { test } from "node:test";

import { fetchWithFailover, orderOrigins, parseOrigins } from "../src/origins.js";

const origins = parseOrigins(
  JSON.stringify([
    { url: "https://us.example.com/", continent: "NA", weight: 1 },
    { url: "https://eu-a.example.com", continent: "EU", weight: 3 },
    { url: "https://eu-b.example.com", continent: "EU", weight: 1 },
    { url: "https://ap.example.com", continent: "AS" },
  ]),
);

test("origins are checked, naming the bad field", () => {
  assert.throws(() => parseOrigins("nope"), /ORIGINS: not JSON/);
  assert.throws(() => parseOrigins("[]"), /non-empty/);
  assert.throws(() => parseOrigins('[{"url":"ftp://x","continent":"EU"}]'), /ORIGINS\[0\]\.url/);
  assert.throws(() => parseOrigins('[{"url":"https://x","continent":"XX"}]'), /ORIGINS\[0\]\.continent/);
  assert.throws(() => parseOrigins('[{"url":"https://x","continent":"EU","weight":0}]'), /ORIGINS\[0\]\.weight/);
  assert.throws(() => parseOrigins('[{"url":"https://x","continent":"EU","canary":101}]'), /ORIGINS\[0\]\.canary/);
  assert.equal(origins[0].url, "https://us.example.com");
});

test("the nearest continent comes first, then the next nearest", () => {
  const order = orderOrigins(origins, "EU").map((o) => o.continent);
  assert.deepEqual(order, ["EU", "EU", "AS", "NA"]);
  assert.equal(orderOrigins(origins, "NA")[0].continent, "NA");
  assert.equal(orderOrigins(origins, "OC")[0].continent, "AS");
  assert.equal(orderOrigins(origins, null).length, 4);
});

test("weights share traffic among equally near origins", () => {
  let a = 0;
  const runs = 4000;
  for (let i = 0; i < runs; i++) {
    if (orderOrigins(origins, "EU")[0].url === "https://eu-a.example.com") a += 1;
  }
  // weight 3 against 1: three quarters.
  assert.ok(a / runs > 0.7 && a / runs < 0.8, `${a / runs}`);
});

test("a canary gets its percentage first and is a last resort otherwise", () => {
  const list = parseOrigins(
    JSON.stringify([
      { url: "https://old.example.com", continent: "EU" },
      { url: "https://new.example.com", continent: "EU", canary: 10 },
    ]),
  );
  let first = 0;
  for (let i = 0; i < 5000; i++) {
    const order = orderOrigins(list, "EU");
    assert.equal(order.length, 2);
    if (order[0].url === "https://new.example.com") first += 1;
  }
  assert.ok(first / 5000 > 0.07 && first / 5000 < 0.13, `${first / 5000}`);
  assert.equal(orderOrigins(list, "EU", () => 0.05)[0].url, "https://new.example.com");
  assert.equal(orderOrigins(list, "EU", () => 0.5)[1].url, "https://new.example.com");
});

test("failover on connection errors and 502/503/504, never on other answers", async () => {
  const order = [{ url: "a" }, { url: "b" }, { url: "c" }];
  const script = (answers) => {
    const seen = [];
    const fetcher = async (request) => {
      seen.push(request);
      const answer = answers[seen.length - 1];
      if (answer instanceof Error) throw answer;
      return new Response("x", { status: answer });
    };
    return { seen, fetcher };
  };
  let s = script([new Error("refused"), 503, 200]);
  let out = await fetchWithFailover(order, (o) => o.url, s.fetcher);
  assert.deepEqual([out.response.status, out.origin.url, out.attempts], [200, "c", 3]);
  s = script([500]);
  out = await fetchWithFailover(order, (o) => o.url, s.fetcher);
  assert.deepEqual([out.response.status, out.origin.url], [500, "a"], "a 500 is the gateway's answer");
  s = script([429]);
  out = await fetchWithFailover(order, (o) => o.url, s.fetcher);
  assert.equal(out.response.status, 429);
  s = script([502, 504, 502]);
  out = await fetchWithFailover(order, (o) => o.url, s.fetcher);
  assert.deepEqual([out.response.status, out.origin.url], [502, "c"], "the last origin's answer is passed on");
  s = script([new Error("a"), new Error("b"), new Error("c")]);
  out = await fetchWithFailover(order, (o) => o.url, s.fetcher);
  assert.equal(out.response, null);
  assert.match(String(out.error), /c/);
});
