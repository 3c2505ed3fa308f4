#!/usr/bin/env bash
# What translating the Responses API costs: the same question asked through the gateway as a chat
# completion and as a Responses request (`POST /v1/responses`, translated to chat completions and
# back) to the same fast mock upstream, whole and streamed, in interleaved rounds. Reports the
# gateway's CPU per request for each (medians over the rounds) and the difference, and the time to
# the first streamed text at c=1 (p50 over --ttft requests) of both.
#
# usage: scripts/bench-translation.sh [--bin FILE] [--rounds N] [--duration SECS] [--ttft N] [--keep]
#
#   --bin FILE        the flowgate binary (default: ${CARGO_TARGET_DIR:-target}/release/flowgate, built
#                     when missing)
#   --rounds N        rounds (default 5); each runs the four kinds in a rotated order
#   --duration SECS   length of each wrk run (default 6), at -t1 -c8
#   --ttft N          streamed requests per kind for the time to first text (default 300)
#   --keep            keep the temporary directory
#
# The gateway runs as the benchmarks run it (flowgate all, SQLite, audit on, the default log
# level), the key has rpm, tpm and a budget. Target (docs/benchmarks.md): a translated request costs
# at most 10 us of CPU more than a chat request, and its first text arrives within 1 ms of the
# chat stream's.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLER_PWD=$OLDPWD
ROOT=$PWD
BENCH_NAME=bench-translation
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

BENCH_BIN=""
ROUNDS=5
DURATION=6
TTFT_N=300
KEEP=0
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER_PWD/$1" ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BENCH_BIN=$(abs_path "$2"); shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --ttft) TTFT_N=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds must be a positive integer" ;; esac

bench_tools wrk curl python3
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/flowgate}
if [ ! -x "$BIN" ]; then
  log "building the release binary"
  cargo build --release --locked -p flowgate >&2
fi
[ -x "$BIN" ] || die "$BIN is missing"
bench_init
SERVER_PIN=()
CLIENT_PIN=()

P_UP=$(free_port); P_PROXY=$(free_port); P_API=$(free_port)
log "mock upstream :$P_UP (20 chunks per stream, no delay)"
start_mock upstream "$P_UP" --chunks 20
PID_UP=$LAST_PID
cat >"$TMP/config.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$P_UP/v1", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
YAML
ADMIN_KEY="fg-admin-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$TMP/data"
start_flowgate gateway all "$TMP/config.yaml" "http://127.0.0.1:$P_PROXY/health" \
  FLOWGATE_DATA_DIR="$TMP/data" ADMIN_API_KEY="$ADMIN_KEY" \
  FLOWGATE__PROXY__PORT="$P_PROXY" FLOWGATE__API_SERVER__PORT="$P_API" \
  FLOWGATE__COMPLIANCE__PORT="$(free_port)" FLOWGATE__POLICY__PORT="$(free_port)" \
  FLOWGATE__AUDIT__ENABLED=true LOG_LEVEL=info
PID_GW=$LAST_PID
wait_http "http://127.0.0.1:$P_API/health" gateway "$PID_GW"
KEY=$(create_key "http://127.0.0.1:$P_API" "$ADMIN_KEY" \
  '{"name": "bench", "rpm": 100000000, "tpm": 4000000000, "budget_usd": 1000000, "budget_period": "monthly"}')

SYSTEM="You are a benchmark."
QUESTION="Say something short."
body() {
  python3 - "$1" "$SYSTEM" "$QUESTION" <<'PY'
import json, sys
kind, system, question = sys.argv[1:4]
stream = kind.endswith("-stream")
if kind.startswith("chat"):
    body = {"model": "bench", "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": 64}
else:
    body = {"model": "bench", "instructions": system, "input": question, "max_output_tokens": 64, "store": False}
if stream:
    body["stream"] = True
print(json.dumps(body))
PY
}
path_of() { case "$1" in chat*) echo /v1/chat/completions ;; *) echo /v1/responses ;; esac; }
KINDS=(chat responses chat-stream responses-stream)
write_wrk_script
for kind in "${KINDS[@]}"; do
  out=$(curl -sS "http://127.0.0.1:$P_PROXY$(path_of "$kind")" -H "Authorization: Bearer $KEY" \
    -H 'content-type: application/json' -d "$(body "$kind")")
  grep -q "Mock" <<<"$out" || die "$kind did not answer with the mock's text: $(head -c 300 <<<"$out")"
