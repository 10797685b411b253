#!/usr/bin/env bash
# Installs the peers of the proxy race (nginx, HAProxy) and the load generator (wrk).
# Usage: bench/setup.sh            (root, or a user with sudo)
# Idempotent: when all three binaries are present it installs nothing and exits 0.
# The packaged services are kept from starting (policy-rc.d exiting 101): a system nginx would
# take port 80 and a system haproxy would run with /etc config; the race starts its own copies
# on 127.0.0.1 with generated configs and never uses the packaged services.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "bench/setup.sh: need root (or sudo) to run: $*" >&2; exit 1; fi
}

declare -A pkg_of=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk)
missing=()
for bin in nginx haproxy wrk; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${pkg_of[$bin]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "bench/setup.sh: nginx, haproxy and wrk already installed"
    exit 0
fi

echo "bench/setup.sh: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# bench/setup.sh: do not start packaged services during install\nexit 101\n' \
        | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then as_root rm -f "$policy"; fi; }
trap cleanup EXIT
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Belt and braces: if an init system started them anyway, stop them (ignore when absent).
for svc in nginx haproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        as_root systemctl stop "$svc" || true
        as_root systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
done
for bin in nginx haproxy wrk; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
        echo "bench/setup.sh: $bin still missing after install" >&2; exit 1; }
done
echo "bench/setup.sh: done"
