"""The balancer's memory stays flat while members answer with a fail_on_status code
(issue 11 item 6: it grew ~37 KB per request, without bound).

Three members always answer 503 — two with fail_on_status=-503 (as the shipped conf: soft,
the member stays OK) and one with 503 (hard: it goes ERR and comes back after recover_time) —
and 20 keep-alive clients drive them for up to a minute (bounded in time and count). After a
warm-up the balancer's RSS may not grow by more than a few MiB; the old code grew by tens.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.conftest import Stack
from tests.support.procs import memory_mib

pytestmark = pytest.mark.integration

CLIENTS = 20
WARM_UP = 8.0  # s before the baseline: pools, caches and the allocator's arenas settle
DURATION = 55.0  # s in all
MAX_REQUESTS = 40_000
MAX_GROWTH_MIB = 5.0

FAIL_ON_STATUS = """
worker.n1.fail_on_status=-503
worker.n2.fail_on_status=-503
worker.n3.fail_on_status=503
"""


async def _client(port: int, stop: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop and counts["requests"] < MAX_REQUESTS:
            writer.write(b"GET /app/status?code=503 HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts["requests"] += 1
            status = head.split(b" ", 2)[1].decode()
            counts[status] = counts.get(status, 0) + 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def test_rss_stays_flat_while_every_member_answers_a_fail_on_status_code(stack: Stack):
    for name in ("n1", "n2", "n3"):
        stack.start_backend(name)
    stack.start_balancer(stack.workers_properties(["n1", "n2", "n3"], FAIL_ON_STATUS))
    assert stack.balancer is not None
    pid = stack.balancer.pid
    began = time.monotonic()
    counts: dict[str, int] = {"requests": 0}
    clients = [
        asyncio.create_task(_client(stack.port, began + DURATION, counts)) for _ in range(CLIENTS)
    ]
    await asyncio.sleep(WARM_UP)
    baseline, at_baseline = memory_mib(pid), counts["requests"]
    await asyncio.gather(*clients)
    growth = memory_mib(pid) - baseline
    driven = counts["requests"] - at_baseline
    assert driven > 500, counts  # enough requests that a per-request leak shows
    assert set(counts) == {"requests", "503"}, counts
    print(f"RSS {baseline:.1f} MiB after warm-up, +{growth:.1f} MiB over {driven} requests")
    assert growth < MAX_GROWTH_MIB, f"RSS grew {growth:.1f} MiB over {driven} requests"
