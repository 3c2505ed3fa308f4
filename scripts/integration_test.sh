#!/usr/bin/env bash
# Post-deploy integration check for a running Flowgate gateway, with bash and curl only.
#
#   FLOWGATE_URL=https://gateway.example.com VIRTUAL_KEY=sk-fg-... scripts/integration_test.sh
#
# Environment:
#   FLOWGATE_URL      the gateway's base URL: the proxy (http://127.0.0.1:7775) or the public URL
#                     behind Caddy / the ingress (https://gateway.example.com). SMARTFLOW_HOST is
#                     accepted as an alias. A trailing /v1 is ignored; without a scheme, http:// is
#                     assumed for host:port and https:// for a bare host name.
#   VIRTUAL_KEY       a virtual key (sk-fg-...) allowed to use FLOWGATE_MODEL.
#   FLOWGATE_MODEL    the model to call (default: the first model /v1/models lists for the key).
#   ADMIN_API_KEY     optional: also check the management API (create a key, use it, revoke it,
#                     see 401). The key it creates expires after an hour even if revoking fails.
#   FLOWGATE_API_URL  base URL of the management API (default: FLOWGATE_URL, which is right behind
#                     Caddy; set it to http://127.0.0.1:7778 when FLOWGATE_URL is the proxy port).
#   FLOWGATE_TIMEOUT  seconds per request (default 60).
#   FLOWGATE_INSECURE=1  accept a self-signed TLS certificate.
#
# Prints one PASS/FAIL/SKIP line per check and "N passed, M failed"; exits 0 when nothing failed,
# 1 when a check failed, 2 when the environment is incomplete. JSON is read with python3 when it
# is installed, else with grep/sed (FLOWGATE_JSON_PARSER=grep forces the latter).
set -uo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
esac

for tool in curl sed grep; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "integration_test.sh: $tool is required" >&2
    exit 2
  fi
done

