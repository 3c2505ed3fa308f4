#!/usr/bin/env bash
# Flowgate benchmark: the same load sent (a) straight to a fast fake upstream (`flowgate
# mock-upstream`) and (b) through the gateway (`flowgate all`), in one run, with a table of
# direct vs gateway, the ratios, and PASS/FAIL against the targets in docs/benchmarks.md.
# With --baseline or --baseline-ref it compares two builds instead (see "comparing two builds").
#
# usage: scripts/bench.sh [--json FILE] [--duration SECS] [--latency-duration SECS]
#                         [--streams N] [--audit on|off] [--pin none|split] [--no-build] [--keep]
#                         [--bin FILE] [--baseline FILE | --baseline-ref GIT_REF]
#                         [--rounds N] [--tolerance PCT]
#
#   --json FILE             also write the results as JSON to FILE
#   --duration SECS         length of each throughput run (default 15)
#   --latency-duration SECS length of each latency run (default 15)
#   --streams N             concurrent SSE streams in the streaming test (default 1000)
#   --audit on|off          the gateway's audit trail (default on, as in production; off sets
#                           FLOWGATE__AUDIT__ENABLED=false, to see what the audit writer costs)
#   --pin none|split        none (default): every process may use every core, as the OS schedules.
#                           split: servers (mock upstreams, gateway) on CPU 0, load generators on
#                           CPU 1 (needs >= 2 CPUs).
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
# Needs: cargo, curl, python3, wrk (installed with apt-get when missing and running as root or
# with sudo), git for --baseline-ref. Respects CARGO_TARGET_DIR. Exits non-zero only when the
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
ROUNDS=5
TOLERANCE=5
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
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds must be a positive integer" ;; esac
case "$TOLERANCE" in ''|*[!0-9.]*) die "--tolerance must be a number (percent)" ;; esac
[ -z "$BENCH_BIN" ] || [ -x "$BENCH_BIN" ] || die "--bin: $BENCH_BIN is not an executable file"
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || die "--baseline: $BASELINE is not an executable file"

bench_tools wrk curl python3
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
bench_build "$BUILD" 1
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
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$P_FAST/v1", api_key: unused}
  - model_name: bench-stream
    litellm_params: {model: openai/bench-stream, api_base: "http://127.0.0.1:$P_STREAM/v1", api_key: unused}
EOF
ADMIN_KEY="fg-admin-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$TMP/data"
# A clean environment for the gateway: embedded SQLite in a temp dir, no Redis, no tracing export.
start_gateway() {
  start_flowgate gateway all "$TMP/config.yaml" "http://127.0.0.1:$P_PROXY/health" \
    FLOWGATE_DATA_DIR="$TMP/data" ADMIN_API_KEY="$ADMIN_KEY" \
    FLOWGATE__PROXY__PORT="$P_PROXY" FLOWGATE__API_SERVER__PORT="$P_API" \
    FLOWGATE__COMPLIANCE__PORT="$P_COMPLIANCE" FLOWGATE__POLICY__PORT="$P_POLICY" \
    FLOWGATE__AUDIT__ENABLED="$AUDIT_ENABLED"
  PID_GW=$LAST_PID
  wait_http "http://127.0.0.1:$P_API/health" gateway "$PID_GW"
}
log "starting the gateway (flowgate all; proxy :$P_PROXY, api :$P_API)"
start_gateway

KEY=$(create_key "http://127.0.0.1:$P_API" "$ADMIN_KEY" '{"name":"bench"}') \
  || die "cannot create a virtual key; see $TMP/gateway.log"

DIRECT_URL="http://127.0.0.1:$P_FAST/v1/chat/completions"
GW_URL="http://127.0.0.1:$P_PROXY/v1/chat/completions"
BODY='{"model":"bench","messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"Say something short."}],"max_tokens":64}'

BENCH_ANSWER_MARK='Flowgate benchmark answer'
check_chat "$DIRECT_URL" "$KEY" "$BODY"
check_chat "$GW_URL" "$KEY" "$BODY"

