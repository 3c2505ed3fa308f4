# shellcheck shell=bash
# Comparison mode of scripts/bench.sh (--baseline FILE or --baseline-ref GIT_REF): not a script of
# its own. bench.sh sources it after parsing its options and calls bench_compare, which uses its
# settings (BASELINE, BASELINE_REF, BENCH_BIN, BUILD, ROUNDS, DURATION, LAT_DURATION, AUDIT_ENABLED,
# AUDIT, PIN, TOLERANCE, JSON_OUT, ROOT) and the functions of scripts/bench-lib.sh.
#
# Two `flowgate all` gateways run side by side: "old" (the baseline binary) and "new" (--bin, or
# this tree's release build), each with its own ports, SQLite data directory and key, both in front
# of the same fast mock upstream (the baseline binary's `flowgate mock-upstream`, so that the
# upstream does not change between the two). Every round runs, with the same wrk settings:
#
#   c64 direct     wrk -c64 straight to the mock (the reference for "ratio to direct")
#   c64 nginx      wrk -c64 through nginx as a bare reverse proxy (the floor; not with --no-nginx)
#   c64 old/new    wrk -c64 through each gateway (throughput)
#   c1 old/new     wrk -t1 -c1 through each gateway (latency p50/p99), and c1 direct
#   rate old/new   a bounded load, 16 connections each waiting 2 ms before every request (at most
#                  ~8,000 req/s, as in bench-features.sh): the gateway's CPU time per request,
#                  including the work it does after the run (wait_idle), for the same offered load
#
# The builds' order is swapped every other round (old, new; new, old; ...), so that drift in the
# machine's speed during the run does not favour either. New/old ratios are taken per round, from
# runs next to each other, and the median of those is the figure.

# build_baseline_ref REF: sets BASELINE to a release flowgate binary built from REF, reusing one
# built earlier for the same commit.
build_baseline_ref() {
  local ref=$1 sha out dir started
  sha=$(git -C "$ROOT" rev-parse --verify --quiet "$ref^{commit}") || die "--baseline-ref: $ref is not a commit of $ROOT"
  out=${CARGO_TARGET_DIR:-$ROOT/target}/bench-baseline/$sha/flowgate
  BASELINE_COMMIT=$sha
  if [ -x "$out" ]; then
    log "baseline $ref ($sha): reusing $out"
    BASELINE=$out
    return 0
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/flowgate-baseline.XXXXXX")
  started=$(date +%s)
  log "building the baseline $ref ($sha) in a throwaway worktree under $dir (cold release build: several minutes)"
  (
    trap 'git -C "$ROOT" worktree remove --force "$dir/src" >/dev/null 2>&1 || true; git -C "$ROOT" worktree prune; rm -rf "$dir"' EXIT
    trap 'exit 130' INT TERM
    git -C "$ROOT" worktree add --detach --quiet "$dir/src" "$sha"
    cd "$dir/src"
    CARGO_TARGET_DIR="$dir/target" cargo build --release --locked -p flowgate
    mkdir -p "$(dirname "$out")"
    cp "$dir/target/release/flowgate" "$out.partial"
    mv "$out.partial" "$out"
  ) || die "could not build the baseline from $ref"
  log "baseline built in $(( $(date +%s) - started )) s: $out"
  BASELINE=$out
}

# describe_bin FILE: one line saying what a binary is (sha256 prefix, size, modification time).
describe_bin() {
  python3 - "$1" <<'EOF'
import hashlib, os, sys, time
p = sys.argv[1]
h = hashlib.sha256(open(p, "rb").read()).hexdigest()
st = os.stat(p)
print(f"sha256 {h[:16]}, {st.st_size / 1e6:.1f} MB, built {time.strftime('%Y-%m-%d %H:%M', time.localtime(st.st_mtime))}")
EOF
}

