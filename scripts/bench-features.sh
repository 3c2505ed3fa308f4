#!/usr/bin/env bash
# Flowgate feature-cost benchmark: what the audit trail, key limits/budgets and a guardrail cost
# on the data-plane benchmark's load, each measured against the same gateway without it, in one
# run, runs interleaved over several rounds (medians), with PASS/FAIL against the targets in
# docs/benchmarks.md:
#
#   audit      wrk -c64 through `flowgate all` with the audit trail on vs an identical gateway with
#              it off (the same key, no limits): throughput within 10 %.
#   limits     wrk -c64 with a key that has rpm, tpm, requests per hour, max parallel requests and a
#              budget, in a tenant with its own budget, on a priced model, vs a key without any of
#              them, on the same gateway: throughput within 10 % (on both gateways).
#   guardrail  wrk -c1 with a 4 KB prompt (one email and one phone number in it) and a key whose
#              policy makes `pii-redact` mandatory vs a key without guardrails: added p50 <= 1 ms,
#              through a separate `flowgate proxy` process that reaches compliance and policy over
#              gRPC (and, for reference, through `flowgate all`, where they are in-process).
#
# usage: scripts/bench-features.sh [--json FILE] [--duration SECS] [--rounds N] [--only GROUPS]
#                                  [--redis URL] [--postgres URL] [--no-build] [--keep]
#
#   --json FILE       also write the results as JSON to FILE
#   --duration SECS   length of each wrk run (default 5)
#   --rounds N        rounds of interleaved runs; figures are medians over rounds (default 5)
#   --only GROUPS     run only these groups, comma-separated: audit, limits, guardrail (default all)
#   --redis URL       give every gateway process this Redis (rate limits, budgets and key caches
#                     then go through it, as with several proxy replicas); default: none (in-process)
#   --postgres URL    PostgreSQL server to use instead of SQLite (a database there the user may
#                     create databases in, e.g. postgres://postgres@127.0.0.1:5432/test): each
#                     gateway gets a throwaway database, dropped at the end
#   --no-build        use the binaries already built (do not run cargo)
#   --keep            keep the temporary directory (logs, config, raw results)
#
# Needs: cargo, curl, python3, wrk (installed with apt-get when missing). Respects CARGO_TARGET_DIR.
# Exits non-zero only when the setup fails, not when a target is missed. Method and recorded
# results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_NAME=bench-features
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

JSON_OUT=""
DURATION=5
ROUNDS=5
REDIS=""
POSTGRES=""
ONLY=audit,limits,guardrail
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --json) JSON_OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --redis) REDIS=$2; shift 2 ;;
    --postgres) POSTGRES=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
