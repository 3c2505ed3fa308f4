#!/usr/bin/env bash
# Installs the edge pre-filter's tooling (wrangler, with workerd from the
# @cloudflare/workerd-linux-64 package) from the npm registry into edge/node_modules, exactly as
# edge/package-lock.json pins it. Nothing is downloaded from anywhere else. Skips the install when
# the lockfile has not changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/../edge"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-edge-tools: npm is not installed (node >= 20.3 with npm is needed for edge/)" >&2
  # Under CI the edge tests must run; elsewhere they skip without it.
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
stamp=node_modules/.flowgate-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/wrangler ]; then
  exit 0
fi
export WRANGLER_SEND_METRICS=false
# --ignore-scripts: the packages' install hooks only re-check binaries that npm already placed
# (esbuild and workerd ship theirs as platform packages).
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "install-edge-tools: $(node_modules/.bin/wrangler --version 2>/dev/null | tail -1)"