done
log "warmup"
for kind in "${KINDS[@]}"; do
  run_wrk "warmup-$kind" "http://127.0.0.1:$P_PROXY$(path_of "$kind")" 1 8 2 "$KEY" "$(body "$kind")" "$PID_GW" "$PID_UP"
done
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for i in 0 1 2 3; do
    kind=${KINDS[$(( (i + round) % 4 ))]}
    run_wrk "r$round-$kind" "http://127.0.0.1:$P_PROXY$(path_of "$kind")" 1 8 "$DURATION" "$KEY" "$(body "$kind")" \
      "$PID_GW" "$PID_UP"
  done
done

log "time to first text at c=1 ($TTFT_N streamed requests per kind, alternating)"
python3 - "$P_PROXY" "$KEY" "$TTFT_N" "$(body chat-stream)" "$(body responses-stream)" >"$TMP/ttft.json" <<'PY'
import http.client, json, sys, time
port, key, n, chat, responses = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
kinds = {"chat": ("/v1/chat/completions", chat.encode(), b'"content":"Mock'),
         "responses": ("/v1/responses", responses.encode(), b"response.output_text.delta")}
times = {k: [] for k in kinds}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for i in range(2 * n):
    name = "chat" if i % 2 == 0 else "responses"
    path, body, mark = kinds[name]
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    seen, first = b"", None
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        seen += chunk
        if first is None and mark in seen:
            first = time.perf_counter() - started
    if r.status != 200 or first is None:
        sys.exit(f"{name}: HTTP {r.status}, first text not seen: {seen[:300]!r}")
    times[name].append(first * 1e6)
out = {}
for name, values in times.items():
    values.sort()
    out[name] = {"p50_us": values[len(values) // 2], "p90_us": values[int(len(values) * 0.9)]}
print(json.dumps(out))
PY

python3 - "$TMP" "$ROUNDS" "$TICK_HZ" <<'PY'
import json, statistics, sys
tmp, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kinds = ["chat", "responses", "chat-stream", "responses-stream"]
cpu = {}
for kind in kinds:
    per = []
    for r in range(1, rounds + 1):
        run = json.load(open(f"{tmp}/r{r}-{kind}.json"))
        if run["non_2xx"] or run["socket_errors"]:
            sys.exit(f"{kind} round {r}: {run['non_2xx']} non-2xx, {run['socket_errors']} socket errors")
        per.append(run["cpu_s"]["gateway"] * 1e6 / max(run["requests"], 1))
    cpu[kind] = statistics.median(per)
ttft = json.load(open(f"{tmp}/ttft.json"))
print()
print("| request | gateway CPU per request (median of %d rounds) |" % rounds)
print("|---|---|")
for kind in kinds:
    print(f"| {kind} | {cpu[kind]:.1f} us |")
whole = cpu["responses"] - cpu["chat"]
streamed = cpu["responses-stream"] - cpu["chat-stream"]
print()
print(f"Responses translation: +{whole:.1f} us per whole request, +{streamed:.1f} us per streamed request (target: <= 10 us)")
print(f"first text at c=1, p50: chat {ttft['chat']['p50_us']:.0f} us, responses {ttft['responses']['p50_us']:.0f} us "
      f"({ttft['responses']['p50_us'] - ttft['chat']['p50_us']:+.0f} us; target: within 1 ms)")
PY