bench_compare() {
  BASELINE_COMMIT=""
  [ -z "$BASELINE_REF" ] || build_baseline_ref "$BASELINE_REF"
  # The new binary: --bin, or this tree's release build (built unless --no-build).
  bench_build "$BUILD" 0
  local new_bin=$BIN old_bin=$BASELINE new_desc old_desc new_commit=""
  [ -n "$BENCH_BIN" ] || new_commit=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || true)
  new_desc="$new_bin ($(describe_bin "$new_bin")${new_commit:+, tree at $new_commit})"
  old_desc="$old_bin ($(describe_bin "$old_bin")${BASELINE_COMMIT:+, commit $BASELINE_COMMIT})"
  [ "$ROUNDS" -ge 3 ] || log "warning: $ROUNDS round(s); use at least 3 for figures to decide on"
  bench_init
  # shellcheck disable=SC2034 # SERVER_PIN and CLIENT_PIN are read by bench-lib.sh's functions
  SERVER_PIN=() CLIENT_PIN=()
  local threads=2
  # shellcheck disable=SC2034
  if [ "$PIN" = split ]; then SERVER_PIN=(taskset -c 0); CLIENT_PIN=(taskset -c 1); threads=1; fi

  BENCH_ANSWER_MARK='Flowgate benchmark answer'
  local response="$BENCH_ANSWER_MARK: a short deterministic completion with twenty words so streams split evenly into chunks of text."
  local p_fast
  p_fast=$(free_port)
  log "old: $old_desc"
  log "new: $new_desc"
  log "starting the mock upstream on :$p_fast (the old binary's mock-upstream, for both)"
  BIN=$old_bin
  start_mock mock-fast "$p_fast" --response "$response"
  PID_FAST=$LAST_PID
  PID_NGINX="" NGINX_URL=""
  if [ "$NGINX" = 1 ]; then
    if [ "$PIN" = none ]; then start_nginx "$p_fast" "$NPROC"; else start_nginx "$p_fast" 1; fi
  fi
  cat >"$TMP/config.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:$p_fast/v1", api_key: unused, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
