#!/usr/bin/env bash
# Tests only: Debian's headless-capable Chromium for the statement rendering test (tests/billing/
# test_statement_browser.py calls this when no browser is found). Idempotent; needs root to install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    command -v chromium
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium.sh: Chromium is missing; run: sudo apt-get install -y --no-install-recommends chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null
}
command -v chromium
