"""The access log's writer task outlives a write that fails (a full disk, a closed pipe)."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from balancer import access_log
from balancer.access_log import AccessLog
from balancer.dataplane.proxy import AccessRecord

REC = AccessRecord("127.0.0.1", "GET", "/app/", 200, 5, 0.001, "lb", "node1", "r1")


async def test_a_failed_write_does_not_end_the_writer_and_the_loss_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(access_log, "FLUSH_INTERVAL", 0.01)
    broken_r, broken_w = os.pipe()
    os.close(broken_r)  # writing now fails with EPIPE
    good_r, good_w = os.pipe()
    os.set_blocking(good_r, False)
    log = AccessLog(broken_w)
    log.record(REC)
    log.record(REC)
    task = asyncio.create_task(log.run())
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while log.dropped < 2:  # the failed batch is counted, the task goes on
            assert not task.done(), task
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        log.fd = good_w  # the disk has room again
        log.record(REC)
        text = b""
        while b"dropped" not in text:
            assert asyncio.get_running_loop().time() < deadline + 5
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):  # nothing written yet
                text += os.read(good_r, 65536)
        assert b"# pyjk: 2 access log records dropped" in text
        assert b"GET /app/" in text  # the next record got through
    finally:
        task.cancel()
        for fd in (broken_w, good_r, good_w):
            os.close(fd)