EOF
  ADMIN_KEY="fg-admin-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  local body='{"model":"bench","messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"Say something short."}],"max_tokens":64}'

  # start_gateway NAME: a `flowgate all` of $BIN with its own ports, data directory and key; sets
  # GW_PID, GW_URL and GW_KEY.
  start_gateway() {
    local name=$1 proxy api
    proxy=$(free_port); api=$(free_port)
    mkdir -p "$TMP/$name-data"
    log "starting gateway $name (flowgate all; proxy :$proxy, api :$api, audit $AUDIT)"
    start_flowgate "gateway-$name" all "$TMP/config.yaml" "http://127.0.0.1:$proxy/health" \
      FLOWGATE_DATA_DIR="$TMP/$name-data" ADMIN_API_KEY="$ADMIN_KEY" \
      FLOWGATE__PROXY__PORT="$proxy" FLOWGATE__API_SERVER__PORT="$api" \
      FLOWGATE__COMPLIANCE__PORT="$(free_port)" FLOWGATE__POLICY__PORT="$(free_port)" \
      FLOWGATE__AUDIT__ENABLED="$AUDIT_ENABLED"
    GW_PID=$LAST_PID
    wait_http "http://127.0.0.1:$api/health" "gateway-$name" "$GW_PID"
    GW_URL="http://127.0.0.1:$proxy/v1/chat/completions"
    GW_KEY=$(create_key "http://127.0.0.1:$api" "$ADMIN_KEY" '{"name":"bench"}') \
      || die "cannot create a virtual key on gateway $name; see $TMP/gateway-$name.log"
  }
  BIN=$old_bin
  start_gateway old
  local old_pid=$GW_PID old_url=$GW_URL old_key=$GW_KEY
  BIN=$new_bin
  start_gateway new
  local new_pid=$GW_PID new_url=$GW_URL new_key=$GW_KEY
  local direct_url="http://127.0.0.1:$p_fast/v1/chat/completions"
  check_chat "$direct_url" "$old_key" "$body"
  check_chat "$old_url" "$old_key" "$body"
  check_chat "$new_url" "$new_key" "$body"

  write_wrk_script
  warn_if_busy
  # gw NAME KIND ROUND: one wrk run through gateway NAME (old|new); KIND tput (c64), lat (c1) or
  # rate (bounded load); then waits for the gateway to be idle.
  gw() {
    local name=$1 kind=$2 round=$3 url=$old_url key=$old_key pid=$old_pid
    if [ "$name" = new ]; then url=$new_url; key=$new_key; pid=$new_pid; fi
    case "$kind" in
      tput) run_wrk "r$round-$kind-$name" "$url" "$threads" 64 "$DURATION" "$key" "$body" "$pid" "$PID_FAST" ;;
      lat) run_wrk "r$round-$kind-$name" "$url" 1 1 "$LAT_DURATION" "$key" "$body" "$pid" "$PID_FAST" ;;
      rate) run_wrk "r$round-$kind-$name" "$url" "$threads" 16 "$DURATION" "$key" "$body" "$pid" "$PID_FAST" 2 ;;
    esac
    wait_idle "r$round-$kind-$name" "$pid"
  }
  log "warmup (3 s each: direct, old, new)"
  run_wrk warmup-direct "$direct_url" "$threads" 64 3 "$old_key" "$body" "$PID_FAST" "$PID_FAST"
  [ -z "$NGINX_URL" ] || run_wrk warmup-nginx "$NGINX_URL" "$threads" 64 3 "$old_key" "$body" "$PID_NGINX" "$PID_FAST"
  run_wrk warmup-old "$old_url" "$threads" 64 3 "$old_key" "$body" "$old_pid" "$PID_FAST"
  wait_idle warmup-old "$old_pid"
  run_wrk warmup-new "$new_url" "$threads" 64 3 "$new_key" "$body" "$new_pid" "$PID_FAST"
  wait_idle warmup-new "$new_pid"
  local round order first second
  for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then first=old; second=new; else first=new; second=old; fi
    order="$first, $second"
    log "round $round of $ROUNDS ($order; c64 ${DURATION} s, c1 ${LAT_DURATION} s, bounded ${DURATION} s)"
    run_wrk "r$round-tput-direct" "$direct_url" "$threads" 64 "$DURATION" "$old_key" "$body" "$PID_FAST" "$PID_FAST"
    [ -z "$NGINX_URL" ] || run_wrk "r$round-tput-nginx" "$NGINX_URL" "$threads" 64 "$DURATION" "$old_key" "$body" "$PID_NGINX" "$PID_FAST"
    gw "$first" tput "$round"; gw "$second" tput "$round"
    run_wrk "r$round-lat-direct" "$direct_url" 1 1 "$LAT_DURATION" "$old_key" "$body" "$PID_FAST" "$PID_FAST"
    gw "$first" lat "$round"; gw "$second" lat "$round"
    gw "$first" rate "$round"; gw "$second" rate "$round"
    echo "$order" >"$TMP/r$round-order.txt"
  done
  kill -0 "$old_pid" 2>/dev/null || die "gateway old died during the benchmark; see $TMP/gateway-old.log"
  kill -0 "$new_pid" 2>/dev/null || die "gateway new died during the benchmark; see $TMP/gateway-new.log"
  local load_after
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  local old_warn new_warn
  old_warn=$(grep -c ' WARN\| ERROR' "$TMP/gateway-old.log" || true)
  new_warn=$(grep -c ' WARN\| ERROR' "$TMP/gateway-new.log" || true)

  python3 - "$TMP" "$JSON_OUT" "$ROUNDS" "$DURATION" "$LAT_DURATION" "$PIN" "$AUDIT" "$TOLERANCE" \
    "$LOAD_BEFORE" "$load_after" "$old_desc" "$new_desc" "$old_warn" "$new_warn" "$threads" <<'EOF'
