#!/usr/bin/env bash
# Installs Debian's Chromium, which the portal's browser tests drive with playwright-core
# (Playwright's own browser download is not used). Idempotent: does nothing when it is there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "[install-chromium] installing Debian's chromium" >&2
sudo_cmd=()
if [[ "$(id -u)" != "0" ]]; then sudo_cmd=(sudo); fi
# A fresh machine may have no package lists yet: refresh them once when the install cannot find it.
if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
