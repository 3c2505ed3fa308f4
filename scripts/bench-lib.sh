# shellcheck shell=bash
# Shared parts of the benchmark scripts (scripts/bench.sh, scripts/bench-features.sh).
# Source it from a script that has `set -euo pipefail`, has cd'ed to the repository root and has
# set BENCH_NAME (the log prefix). It defines functions only, plus the temporary directory and the
# exit trap once bench_init has been called.

log() { printf '\033[1m[%s]\033[0m %s\n' "$BENCH_NAME" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# apt_install PACKAGE...: installs with apt-get (as root, or with sudo when available).
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  if ! apt-cache show "$@" >/dev/null 2>&1; then
    $sudo apt-get update -qq || return 1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null || return 1
}

# bench_tools TOOL...: makes sure each tool is on PATH, installing the Debian package of the same name.
bench_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "installing $tool"
      apt_install "$tool" || die "$tool is missing and could not be installed (apt-get install $tool)"
    fi
  done
}

# bench_build BUILD(0|1) WITH_STREAM_LOAD(0|1): sets BIN (the release flowgate binary) and, when asked,
# STREAM_LOAD (the streaming load client). BUILD=1 runs cargo; BUILD=0 uses what is built. When
# BENCH_BIN is set, BIN is that file and the flowgate binary is not built (STREAM_LOAD still is).
bench_build() {
  local build=$1 with_stream=$2
  TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
  BIN=${BENCH_BIN:-$TARGET_DIR/release/flowgate}
  STREAM_LOAD=""
  if [ "$build" = 1 ] && [ -z "${BENCH_BIN:-}" ]; then
    log "building: cargo build --release -p flowgate (CARGO_TARGET_DIR=$TARGET_DIR)"
    cargo build --release -p flowgate
  fi
  if [ "$with_stream" = 1 ] && [ "$build" = 1 ]; then
    log "building: cargo bench -p flowgate --bench stream_load --no-run"
    STREAM_LOAD=$(cargo bench -p flowgate --bench stream_load --no-run --message-format=json \
      | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "stream_load" and m.get("executable"):
        print(m["executable"])') || true
    [ -n "$STREAM_LOAD" ] || { cargo bench -p flowgate --bench stream_load --no-run; die "could not build the stream_load bench"; }
  elif [ "$with_stream" = 1 ]; then
    local candidate
    for candidate in "$TARGET_DIR"/release/deps/stream_load-*; do
      case "$candidate" in *.d) continue ;; esac
      [ -x "$candidate" ] || continue
      if [ -z "$STREAM_LOAD" ] || [ "$candidate" -nt "$STREAM_LOAD" ]; then STREAM_LOAD=$candidate; fi
    done
    [ -n "$STREAM_LOAD" ] || die "--no-build: no stream_load executable under $TARGET_DIR/release/deps"
  fi
  [ -x "$BIN" ] || die "$BIN is missing"
}

# bench_init: the temporary directory ($TMP), the list of started processes ($PIDS) and a trap that
# stops them on any exit. KEEP=1 keeps the directory (it is also kept after a failure).
bench_init() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-$BENCH_NAME.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  # More sockets than the usual default of 1024 (streams hold ~2 each in the gateway).
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  TICK_HZ=$(getconf CLK_TCK)
  NPROC=$(nproc)
}
bench_cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
    log "logs and raw results kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}
