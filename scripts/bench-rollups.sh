#!/usr/bin/env bash
# The spend report (/api/analytics/spend) over many audit records, without and with the worker's
# hourly rollups. Not run in CI: it loads ROWS synthetic records (default 10 million, spread over
# DAYS days; 200 keys in 20 tenants, each key using two of 12 models) into a throwaway PostgreSQL
# database, times the report from the raw records, lets a
# worker roll them up, and times it again.
#
#   scripts/bench-rollups.sh                 # 10 million records
#   ROWS=200000 scripts/bench-rollups.sh     # a quick run
#
# Needs: psql, curl, a PostgreSQL server (PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/test)
# and the binary (FLOWGATE_BIN, default target/release/flowgate, else target/debug/flowgate).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-10000000}"
DAYS="${DAYS:-30}"
RUNS="${RUNS:-5}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
BIN="${FLOWGATE_BIN:-target/release/flowgate}"
[[ -x "$BIN" ]] || BIN=target/debug/flowgate
[[ -x "$BIN" ]] || { echo "build the binary first: cargo build --release -p flowgate" >&2; exit 1; }

DB="flowgate_bench_rollups_$$"
BASE_URL="${PG_ADMIN_URL%/*}"
DATABASE_URL="$BASE_URL/$DB"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export DATABASE_URL FLOWGATE_DATA_DIR="$WORK"
export ADMIN_API_KEY="bench-admin-key-0123456789abcdef"
export FLOWGATE__SECURITY__KEY_HASH_SECRET="bench-hash-secret-0123456789abcdef"
export FLOWGATE__SECURITY__INTERNAL_TOKEN="bench-internal-token-0123456789"
export LOG_LEVEL=warn
API_PORT="${API_PORT:-17878}"
WORKER_PORT="${WORKER_PORT:-17879}"

psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
"$BIN" migrate >/dev/null

echo "loading $ROWS audit records over $DAYS days..."
start=$(date +%s)
psql -q "$DATABASE_URL" <<SQL
INSERT INTO audit_records (request_id, ts, tenant_id, key_id, route, model_requested, model_used, status,
                           prompt_tokens, completion_tokens, cost_nanos)
SELECT 'req-' || g,
       (extract(epoch FROM now()) * 1000)::bigint - ($DAYS::bigint * 86400000 * g) / $ROWS,
       'tenant-' || (g % 200 % 20),
       'key-' || (g % 200),
       '/v1/chat/completions',
       'model-' || (g % 200 % 6 + g / 1000 % 2),
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'model-' || (g % 200 % 6 + g / 1000 % 2) END,
       CASE WHEN g % 50 = 0 THEN 429 ELSE 200 END,
       100 + g % 900, 20 + g % 300, 1000 + g % 100000
FROM generate_series(1, $ROWS) AS g;
ANALYZE audit_records;
SQL
echo "loaded in $(( $(date +%s) - start )) s"

FLOWGATE__API_SERVER__PORT="$API_PORT" "$BIN" api-server >"$WORK/api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 0.2; done

time_report() {
  local label=$1 total=0 t
  for query in "group_by=model" "group_by=tenant" "group_by=day" "group_by=key&tenant_id=tenant-3"; do
    local best=""
    for _ in $(seq "$RUNS"); do
      t=$(curl -sf -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $ADMIN_API_KEY" \
        "http://127.0.0.1:$API_PORT/api/analytics/spend?$query")
      best=$(python3 -c "print(min(float('$t'), float('${best:-1e9}')))")
    done
    printf '%-12s %-32s best of %s: %8.1f ms\n' "$label" "$query" "$RUNS" "$(python3 -c "print($best * 1000)")"
  done
}

time_report "raw records"

echo "rolling up (a worker, until the rollups reach the current hour)..."
start=$(date +%s)
FLOWGATE__WORKER__PORT="$WORKER_PORT" FLOWGATE__WORKER__INTERVAL_SECS=1 "$BIN" worker >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
current_hour=$(( $(date +%s) / 3600 * 3600 * 1000 ))
until [[ "$(psql -tA "$DATABASE_URL" -c "SELECT COALESCE(MAX(value), 0) FROM worker_state WHERE name = 'rollups.until'")" -ge "$current_hour" ]]; do
  sleep 1
done
echo "rolled up in $(( $(date +%s) - start )) s: $(psql -tA "$DATABASE_URL" -c 'SELECT COUNT(*) FROM spend_rollups') rollup rows"

time_report "rollups"