# --- wrk ------------------------------------------------------------------------------------
write_wrk_script
warn_if_busy
# bench_wrk NAME URL THREADS CONNECTIONS SECONDS: wrk with the chat body and the key, counting
# the CPU time of the gateway and of the fast mock.
bench_wrk() { run_wrk "$1" "$2" "$3" "$4" "$5" "$KEY" "$BODY" "$PID_GW" "$PID_FAST"; }

log "warmup (3 s each)"
bench_wrk warmup-direct "$DIRECT_URL" "$WRK_THREADS" 64 3
bench_wrk warmup-gateway "$GW_URL" "$WRK_THREADS" 64 3
wait_idle warmup-gateway "$PID_GW"
log "throughput: wrk -t$WRK_THREADS -c64 -d${DURATION}s"
bench_wrk tput-direct "$DIRECT_URL" "$WRK_THREADS" 64 "$DURATION"
bench_wrk tput-gateway "$GW_URL" "$WRK_THREADS" 64 "$DURATION"
wait_idle tput-gateway "$PID_GW"
log "latency: wrk -t1 -c1 -d${LAT_DURATION}s"
bench_wrk lat-direct "$DIRECT_URL" 1 1 "$LAT_DURATION"
bench_wrk lat-gateway "$GW_URL" 1 1 "$LAT_DURATION"
wait_idle lat-gateway "$PID_GW"

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
log "streaming: $STREAMS concurrent streams ($CHUNKS chunks, ${CHUNK_DELAY_MS} ms apart, starts spread over ${RAMP_MS} ms)"
S_MOCK0=$(cpu_ticks "$PID_STREAM")
"${CLIENT_PIN[@]}" "$STREAM_LOAD" "$STREAM_DIRECT_URL" "$KEY" "$STREAMS" bench-stream \
  --ramp-ms "$RAMP_MS" --rss-pid "$PID_STREAM" >"$TMP/stream-direct.json" 2>"$TMP/stream-direct.err" \
  || die "stream_load (direct) failed: $(tail -5 "$TMP/stream-direct.err")"
S_MOCK1=$(cpu_ticks "$PID_STREAM")
GW_RSS_BEFORE=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID_GW/status")
# Reset the gateway's peak RSS (VmHWM) so it covers only the streaming test (Linux >= 4.0).
echo 5 >"/proc/$PID_GW/clear_refs" 2>/dev/null || log "  (cannot reset VmHWM; the sampled peak is used)"
S_GW0=$(cpu_ticks "$PID_GW"); S_MOCK2=$(cpu_ticks "$PID_STREAM")
"${CLIENT_PIN[@]}" "$STREAM_LOAD" "$GW_URL" "$KEY" "$STREAMS" bench-stream \
  --ramp-ms "$RAMP_MS" --rss-pid "$PID_GW" >"$TMP/stream-gateway.json" 2>"$TMP/stream-gateway.err" \
  || die "stream_load (gateway) failed: $(tail -5 "$TMP/stream-gateway.err")"
S_GW1=$(cpu_ticks "$PID_GW"); S_MOCK3=$(cpu_ticks "$PID_STREAM")
# Server CPU seconds over both rounds (warmup + measured) of each streaming run.
STREAM_CPU="$(( S_MOCK1 - S_MOCK0 )) $(( S_GW1 - S_GW0 )) $(( S_MOCK3 - S_MOCK2 ))"
kill -0 "$PID_GW" 2>/dev/null || die "the gateway died during the benchmark; see $TMP/gateway.log"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------------
python3 - "$TMP" "$JSON_OUT" "$PIN" "$DURATION" "$LAT_DURATION" "$STREAMS" "$CHUNKS" "$CHUNK_DELAY_MS" \
  "$RAMP_MS" "$GW_RSS_BEFORE" "$WRK_THREADS" "$STREAM_CPU" "$TICK_HZ" "$LOAD_BEFORE" "$LOAD_AFTER" "$GW_RSS_AFTER_LOAD" "$GW_STOP_S" "$GW_STOP_KILLED" \
  "$GW_WARNINGS" "$TMP/gateway.log" "$AUDIT" "$GW_HWM_AFTER_LOAD" <<'EOF'