# forget_pid PID: the process was stopped on purpose; the cleanup must not signal a reused pid.
forget_pid() {
  local remaining=() pid
  for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || remaining+=("$pid"); done
  PIDS=("${remaining[@]}")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_http URL NAME PID: waits up to 30 s for URL to answer 2xx while PID (logging to $TMP/NAME.log) lives.
wait_http() {
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited; see $TMP/$2.log: $(tail -5 "$TMP/$2.log")"
    sleep 0.1
  done
  die "$2 did not answer at $1 within 30 s; see $TMP/$2.log"
}

# start_mock NAME PORT ARGS...: a `flowgate mock-upstream`; sets LAST_PID.
start_mock() {
  local name=$1 port=$2
  shift 2
  "${SERVER_PIN[@]}" "$BIN" mock-upstream --port "$port" "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!; PIDS+=("$LAST_PID")
  wait_http "http://127.0.0.1:$port/v1/models" "$name" "$LAST_PID"
}

# start_flowgate NAME MODE CONFIG HEALTH_URL [VAR=VALUE...]: starts `flowgate MODE --config CONFIG`
# with a clean environment (nothing from the caller's DATABASE_URL, Redis, OTLP or mode variables),
# LOG_LEVEL=warn and no default hourly request limit, plus the given variables; waits for HEALTH_URL;
# sets LAST_PID. Logs go to $TMP/NAME.log.
start_flowgate() {
  local name=$1 mode=$2 config=$3 health=$4
  shift 4
  env -u DATABASE_URL -u REDIS_URL -u KEYSTORE_REDIS_URL -u FLOWGATE_CONFIG -u OTEL_EXPORTER_OTLP_ENDPOINT \
    -u SERVICE_TYPE -u SCAIGRID_MODE -u ADMIN_API_KEY -u FLOWGATE_DATA_DIR \
    LOG_LEVEL=warn RATE_LIMIT_REQUESTS_PER_HOUR=0 FLOWGATE__SERVER__HOST=127.0.0.1 "$@" \
    "${SERVER_PIN[@]}" "$BIN" "$mode" --config "$config" >>"$TMP/$name.log" 2>&1 &
  LAST_PID=$!; PIDS+=("$LAST_PID")
  wait_http "$health" "$name" "$LAST_PID"
}

# create_key API_URL ADMIN_KEY JSON: creates a virtual key and prints its plaintext.
create_key() {
  curl -fsS -X POST "$1/api/enterprise/vkeys" -H "Authorization: Bearer $2" -H 'content-type: application/json' \
    -d "$3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# check_chat URL KEY BODY: one request must answer 200 with the mock's text.
check_chat() {
  local out
  out=$(curl -sS -w '\n%{http_code}' "$1" -H "Authorization: Bearer $2" -H 'content-type: application/json' -d "$3") \
    || die "request to $1 failed"
  [ "$(tail -1 <<<"$out")" = 200 ] || die "$1 answered $(tail -1 <<<"$out"): $(head -c 400 <<<"$out")"
  grep -q "$BENCH_ANSWER_MARK" <<<"$out" || die "$1 answered without the mock's text: $(head -c 400 <<<"$out")"
}

# write_wrk_script: $TMP/chat.lua POSTs $BENCH_BODY with $BENCH_KEY and prints exact percentiles
# (microseconds) and error counts as one JSON line. With $BENCH_DELAY_MS each connection waits that
# long before each request: a bounded rate (connections x 1000 / (delay + latency) per second)
# instead of as fast as possible.
write_wrk_script() {
  cat >"$TMP/chat.lua" <<'EOF'
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if pause > 0 then
  function delay() return pause end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"rps":%.2f,"non_2xx":%d,"socket_errors":%d,' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6), e.status,
    e.connect + e.read + e.write + e.timeout,
    latency.mean, latency.stdev, latency.min, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
EOF
}

# cpu_ticks PID: user + system CPU ticks of PID and of its direct children (nginx's workers).
cpu_ticks() {
  local total child
  total=$(awk '{print $14 + $15}' "/proc/$1/stat")
  # shellcheck disable=SC2013 # the children files hold space-separated pids
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# run_wrk NAME URL THREADS CONNECTIONS SECONDS KEY BODY SERVER_PID UPSTREAM_PID [DELAY_MS]: one wrk
# run; writes $TMP/NAME.json with wrk's figures and the CPU seconds the two server processes used
# meanwhile.
run_wrk() {
  local name=$1 url=$2 threads=$3 conns=$4 secs=$5 key=$6 body=$7 server=$8 upstream=$9 delay=${10:-0}
  local s0 u0 s1 u1 line
  s0=$(cpu_ticks "$server"); u0=$(cpu_ticks "$upstream")
  BENCH_BODY=$body BENCH_KEY=$key BENCH_DELAY_MS=$delay "${CLIENT_PIN[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency \
    -s "$TMP/chat.lua" "$url" >"$TMP/$name.txt" 2>&1 || die "wrk failed: $(tail -5 "$TMP/$name.txt")"
  s1=$(cpu_ticks "$server"); u1=$(cpu_ticks "$upstream")
  line=$(grep '^BENCH_JSON ' "$TMP/$name.txt" | sed 's/^BENCH_JSON //') || die "no results from wrk: $(cat "$TMP/$name.txt")"
  python3 - "$line" "$((s1 - s0))" "$((u1 - u0))" "$TICK_HZ" >"$TMP/$name.json" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
hz = int(sys.argv[4])
r["cpu_s"] = {"gateway": int(sys.argv[2]) / hz, "upstream": int(sys.argv[3]) / hz}
print(json.dumps(r))
EOF
  log "  $name: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_us"]; print("%.0f req/s, p50 %d us, p99 %d us, non-2xx %d, socket errors %d" % (r["rps"], l["p50"], l["p99"], r["non_2xx"], r["socket_errors"]))' "$TMP/$name.json")"
}

# wait_idle NAME PID: a server may keep working after a run (e.g. an audit writer catching up).
# Waits until PID uses under ~4% of a CPU over half a second (at most 120 s), so that the next run
# is not disturbed, and writes how long and how much CPU that took to $TMP/idle-NAME.json.
wait_idle() {
  local name=$1 pid=$2 started first t0 t1 timed_out=1 busy
  started=$(date +%s.%N); first=$(cpu_ticks "$pid"); t1=$first
  for _ in $(seq 240); do
    t0=$(cpu_ticks "$pid"); sleep 0.5; t1=$(cpu_ticks "$pid")
    if [ $(( (t1 - t0) * 50 )) -le "$TICK_HZ" ]; then timed_out=0; break; fi
  done
  python3 -c 'import json,sys,time
busy = max(0.0, time.time() - float(sys.argv[1]) - 0.5)
print(json.dumps({"busy_s": round(busy, 2), "cpu_s": (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]), "timed_out": sys.argv[5] == "1"}))' \
    "$started" "$first" "$t1" "$TICK_HZ" "$timed_out" >"$TMP/idle-$name.json"
  busy=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["busy_s"])' "$TMP/idle-$name.json")
  if [ "$timed_out" = 1 ]; then
    log "  the gateway was still busy 120 s after $name; going on"
  elif python3 -c "import sys; sys.exit(0 if $busy >= 1 else 1)"; then
    log "  the gateway kept working for $busy s after $name (deferred work, e.g. the audit writer)"
  fi
}

