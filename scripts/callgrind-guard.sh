#!/usr/bin/env bash
# Instruction-count regression guard: the gateway's instructions per request under
# `valgrind --tool=callgrind`, for a fixed request sequence, compared with the baseline checked in
# at scripts/callgrind/baseline.json. Deterministic enough to gate CI (wall-clock time is not
# measured at all), unlike scripts/bench.sh.
#
# usage: scripts/callgrind-guard.sh [--bin FILE] [--requests N] [--tolerance PCT] [--update REASON]
#                                   [--json FILE] [--keep]
#
#   --bin FILE        the flowgate binary (default: ${CARGO_TARGET_DIR:-target}/release/flowgate,
#                     which must exist: this script builds nothing)
#   --requests N      requests in the measured sequence (default 2000, a multiple of 4: the mix
#                     below repeats every 4 requests). The baseline is per request, but a baseline
#                     taken with another N is not comparable: the script refuses.
#   --tolerance PCT   fail when instructions per request exceed the baseline by more than PCT %
#                     (default 10)
#   --update REASON   write the measured figure to scripts/callgrind/baseline.json with the current
#                     commit and REASON (commit that file with a message saying why)
#   --json FILE       also write the measurement as JSON
#   --keep            keep the temporary directory (callgrind dumps, logs)
#   --mix MIX         all (default): the four-request mix below, compared with the baseline;
#                     plain: only request 1 (what scripts/bench.sh sends); chat: requests 1 and 2
#                     (plain and streamed chat); responses: the same question as a Responses API
#                     request (POST /v1/responses, plain and streamed) to the same chat upstream,
#                     translated both ways; stream, responses-plain, responses-stream: one kind
#                     alone. Other mixes than all are reported and not compared: run them with the
#                     same binary to read the cost of the translation (plain vs responses-plain,
#                     stream vs responses-stream).
#
# What runs: `flowgate mock-upstream` (natively) and `flowgate all` under callgrind with
# instrumentation off at start (--instr-atstart=no), embedded SQLite in a temp dir, audit on,
# LOG_LEVEL info (the default), TOKIO_WORKER_THREADS=1, one virtual key with rpm, tpm,
# requests_per_hour and a monthly budget. After one warmup pass of the mix (connection pools,
# key cache, lazy statics), `callgrind_control -i on` starts counting; a Python client sends the
# requests one at a time on one keep-alive connection, in a fixed order:
#   1. plain      POST /v1/chat/completions, model `bench` (openai/ -> mock-upstream)
#   2. streamed   the same with "stream": true (SSE, 20 chunks)
#   3. translated model `bench-anthropic` (anthropic/ -> mock-upstream's /v1/messages)
#   4. translated + streamed
# then waits until the gateway is idle (audit writer drained: its CPU time stops moving), dumps
# the counters (`callgrind_control -d`) and divides the instructions (Ir, all threads) by N.
# Startup and the warmup are outside the window; the idle wait inside it is small and reported.
#
# Exit: 0 within tolerance (or --update), 1 above it or on a setup failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLER_PWD=$OLDPWD
ROOT=$PWD
BENCH_NAME=callgrind-guard
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

BASELINE_FILE=$ROOT/scripts/callgrind/baseline.json
BENCH_BIN=""
REQUESTS=2000
TOLERANCE=10
UPDATE=""
JSON_OUT=""
KEEP=0
MIX=all
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER_PWD/$1" ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BENCH_BIN=$(abs_path "$2"); shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --tolerance) TOLERANCE=$2; shift 2 ;;
    --update) UPDATE=$2; shift 2 ;;
    --json) JSON_OUT=$(abs_path "$2"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    --mix) MIX=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "callgrind-guard: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$REQUESTS" in ''|*[!0-9]*) die "--requests must be a positive multiple of 4" ;; esac