import json, os, platform, sys
tmp, json_out, pin, duration, lat_duration, streams, chunks, delay, ramp, rss_before, wrk_threads = sys.argv[1:12]
hz = int(sys.argv[13])
load_before, load_after = sys.argv[14], sys.argv[15]
rss_after_load_kb, stop_s, stop_killed, warnings, gw_log = int(sys.argv[16]), float(sys.argv[17]), sys.argv[18] == "1", int(sys.argv[19]), sys.argv[20]
audit = sys.argv[21]
hwm_after_load_kb = int(sys.argv[22])
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
load = lambda name: json.load(open(os.path.join(tmp, name + ".json")))
td, tg = load("tput-direct"), load("tput-gateway")
ld, lg = load("lat-direct"), load("lat-gateway")
idle_tput, idle_lat = load("idle-tput-gateway"), load("idle-lat-gateway")
sd, sg = load("stream-direct"), load("stream-gateway")

cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
MB = 1_000_000
gw_peak_kb = max(sg["rss_kb"]["peak_sampled"] or 0, sg["rss_kb"]["vm_hwm"] or 0)

ratio = tg["rps"] / td["rps"] if td["rps"] else 0.0
d50 = lg["latency_us"]["p50"] - ld["latency_us"]["p50"]
d99 = lg["latency_us"]["p99"] - ld["latency_us"]["p99"]
t99 = (sg["ttfb_us"]["p99"] or 0) - (sd["ttfb_us"]["p99"] or 0)
streams_ok = sg["completed"] == int(streams) and sg["errors"] == 0 and sd["errors"] == 0
rss_bytes = gw_peak_kb * 1024
targets = [
    {"name": "throughput c64: gateway >= 40% of direct", "value": ratio, "limit": 0.40,
     "pass": ratio >= 0.40 and tg["non_2xx"] == 0 and tg["socket_errors"] == 0},
    {"name": "added latency c1 p50 <= 0.2 ms", "value_us": d50, "limit_us": 200, "pass": d50 <= 200},
    {"name": "added latency c1 p99 <= 1 ms", "value_us": d99, "limit_us": 1000, "pass": d99 <= 1000},
    {"name": f"{streams} streams: all complete, no errors", "completed": sg["completed"], "errors": sg["errors"], "pass": streams_ok},
    {"name": "streaming: gateway peak RSS < 150 MB", "value_mb": rss_bytes / MB, "limit_mb": 150, "pass": rss_bytes < 150 * MB},
    {"name": "streaming: TTFB p99 within 2 ms of direct", "value_us": t99, "limit_us": 2000, "pass": t99 <= 2000},
]

def ms(us):
    return "-" if us is None else f"{us / 1000:.3f} ms"

