#!/usr/bin/env bash
# Installs what the portal's end-to-end tests drive, pinned by tests/portal/package.json and its
# lockfile, into a cache folder: `oidc-provider` (a real OpenID Connect provider for the single
# sign-on tests). Idempotent: reinstalls only when the lockfile changed.
#
#   scripts/install-portal-test-deps.sh               install (or check)
#   scripts/install-portal-test-deps.sh --print-dir   where they live
#
# Environment: FLOWGATE_PORTAL_TEST_DEPS, the folder (default ~/.cache/flowgate/portal-tests).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$repo_root/tests/portal"
target="${FLOWGATE_PORTAL_TEST_DEPS:-${XDG_CACHE_HOME:-$HOME/.cache}/flowgate/portal-tests}"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$target"
    exit 0
fi

mkdir -p "$target"
if [[ -d "$target/node_modules" ]] && cmp -s "$source_dir/package-lock.json" "$target/package-lock.json"; then
    exit 0
fi
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
(cd "$target" && npm ci --no-audit --no-fund --loglevel=error)
echo "[install-portal-test-deps] installed into $target" >&2