if [ "$REQUESTS" -eq 0 ] || [ $((REQUESTS % 4)) != 0 ]; then die "--requests must be a positive multiple of 4"; fi
case "$MIX" in all|plain|stream|chat|responses|responses-plain|responses-stream) ;;
  *) die "--mix must be all, plain, stream, chat, responses, responses-plain or responses-stream" ;; esac
[ "$MIX" = all ] || [ -z "$UPDATE" ] || die "--update takes the baseline from --mix all only"
case "$TOLERANCE" in ''|*[!0-9.]*) die "--tolerance must be a number (percent)" ;; esac
[ -n "$UPDATE" ] || [ -f "$BASELINE_FILE" ] || die "no baseline at $BASELINE_FILE (create one with --update REASON)"

STARTED=$(date +%s)
bench_tools curl python3
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  log "installing valgrind"
  apt_install valgrind || die "valgrind is missing and could not be installed (apt-get install valgrind)"
fi
bench_build 0 0
bench_init
# shellcheck disable=SC2034 # read by bench-lib.sh's start_mock
SERVER_PIN=()

P_MOCK=$(free_port); P_PROXY=$(free_port); P_API=$(free_port)
BENCH_ANSWER_MARK='Flowgate benchmark answer'
log "starting the mock upstream on :$P_MOCK"
start_mock mock "$P_MOCK" --response "$BENCH_ANSWER_MARK: a short deterministic completion with twenty words so streams split evenly into chunks of text." --chunks 20
PID_MOCK=$LAST_PID

