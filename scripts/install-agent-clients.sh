#!/usr/bin/env bash
# Installs the agent clients the test suite drives through the gateway, pinned by
# tests/clients/package.json and its lockfile, into a cache folder:
#   @openai/codex              the Codex CLI (`codex exec`, Responses API)
#   @anthropic-ai/claude-code  Claude Code (`claude -p`, Anthropic Messages API)
#   ai, @ai-sdk/openai         the Vercel AI SDK (default `openai()` provider: Responses API)
#   @modelcontextprotocol/inspector   the MCP Inspector (`mcp-inspector --cli`, the MCP gateway)
#
# Idempotent: reinstalls only when the lockfile changed. Needs node and npm (installed from
# Debian's repositories when missing) and the npm registry.
#
#   scripts/install-agent-clients.sh               install (or check)
#   scripts/install-agent-clients.sh --print-dir   where they live
#
# Environment:
#   FLOWGATE_AGENT_CLIENTS  the folder (default ~/.cache/flowgate/agent-clients)
#   CI=true                 a failed install fails; otherwise it is reported and the tests that
#                           need the clients skip with that message
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$repo_root/tests/clients"
target="${FLOWGATE_AGENT_CLIENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/flowgate/agent-clients}"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$target"
    exit 0
fi

log() { printf '[install-agent-clients] %s\n' "$*" >&2; }
fail() {
    log "$*"
    if [[ "${CI:-}" == "true" ]]; then
        exit 1
    fi
    log "continuing: the agent-client tests will skip (under CI=true this fails)"
    exit 0
}

if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: installing nodejs and npm from Debian"
    if [[ "$(id -u)" -eq 0 ]]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
            || fail "could not install nodejs/npm"
    else
        fail "npm is missing and this user cannot install it"
    fi
fi

mkdir -p "$target"
if cmp -s "$source_dir/package-lock.json" "$target/package-lock.json" \
    && [[ -x "$target/node_modules/.bin/codex" && -x "$target/node_modules/.bin/claude" && -d "$target/node_modules/ai" \
        && -x "$target/node_modules/.bin/mcp-inspector" ]]; then
    log "up to date in $target"
    exit 0
fi
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
log "installing into $target"
(cd "$target" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci failed in $target"
"$target/node_modules/.bin/codex" --version >/dev/null || fail "codex does not start"
"$target/node_modules/.bin/claude" --version >/dev/null || fail "claude does not start"
"$target/node_modules/.bin/mcp-inspector" --version >/dev/null || fail "mcp-inspector does not start"
log "installed: $("$target/node_modules/.bin/codex" --version), claude $("$target/node_modules/.bin/claude" --version)"