# warn_if_busy: other work on the machine skews every figure; says so when the load is high.
warn_if_busy() {
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > 0.5 * os.cpu_count() else 1)"; then
    log "warning: load average is $LOAD_BEFORE on $NPROC CPUs before the run; results will be noisy"
  fi
}

# find_nginx: sets NGINX_BIN, installing Debian's nginx-light when nginx is missing.
find_nginx() {
  NGINX_BIN=$(command -v nginx || true)
  [ -n "$NGINX_BIN" ] || [ ! -x /usr/sbin/nginx ] || NGINX_BIN=/usr/sbin/nginx
  if [ -z "$NGINX_BIN" ]; then
    log "installing nginx-light"
    apt_install nginx-light || die "nginx is missing and could not be installed (apt-get install nginx-light; or --no-nginx)"
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
  fi
}

# start_nginx UPSTREAM_PORT WORKERS: nginx as a bare reverse proxy in front of 127.0.0.1:UPSTREAM_PORT
# (keep-alive upstream connections, HTTP/1.1, no buffering, no access log), with a config generated
# under $TMP/nginx and the servers' pinning; sets PID_NGINX and NGINX_URL (the chat completions URL).
start_nginx() {
  local upstream=$1 workers=$2 port user=""
  port=$(free_port)
  mkdir -p "$TMP/nginx"
  # As root, the workers would otherwise run as nobody and could not use the temp directory.
  [ "$(id -u)" -ne 0 ] || user="user root;"
  cat >"$TMP/nginx/nginx.conf" <<EOF
$user
worker_processes $workers;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 10000000;
  upstream mock {
    server 127.0.0.1:$upstream;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
EOF
  log "starting nginx ($NGINX_BIN, $workers worker(s), :$port -> :$upstream, keep-alive upstream)"
  "${SERVER_PIN[@]}" "$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
  PID_NGINX=$!; PIDS+=("$PID_NGINX")
  wait_http "http://127.0.0.1:$port/v1/models" nginx "$PID_NGINX"
  # shellcheck disable=SC2034 # read by the caller
  NGINX_URL="http://127.0.0.1:$port/v1/chat/completions"
}
