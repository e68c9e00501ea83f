#!/bin/sh
# As the official image's entry point: hand /mosquitto to the broker's user when started as root.
set -e
if [ "$(id -u)" = "0" ]; then
    [ -d /mosquitto ] && chown -R mosquitto:mosquitto /mosquitto 2>/dev/null || true
fi
exec "$@"
