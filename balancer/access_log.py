"""The optional access log, in Apache's combined format or JSON, kept off the request path.

The data plane hands each finished request to ``record`` (an append to a list); a task writes
the formatted lines every ``FLUSH_INTERVAL`` seconds. Formatting and file I/O never happen on
the request path, and a full disk or a slow pipe cannot stall proxying: past ``MAX_PENDING``
unwritten records new ones are counted and dropped.

``reopen`` (SIGUSR1, as nginx does) writes what is pending to the file it has, closes it and
opens the path again: logrotate renames the file, then its ``postrotate`` sends the signal, and
the next line lands in a new file of the old name.

With several data-plane processes (``--processes``) each one writes the same file. Lines never
interleave: the file is opened ``O_APPEND`` and every ``write()`` carries whole lines and at
most ``PIPE_BUF`` bytes (a longer line goes alone), so each write lands in one piece at the end
of a file and is atomic on a pipe (POSIX).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import time
from collections.abc import Callable

from balancer.dataplane import AccessRecord
from pyjk.logs import utc_stamp

log = logging.getLogger("pyjk.balancer")

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


def json_line(record: AccessRecord, wall: float) -> str:
    """The combined format's fields as one JSON object, plus the timings in milliseconds."""
    doc = {
        "time": utc_stamp(wall),
        "client": record.client_ip,
        "method": record.method,
        "target": record.target,
        "status": record.status,
        "bytes": record.response_bytes,
        "referer": getattr(record, "referer", "") or None,
        "user_agent": getattr(record, "user_agent", "") or None,
        "worker": record.worker or None,
        "member": record.member or None,
        "request_id": record.request_id or None,
        "connect_ms": round(record.connect * 1000, 3),
        "first_byte_ms": round(record.first_byte * 1000, 3),
        "total_ms": round(record.duration * 1000, 3),
    }
    return json.dumps(doc, ensure_ascii=False) + "\n"


FORMATS: dict[str, Callable[[AccessRecord, float], str]] = {
    "combined": combined_line,
    "json": json_line,
}


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
    def __init__(self, fd: int, path: str | None = None, fmt: str = "combined") -> None:
        self.fd = fd
        self.path = path  # None: a descriptor that is not ours to reopen (stdout)
        self.line = FORMATS[fmt]
        self.pending: list[tuple[AccessRecord, float]] = []
        self.dropped = 0

    @classmethod
    def open(cls, path: str, fmt: str = "combined") -> AccessLog:
        if path == "-":
            return cls(1, None, fmt)
        return cls(_open(path), path, fmt)

    def reopen(self) -> None:
        """Flush to the current file, then write to a freshly opened file at ``path``.

        Raises OSError when the path cannot be opened; the old file stays in use then."""
        self.flush()
        if self.path is None:
            return
        new = _open(self.path)
        old, self.fd = self.fd, new
        os.close(old)

    def record(self, rec: AccessRecord) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append((rec, time.time()))

    def flush(self) -> None:
        """Write what is pending. Raises OSError when the file refuses it; the records that
        did not get through are then counted in the next "dropped" line."""
        batch, self.pending = self.pending, []
        dropped, self.dropped = self.dropped, 0
        line = self.line
        lines = [line(r, w) for r, w in batch]
        if dropped:
            lines.append(f"# pyjk: {dropped} access log records dropped (backlog)\n")
        try:
            for chunk in whole_line_chunks(lines):
                view = memoryview(chunk)
                while view:  # a regular file or a pipe takes a chunk this size whole
                    view = view[os.write(self.fd, view) :]
        except OSError:
            self.dropped += dropped + len(batch)
            raise

    async def run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except OSError as exc:
                # a full disk or a closed pipe must not end the writer: it tries again at the
                # next interval and says how many records were lost once it gets through
                if not failing:
                    log.error(
                        "access log write failed path=%s error=%r", self.path or "-", str(exc)
                    )
                failing = True
            else:
                failing = False


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
