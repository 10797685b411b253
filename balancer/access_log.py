"""The optional access log, in Apache's combined format, kept off the request path.

The data plane hands each finished request to ``record`` (an append to a list); a task writes
the formatted lines every ``FLUSH_INTERVAL`` seconds. Formatting and file I/O never happen on
the request path, and a full disk or a slow pipe cannot stall proxying: past ``MAX_PENDING``
unwritten records new ones are counted and dropped.

With several data-plane processes (``--processes``) each one writes the same file. Lines never
interleave: the file is opened ``O_APPEND`` and every ``write()`` carries whole lines and at
most ``PIPE_BUF`` bytes (a longer line goes alone), so each write lands in one piece at the end
of a file and is atomic on a pipe (POSIX).
"""

from __future__ import annotations

import asyncio
import os
import select
import time

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


PIPE_BUF = select.PIPE_BUF


def whole_line_chunks(lines: list[str], limit: int = PIPE_BUF) -> list[bytes]:
    """The lines joined into writes of whole lines of at most ``limit`` bytes each (a line
    longer than ``limit`` is a write of its own)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        raw = line.encode("utf-8", "replace")
        if current and size + len(raw) > limit:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(raw)
        size += len(raw)
    if current:
        chunks.append(b"".join(current))
    return chunks


class AccessLog:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending: list[tuple[AccessRecord, float]] = []
        self.dropped = 0

    @classmethod
    def open(cls, path: str) -> AccessLog:
        if path == "-":
            return cls(1)
        return cls(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))

    def record(self, rec: AccessRecord) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append((rec, time.time()))

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        lines = [combined_line(r, w) for r, w in batch]
        if self.dropped:
            lines.append(f"# pyjk: {self.dropped} access log records dropped (backlog)\n")
            self.dropped = 0
        for chunk in whole_line_chunks(lines):
            view = memoryview(chunk)
            while view:  # a regular file or a pipe takes a chunk this size whole
                view = view[os.write(self.fd, view) :]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()