if [ -n "$JSON_OUT" ]; then
  case "$JSON_OUT" in /*) ;; *) JSON_OUT="$ROOT/$JSON_OUT" ;; esac
fi
for group in ${ONLY//,/ }; do
  case "$group" in audit|limits|guardrail) ;; *) die "--only: unknown group $group (audit, limits, guardrail)" ;; esac
done

bench_tools wrk curl python3
bench_build "$BUILD" 0
bench_init
SERVER_PIN=()
CLIENT_PIN=()

BENCH_ANSWER_MARK='Flowgate benchmark answer'
RESPONSE="$BENCH_ANSWER_MARK: a short deterministic completion with twenty words so streams split evenly into chunks of text."
P_FAST=$(free_port)
log "starting the mock upstream on :$P_FAST"
start_mock mock-fast "$P_FAST" --response "$RESPONSE"
PID_FAST=$LAST_PID

# Priced, so that budgets reserve and settle real amounts.
cat >"$TMP/config.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: "http://127.0.0.1:$P_FAST/v1"
      api_key: unused
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
EOF
ADMIN_KEY="fg-admin-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
HASH_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
REDIS_ENV=()
[ -z "$REDIS" ] || REDIS_ENV=(REDIS_URL="$REDIS")
# One internal token for every process: proxy S calls A's services over gRPC with it.
COMMON_ENV=(ADMIN_API_KEY="$ADMIN_KEY" FLOWGATE__SECURITY__KEY_HASH_SECRET="$HASH_SECRET"
  FLOWGATE__SECURITY__INTERNAL_TOKEN="bench-internal-token-$$-0123456789" "${REDIS_ENV[@]}")
# With --postgres: one throwaway database per gateway, dropped when the run ends.
PG_DATABASES=()
drop_databases() {
  local db
  for db in "${PG_DATABASES[@]}"; do psql -q "$POSTGRES" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
if [ -n "$POSTGRES" ]; then
  bench_tools psql
  trap 'bench_cleanup; drop_databases' EXIT
fi
# database_env NAME: sets DATABASE_ARG to DATABASE_URL=... for gateway NAME (empty with SQLite).
database_env() {
  DATABASE_ARG=""
  [ -n "$POSTGRES" ] || return 0
  local db
  db="flowgate_bench_${1,,}_$$"
  psql -q "$POSTGRES" -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db on $POSTGRES"
  PG_DATABASES+=("$db")
  DATABASE_ARG="DATABASE_URL=${POSTGRES%/*}/$db"
}

# start_all NAME AUDIT(true|false): a `flowgate all` with its own data directory, ports and Redis
# prefix; sets <NAME>_PID, <NAME>_PROXY, <NAME>_API, <NAME>_COMPLIANCE, <NAME>_POLICY, <NAME>_DATA.
start_all() {
  local name=$1 audit=$2 proxy api compliance policy
  proxy=$(free_port); api=$(free_port); compliance=$(free_port); policy=$(free_port)
  mkdir -p "$TMP/$name-data"
  database_env "$name"
  printf -v "${name}_DATABASE" %s "$DATABASE_ARG"
  start_flowgate "$name" all "$TMP/config.yaml" "http://127.0.0.1:$proxy/health" "${COMMON_ENV[@]}" ${DATABASE_ARG:+"$DATABASE_ARG"} \
    FLOWGATE_DATA_DIR="$TMP/$name-data" FLOWGATE__REDIS__PREFIX="bench-$name-$$:" FLOWGATE__AUDIT__ENABLED="$audit" \
    FLOWGATE__PROXY__PORT="$proxy" FLOWGATE__API_SERVER__PORT="$api" \
    FLOWGATE__COMPLIANCE__PORT="$compliance" FLOWGATE__POLICY__PORT="$policy"
  wait_http "http://127.0.0.1:$api/health" "$name" "$LAST_PID"
  printf -v "${name}_PID" %s "$LAST_PID"
  printf -v "${name}_PROXY" %s "$proxy"
  printf -v "${name}_API" %s "$api"
  printf -v "${name}_COMPLIANCE" %s "$compliance"
  printf -v "${name}_POLICY" %s "$policy"
  printf -v "${name}_DATA" %s "$TMP/$name-data"
}
log "starting gateway A (flowgate all, audit on) and gateway B (flowgate all, audit off)"
start_all A true
start_all B false
# S: a proxy-mode process using A's api-server, compliance and policy services over gRPC and
# A's database (the same SQLite file), as a scaled-out proxy replica would.
S_PROXY=$(free_port)
log "starting proxy S (flowgate proxy on :$S_PROXY, services of A over gRPC)"
start_flowgate S proxy "$TMP/config.yaml" "http://127.0.0.1:$S_PROXY/health" "${COMMON_ENV[@]}" ${A_DATABASE:+"$A_DATABASE"} \
  FLOWGATE_DATA_DIR="$A_DATA" FLOWGATE__REDIS__PREFIX="bench-A-$$:" FLOWGATE__PROXY__PORT="$S_PROXY" \
  FLOWGATE__PROXY__API_SERVER_URL="http://127.0.0.1:$A_API" \
  FLOWGATE__PROXY__COMPLIANCE_URL="http://127.0.0.1:$A_COMPLIANCE" \
  FLOWGATE__PROXY__POLICY_URL="http://127.0.0.1:$A_POLICY"
S_PID=$LAST_PID

# keys_for NAME: creates the plain, limited and guarded keys on gateway NAME's api-server.
LIMITS='"rpm": 100000000, "tpm": 4000000000, "requests_per_hour": 4000000000, "max_parallel_requests": 10000, "budget_usd": 1000000, "budget_period": "monthly"'
keys_for() {
  local name=$1 api tenant
  api="http://127.0.0.1:$(eval echo "\$${name}_API")"
  tenant=$(curl -fsS -X POST "$api/api/enterprise/tenants" -H "Authorization: Bearer $ADMIN_KEY" \
    -H 'content-type: application/json' -d '{"name": "bench-limited", "budget_usd": 1000000, "budget_period": "monthly"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || die "cannot create a tenant on $name; see $TMP/$name.log"
  printf -v "${name}_KEY_PLAIN" %s "$(create_key "$api" "$ADMIN_KEY" '{"name": "plain"}')" \
    || die "cannot create a key on $name"
  printf -v "${name}_KEY_LIMITED" %s \
    "$(create_key "$api" "$ADMIN_KEY" "{\"name\": \"limited\", \"tenant_id\": \"$tenant\", $LIMITS}")" \
    || die "cannot create the limited key on $name"
  printf -v "${name}_KEY_GUARDED" %s \
    "$(create_key "$api" "$ADMIN_KEY" '{"name": "guarded", "guardrail_policy": {"mandatory_guardrails": ["pii-redact"]}}')" \
    || die "cannot create the guarded key on $name"
}
keys_for A
keys_for B

BODY='{"model":"bench","messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"Say something short."}],"max_tokens":64}'
# A 4 KB prompt of ordinary prose with one email address and one phone number in it.
BODY_4K=$(python3 - <<'EOF'
import json
sentences = [
    "Please summarise the quarterly report for the operations team and list the three main risks.",
    "The warehouse in Rotterdam shipped 1,240 pallets in March, up from 1,105 in February.",
    "Customer satisfaction scores improved after the new returns process went live in the spring.",
    "Two suppliers missed their delivery windows and one contract is up for renewal next month.",
    "The finance team asks for a short paragraph on cash flow and the effect of the late invoices.",
]
text = "Contact the account owner at jordan.miller@example.com or +1 415 555 0134 with questions. "
i = 0
while len(text) < 4096:
    text += sentences[i % len(sentences)] + " "
    i += 1
text = text[:4096]
print(json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}], "max_tokens": 64}))
EOF
)
# shellcheck disable=SC2153 # A_PROXY, B_PROXY, A_PID, B_PID: set by start_all (printf -v)
URL_A="http://127.0.0.1:$A_PROXY/v1/chat/completions"
# shellcheck disable=SC2153
URL_B="http://127.0.0.1:$B_PROXY/v1/chat/completions"
URL_S="http://127.0.0.1:$S_PROXY/v1/chat/completions"
for check in "$URL_A $A_KEY_PLAIN" "$URL_A $A_KEY_LIMITED" "$URL_A $A_KEY_GUARDED" "$URL_B $B_KEY_PLAIN" \
  "$URL_B $B_KEY_LIMITED" "$URL_S $A_KEY_PLAIN" "$URL_S $A_KEY_GUARDED"; do
  # shellcheck disable=SC2086
  set -- $check
  check_chat "$1" "$2" "$BODY"
  check_chat "$1" "$2" "$BODY_4K"
done
write_wrk_script
warn_if_busy

# One scenario = NAME URL CONNECTIONS KEY BODY SERVER_PID.
scenario() {
  local name=$1 url=$2 conns=$3 key=$4 body=$5 pid=$6 delay=$7 round=$8 threads=2
  [ "$conns" -gt 1 ] || threads=1
  run_wrk "$name-r$round" "$url" "$threads" "$conns" "$DURATION" "$key" "$body" "$pid" "$PID_FAST" "$delay"
  wait_idle "$name-r$round" "$pid"
}
# The groups: "audit" compares audit-on with audit-off; "limits" compares limits-on with
# audit-on (so it runs both) and limits-on-b with limits-off-b; "guardrail" the *-guarded runs
# with the *-plain ones.
wanted() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# Each entry: name, URL, connections, key variable, body variable, server pid variable, delay (ms)
# before each request per connection (0: as fast as possible). The "-rate" runs offer the same
# bounded load (16 connections, 2 ms apart: up to ~8,000 requests/s) to both sides, so that the
# gateway's CPU time per request compares like with like.
SCENARIOS=()
if wanted audit || wanted limits; then SCENARIOS+=("audit-on $URL_A 64 A_KEY_PLAIN BODY A_PID 0"); fi
if wanted audit; then
  SCENARIOS+=("audit-off $URL_B 64 B_KEY_PLAIN BODY B_PID 0"
    "audit-on-rate $URL_A 16 A_KEY_PLAIN BODY A_PID 2"
    "audit-off-rate $URL_B 16 B_KEY_PLAIN BODY B_PID 2")
fi
if wanted limits; then
  SCENARIOS+=("limits-on $URL_A 64 A_KEY_LIMITED BODY A_PID 0"
    "limits-off-b $URL_B 64 B_KEY_PLAIN BODY B_PID 0"
    "limits-on-b $URL_B 64 B_KEY_LIMITED BODY B_PID 0"
    "limits-off-rate $URL_B 16 B_KEY_PLAIN BODY B_PID 2"
    "limits-on-rate $URL_B 16 B_KEY_LIMITED BODY B_PID 2")
fi
if wanted guardrail; then
  SCENARIOS+=("split-plain $URL_S 1 A_KEY_PLAIN BODY_4K S_PID 0"
    "split-guarded $URL_S 1 A_KEY_GUARDED BODY_4K S_PID 0"
    "all-plain $URL_A 1 A_KEY_PLAIN BODY_4K A_PID 0"
    "all-guarded $URL_A 1 A_KEY_GUARDED BODY_4K A_PID 0")
fi
log "warmup (3 s per gateway)"
# shellcheck disable=SC2153
run_wrk warmup-A "$URL_A" 2 64 3 "$A_KEY_PLAIN" "$BODY" "$A_PID" "$PID_FAST"
# shellcheck disable=SC2153
run_wrk warmup-B "$URL_B" 2 64 3 "$B_KEY_PLAIN" "$BODY" "$B_PID" "$PID_FAST"
run_wrk warmup-S "$URL_S" 2 64 3 "$A_KEY_GUARDED" "$BODY_4K" "$S_PID" "$PID_FAST"
wait_idle warmup-A "$A_PID"
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS (${DURATION} s per run)"
  order=("${SCENARIOS[@]}")
  # Every other round runs the scenarios in reverse, so that drift in the machine's speed during
  # the run does not favour the ones that come first.
  if [ $((round % 2)) = 0 ]; then
    order=(); for ((i = ${#SCENARIOS[@]} - 1; i >= 0; i--)); do order+=("${SCENARIOS[$i]}"); done
  fi
  for entry in "${order[@]}"; do
    # shellcheck disable=SC2086
    set -- $entry
    scenario "$1" "$2" "$3" "${!4}" "${!5}" "${!6}" "$7" "$round"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The guarded requests were redacted: the audit trail of A (written by A and S) has pii-redact actions.
if wanted guardrail; then
REDACTED=$(curl -fsS "http://127.0.0.1:$A_API/api/audit?guardrail_action=redact&limit=1" -H "Authorization: Bearer $ADMIN_KEY" \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))' || echo 0)
[ "$REDACTED" -ge 1 ] || die "no audit record of A shows a redaction: the guarded key did not run pii-redact"
fi

python3 - "$TMP" "$JSON_OUT" "$ROUNDS" "$DURATION" "$LOAD_BEFORE" "$LOAD_AFTER" "${REDIS:+redis}" "$ONLY" "${POSTGRES:+PostgreSQL}" <<'EOF'
import json, os, platform, statistics, sys
tmp, json_out, rounds, duration, load_before, load_after, redis, only, postgres = sys.argv[1:10]
database = postgres or "SQLite"
rounds = int(rounds)
groups = set(only.split(","))
def ran(name):
    return os.path.exists(os.path.join(tmp, f"{name}-r1.json"))
def runs(name):
    return [json.load(open(os.path.join(tmp, f"{name}-r{r}.json"))) for r in range(1, rounds + 1)]
def rps(name):
    return statistics.median(r["rps"] for r in runs(name))
def p50(name):
    return statistics.median(r["latency_us"]["p50"] for r in runs(name))
def p99(name):
    return statistics.median(r["latency_us"]["p99"] for r in runs(name))
def errors(*names):
    return sum(r["non_2xx"] + r["socket_errors"] for n in names for r in runs(n))
def cpu_per_req(name):
    rs = runs(name)
    return sum(r["cpu_s"]["gateway"] for r in rs) / sum(r["requests"] for r in rs) * 1e6
def idle_cpu_per_req(name):
    rs = runs(name)
    idle = [json.load(open(os.path.join(tmp, f"idle-{name}-r{r}.json"))) for r in range(1, rounds + 1)]
    return sum(i["cpu_s"] for i in idle) / sum(r["requests"] for r in rs) * 1e6

targets, summary, ratios, added = [], [], {}, {}
def compare_rps(key, label, on, off, rate_on=None, rate_off=None):
    # The machine's speed drifts between runs; runs of one round are next to each other, so the
    # ratio is taken per round and the median of those ratios is the figure.
    per_round = [a["rps"] / b["rps"] for a, b in zip(runs(on), runs(off))]
    ratio = statistics.median(per_round)
    entry = {"throughput": ratio, "throughput_per_round": per_round}
    text = f"{label}: {ratio * 100:.1f}% of the throughput without (rounds: {', '.join(f'{r * 100:.0f}%' for r in per_round)})"
    if rate_on and ran(rate_on):
        cost_on = cpu_per_req(rate_on) + idle_cpu_per_req(rate_on)
        cost_off = cpu_per_req(rate_off) + idle_cpu_per_req(rate_off)
        entry.update({"cpu_us_per_request_bounded_load": {"on": cost_on, "off": cost_off}})
        text += (f"; at a bounded {rps(rate_on):.0f} req/s the gateway uses {cost_on:.1f} vs {cost_off:.1f} us of CPU"
                 f" per request ({(cost_on / cost_off - 1) * 100:+.1f}%)")
    ratios[key] = entry
    targets.append({"name": f"{label}: throughput c64 >= 90% of without", "value": ratio, "limit": 0.90,
                    "pass": ratio >= 0.90 and errors(on, off) == 0})
    summary.append(text)
def compare_p50(key, label, on, off):
    delta = p50(on) - p50(off)
    added[key] = delta
    targets.append({"name": f"{label}: added p50 <= 1 ms", "value_us": delta, "limit_us": 1000,
                    "pass": delta <= 1000 and errors(on, off) == 0})
    summary.append(f"{label}: p50 {delta / 1000:+.3f} ms, p99 {(p99(on) - p99(off)) / 1000:+.3f} ms")
if "audit" in groups:
    compare_rps("audit", "audit trail on vs off", "audit-on", "audit-off", "audit-on-rate", "audit-off-rate")
if "limits" in groups:
    compare_rps("limits_audit_on", "limits and budgets on vs off (audit on)", "limits-on", "audit-on")
    compare_rps("limits_audit_off", "limits and budgets on vs off (audit off)", "limits-on-b", "limits-off-b",
                "limits-on-rate", "limits-off-rate")
if "guardrail" in groups:
    compare_p50("split", "pii-redact, 4 KB prompt, proxy -> compliance over gRPC", "split-guarded", "split-plain")
    compare_p50("all", "pii-redact, 4 KB prompt, flowgate all (in-process)", "all-guarded", "all-plain")
def row(label, name, unit):
    rs = runs(name)
    each = ", ".join(f"{r['rps']:.0f}" if unit == "rps" else f"{r['latency_us']['p50']}" for r in rs)
    value = f"{rps(name):.0f} req/s" if unit == "rps" else f"p50 {p50(name) / 1000:.3f} ms, p99 {p99(name) / 1000:.3f} ms"
    return (label, value, each, f"{cpu_per_req(name):.1f} (+{idle_cpu_per_req(name):.1f} after)")
LABELS = [
    ("c64, audit on, plain key (A)", "audit-on", "rps"),
    ("c64, audit off, plain key (B)", "audit-off", "rps"),
    ("c64, audit on, limited key (A)", "limits-on", "rps"),
    ("c64, audit off, plain key (B, again)", "limits-off-b", "rps"),
    ("c64, audit off, limited key (B)", "limits-on-b", "rps"),
    ("bounded load, audit on, plain key (A)", "audit-on-rate", "rps"),
    ("bounded load, audit off, plain key (B)", "audit-off-rate", "rps"),
    ("bounded load, audit off, plain key (B, again)", "limits-off-rate", "rps"),
    ("bounded load, audit off, limited key (B)", "limits-on-rate", "rps"),
    ("c1 4 KB, split proxy, plain key", "split-plain", "lat"),
    ("c1 4 KB, split proxy, pii-redact key", "split-guarded", "lat"),
    ("c1 4 KB, all, plain key", "all-plain", "lat"),
    ("c1 4 KB, all, pii-redact key", "all-guarded", "lat"),
]
rows = [row(*entry) for entry in LABELS if ran(entry[1])]
head = ("scenario", "median", "each round (req/s or p50 us)", "gateway CPU us/request")
w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
out = [fmt(head), fmt(tuple("-" * x for x in w))] + [fmt(r) for r in rows] + [""] + summary + [""]
out += [f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}" for t in targets]
cpu = "unknown"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
out.append("")
out.append(f"machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}; {rounds} rounds of {duration} s runs; "
           f"shared state: {'Redis' if redis else 'in-process'}; database: {database}")
out.append(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
print("\n".join(out))
if json_out:
    result = {
        "machine": {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {"rounds": rounds, "duration_s": int(duration), "groups": sorted(groups), "shared_state": "redis" if redis else "in-process", "database": database},
        "runs": {entry[1]: runs(entry[1]) for entry in LABELS if ran(entry[1])},
        "ratios": ratios,
        "guardrail_added_p50_us": added,
        "targets": targets,
    }
    with open(json_out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nresults written to {json_out}")
EOF