rows = [
    ("throughput c64 (req/s)", f"{td['rps']:.0f}", f"{tg['rps']:.0f}", f"{ratio * 100:.1f}% of direct"),
    ("latency c1 p50", ms(ld["latency_us"]["p50"]), ms(lg["latency_us"]["p50"]), f"+{d50 / 1000:.3f} ms"),
    ("latency c1 p99", ms(ld["latency_us"]["p99"]), ms(lg["latency_us"]["p99"]), f"+{d99 / 1000:.3f} ms"),
    ("latency c1 (req/s)", f"{ld['rps']:.0f}", f"{lg['rps']:.0f}", f"{lg['rps'] / ld['rps'] * 100:.1f}%" if ld["rps"] else "-"),
    ("throughput c64 p99 latency", ms(td["latency_us"]["p99"]), ms(tg["latency_us"]["p99"]), f"+{(tg['latency_us']['p99'] - td['latency_us']['p99']) / 1000:.3f} ms"),
    (f"streams ok / {streams}", f"{sd['completed']}", f"{sg['completed']}", f"errors {sd['errors']} / {sg['errors']}"),
    ("streams peak concurrent", f"{sd['peak_in_flight']}", f"{sg['peak_in_flight']}", ""),
    ("stream TTFB p50", ms(sd["ttfb_us"]["p50"]), ms(sg["ttfb_us"]["p50"]), f"+{((sg['ttfb_us']['p50'] or 0) - (sd['ttfb_us']['p50'] or 0)) / 1000:.3f} ms"),
    ("stream TTFB p99", ms(sd["ttfb_us"]["p99"]), ms(sg["ttfb_us"]["p99"]), f"+{t99 / 1000:.3f} ms"),
    ("stream duration p99", ms(sd["total_us"]["p99"]), ms(sg["total_us"]["p99"]), f"+{((sg['total_us']['p99'] or 0) - (sd['total_us']['p99'] or 0)) / 1000:.3f} ms"),
    ("gateway RSS after non-stream runs (MB)", "", f"{rss_after_load_kb * 1024 / MB:.1f} (peak {hwm_after_load_kb * 1024 / MB:.1f})",
     f"then stopped in {stop_s:.1f} s" + (" (SIGKILL after 30 s)" if stop_killed else "") + ", restarted"),
    ("peak RSS during streams (MB)", f"{max(sd['rss_kb']['peak_sampled'] or 0, sd['rss_kb']['vm_hwm'] or 0) * 1024 / MB:.1f}", f"{rss_bytes / MB:.1f}", f"gateway idle before: {int(rss_before) * 1024 / MB:.1f}"),
    ("server CPU, streaming runs (s)", f"{s_mock_direct:.2f}", f"{s_gw:.2f} (+{s_mock_gw:.2f} upstream)", "2 rounds each (warmup + measured)"),
    ("server CPU per request, c64 (us)", f"{td['cpu_s']['upstream'] / td['requests'] * 1e6:.1f}",
     f"{tg['cpu_s']['gateway'] / tg['requests'] * 1e6:.1f} (+{tg['cpu_s']['upstream'] / tg['requests'] * 1e6:.1f} upstream)",
     "direct: upstream; gateway: gateway process during the run"),
    ("gateway busy after c64 run", "", f"{idle_tput['busy_s']:.1f} s, {idle_tput['cpu_s']:.1f} CPU-s",
     f"deferred work: +{idle_tput['cpu_s'] / tg['requests'] * 1e6:.1f} us per request"),
    ("gateway busy after c1 run", "", f"{idle_lat['busy_s']:.1f} s, {idle_lat['cpu_s']:.1f} CPU-s",
     f"deferred work: +{idle_lat['cpu_s'] / lg['requests'] * 1e6:.1f} us per request"),
]
w = [max(len(r[i]) for r in rows + [("metric", "direct", "gateway", "ratio / delta")]) for i in range(4)]
out = []
fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
out.append(fmt(("metric", "direct", "gateway", "ratio / delta")))
out.append(fmt(tuple("-" * x for x in w)))
out += [fmt(r) for r in rows]
out.append("")
for t in targets:
    out.append(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}")
machine = {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "pin": pin,
           "loadavg_before": load_before, "loadavg_after": load_after}
out.append("")
out.append(f"machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}; pinning: {pin}"
           + ("" if pin == "split" else " (wrk, servers and gateway share all cores)"))
if warnings:
    out.append(f"the gateway logged {warnings} warnings/errors during the non-streaming runs, e.g.:")
    out += [f"  {m}" for m in messages[:3]]
out.append(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
out.append(f"gateway: `flowgate all` (its RSS includes the api-server, compliance and policy services), audit trail {audit}, SQLite in a temp dir")
print("\n".join(out))

if json_out:
    result = {
        "machine": machine,
        "settings": {"audit": audit, "duration_s": int(duration), "latency_duration_s": int(lat_duration), "streams": int(streams),
                     "chunks": int(chunks), "chunk_delay_ms": int(delay), "ramp_ms": int(ramp),
                     "wrk_threads_c64": int(wrk_threads)},
        "throughput_c64": {"direct": td, "gateway": tg, "ratio": ratio},
        "latency_c1": {"direct": ld, "gateway": lg, "added_p50_us": d50, "added_p99_us": d99},
        "gateway_deferred_work": {"after_c64": idle_tput, "after_c1": idle_lat},
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
