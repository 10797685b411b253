"""/metrics through a real balancer: every traffic family appears and moves under real traffic.

The exposition is parsed with prometheus-client's own parser, as a Prometheus server would.
"""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Stack, http_get, wait_for

pytestmark = pytest.mark.integration

MOUNTS = "/app|/*=lb\n/jkmanager|/*=jkstatus\n/metrics=jkstatus\n"


def _scrape(stack: Stack) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, _, body = http_get(f"{stack.url}/metrics")
    assert status == 200, body[:300]
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return samples.get(name, {}).get(want, 0.0)


def _raw(stack: Stack, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def test_traffic_families_appear_and_move_under_real_traffic(stack: Stack):
    for name in ("n1", "n2"):
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(["n1", "n2"]), mounts=MOUNTS)
    before = _scrape(stack)
    # the process and python collectors are there (a private registry used to drop them)
    assert "process_cpu_seconds_total" in before
    assert "python_info" in before
    assert "python_gc_collections_total" in before

    for _ in range(20):
        assert http_get(f"{stack.url}/app/x")[0] == 200
    assert http_get(f"{stack.url}/nowhere")[0] == 404
    assert _raw(stack, b"GET /app/x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    stack.backends["n2"].proc.stop()  # n2's next try fails to connect: a retry on n1
    for _ in range(6):
        assert http_get(f"{stack.url}/app/x")[0] == 200
    # with several data-plane processes, each publishes its counters every 50 ms and a scrape
    # may be answered by either: poll (with a deadline) until one scrape has every process's
    # share, then check every figure on that one scrape
    scrapes: list[dict] = []

    def answered(samples: dict) -> float:
        return sum(
            _value(samples, "pyjk_member_request_duration_seconds_count", worker="lb", member=m)
            for m in ("n1", "n2")
        )

    def published() -> bool:
        scrapes.append(_scrape(stack))
        rejected = _value(scrapes[-1], "pyjk_frontend_requests_rejected_total", code="400")
        return answered(scrapes[-1]) >= 26 and rejected >= 1

    wait_for(published, 5, what="every process's counters in one /metrics scrape")
    after = scrapes[-1]
    assert answered(after) == 26  # and no more than the requests sent
    assert _value(after, "pyjk_lb_request_duration_seconds_count", worker="lb") == 26
    assert _value(after, "pyjk_lb_first_byte_seconds_count", worker="lb") == 26
    assert _value(after, "pyjk_lb_request_duration_seconds_bucket", worker="lb", le="+Inf") == 26
    assert _value(after, "pyjk_lb_request_duration_seconds_sum", worker="lb") > 0
    assert _value(after, "pyjk_member_responses_total", worker="lb", member="n1", code="2xx") > 0
    assert _value(after, "pyjk_member_first_byte_seconds_count", worker="lb", member="n1") > 0
    assert _value(after, "pyjk_lb_responses_total", worker="lb", code="2xx") == 26
    assert _value(after, "pyjk_lb_retries_total", worker="lb", reason="connect-failed") >= 1
    assert _value(after, "pyjk_frontend_requests_rejected_total", code="400") == 1
    assert _value(after, "pyjk_frontend_responses_total", code="4xx") >= 2  # 404 + 400
    assert _value(after, "pyjk_frontend_connections_accepted_total") > _value(
        before, "pyjk_frontend_connections_accepted_total"
    )
    assert _value(after, "pyjk_frontend_connections_open") >= 1  # the scrape's own
    assert ("pyjk_frontend_connections_refused_total") in after
    # renamed: it counts requests without a session id, not sessions
    assert "pyjk_member_sessions_total" not in after
    assert _value(after, "pyjk_member_requests_without_session_total", worker="lb", member="n1")


def test_connections_over_the_cap_are_counted_by_reason(stack: Stack):
    stack.start_backend("n1")
    workers = stack.workers_properties(["n1"]) + "worker.max_connections_per_ip=1\n"
    # the connection caps hold per data-plane process: one process, so one cap
    stack.start_balancer(workers, mounts=MOUNTS, args=("--processes", "1"))
    held: list[socket.socket] = []

    def hold_one() -> bool:
        # the start-up probe's connection may still count for a moment: retry until admitted
        sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
        sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: a\r\n\r\n")
        if sock.recv(4096).startswith(b"HTTP/1.1 200"):
            held.append(sock)
            return True
        sock.close()
        return False

    try:
        wait_for(hold_one, 10, what="a connection admitted")
        refused = _raw(stack, b"GET /app/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    # the scrape may itself be refused until the held connection is released
    found: list[float] = []

    def scraped() -> bool:
        try:
            samples = _scrape(stack)
        except AssertionError:
            return False
        found.append(
            _value(
                samples, "pyjk_frontend_connections_refused_total", reason="max_connections_per_ip"
            )
        )
        return True

    wait_for(scraped, 10, what="a scrape")
    assert found[-1] >= 1
