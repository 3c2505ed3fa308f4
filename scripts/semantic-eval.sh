#!/usr/bin/env bash
# Precision and recall of the semantic cache's hit decision (local embedder + near-miss guard) on
# the labelled pairs in crates/flowgate-semantic/fixtures/pairs.json, by threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR="$(scripts/fetch-embedding-model.sh)"
cargo run --quiet --release -p flowgate-semantic --example evaluate -- "$MODEL_DIR"
