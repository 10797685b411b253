#!/usr/bin/env bash
# Installs what pyjk needs on a fresh Debian machine and creates .venv.
# Usage: [PYJK_EXTRAS=test,bench] scripts/bootstrap.sh [extra apt packages...]
# PYJK_EXTRAS names the pyproject extras to install besides pyjk itself (the demo needs none;
# scripts/test.sh asks for test,bench). Idempotent: a second run installs nothing new.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "bootstrap: need root (or sudo) to install: $*" >&2; exit 1; fi
}

missing=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv python3-dev)
# the compiled hot path (setup.py, Cython): a C compiler and Python's headers
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1 || missing+=(python3-dev)
command -v git >/dev/null 2>&1 || missing+=(git)
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep packaged services (nginx, haproxy, tomcat) from starting and taking ports while
    # they install. Only a policy-rc.d this script created is removed afterwards (also on
    # failure): left in place it keeps every packaged service on the machine from starting.
    policy="${PYJK_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# pyjk bootstrap\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        trap 'as_root rm -f "$policy"' EXIT
        created_policy=1
    fi
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "${created_policy:-}" ]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
fi

extras="${PYJK_EXTRAS:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# one stamp per set of extras: the demo's install does not stand for the tests'
stamp=".venv/.pyjk-installed${extras:+-${extras//,/-}}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e "$spec"
    touch "$stamp"
fi
# The compiled hot path is built by the install above; an extension older than its .py or
# .pxd (a pull, an edit) is rebuilt here. A compile error stops this script.
if ! .venv/bin/python -c 'import sys, pyjk.hotpath as h; sys.exit(bool(h.stale_modules()))'; then
    echo "bootstrap: rebuilding the compiled hot path"
    .venv/bin/python -m pip install -q --no-deps -e .
fi