cat >"$TMP/config.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$P_MOCK/v1", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: bench-anthropic
    litellm_params: {model: anthropic/bench, api_base: "http://127.0.0.1:$P_MOCK", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
EOF
ADMIN_KEY="fg-admin-guard-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$TMP/data"
log "starting flowgate all under callgrind (instrumentation off until the measured window)"
# Same clean environment as the benchmarks (bench-lib.sh start_flowgate), but the default log
# level, one tokio worker, and valgrind in front.
env -u DATABASE_URL -u REDIS_URL -u KEYSTORE_REDIS_URL -u FLOWGATE_CONFIG -u OTEL_EXPORTER_OTLP_ENDPOINT \
  -u SERVICE_TYPE -u SCAIGRID_MODE -u LOG_LEVEL -u RUST_LOG \
  RATE_LIMIT_REQUESTS_PER_HOUR=0 FLOWGATE__SERVER__HOST=127.0.0.1 TOKIO_WORKER_THREADS=1 \
  FLOWGATE_DATA_DIR="$TMP/data" ADMIN_API_KEY="$ADMIN_KEY" \
  FLOWGATE__PROXY__PORT="$P_PROXY" FLOWGATE__API_SERVER__PORT="$P_API" \
  FLOWGATE__COMPLIANCE__PORT="$(free_port)" FLOWGATE__POLICY__PORT="$(free_port)" \
  FLOWGATE__AUDIT__ENABLED=true \
  valgrind --tool=callgrind --instr-atstart=no --collect-atstart=yes \
  --callgrind-out-file="$TMP/callgrind.out" --log-file="$TMP/valgrind.log" \
  "$BIN" all --config "$TMP/config.yaml" >"$TMP/gateway.log" 2>&1 &
PID_GW=$!; PIDS+=("$PID_GW")
# Startup under valgrind is slow (JIT of a large binary): up to 5 minutes.
for _ in $(seq 600); do
  curl -fsS -o /dev/null "http://127.0.0.1:$P_API/health" 2>/dev/null \
    && curl -fsS -o /dev/null "http://127.0.0.1:$P_PROXY/health" 2>/dev/null && break
  kill -0 "$PID_GW" 2>/dev/null || die "the gateway exited; see $TMP/gateway.log: $(tail -5 "$TMP/gateway.log")"
  sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$P_PROXY/health" || die "the gateway did not start within 5 minutes"
log "gateway up after $(( $(date +%s) - STARTED )) s"
KEY=$(create_key "http://127.0.0.1:$P_API" "$ADMIN_KEY" \
  '{"name": "guard", "rpm": 100000000, "tpm": 4000000000, "requests_per_hour": 4000000000, "budget_usd": 1000000, "budget_period": "monthly"}') \
  || die "cannot create the virtual key; see $TMP/gateway.log"

# The client: fixed sequence, one keep-alive connection, every answer checked.
cat >"$TMP/client.py" <<'EOF'
import http.client, json, sys
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
mix = sys.argv[4] if len(sys.argv) > 4 else "all"
msgs = [{"role": "system", "content": "You are a benchmark."}, {"role": "user", "content": "Say something short."}]
def chat(m, s):
    return ("/v1/chat/completions", json.dumps({"model": m, "messages": msgs, "max_tokens": 64, **({"stream": True} if s else {})}).encode(), s)
def responses(s):
    body = {"model": "bench", "instructions": msgs[0]["content"], "input": msgs[1]["content"], "max_output_tokens": 64,
            "store": False, **({"stream": True} if s else {})}
    return ("/v1/responses", json.dumps(body).encode(), s)
requests = {
    "all": [chat("bench", False), chat("bench", True), chat("bench-anthropic", False), chat("bench-anthropic", True)],
    "plain": [chat("bench", False)],
    "chat": [chat("bench", False), chat("bench", True)],
    "responses": [responses(False), responses(True)],
    "stream": [chat("bench", True)],
    "responses-plain": [responses(False)],
    "responses-stream": [responses(True)],
}[mix]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for i in range(n):
    path, body, streamed = requests[i % len(requests)]
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200 or b"Flowgate" not in data:
        sys.exit(f"request {i} ({path}): HTTP {r.status}: {data[:300]!r}")
    if streamed and b"[DONE]" not in data and b"response.completed" not in data:
        sys.exit(f"request {i}: stream without its end marker: {data[-200:]!r}")
EOF
IDLE_S=0
# wait_quiet: until the gateway's CPU time stops moving (under 2 ticks in 1 s), at most 120 s;
# sets IDLE_S to how long that took.
wait_quiet() {
  local t0 t1 start=$SECONDS
  for _ in $(seq 120); do
    t0=$(cpu_ticks "$PID_GW"); sleep 1; t1=$(cpu_ticks "$PID_GW")
    [ $((t1 - t0)) -ge 2 ] || break
  done
  IDLE_S=$((SECONDS - start))
}
log "warmup: one pass of the mix (4 requests x 5)"
python3 "$TMP/client.py" "$P_PROXY" "$KEY" 20 "$MIX" || die "warmup failed; see $TMP/gateway.log"
wait_quiet
log "measuring: $REQUESTS requests (plain, streamed, translated, translated streamed) under callgrind"
callgrind_control -i on "$PID_GW" >"$TMP/control.log" 2>&1 || die "callgrind_control -i on failed: $(cat "$TMP/control.log")"
LOAD_STARTED=$(date +%s)
python3 "$TMP/client.py" "$P_PROXY" "$KEY" "$REQUESTS" "$MIX" || die "the request sequence failed; see $TMP/gateway.log"
LOAD_S=$(( $(date +%s) - LOAD_STARTED ))
wait_quiet
callgrind_control -d "$PID_GW" >>"$TMP/control.log" 2>&1 || die "callgrind_control -d failed: $(cat "$TMP/control.log")"
callgrind_control -i off "$PID_GW" >>"$TMP/control.log" 2>&1 || true
DUMP=""
for f in "$TMP"/callgrind.out.*; do [ -f "$f" ] && DUMP=$f && break; done
[ -n "$DUMP" ] || die "no callgrind dump in $TMP ($(cat "$TMP/control.log"))"
AUDITED=$(curl -fsS "http://127.0.0.1:$P_API/api/audit?limit=1" -H "Authorization: Bearer $ADMIN_KEY" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("total", len(d.get("items", []))))' 2>/dev/null || echo "?")
kill -0 "$PID_MOCK" 2>/dev/null || die "the mock upstream died"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# The last commit that changed what the binary is built from (scripts and docs do not count).
CODE_COMMIT=$(git -C "$ROOT" log -1 --format=%h -- crates Cargo.toml Cargo.lock rust-toolchain.toml 2>/dev/null || echo unknown)
VALGRIND_VERSION=$(valgrind --version 2>/dev/null || echo unknown)
ELAPSED=$(( $(date +%s) - STARTED ))

python3 - "$DUMP" "$REQUESTS" "$BASELINE_FILE" "$TOLERANCE" "$UPDATE" "$COMMIT" "$JSON_OUT" "$LOAD_S" "$IDLE_S" "$ELAPSED" "$AUDITED" \
  "$CODE_COMMIT" "$VALGRIND_VERSION" "$BIN" "$MIX" <<'EOF'
import json, os, sys, datetime
dump, n, baseline_file, tol, update, commit, json_out, load_s, idle_s, elapsed, audited, code_commit, vg, binary, mix = sys.argv[1:16]
n, tol = int(n), float(tol) / 100
events, total = None, None
for line in open(dump, errors="replace"):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("summary:") or line.startswith("totals:"):
        total = int(line.split()[1])
if total is None:
    sys.exit(f"callgrind-guard: no totals in {dump}")
per_req = total / n
result = {"instructions_total": total, "requests": n, "instructions_per_request": round(per_req),
          "load_s": int(load_s), "idle_wait_s": int(idle_s), "elapsed_s": int(elapsed), "commit": commit, "code_commit": code_commit,
          "audit_records_reported": audited}
print(f"instructions (Ir, all threads) in the window: {total:,}")
print(f"requests: {n} " + {"plain": "(plain chat only)", "chat": "(plain and streamed chat)", "stream": "(streamed chat only)",
                           "responses-plain": "(plain Responses only)", "responses-stream": "(streamed Responses only)",
                           "responses": "(plain and streamed Responses, translated to chat)"}.get(
    mix, "(plain, streamed, translated, translated streamed, repeated)"))
result["mix"] = mix
print(f"instructions per request: {per_req:,.0f}")
print(f"load {load_s} s under callgrind, idle wait {idle_s} s, whole run {elapsed} s")
status = 0
if mix != "all":
    print(f"mix {mix}: reported only (the baseline is for the four-request mix)")
elif update:
    base = {"instructions_per_request": round(per_req), "requests": n, "commit": commit, "code_commit": code_commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "why": update,
            "valgrind": vg, "binary": binary,
            "what": "flowgate all under valgrind --tool=callgrind, TOKIO_WORKER_THREADS=1, SQLite, audit on, "
                    "default log level, key with rpm/tpm/budget; scripts/callgrind-guard.sh --requests %d" % n}
    with open(baseline_file, "w") as f:
        json.dump(base, f, indent=2); f.write("\n")
    print(f"baseline written to {baseline_file}: {round(per_req):,} per request, code at {code_commit} ({update})")
    result["baseline"] = base
else:
    base = json.load(open(baseline_file))
    if base.get("requests") != n:
        sys.exit(f"callgrind-guard: the baseline was taken with {base.get('requests')} requests, not {n}")
    ratio = per_req / base["instructions_per_request"]
    ok = ratio <= 1 + tol
    result.update({"baseline": base, "ratio": ratio, "pass": ok})
    print(f"baseline: {base['instructions_per_request']:,} per request, code at {base.get('code_commit', base['commit'])} ({base['why']})")
    print(f"{'PASS' if ok else 'FAIL'}  instructions per request {ratio:.3f} x baseline (limit {1 + tol:.2f})")
    if ratio < 1 - tol:
        print(f"note: {(1 - ratio) * 100:.0f}% below the baseline; consider --update with the reason")
    status = 0 if ok else 1
if json_out:
    with open(json_out, "w") as f:
        json.dump(result, f, indent=2)
sys.exit(status)
EOF
