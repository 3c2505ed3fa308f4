#!/usr/bin/env bash
# The semantic cache's figures for docs/benchmarks.md: phase-3 lookup p50/p99 and recall@1
# against brute force at 100,000 entries, bytes per entry, and the local embedder's time for a
# 200-token prompt on one thread. Usage: scripts/bench-semantic.sh [ENTRIES]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR="$(scripts/fetch-embedding-model.sh)"
# One thread: the embedder runs on one blocking thread per request in the proxy.
RAYON_NUM_THREADS=1 cargo run --quiet --release -p flowgate-semantic --example bench -- "$MODEL_DIR" "${1:-100000}"
