#!/usr/bin/env bash
# Flowgate benchmark: the same load sent (a) straight to a fast fake upstream (`flowgate
# mock-upstream`), (b) through nginx as a bare reverse proxy (the floor: keep-alive upstream, no
# logic) and (c) through the gateway (`flowgate all`), in one run, interleaved over --rounds
# rounds, with medians, ratios, CPU per request of the gateway, of nginx and of the upstream, and
# PASS/FAIL against the targets of issue 16 (docs/benchmarks.md).
# With --baseline or --baseline-ref it compares two builds instead (see "comparing two builds").
#
# usage: scripts/bench.sh [--json FILE] [--duration SECS] [--latency-duration SECS]
#                         [--streams N] [--audit on|off] [--pin none|split] [--no-build] [--keep]
#                         [--bin FILE] [--baseline FILE | --baseline-ref GIT_REF]
#                         [--rounds N] [--tolerance PCT] [--log-level LEVEL] [--no-nginx]
#
#   --json FILE             also write the results as JSON to FILE
#   --duration SECS         length of each throughput run (default 15)
#   --latency-duration SECS length of each latency run (default 15)
#   --streams N             concurrent SSE streams in the streaming test (default 1000; 0 skips
#                           the streaming test and the build of its client, stream_load)
#   --audit on|off          the gateway's audit trail (default on, as in production; off sets
#                           FLOWGATE__AUDIT__ENABLED=false, to see what the audit writer costs)
#   --pin none|split        none (default): every process may use every core, as the OS schedules.
#                           split: servers (mock upstreams, gateway) on CPU 0, load generators on
#                           CPU 1 (needs >= 2 CPUs).
#   --log-level LEVEL       the gateway's LOG_LEVEL (default info: the default level, as in the
#                           issue's targets; warn for the older figures)
#   --no-nginx              leave nginx out (no floor, no nginx-relative targets)
#   --rounds N              rounds of c64 and c1 runs (default 3; in comparison mode 5). Each
#                           round runs direct, nginx and the gateway back to back, in an order
#                           rotated every round; the figures are medians over the rounds
#   --no-build              use the binaries already built (do not run cargo)
#   --keep                  keep the temporary directory (logs, config, raw results)
#   --bin FILE              the flowgate binary to measure instead of building this tree's
#                           (target/release/flowgate); the streaming client is still built
#
# Comparing two builds (old = baseline, new = --bin or this tree's release build):
#   --baseline FILE         a baseline flowgate binary: runs it and the new one side by side
#                           against the same mock upstream, with the same wrk load, in interleaved
#                           rounds, and prints new/old ratios instead of the usual table. No
#                           streaming test in this mode.
#   --baseline-ref GIT_REF  the same, with the baseline built from GIT_REF of this repository:
#                           `cargo build --release --locked -p flowgate` in a throwaway git worktree
#                           with its own CARGO_TARGET_DIR, both under a temp dir removed afterwards
#                           (a cold build: 10 minutes on 2 shared cores, ~0.9 GB of disk while
#                           it runs). The binary is kept as
#                           ${CARGO_TARGET_DIR:-target}/bench-baseline/COMMIT/flowgate and reused
#                           by later runs for the same commit.
#   --rounds N              rounds in comparison mode (default 5; use at least 3). Each round:
#                           c64 direct, then c64, c1 and bounded-load runs of both builds, the
#                           builds' order swapped every other round (old, new / new, old)
#   --tolerance PCT         comparison verdict: new/old throughput (median) must be at least
#                           1 - PCT/100 and CPU per request at most 1 + PCT/100 (default 5)
#
# Needs: cargo, curl, python3, wrk and nginx (Debian nginx-light; both installed with apt-get when
# missing and running as root or with sudo), git for --baseline-ref. Respects CARGO_TARGET_DIR. Exits non-zero only when the
# setup fails, not when a target is missed. Every process shares the machine: on a busy one, run
# it as `nice -n -10 scripts/bench.sh` (as root) so that other work disturbs the figures less.
# Method and recorded results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLER_PWD=$OLDPWD
ROOT=$PWD
BENCH_NAME=bench
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

