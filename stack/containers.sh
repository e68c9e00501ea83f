#!/usr/bin/env bash
# Containers for `make compose-test` on a Debian machine without a Docker daemon or a reachable registry:
# podman (runc, the project's own containers.conf), its Docker-API socket for docker-compose, and a Debian
# bookworm base image made once from Debian's packages (cached in ~/.cache/apt-energy/images).
# Idempotent and fast on the second run. Measured recipe: ../README.md "docker compose, tested".
#   bash stack/containers.sh install     system packages (as root)
#   bash stack/containers.sh base        the base image (mmdebstrap, cached), imported into podman
#   bash stack/containers.sh socket      podman's Docker API on $APT_ENERGY_PODMAN_SOCKET
#   bash stack/containers.sh env         print the exports that the other steps use (eval "$(...)")
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${APT_ENERGY_CACHE_DIR:-$HOME/.cache/apt-energy}"
state="${APT_ENERGY_CONTAINERS_DIR:-$PWD/.run/containers}"
socket="${APT_ENERGY_PODMAN_SOCKET:-$state/podman.sock}"
base_image="localhost/apt-energy-base:bookworm"

# compose.yaml's `init: true` runs Debian's catatonit as PID 1.
# The machine gives root no CAP_SYS_RESOURCE: podman must not raise rlimits above its own, and the default
# crun refuses cgroup v1 hybrid mode. A containers.conf of our own (no change to /etc).
write_conf() {
    mkdir -p "$state"
    cat >"$state/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]
init_path = "/usr/bin/catatonit"
[engine]
runtime = "runc"
CONF
}

cmd_env() {
    write_conf
    echo "export CONTAINERS_CONF=$state/containers.conf"
    echo "export DOCKER_HOST=unix://$socket"
}

cmd_install() {
    local need=()
    local pkg
    # dnsname: container names resolve on a compose network (edge --shard auto reads the replicas there).
    for pkg in podman runc uidmap slirp4netns fuse-overlayfs catatonit mmdebstrap docker-compose curl \
               golang-github-containernetworking-plugin-dnsname; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "containers: missing system packages; run: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "containers: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
}

cmd_base() {
    eval "$(cmd_env)"
    if podman image exists "$base_image"; then
        return 0
    fi
    local tar="$cache/images/debian-bookworm-$(dpkg --print-architecture).tar"
    if [ ! -s "$tar" ]; then
        mkdir -p "$cache/images"
        echo "containers: mmdebstrap bookworm -> $tar (once; ~1 min)"
        # bookworm with its updates and security suites, as the official Debian images carry them.
        mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates bookworm "$tar.part" \
            "deb http://deb.debian.org/debian bookworm main" \
            "deb http://deb.debian.org/debian bookworm-updates main" \
            "deb http://deb.debian.org/debian-security bookworm-security main"
        mv "$tar.part" "$tar"
    fi
    podman import --quiet "$tar" "$base_image" >/dev/null
    echo "containers: imported $base_image"
}

cmd_socket() {
    eval "$(cmd_env)"
    if [ -S "$socket" ] && curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$socket"
    # --time=0: no idle timeout; the test stops it (pid file) when done.
    nohup podman system service --time=0 "unix://$socket" >"$state/podman-service.log" 2>&1 &
    echo $! >"$state/podman-service.pid"
    for _ in $(seq 1 50); do
        curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "containers: podman API did not answer on $socket (log: $state/podman-service.log)" >&2
    exit 1
}

case "${1:-}" in
    install) cmd_install ;;
    base) cmd_base ;;
    socket) cmd_socket ;;
    env) cmd_env ;;
    *) echo "usage: $0 install|base|socket|env" >&2; exit 2 ;;
esac
