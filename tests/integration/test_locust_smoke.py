"""bench/locustfile.py against a real stack: the balancer and three replicated workers.

Locust runs as a subprocess only: importing it here would monkey-patch the process (gevent)
under pytest-aiohttp's event loop. Its checks (every reply from the cookie's node, the session
counter one higher per reply) must all pass for a few seconds of headless load.
"""

from __future__ import annotations

import importlib.util
import json
import random
import secrets
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Stack, http_get, http_json, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason="locust is not installed (pyproject's bench extra)",
    ),
]

ROUTES = ["node1", "node2", "node3"]
MIN_REQUESTS = 100  # a few seconds of 5 users without think time make thousands


def cluster_config(tmp: Path) -> Path:
    key = tmp / "cluster.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    config = tmp / "cluster.toml"
    config.write_text(
        f'name = "locust-{uuid.uuid4().hex[:12]}"\n'
        f'[membership]\nport = {random.randint(20000, 60000)}\ninterface = "127.0.0.1"\n'
        "frequency = 100\ndrop_time = 1000\nprobe_timeout = 300\n"
        f'[security]\nkey_file = "{key}"\n'
    )
    return config


def start_replicated_stack(stack: Stack) -> None:
    config = cluster_config(stack.tmp)
    ports = [stack.start_worker(route, "--cluster", str(config)).port for route in ROUTES]

    def everyone_sees_everyone() -> bool:
        views = [http_json(f"http://127.0.0.1:{p}/cluster-manager") for p in ports]
        return all(len(v["members"]) == len(ROUTES) and v["ready"] for v in views)

    wait_for(everyone_sees_everyone, 20, what="three cluster members")
    stack.start_balancer(stack.workers_properties(ROUTES))
    wait_for(lambda: http_get(f"{stack.url}/app/counter")[0] == 200, 10, what="balancer")


def test_locust_users_see_no_failure_through_the_balancer(stack: Stack):
    start_replicated_stack(stack)
    prefix, summary = stack.tmp / "locust", stack.tmp / "locust-summary.json"
    locust = stack.group.python(
        "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
        "-u", "5", "-r", "5", "--run-time", "5s", "--stop-timeout", "5", "--host", stack.url,
        "--csv", str(prefix), "--json-file", str(prefix), "--only-summary",
        name="locust", env={"PYJK_LOCUST_SUMMARY": str(summary)},
    )  # fmt: skip
    code = locust.wait(60)
    output = locust.output()
    assert code == 0, output[-4000:]

    stats = json.loads(Path(f"{prefix}.json").read_text())
    http = [s for s in stats if s["method"] != "FAILOVER"]
    requests = sum(s["num_requests"] for s in http)
    failures = sum(s["num_failures"] for s in http)
    assert failures == 0, output[-4000:]
    assert requests > MIN_REQUESTS, output[-4000:]
    assert {s["name"] for s in http} >= {"/app/counter", "/app (stateless)"}

    checks = json.loads(summary.read_text())
    assert checks["lost_writes"] == checks["double_writes"] == checks["wrong_node"] == 0
    assert checks["checks"] == {"ok": requests}  # every request was checked, and passed
    assert checks["sessions_opened"] >= 4  # the session users (4 of 5 users)