JSON_OUT=""
DURATION=15
LAT_DURATION=15
STREAMS=1000
PIN=none
AUDIT=on
BUILD=1
KEEP=0
BENCH_BIN=""
BASELINE=""
BASELINE_REF=""
ROUNDS=""
TOLERANCE=5
GW_LOG_LEVEL=info
NGINX=1
# abs_path PATH: PATH made absolute against the caller's directory (this script cd's to the root).
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER_PWD/$1" ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BENCH_BIN=$(abs_path "$2"); shift 2 ;;
    --baseline) BASELINE=$(abs_path "$2"); shift 2 ;;
    --baseline-ref) BASELINE_REF=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --tolerance) TOLERANCE=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --latency-duration) LAT_DURATION=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --pin) PIN=$2; shift 2 ;;
    --audit) AUDIT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --log-level) GW_LOG_LEVEL=$2; shift 2 ;;
    --no-nginx) NGINX=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PIN" in none|split) ;; *) echo "bench: --pin must be none or split" >&2; exit 2 ;; esac
case "$AUDIT" in on) AUDIT_ENABLED=true ;; off) AUDIT_ENABLED=false ;; *) echo "bench: --audit must be on or off" >&2; exit 2 ;; esac
if [ -n "$JSON_OUT" ]; then
  case "$JSON_OUT" in /*) ;; *) JSON_OUT="$ROOT/$JSON_OUT" ;; esac
fi
[ -z "$BASELINE" ] || [ -z "$BASELINE_REF" ] || die "--baseline and --baseline-ref exclude each other"
if [ -z "$ROUNDS" ]; then
  if [ -n "$BASELINE" ] || [ -n "$BASELINE_REF" ]; then ROUNDS=5; else ROUNDS=3; fi
fi
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds must be a positive integer" ;; esac
case "$TOLERANCE" in ''|*[!0-9.]*) die "--tolerance must be a number (percent)" ;; esac
[ -z "$BENCH_BIN" ] || [ -x "$BENCH_BIN" ] || die "--bin: $BENCH_BIN is not an executable file"
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || die "--baseline: $BASELINE is not an executable file"

bench_tools wrk curl python3
NGINX_BIN=""
[ "$NGINX" = 0 ] || find_nginx
command -v taskset >/dev/null 2>&1 || [ "$PIN" = none ] || die "--pin split needs taskset (util-linux)"
if [ "$PIN" = split ] && [ "$(nproc)" -lt 2 ]; then die "--pin split needs at least 2 CPUs"; fi

if [ -n "$BASELINE" ] || [ -n "$BASELINE_REF" ]; then
  # Comparison mode: scripts/bench-compare.sh defines bench_compare, which runs and reports.
  # shellcheck source=scripts/bench-compare.sh
  . scripts/bench-compare.sh
  bench_compare
  exit 0
fi

# (load is sampled after the build, just before the measurements: see warn_if_busy below)
case "$STREAMS" in ''|*[!0-9]*) die "--streams must be a number" ;; esac
bench_build "$BUILD" "$([ "$STREAMS" -gt 0 ] && echo 1 || echo 0)"
bench_init
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((STREAMS * 2 + 256)) ] \
  || log "warning: ulimit -n is $(ulimit -n); $STREAMS streams may run out of file descriptors"

# Where each group runs. "split": servers on CPU 0, load generators on CPU 1.
SERVER_PIN=()
CLIENT_PIN=()
WRK_THREADS=2
if [ "$PIN" = split ]; then
  SERVER_PIN=(taskset -c 0)
  CLIENT_PIN=(taskset -c 1)
  WRK_THREADS=1
fi

P_FAST=$(free_port); P_STREAM=$(free_port); P_PROXY=$(free_port)
P_API=$(free_port); P_COMPLIANCE=$(free_port); P_POLICY=$(free_port)

RESPONSE="Flowgate benchmark answer: a short deterministic completion with twenty words so streams split evenly into chunks of text."
CHUNKS=20
CHUNK_DELAY_MS=50
RAMP_MS=500

log "starting mock upstreams (fast: :$P_FAST; streaming: :$P_STREAM, $CHUNKS chunks every $CHUNK_DELAY_MS ms)"
start_mock mock-fast "$P_FAST" --response "$RESPONSE"
PID_FAST=$LAST_PID
start_mock mock-stream "$P_STREAM" --response "$RESPONSE" --chunks "$CHUNKS" --chunk-delay-ms "$CHUNK_DELAY_MS"
PID_STREAM=$LAST_PID

cat >"$TMP/config.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$P_FAST/v1", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
  - model_name: bench-stream
    litellm_params: {model: openai/bench-stream, api_base: "http://127.0.0.1:$P_STREAM/v1", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
EOF
ADMIN_KEY="fg-admin-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$TMP/data"
# A clean environment for the gateway: embedded SQLite in a temp dir, no Redis, no tracing export.
start_gateway() {
  start_flowgate gateway all "$TMP/config.yaml" "http://127.0.0.1:$P_PROXY/health" \
    FLOWGATE_DATA_DIR="$TMP/data" ADMIN_API_KEY="$ADMIN_KEY" \
    FLOWGATE__PROXY__PORT="$P_PROXY" FLOWGATE__API_SERVER__PORT="$P_API" \
    FLOWGATE__COMPLIANCE__PORT="$P_COMPLIANCE" FLOWGATE__POLICY__PORT="$P_POLICY" \
    FLOWGATE__AUDIT__ENABLED="$AUDIT_ENABLED" LOG_LEVEL="$GW_LOG_LEVEL"
  PID_GW=$LAST_PID
  wait_http "http://127.0.0.1:$P_API/health" gateway "$PID_GW"
}
log "starting the gateway (flowgate all; proxy :$P_PROXY, api :$P_API)"
start_gateway

# The key of the issue's targets: rpm, tpm and a budget (high enough never to bind), no guardrails.
KEY=$(create_key "http://127.0.0.1:$P_API" "$ADMIN_KEY" \
  '{"name": "bench", "rpm": 100000000, "tpm": 4000000000, "budget_usd": 1000000, "budget_period": "monthly"}') \
  || die "cannot create a virtual key; see $TMP/gateway.log"

# --- nginx: a bare reverse proxy in front of the same fast mock ----------------------------
# Same fairness rules as the gateway: as many worker processes as the CPUs the servers may use
# (all of them with --pin none, CPU 0 with --pin split), started with the same pinning.
PID_NGINX=""
NGINX_URL=""
NGINX_WORKERS=0
if [ "$NGINX" = 1 ]; then
  NGINX_WORKERS=$NPROC
  [ "$PIN" = none ] || NGINX_WORKERS=1
  start_nginx "$P_FAST" "$NGINX_WORKERS"
fi

DIRECT_URL="http://127.0.0.1:$P_FAST/v1/chat/completions"
GW_URL="http://127.0.0.1:$P_PROXY/v1/chat/completions"
BODY='{"model":"bench","messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"Say something short."}],"max_tokens":64}'

BENCH_ANSWER_MARK='Flowgate benchmark answer'
check_chat "$DIRECT_URL" "$KEY" "$BODY"
check_chat "$GW_URL" "$KEY" "$BODY"
[ -z "$NGINX_URL" ] || check_chat "$NGINX_URL" "$KEY" "$BODY"

# --- wrk ------------------------------------------------------------------------------------
write_wrk_script
warn_if_busy
# target_run NAME TARGET KIND [SECONDS]: one wrk run of KIND (tput: c64, lat: c1) against TARGET
# (direct, nginx or gateway), counting the CPU time of that target's server (direct: the mock
# itself; nginx: master and workers) and of the fast mock; after a gateway run, waits until the
# gateway is idle (its deferred work is written to idle-NAME.json).
target_run() {
  local name=$1 target=$2 kind=$3 url server threads=$WRK_THREADS conns=64 secs=${4:-$DURATION}
  case "$target" in
    direct) url=$DIRECT_URL; server=$PID_FAST ;;
    nginx) url=$NGINX_URL; server=$PID_NGINX ;;
    *) url=$GW_URL; server=$PID_GW ;;
  esac
  if [ "$kind" = lat ]; then threads=1; conns=1; secs=${4:-$LAT_DURATION}; fi
  run_wrk "$name" "$url" "$threads" "$conns" "$secs" "$KEY" "$BODY" "$server" "$PID_FAST"
  if [ "$target" = gateway ]; then wait_idle "$name" "$PID_GW"; fi
}
TARGETS=(direct)
[ -z "$NGINX_URL" ] || TARGETS+=(nginx)
TARGETS+=(gateway)

log "warmup (3 s each: ${TARGETS[*]})"
for t in "${TARGETS[@]}"; do target_run "warmup-$t" "$t" tput 3; done
for round in $(seq "$ROUNDS"); do
  # Rotate the order every round (direct, nginx, gateway; nginx, gateway, direct; ...), so that
  # drift in the machine's speed does not favour the target that always comes first.
  order=()
  for i in $(seq 0 $((${#TARGETS[@]} - 1))); do order+=("${TARGETS[$(( (i + round - 1) % ${#TARGETS[@]} ))]}"); done
  log "round $round of $ROUNDS (${order[*]}): c64 -d${DURATION}s (wrk -t$WRK_THREADS), then c1 -d${LAT_DURATION}s"
  for t in "${order[@]}"; do target_run "r$round-tput-$t" "$t" tput; done
  for t in "${order[@]}"; do target_run "r$round-lat-$t" "$t" lat; done
  echo "${order[*]}" >"$TMP/r$round-order.txt"
done
if [ -n "$PID_NGINX" ] && ! kill -0 "$PID_NGINX" 2>/dev/null; then die "nginx died during the benchmark; see $TMP/nginx/error.log"; fi

# --- streaming ------------------------------------------------------------------------------
# What the non-streaming runs left behind in the gateway (queues, caches, allocator), then a
# restart so that the streaming memory figure is the streams' own. Shutdown drains in-flight work
# (e.g. the audit queue); how long that takes is reported too.
GW_RSS_AFTER_LOAD=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID_GW/status")
GW_HWM_AFTER_LOAD=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID_GW/status")
GW_WARNINGS=$(grep -c ' WARN\| ERROR' "$TMP/gateway.log" || true)
log "restarting the gateway for the streaming test (RSS after the non-streaming runs: $((GW_RSS_AFTER_LOAD / 1024)) MiB)"
STOP_STARTED=$(date +%s.%N)
kill "$PID_GW"
GW_STOP_KILLED=0
for _ in $(seq 300); do kill -0 "$PID_GW" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID_GW" 2>/dev/null; then kill -9 "$PID_GW"; GW_STOP_KILLED=1; sleep 0.2; fi
# Forget the old pid so that the cleanup never signals a process that reused it.
forget_pid "$PID_GW"
GW_STOP_S=$(python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$STOP_STARTED")
start_gateway
STREAM_DIRECT_URL="http://127.0.0.1:$P_STREAM/v1/chat/completions"
STREAM_CPU="0 0 0"
if [ "$STREAMS" -gt 0 ]; then
log "streaming: $STREAMS concurrent streams ($CHUNKS chunks, ${CHUNK_DELAY_MS} ms apart, starts spread over ${RAMP_MS} ms)"
S_MOCK0=$(cpu_ticks "$PID_STREAM")
"${CLIENT_PIN[@]}" "$STREAM_LOAD" "$STREAM_DIRECT_URL" "$KEY" "$STREAMS" bench-stream \
  --ramp-ms "$RAMP_MS" --rss-pid "$PID_STREAM" >"$TMP/stream-direct.json" 2>"$TMP/stream-direct.err" \
  || die "stream_load (direct) failed: $(tail -5 "$TMP/stream-direct.err")"
S_MOCK1=$(cpu_ticks "$PID_STREAM")
fi
GW_RSS_BEFORE=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID_GW/status")
if [ "$STREAMS" -gt 0 ]; then
# Reset the gateway's peak RSS (VmHWM) so it covers only the streaming test (Linux >= 4.0).
echo 5 >"/proc/$PID_GW/clear_refs" 2>/dev/null || log "  (cannot reset VmHWM; the sampled peak is used)"
S_GW0=$(cpu_ticks "$PID_GW"); S_MOCK2=$(cpu_ticks "$PID_STREAM")
"${CLIENT_PIN[@]}" "$STREAM_LOAD" "$GW_URL" "$KEY" "$STREAMS" bench-stream \
  --ramp-ms "$RAMP_MS" --rss-pid "$PID_GW" >"$TMP/stream-gateway.json" 2>"$TMP/stream-gateway.err" \
  || die "stream_load (gateway) failed: $(tail -5 "$TMP/stream-gateway.err")"
S_GW1=$(cpu_ticks "$PID_GW"); S_MOCK3=$(cpu_ticks "$PID_STREAM")
# Server CPU seconds over both rounds (warmup + measured) of each streaming run.
STREAM_CPU="$(( S_MOCK1 - S_MOCK0 )) $(( S_GW1 - S_GW0 )) $(( S_MOCK3 - S_MOCK2 ))"
else
  log "streaming test skipped (--streams 0)"
fi
kill -0 "$PID_GW" 2>/dev/null || die "the gateway died during the benchmark; see $TMP/gateway.log"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
NGINX_VERSION=""
[ -z "$NGINX_BIN" ] || NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')

# --- report ---------------------------------------------------------------------------------
python3 - "$TMP" "$JSON_OUT" "$PIN" "$DURATION" "$LAT_DURATION" "$STREAMS" "$CHUNKS" "$CHUNK_DELAY_MS" \
  "$RAMP_MS" "$GW_RSS_BEFORE" "$WRK_THREADS" "$STREAM_CPU" "$TICK_HZ" "$LOAD_BEFORE" "$LOAD_AFTER" "$GW_RSS_AFTER_LOAD" "$GW_STOP_S" "$GW_STOP_KILLED" \
  "$GW_WARNINGS" "$TMP/gateway.log" "$AUDIT" "$GW_HWM_AFTER_LOAD" "$ROUNDS" "$GW_LOG_LEVEL" "$NGINX_WORKERS" "$NGINX_VERSION" <<'EOF'
import json, os, platform, sys
tmp, json_out, pin, duration, lat_duration, streams, chunks, delay, ramp, rss_before, wrk_threads = sys.argv[1:12]
hz = int(sys.argv[13])
load_before, load_after = sys.argv[14], sys.argv[15]
rss_after_load_kb, stop_s, stop_killed, warnings, gw_log = int(sys.argv[16]), float(sys.argv[17]), sys.argv[18] == "1", int(sys.argv[19]), sys.argv[20]
audit = sys.argv[21]
hwm_after_load_kb = int(sys.argv[22])
rounds, log_level, nginx_workers, nginx_version = int(sys.argv[23]), sys.argv[24], int(sys.argv[25]), sys.argv[26]
has_nginx = nginx_workers > 0
# The distinct warning messages the gateway logged during the non-streaming runs (first few).
import re
messages = []
try:
    for line in open(gw_log, errors="replace"):
        if " WARN" in line or " ERROR" in line:
            text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
            text = re.sub(r"^\S+\s+(WARN|ERROR)\s+", r"\1 ", text)[:160]
            key = text[:60]
            if all(not m.startswith(key) for m in messages):
                messages.append(text)
except OSError:
    pass
s_mock_direct, s_gw, s_mock_gw = (int(x) / hz for x in sys.argv[12].split())
import statistics
med = statistics.median
load = lambda name: json.load(open(os.path.join(tmp, name + ".json")))
names = ["direct"] + (["nginx"] if has_nginx else []) + ["gateway"]
R = []
for r in range(1, rounds + 1):
    run = {"round": r, "order": open(os.path.join(tmp, f"r{r}-order.txt")).read().strip()}
    for t in names:
        tp, lt = load(f"r{r}-tput-{t}"), load(f"r{r}-lat-{t}")
        reqs = tp["requests"] or 1
        own = tp["cpu_s"]["gateway"]  # the target's own server process (direct: the mock)
        idle = load(f"idle-r{r}-tput-{t}")["cpu_s"] if t == "gateway" else 0.0
        run[t] = {"tput": tp, "lat": lt, "rps": tp["rps"], "p50": lt["latency_us"]["p50"], "p99": lt["latency_us"]["p99"],
                  "cpu_us": None if t == "direct" else (own + idle) / reqs * 1e6,
                  "deferred_cpu_us": idle / reqs * 1e6,
                  "upstream_cpu_us": tp["cpu_s"]["upstream"] / reqs * 1e6,
                  "errors": tp["non_2xx"] + tp["socket_errors"] + lt["non_2xx"] + lt["socket_errors"]}
    d = run["direct"]
    run["ratios"] = {f"{t}/direct": run[t]["rps"] / d["rps"] for t in names if t != "direct" and d["rps"]}
    if has_nginx and run["nginx"]["rps"]:
        run["ratios"]["gateway/nginx"] = run["gateway"]["rps"] / run["nginx"]["rps"]
        run["ratios"]["upstream_cpu_gateway/nginx"] = run["gateway"]["upstream_cpu_us"] / run["nginx"]["upstream_cpu_us"] if run["nginx"]["upstream_cpu_us"] else None
    R.append(run)
def mk(t, k):
    vals = [r[t][k] for r in R if r[t][k] is not None]
    return med(vals) if vals else None
def mratio(k):
    vals = [r["ratios"].get(k) for r in R if r["ratios"].get(k) is not None]
    return med(vals) if vals else None
med_summary = {t: {k: mk(t, k) for k in ("rps", "p50", "p99", "cpu_us", "deferred_cpu_us", "upstream_cpu_us")} for t in names}
for t in names:
    med_summary[t]["errors"] = sum(r[t]["errors"] for r in R)
ratios = {k: mratio(k) for k in ("gateway/direct", "nginx/direct", "gateway/nginx", "upstream_cpu_gateway/nginx")}
# The round whose gateway c64 run is the median one stands for the raw figures in the JSON.
mid = sorted(R, key=lambda r: r["gateway"]["rps"])[len(R) // 2]
td, tg = mid["direct"]["tput"], mid["gateway"]["tput"]
ld, lg = mid["direct"]["lat"], mid["gateway"]["lat"]
has_streams = int(streams) > 0
sd, sg = (load("stream-direct"), load("stream-gateway")) if has_streams else (None, None)

cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
MB = 1_000_000
gw_peak_kb = max(sg["rss_kb"]["peak_sampled"] or 0, sg["rss_kb"]["vm_hwm"] or 0) if has_streams else 0

D, N, G = med_summary["direct"], med_summary.get("nginx"), med_summary["gateway"]
ratio = ratios["gateway/direct"] or 0.0
# Added latency: the median of the per-round differences (runs of one round are close in time).
d50 = med(r["gateway"]["p50"] - r["direct"]["p50"] for r in R)
d99 = med(r["gateway"]["p99"] - r["direct"]["p99"] for r in R)
n50 = med(r["nginx"]["p50"] - r["direct"]["p50"] for r in R) if has_nginx else None
n99 = med(r["nginx"]["p99"] - r["direct"]["p99"] for r in R) if has_nginx else None
t99 = (sg["ttfb_us"]["p99"] or 0) - (sd["ttfb_us"]["p99"] or 0) if has_streams else 0
streams_ok = has_streams and sg["completed"] == int(streams) and sg["errors"] == 0 and sd["errors"] == 0
rss_bytes = gw_peak_kb * 1024
no_errors = G["errors"] == 0 and D["errors"] == 0 and (N is None or N["errors"] == 0)
gw_nginx = ratios["gateway/nginx"]
up_ratio = ratios["upstream_cpu_gateway/nginx"]
targets = []
if has_nginx:
    targets.append({"name": "throughput c64: gateway >= 0.67 x nginx (median of per-round ratios)", "value": gw_nginx, "limit": 0.67,
                    "shown": f"{gw_nginx:.3f}", "pass": gw_nginx is not None and gw_nginx >= 0.67 and no_errors})
else:
    targets.append({"name": "throughput c64: gateway >= 40% of direct (no nginx in this run)", "value": ratio, "limit": 0.40,
                    "shown": f"{ratio:.3f}", "pass": ratio >= 0.40 and no_errors})
targets.append({"name": "gateway CPU per request (c64, incl. deferred work) <= 25 us", "value_us": G["cpu_us"], "limit_us": 25,
                "shown": f"{G['cpu_us']:.1f} us", "pass": G["cpu_us"] is not None and G["cpu_us"] <= 25})
if has_nginx:
    targets.append({"name": "upstream CPU per request behind the gateway within 20% of behind nginx", "value": up_ratio, "limit": 1.20,
                    "shown": f"{G['upstream_cpu_us']:.1f} vs {N['upstream_cpu_us']:.1f} us ({up_ratio:.3f})" if up_ratio else "-",
                    "pass": up_ratio is not None and up_ratio <= 1.20})
targets += [
    {"name": "added latency c1 p50 <= 50 us", "value_us": d50, "limit_us": 50, "shown": f"{d50:+.0f} us", "pass": d50 <= 50},
    {"name": "added latency c1 p99 <= 300 us", "value_us": d99, "limit_us": 300, "shown": f"{d99:+.0f} us", "pass": d99 <= 300},
]
if has_streams:
    targets += [
    {"name": f"{streams} streams: all complete, no errors", "completed": sg["completed"], "errors": sg["errors"], "pass": streams_ok},
    {"name": f"{streams} streams: gateway peak RSS <= 100 MB", "value_mb": rss_bytes / MB, "limit_mb": 100,
     "shown": f"{rss_bytes / MB:.1f} MB", "pass": rss_bytes <= 100 * MB},
    {"name": f"{streams} streams: TTFB p99 within 1 ms of direct", "value_us": t99, "limit_us": 1000, "shown": f"{t99:+.0f} us", "pass": t99 <= 1000},
    ]
targets += [
    {"name": "idle RSS (freshly started gateway) <= 30 MB", "value_mb": int(rss_before) * 1024 / MB, "limit_mb": 30,
     "shown": f"{int(rss_before) * 1024 / MB:.1f} MB", "pass": int(rss_before) * 1024 <= 30 * MB},
]

def ms(us):
    return "-" if us is None else f"{us / 1000:.3f} ms"
f1 = lambda x: "-" if x is None else f"{x:.1f}"
nx = lambda k, f: f(N[k]) if N else ""
ratio_txt = f"gw/direct {ratio:.3f}" + (f", nginx/direct {ratios['nginx/direct']:.3f}, gw/nginx {gw_nginx:.3f}" if has_nginx else "")
rows = [
    ("throughput c64 (req/s)", f"{D['rps']:.0f}", nx("rps", lambda x: f"{x:.0f}"), f"{G['rps']:.0f}", ratio_txt),
    ("latency c1 p50", ms(D["p50"]), nx("p50", ms), ms(G["p50"]), f"added: gw {d50 / 1000:+.3f} ms" + (f", nginx {n50 / 1000:+.3f} ms" if N else "")),
    ("latency c1 p99", ms(D["p99"]), nx("p99", ms), ms(G["p99"]), f"added: gw {d99 / 1000:+.3f} ms" + (f", nginx {n99 / 1000:+.3f} ms" if N else "")),
    ("proxy CPU us/request, c64", "", nx("cpu_us", f1), f1(G["cpu_us"]), f"gateway: {f1(G['deferred_cpu_us'])} of it after the run (deferred)"),
    ("upstream CPU us/request, c64", f1(D["upstream_cpu_us"]), nx("upstream_cpu_us", f1), f1(G["upstream_cpu_us"]),
     f"behind gw / behind nginx {up_ratio:.3f}" if up_ratio else ""),
    ("errors (non-2xx + socket), all rounds", str(D["errors"]), nx("errors", str), str(G["errors"]), ""),
    ("c64 req/s per round", ", ".join(f"{r['direct']['rps']:.0f}" for r in R),
     ", ".join(f"{r['nginx']['rps']:.0f}" for r in R) if has_nginx else "", ", ".join(f"{r['gateway']['rps']:.0f}" for r in R), ""),
    ("c1 p50 us per round", ", ".join(str(r["direct"]["p50"]) for r in R),
     ", ".join(str(r["nginx"]["p50"]) for r in R) if has_nginx else "", ", ".join(str(r["gateway"]["p50"]) for r in R), ""),
    ("gateway RSS after non-stream runs (MB)", "", f"{rss_after_load_kb * 1024 / MB:.1f} (peak {hwm_after_load_kb * 1024 / MB:.1f})",
     f"then stopped in {stop_s:.1f} s" + (" (SIGKILL after 30 s)" if stop_killed else "") + ", restarted"),
    ("gateway RSS idle after the restart (MB)", "", f"{int(rss_before) * 1024 / MB:.1f}", ""),
]
if has_streams:
    rows += [
    (f"streams ok / {streams}", f"{sd['completed']}", f"{sg['completed']}", f"errors {sd['errors']} / {sg['errors']}"),
    ("streams peak concurrent", f"{sd['peak_in_flight']}", f"{sg['peak_in_flight']}", ""),
    ("stream TTFB p50", ms(sd["ttfb_us"]["p50"]), ms(sg["ttfb_us"]["p50"]), f"+{((sg['ttfb_us']['p50'] or 0) - (sd['ttfb_us']['p50'] or 0)) / 1000:.3f} ms"),
    ("stream TTFB p99", ms(sd["ttfb_us"]["p99"]), ms(sg["ttfb_us"]["p99"]), f"+{t99 / 1000:.3f} ms"),
    ("stream duration p99", ms(sd["total_us"]["p99"]), ms(sg["total_us"]["p99"]), f"+{((sg['total_us']['p99'] or 0) - (sd['total_us']['p99'] or 0)) / 1000:.3f} ms"),
    ("peak RSS during streams (MB)", f"{max(sd['rss_kb']['peak_sampled'] or 0, sd['rss_kb']['vm_hwm'] or 0) * 1024 / MB:.1f}", f"{rss_bytes / MB:.1f}", f"gateway idle before: {int(rss_before) * 1024 / MB:.1f}"),
    ("server CPU, streaming runs (s)", f"{s_mock_direct:.2f}", f"{s_gw:.2f} (+{s_mock_gw:.2f} upstream)", "2 rounds each (warmup + measured)"),
    ]
head = ("metric", "direct", "nginx", "gateway", "ratios / delta")
rows = [r if len(r) == 5 else (r[0], r[1], "", r[2], r[3]) for r in rows]
w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
out = []
fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
out.append(f"medians over {rounds} round(s) of c64 and c1 runs (order rotated every round; ratios and added latency: medians of")
out.append("the per-round ratios and differences); streaming: one run")
out.append("")
out.append(fmt(head))
out.append(fmt(tuple("-" * x for x in w)))
out += [fmt(r) for r in rows]
out.append("CPU us/request: the process's user+system time during the c64 runs (nginx: master and workers; gateway: plus its")
out.append("work after the run until idle, e.g. the audit writer) divided by the requests served; upstream: the mock's own CPU")
out.append("")
for t in targets:
    out.append(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}" + (f": {t['shown']}" if t.get("shown") else ""))
if rounds < 3:
    out.append(f"only {rounds} round(s): a smoke test, not figures to decide on")
try:
    if float(load_before.split()[0]) > 0.5 * (os.cpu_count() or 1):
        out.append(f"warning: load average {load_before.split()[0]} on {os.cpu_count()} CPUs before the run: other work disturbed it, "
                   "tail latencies most (a negative added p99 passes its target without meaning anything)")
except ValueError:
    pass
machine = {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "pin": pin,
           "loadavg_before": load_before, "loadavg_after": load_after}
out.append("")
out.append(f"machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}; pinning: {pin}"
           + ("" if pin == "split" else " (wrk, servers and gateway share all cores)"))
if warnings:
    out.append(f"the gateway logged {warnings} warnings/errors during the non-streaming runs, e.g.:")
    out += [f"  {m}" for m in messages[:3]]
out.append(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
out.append(f"gateway: `flowgate all` (its RSS includes the api-server, compliance and policy services), audit trail {audit}, SQLite in a temp dir, "
           f"LOG_LEVEL={log_level}, key with rpm, tpm and a monthly budget")
if has_nginx:
    out.append(f"nginx: {nginx_version}, bare reverse proxy, {nginx_workers} worker(s), keep-alive upstream (64), no buffering, no access log")
print("\n".join(out))

if json_out:
    result = {
        "machine": machine,
        "settings": {"audit": audit, "log_level": log_level, "rounds": rounds, "nginx_workers": nginx_workers, "duration_s": int(duration), "latency_duration_s": int(lat_duration), "streams": int(streams),
                     "chunks": int(chunks), "chunk_delay_ms": int(delay), "ramp_ms": int(ramp),
                     "wrk_threads_c64": int(wrk_threads)},
        "rounds": R,
        "medians": med_summary,
        "ratios": ratios,
        "throughput_c64": {"direct": td, "gateway": tg, "ratio": ratio},
        "latency_c1": {"direct": ld, "gateway": lg, "added_p50_us": d50, "added_p99_us": d99},
        "gateway_after_non_streaming": {"rss_kb": rss_after_load_kb, "vm_hwm_kb": hwm_after_load_kb, "stop_s": stop_s, "stop_killed": stop_killed,
                                        "log_warnings": warnings, "log_samples": messages[:5]},
        "streaming": {"direct": sd, "gateway": sg, "gateway_rss_before_kb": int(rss_before),
                      "gateway_peak_rss_kb": gw_peak_kb, "ttfb_p99_added_us": t99,
                      "cpu_s": {"upstream_direct": s_mock_direct, "gateway": s_gw, "upstream_via_gateway": s_mock_gw}},
        "targets": targets,
    }
    with open(json_out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nresults written to {json_out}")
EOF