import json, os, platform, statistics, sys
(tmp, json_out, rounds, duration, lat_duration, pin, audit, tolerance, load_before, load_after,
 old_desc, new_desc, old_warn, new_warn, threads) = sys.argv[1:16]
rounds, tol = int(rounds), float(tolerance) / 100
med = statistics.median
def load(name):
    return json.load(open(os.path.join(tmp, name + ".json")))
R = []
for r in range(1, rounds + 1):
    run = {"round": r, "order": open(os.path.join(tmp, f"r{r}-order.txt")).read().strip(),
           "direct": {"tput": load(f"r{r}-tput-direct"), "lat": load(f"r{r}-lat-direct")}}
    for b in ("old", "new"):
        t, l, q = load(f"r{r}-tput-{b}"), load(f"r{r}-lat-{b}"), load(f"r{r}-rate-{b}")
        it, iq = load(f"idle-r{r}-tput-{b}"), load(f"idle-r{r}-rate-{b}")
        run[b] = {
            "tput": t, "lat": l, "rate": q, "idle_after_tput": it, "idle_after_rate": iq,
            "rps_c64": t["rps"],
            "ratio_to_direct": t["rps"] / run["direct"]["tput"]["rps"] if run["direct"]["tput"]["rps"] else 0.0,
            "c1_p50_us": l["latency_us"]["p50"], "c1_p99_us": l["latency_us"]["p99"],
            "c1_added_p50_us": l["latency_us"]["p50"] - run["direct"]["lat"]["latency_us"]["p50"],
            "c1_added_p99_us": l["latency_us"]["p99"] - run["direct"]["lat"]["latency_us"]["p99"],
            "cpu_us_per_req_c64": (t["cpu_s"]["gateway"] + it["cpu_s"]) / t["requests"] * 1e6 if t["requests"] else None,
            "bounded_rps": q["rps"],
            "cpu_us_per_req_bounded": (q["cpu_s"]["gateway"] + iq["cpu_s"]) / q["requests"] * 1e6 if q["requests"] else None,
            "errors": sum(x["non_2xx"] + x["socket_errors"] for x in (t, l, q)),
        }
    o, n = run["old"], run["new"]
    nginx_file = os.path.join(tmp, f"r{r}-tput-nginx.json")
    if os.path.exists(nginx_file):
        run["nginx"] = {"tput": json.load(open(nginx_file))}
        for b in ("old", "new"):
            run[b]["ratio_to_nginx"] = run[b]["rps_c64"] / run["nginx"]["tput"]["rps"] if run["nginx"]["tput"]["rps"] else None
    run["new_over_old"] = {
        "throughput_c64": n["rps_c64"] / o["rps_c64"] if o["rps_c64"] else None,
        "ratio_to_direct": n["ratio_to_direct"] / o["ratio_to_direct"] if o["ratio_to_direct"] else None,
        "cpu_per_req_bounded": n["cpu_us_per_req_bounded"] / o["cpu_us_per_req_bounded"] if o["cpu_us_per_req_bounded"] else None,
        "cpu_per_req_c64": n["cpu_us_per_req_c64"] / o["cpu_us_per_req_c64"] if o["cpu_us_per_req_c64"] else None,
    }
    R.append(run)

def m(b, key):
    vals = [r[b][key] for r in R if r[b][key] is not None]
    return med(vals) if vals else None
def mr(key):
    vals = [r["new_over_old"][key] for r in R if r["new_over_old"][key] is not None]
    return med(vals) if vals else None
summary = {b: {k: m(b, k) for k in ("rps_c64", "ratio_to_direct", "c1_p50_us", "c1_p99_us", "c1_added_p50_us",
                                    "c1_added_p99_us", "cpu_us_per_req_c64", "bounded_rps", "cpu_us_per_req_bounded")}
           for b in ("old", "new")}
for b in ("old", "new"):
    summary[b]["errors"] = sum(r[b]["errors"] for r in R)
