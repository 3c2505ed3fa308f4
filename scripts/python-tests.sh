#!/usr/bin/env bash
# Runs the Python suites in tests/ (official openai/anthropic SDKs against the built binary, and
# the deployment checks with real Caddy, Helm, Compose and hadolint tooling, the edge Worker under
# workerd) in one virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLOWGATE_DEPLOY_VENV="${FLOWGATE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flowgate/deploy-venv}"
scripts/install-deploy-tools.sh
scripts/install-agent-clients.sh
# The edge pre-filter's tooling (wrangler + workerd, from npm) for tests/edge.
scripts/install-edge-tools.sh
# The semantic cache's local embedding model (tests/sdk/test_semantic_cache.py).
FLOWGATE_EMBEDDING_MODEL_DIR="$(scripts/fetch-embedding-model.sh)"
export FLOWGATE_EMBEDDING_MODEL_DIR
"$FLOWGATE_DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

export FLOWGATE_BIN="${FLOWGATE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/flowgate}"
"$FLOWGATE_DEPLOY_VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
