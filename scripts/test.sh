#!/usr/bin/env bash
# Runs pyjk's checks and tests: ruff, then pytest (unit + integration).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k sticky
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# chromium + chromium-driver: the status page test drives a real headless browser;
# nginx, haproxy: the bench harness validates its peer configs with the real binaries
scripts/bootstrap.sh chromium chromium-driver nginx haproxy
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