normalise_url() {
  local url="${1%/}"
  url="${url%/v1}"
  url="${url%/}"
  if [[ -n "$url" && "$url" != *://* ]]; then
    if [[ "$url" == *:[0-9]* ]]; then url="http://$url"; else url="https://$url"; fi
  fi
  printf '%s' "$url"
}

BASE="$(normalise_url "${FLOWGATE_URL:-${SMARTFLOW_HOST:-}}")"
KEY="${VIRTUAL_KEY:-}"
ADMIN_KEY="${ADMIN_API_KEY:-}"
API_BASE="$(normalise_url "${FLOWGATE_API_URL:-$BASE}")"
MODEL="${FLOWGATE_MODEL:-}"
TIMEOUT="${FLOWGATE_TIMEOUT:-60}"

missing=()
[[ -n "$BASE" ]] || missing+=("FLOWGATE_URL (or SMARTFLOW_HOST)")
[[ -n "$KEY" ]] || missing+=("VIRTUAL_KEY")
if ((${#missing[@]})); then
  echo "integration_test.sh: set ${missing[*]}" >&2
  echo "  e.g. FLOWGATE_URL=http://127.0.0.1:7775 VIRTUAL_KEY=sk-fg-... $0" >&2
  exit 2
fi

PARSER="${FLOWGATE_JSON_PARSER:-}"
if [[ -z "$PARSER" ]]; then
  if command -v python3 >/dev/null 2>&1; then PARSER="python3"; else PARSER="grep"; fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowgate-it.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

CURL_OPTS=(-sS --max-time "$TIMEOUT" --connect-timeout 10)
[[ "${FLOWGATE_INSECURE:-0}" == 1 ]] && CURL_OPTS+=(-k)

PASSED=0
FAILED=0
pass() {
  PASSED=$((PASSED + 1))
  printf 'PASS  %s%s\n' "$1" "${2:+  ($2)}"
}
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL  %s: %s\n' "$1" "$2"
}
skip() { printf 'SKIP  %s: %s\n' "$1" "$2"; }

# request METHOD URL [curl args...]: sets STATUS, BODY (the body file), HEADERS (the header file)
# and CURL_ERROR. STATUS is 000 when no HTTP answer came back.
request() {
  local method="$1" url="$2"
  shift 2
  BODY="$WORK/body"
  HEADERS="$WORK/headers"
  : >"$BODY"
  : >"$HEADERS"
  STATUS="$(curl "${CURL_OPTS[@]}" -X "$method" -o "$BODY" -D "$HEADERS" -w '%{http_code}' "$@" "$url" 2>"$WORK/curl.err")"
  CURL_ERROR="$(tr '\n' ' ' <"$WORK/curl.err")"
  [[ -n "$STATUS" ]] || STATUS=000
}

# A short description of the last answer, for FAIL lines.
answer() {
  if [[ "$STATUS" == 000 ]]; then
    printf 'no answer (%s)' "${CURL_ERROR:-connection failed}"
  else
    printf 'HTTP %s %s' "$STATUS" "$(head -c 300 "$BODY" | tr '\n' ' ')"
  fi
}

header() { # header NAME: the value of a response header of the last request
  grep -i "^$1:" "$HEADERS" | tail -n 1 | sed 's/^[^:]*:[[:space:]]*//' | tr -d '\r'
}

# json_get PATH < file: the value at a dotted path (data.0.id); strings raw, the rest as JSON.
# Empty output when the path does not exist.
json_get() {
  if [[ "$PARSER" == python3 ]]; then
    python3 -c '
import json, sys
try:
    value = json.load(sys.stdin)
    for part in sys.argv[1].split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
except Exception:
    sys.exit(0)
if value is not None:
    print(value if isinstance(value, str) else json.dumps(value))
' "$1"
  else
    # Without python3: the first "name": "string" or "name": number for the path's last part.
    local name="${1##*.}"
    tr -d '\n' | grep -o "\"$name\"[[:space:]]*:[[:space:]]*\(\"\([^\"\\\\]\|\\\\.\)*\"\|[0-9.-]\+\)" | head -n 1 |
      sed "s/^\"$name\"[[:space:]]*:[[:space:]]*//; s/^\"//; s/\"\$//"
  fi
}

json_string() { # a JSON string literal for $1
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

auth=(-H "Authorization: Bearer $KEY")
json=(-H "Content-Type: application/json")

echo "Flowgate integration test (bash): $BASE"

# --- liveness and readiness -------------------------------------------------------------------
for path in /health /readyz; do
  name="${path#/}"
  request GET "$BASE$path"
  if [[ "$STATUS" == 200 ]]; then
    pass "$name" "HTTP 200, status $(json_get status <"$BODY")"
  else
    fail "$name" "$(answer)"
  fi
done

# --- models -----------------------------------------------------------------------------------
request GET "$BASE/v1/models" "${auth[@]}"
if [[ "$STATUS" == 200 ]]; then
  first="$(json_get data.0.id <"$BODY")"
  if [[ -z "$first" ]]; then
    fail models "the key may use no model: $(answer)"
  elif [[ -n "$MODEL" ]] && ! grep -qF "$(json_string "$MODEL")" "$BODY"; then
    fail models "FLOWGATE_MODEL=$MODEL is not among the key's models: $(answer)"
  else
    MODEL="${MODEL:-$first}"
    pass models "using $MODEL"
  fi
else
  fail models "$(answer)"
fi
MODEL="${MODEL:-unknown-model}"
MODEL_JSON="$(json_string "$MODEL")"

request GET "$BASE/v1/models" -H "Authorization: Bearer sk-fg-integration-test-not-a-key"
if [[ "$STATUS" == 401 ]]; then
  pass "bad key rejected" "HTTP 401"
else
  fail "bad key rejected" "expected 401, got $(answer)"
fi

# --- OpenAI format ----------------------------------------------------------------------------
CHAT_BODY="{\"model\": $MODEL_JSON, \"messages\": [{\"role\": \"user\", \"content\": \"Say hello in five words.\"}]"

# chat_check NAME KEY: a plain chat completion with KEY.
chat_check() {
  request POST "$BASE/v1/chat/completions" -H "Authorization: Bearer $2" "${json[@]}" -d "$CHAT_BODY}"
  local content
  content="$(json_get choices.0.message.content <"$BODY")"
  if [[ "$STATUS" == 200 && -n "$content" ]]; then
    pass "$1" "$(printf '%s' "$content" | head -c 60 | tr '\n' ' ')"
  else
    fail "$1" "$(answer)"
  fi
}
chat_check chat "$KEY"

request POST "$BASE/v1/chat/completions" "${auth[@]}" "${json[@]}" -N -d "$CHAT_BODY, \"stream\": true}"
events="$(grep -c '^data: {' "$BODY")"
deltas="$(grep '^data: {' "$BODY" | grep -c '"content"[[:space:]]*:[[:space:]]*"[^"]')"
if [[ "$STATUS" == 200 && "$(header content-type)" == text/event-stream* && "$deltas" -ge 1 ]] &&
  grep -q '^data: \[DONE\]' "$BODY"; then
  pass "chat stream" "$events events, $deltas with content, [DONE]"
else
  fail "chat stream" "$(answer) (content-type $(header content-type), $events events)"
fi

# --- Anthropic format -------------------------------------------------------------------------
MSG_BODY="{\"model\": $MODEL_JSON, \"max_tokens\": 32, \"messages\": [{\"role\": \"user\", \"content\": \"Say hello in five words.\"}]"
anthropic=(-H "x-api-key: $KEY" -H "anthropic-version: 2023-06-01")

request POST "$BASE/anthropic/v1/messages" "${anthropic[@]}" "${json[@]}" -d "$MSG_BODY}"
text="$(json_get content.0.text <"$BODY")"
if [[ "$STATUS" == 200 && -n "$text" ]] && grep -q '"type"[[:space:]]*:[[:space:]]*"message"' "$BODY"; then
  pass "anthropic messages" "$(printf '%s' "$text" | head -c 60 | tr '\n' ' ')"
else
  fail "anthropic messages" "$(answer)"
fi

request POST "$BASE/anthropic/v1/messages" "${anthropic[@]}" "${json[@]}" -N -d "$MSG_BODY, \"stream\": true}"
deltas="$(grep -c '^event: content_block_delta' "$BODY")"
if [[ "$STATUS" == 200 && "$(header content-type)" == text/event-stream* && "$deltas" -ge 1 ]] &&
  grep -q '^event: message_start' "$BODY" && grep -q '^event: message_stop' "$BODY"; then
  pass "anthropic stream" "message_start, $deltas content_block_delta, message_stop"
else
  fail "anthropic stream" "$(answer) (content-type $(header content-type))"
fi

# --- management API ---------------------------------------------------------------------------
if [[ -z "$ADMIN_KEY" ]]; then
  skip "admin checks" "set ADMIN_API_KEY (and FLOWGATE_API_URL unless the management API is behind FLOWGATE_URL)"
else
  admin=(-H "Authorization: Bearer $ADMIN_KEY")
  expires=$(($(date +%s) + 3600))
  request POST "$API_BASE/api/enterprise/vkeys" "${admin[@]}" "${json[@]}" \
    -d "{\"name\": \"integration-test-$(date +%Y%m%dT%H%M%S)\", \"expires_at\": $expires, \"metadata\": {\"created_by\": \"scripts/integration_test.sh\"}}"
  new_key="$(json_get key <"$BODY")"
  new_id="$(json_get id <"$BODY")"
  if [[ "$STATUS" == 201 && "$new_key" == sk-fg-* && -n "$new_id" ]]; then
    pass "admin create key" "id $new_id"

    chat_check "admin new key works" "$new_key"

    request POST "$API_BASE/api/enterprise/vkeys/$new_id/revoke" "${admin[@]}"
    if [[ "$STATUS" == 200 && "$(json_get status <"$BODY")" == revoked ]]; then
      pass "admin revoke key"
      # Revocation reaches every proxy replica within about a second.
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        request GET "$BASE/v1/models" -H "Authorization: Bearer $new_key"
        [[ "$STATUS" == 401 ]] && break
        sleep 0.5
      done
      if [[ "$STATUS" == 401 ]]; then
        pass "admin revoked key rejected" "HTTP 401"
      else
        fail "admin revoked key rejected" "expected 401, got $(answer)"
      fi
    else
      fail "admin revoke key" "$(answer)"
      request DELETE "$API_BASE/api/enterprise/vkeys/$new_id" "${admin[@]}"
    fi
  else
    hint=""
    [[ "$STATUS" == 404 && -z "${FLOWGATE_API_URL:-}" ]] && hint=" (is the management API at $API_BASE? set FLOWGATE_API_URL)"
    fail "admin create key" "$(answer)$hint"
  fi
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