has_nginx = all("nginx" in r for r in R)
if has_nginx:
    summary["nginx"] = {"rps_c64": med(r["nginx"]["tput"]["rps"] for r in R),
                        "ratio_to_direct": med(r["nginx"]["tput"]["rps"] / r["direct"]["tput"]["rps"] for r in R)}
    for b in ("old", "new"):
        summary[b]["ratio_to_nginx"] = med(r[b]["ratio_to_nginx"] for r in R)
summary["direct"] = {"rps_c64": med(r["direct"]["tput"]["rps"] for r in R),
                     "c1_p50_us": med(r["direct"]["lat"]["latency_us"]["p50"] for r in R),
                     "c1_p99_us": med(r["direct"]["lat"]["latency_us"]["p99"] for r in R)}
ratios = {k: mr(k) for k in ("throughput_c64", "ratio_to_direct", "cpu_per_req_bounded", "cpu_per_req_c64")}

def table(head, rows):
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
    return [fmt(head), fmt(tuple("-" * x for x in w))] + [fmt(r) for r in rows]
f0 = lambda x: "-" if x is None else f"{x:,.0f}"
f1 = lambda x: "-" if x is None else f"{x:.1f}"
f3 = lambda x: "-" if x is None else f"{x:.3f}"
pct = lambda x: "-" if x is None else f"{x * 100:.1f}%"
ms = lambda us: "-" if us is None else f"{us / 1000:.3f}"
out = ["per round: c64 throughput, and gateway CPU per request at the bounded load (new/old: the two runs of that round)", ""]
rows = []
for r in R:
    o, n, q = r["old"], r["new"], r["new_over_old"]
    rows.append((str(r["round"]), r["order"], f0(r["direct"]["tput"]["rps"]),
                 f"{f0(o['rps_c64'])} ({pct(o['ratio_to_direct'])})", f"{f0(n['rps_c64'])} ({pct(n['ratio_to_direct'])})",
                 f3(q["throughput_c64"]),
                 f"{f1(o['cpu_us_per_req_bounded'])} @ {f0(o['bounded_rps'])}", f"{f1(n['cpu_us_per_req_bounded'])} @ {f0(n['bounded_rps'])}",
                 f3(q["cpu_per_req_bounded"])))
so, sn = summary["old"], summary["new"]
rows.append(("median", "", f0(summary["direct"]["rps_c64"]),
             f"{f0(so['rps_c64'])} ({pct(so['ratio_to_direct'])})", f"{f0(sn['rps_c64'])} ({pct(sn['ratio_to_direct'])})",
             f3(ratios["throughput_c64"]),
             f"{f1(so['cpu_us_per_req_bounded'])} @ {f0(so['bounded_rps'])}", f"{f1(sn['cpu_us_per_req_bounded'])} @ {f0(sn['bounded_rps'])}",
             f3(ratios["cpu_per_req_bounded"])))
out += table(("round", "order", "direct c64", "old c64 req/s (of direct)", "new c64 req/s (of direct)", "new/old",
              "old CPU us/req @ req/s", "new CPU us/req @ req/s", "new/old CPU"), rows)
