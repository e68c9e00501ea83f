#!/usr/bin/env bash
# Install everything apt-energy needs on a Debian machine, idempotently and fast on the second run:
# system packages (as root), the .venv with the project and its dev tools, and the Maven jars.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] || need+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# The broker's TLS certificate authority is made with openssl (stack/pki.py).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# Tests only: a real Compose parser for compose.yaml (no Docker engine needed for `config`).
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing system packages; run: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "bootstrap: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    # Debian starts a system mosquitto on 1883 where systemd runs; the project runs its own broker.
    if [[ " ${need[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet mosquitto 2>/dev/null; then
        echo "bootstrap: stopping the system mosquitto service (the stack runs its own on 127.0.0.1:1883)"
        systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }

# The ranges are pyproject.toml's; the versions are requirements-dev.lock's (make lock), so every install
# (this machine, CI, a colleague's) gets the same packages. A change to either reinstalls.
stamp=".venv/.installed-$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # pip and setuptools talk a lot (build-backend notices); keep it in a log, show it only on failure.
    log=".venv/install.log"
    if ! { .venv/bin/python -m pip install -q --upgrade pip \
           && .venv/bin/python -m pip install -q -c requirements-dev.lock -e '.[dev]'; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "bootstrap: pip install failed (full log above, also in $log)" >&2
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
fi

.venv/bin/apt-energy stack fetch
