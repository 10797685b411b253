"""The optional access log, in Apache's combined format, kept off the request path.

The data plane hands each finished request to ``record`` (an append to a list); a task writes
the formatted lines every ``FLUSH_INTERVAL`` seconds. Formatting and file I/O never happen on
the request path, and a full disk or a slow pipe cannot stall proxying: past ``MAX_PENDING``
unwritten records new ones are counted and dropped.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from balancer.dataplane import AccessRecord

FLUSH_INTERVAL = 0.5  # s
MAX_PENDING = 100_000


def _quote(text: str) -> str:
    # Combined format quotes the request line and agents; escape what would break a line.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def combined_line(record: AccessRecord, wall: float) -> str:
    """``host - - [time] "request" status bytes "referer" "agent"`` plus pyjk's fields."""
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(wall))
    size = str(record.response_bytes) if record.response_bytes else "-"
    referer = _quote(getattr(record, "referer", "") or "-")
    agent = _quote(getattr(record, "user_agent", "") or "-")
    return (
        f'{record.client_ip} - - [{stamp}] "{_quote(record.method)} {_quote(record.target)} '
        f'HTTP/1.1" {record.status} {size} "{referer}" "{agent}" '
        f"worker={record.worker or '-'} member={record.member or '-'} "
        f"rid={record.request_id} {record.duration * 1000:.1f}ms\n"
    )


class AccessLog:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending: list[tuple[AccessRecord, float]] = []
        self.dropped = 0

    @classmethod
    def open(cls, path: str) -> AccessLog:
        if path == "-":
            return cls(sys.stdout)
        return cls(open(path, "a", encoding="utf-8", buffering=1 << 16))

    def record(self, rec: AccessRecord) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append((rec, time.time()))

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            self.stream.write("".join(combined_line(r, w) for r, w in batch))
        if self.dropped:
            self.stream.write(f"# pyjk: {self.dropped} access log records dropped (backlog)\n")
            self.dropped = 0
        self.stream.flush()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()
