"""A busy member's recovery waits for its connection pool (issue 11 item 3), real balancer.

n1 has one pooled connection and a busy_limit it never reaches; a slow request holds the
connection. A sticky request for n1 then waits connection_acquire_timeout, gets BUSY and is
answered by n2: n1 is OK/BUSY. While the connection is held n1 must stay OK/BUSY (its pool is
full), so further sticky requests go to n2 without an lb attempt on n1; once the connection is
free the next request finds n1 OK again and n1 answers it.
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.integration.conftest import Stack, http_get, wait_for
from tests.integration.test_balancer_failover import backend_stats

pytestmark = pytest.mark.integration

TO_N1 = {"Cookie": "JSESSIONID=s.n1"}


def member_fields(stack: Stack, name: str) -> dict[str, str]:
    for line in stack.status_txt().splitlines():
        if line.startswith("Member:") and f" name={name} " in line:
            return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
    raise AssertionError(f"member {name} not in the status page")


def node_of(resp: tuple[int, object, bytes]) -> str:
    status, _, body = resp
    assert status == 200, (status, body[:200])
    return str(json.loads(body)["node"])


def test_a_busy_member_stays_busy_while_its_pool_is_full_and_recovers_when_it_frees(
    stack: Stack,
) -> None:
    stack.start_backend("n1")
    stack.start_backend("n2")
    extra = (
        "worker.n1.connection_pool_size=1\n"
        "worker.n1.busy_limit=50\n"
        "worker.n1.connection_acquire_timeout=300\n"
    )
    # connection pools are per data-plane process: one process, so one pool of one
    stack.start_balancer(stack.workers_properties(["n1", "n2"], extra), args=("--processes", "1"))
    held: dict[str, object] = {}

    def slow() -> None:
        held["resp"] = http_get(f"{stack.url}/app/slow?ms=4000", TO_N1, timeout=20)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        wait_for(lambda: backend_stats(stack, "n1")["inflight"] == 1, 10, what="slow at n1")
        # the pool is full: this one waits 300 ms, is BUSY on n1 and goes to n2
        assert node_of(http_get(f"{stack.url}/app/x", TO_N1)) == "n2"
        assert member_fields(stack, "n1")["state"] == "OK/BUSY"
        elected = member_fields(stack, "n1")["elected"]
        for _ in range(3):
            assert node_of(http_get(f"{stack.url}/app/x", TO_N1)) == "n2"
            fields = member_fields(stack, "n1")
            # still busy, and no lb attempt on n1 while its pool is full (without the pool
            # check every request put n1 back to OK and waited for a connection again)
            assert (fields["state"], fields["elected"]) == ("OK/BUSY", elected)
        assert backend_stats(stack, "n1")["inflight"] == 1  # (the window was still open)
    finally:
        thread.join(20)
    assert node_of(held["resp"]) == "n1"  # type: ignore[arg-type]
    # the connection is back in the pool: the next request clears OK/BUSY and n1 answers
    assert node_of(http_get(f"{stack.url}/app/x", TO_N1)) == "n1"
    assert member_fields(stack, "n1")["state"] == "OK"
