#!/usr/bin/env bash
# The README's demo: balancer + three worker nodes on 127.0.0.1. Ctrl-C stops everything.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
