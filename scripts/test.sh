#!/usr/bin/env bash
# Runs pyjk's checks and tests: ruff, mypy (strict on the pure cores, see pyproject.toml),
# then pytest (unit + integration) on the compiled hot path (bootstrap.sh builds it), then the
# unit tests of the compiled modules once more on their .py sources (PYJK_PURE=1), so the
# readable source and its extension never drift.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k sticky
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# chromium + chromium-driver: the status page test drives a real headless browser;
# nginx, haproxy: the bench harness validates its peer configs with the real binaries;
# tomcat10 (pulls in a headless JRE): the ajp13 interop tests run real Tomcat instances
# (bootstrap.sh's policy-rc.d keeps the packaged service from starting);
# redis-server: the Redis store tests start their own servers and a 3+3 Redis Cluster
PYJK_EXTRAS=test,bench scripts/bootstrap.sh chromium chromium-driver nginx haproxy tomcat10 \
    redis-server
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The unit tests of the modules setup.py compiles (add yours when you add a module there).
PURE_TESTS=(tests/unit/test_hotpath.py tests/unit/test_lb_*.py tests/unit/test_dataplane_*.py
    tests/unit/test_route_answers.py tests/unit/test_config_rules.py)
.venv/bin/python -m pytest "$@"
if [ "$#" -eq 0 ]; then
    echo "scripts/test.sh: the compiled modules' unit tests on their sources (PYJK_PURE=1)"
    PYJK_PURE=1 exec .venv/bin/python -m pytest -q "${PURE_TESTS[@]}"
fi