out += ["", "summary (medians over rounds; new/old = median of the per-round ratios)", ""]
d = summary["direct"]
rows = [
    ("throughput c64 (req/s)", f0(d["rps_c64"]), f0(so["rps_c64"]), f0(sn["rps_c64"]), f3(ratios["throughput_c64"])),
    ("throughput c64, ratio to direct", "", pct(so["ratio_to_direct"]), pct(sn["ratio_to_direct"]), f3(ratios["ratio_to_direct"])),
] + ([
    ("nginx bare proxy c64 (req/s, of direct)", f"{f0(summary['nginx']['rps_c64'])} ({pct(summary['nginx']['ratio_to_direct'])})", "", "", ""),
    ("throughput c64, ratio to nginx", "", f3(so["ratio_to_nginx"]), f3(sn["ratio_to_nginx"]), ""),
] if has_nginx else []) + [
    ("latency c1 p50 (ms)", ms(d["c1_p50_us"]), ms(so["c1_p50_us"]), ms(sn["c1_p50_us"]), f3(sn["c1_p50_us"] / so["c1_p50_us"]) if so["c1_p50_us"] else "-"),
    ("latency c1 p99 (ms)", ms(d["c1_p99_us"]), ms(so["c1_p99_us"]), ms(sn["c1_p99_us"]), f3(sn["c1_p99_us"] / so["c1_p99_us"]) if so["c1_p99_us"] else "-"),
    ("added latency c1 p50 / p99 (ms)", "", f"{ms(so['c1_added_p50_us'])} / {ms(so['c1_added_p99_us'])}",
     f"{ms(sn['c1_added_p50_us'])} / {ms(sn['c1_added_p99_us'])}", ""),
    ("gateway CPU us/req, bounded load", "", f1(so["cpu_us_per_req_bounded"]), f1(sn["cpu_us_per_req_bounded"]), f3(ratios["cpu_per_req_bounded"])),
    ("  (achieved req/s of the bounded load)", "", f0(so["bounded_rps"]), f0(sn["bounded_rps"]), ""),
    ("gateway CPU us/req, c64", "", f1(so["cpu_us_per_req_c64"]), f1(sn["cpu_us_per_req_c64"]), f3(ratios["cpu_per_req_c64"])),
    ("errors (non-2xx + socket), all runs", "", str(so["errors"]), str(sn["errors"]), ""),
]
out += table(("metric", "direct", "old", "new", "new/old"), rows)
out.append("CPU us/req: the gateway process's CPU time during the run plus what it used after it until idle (deferred work), per request")
verdicts = [
    {"name": f"throughput c64: new/old >= {1 - tol:.2f} (median of rounds)", "value": ratios["throughput_c64"],
     "pass": ratios["throughput_c64"] is not None and ratios["throughput_c64"] >= 1 - tol},
    {"name": f"gateway CPU per request at bounded load: new/old <= {1 + tol:.2f} (median of rounds)", "value": ratios["cpu_per_req_bounded"],
     "pass": ratios["cpu_per_req_bounded"] is not None and ratios["cpu_per_req_bounded"] <= 1 + tol},
    {"name": "no errors in either build's runs", "pass": so["errors"] == 0 and sn["errors"] == 0},
]
out.append("")
out += [f"{'PASS' if v['pass'] else 'FAIL'}  {v['name']}" + (f": {v['value']:.3f}" if v.get("value") is not None else "") for v in verdicts]
cpu = "unknown"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
out += ["",
        f"old: {old_desc}", f"new: {new_desc}",
        f"machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}; pinning: {pin}; {rounds} rounds; "
        f"c64 and bounded runs {duration} s, c1 runs {lat_duration} s; audit trail {audit}",
        f"load average (1/5/15 min) before: {load_before}, after: {load_after}"]
if int(old_warn) or int(new_warn):
    out.append(f"warnings/errors in the gateways' logs: old {old_warn}, new {new_warn} (kept with --keep)")
if rounds < 3:
    out.append(f"only {rounds} round(s): a smoke test, not figures to decide on")
print("\n".join(out))
if json_out:
    result = {
        "mode": "compare",
        "machine": {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "pin": pin,
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {"audit": audit, "rounds": rounds, "duration_s": int(duration), "latency_duration_s": int(lat_duration),
                     "wrk_threads_c64": int(threads), "bounded_load": {"connections": 16, "delay_ms": 2}, "tolerance": tol},
        "binaries": {"old": old_desc, "new": new_desc},
        "rounds": R,
        "summary": summary,
        "new_over_old": ratios,
        "new_over_old_per_round": [r["new_over_old"] for r in R],
        "verdicts": verdicts,
        "log_warnings": {"old": int(old_warn), "new": int(new_warn)},
    }
    with open(json_out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nresults written to {json_out}")
EOF
}
