"""One active health probe of one member: connect, ask, judge the first answer. I/O only.

What to probe and how often is ``balancer.health.ProbeSpec``; what a result means for the
member is ``balancer.health.HealthTracker``. A probe never raises for a network problem: it
returns a failed ``ProbeResult`` whose ``detail`` says what went wrong (``connect-refused``,
``no-answer``, ``status 503``...), for the member's last error reason and the logs.

- ``http`` members get ``GET <health_check_path>`` with ``Connection: close``; the verdict is
  the status line, read within the probe timeout (``ping_timeout``). Interim 1xx answers
  (103 Early Hints) are skipped.
- ``ajp13`` members get an AJP CPing and must answer CPong within the timeout (mod_jk's probe,
  reference modjk.md §2.2 ``ping_mode``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from balancer.health import ProbeSpec

USER_AGENT = "pyjk-health"
# AJP13 packets: web server -> container starts 0x1234, container -> web server "AB"; then a
# 2-byte length and the payload, here only the type code (10 = CPing, 9 = CPong).
AJP_CPING = b"\x12\x34\x00\x01\x0a"
AJP_CPONG = b"AB\x00\x01\x09"

# status-line = HTTP-version SP status-code SP [reason-phrase] CRLF (RFC 9112 §4); a missing
# last SP is tolerated, nothing else is.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [\t -~\x80-\xff]*)?\r\n")
_LINE_LIMIT = 4096  # bytes: a status or header line longer than this fails the probe
_MAX_INTERIM = 8  # 1xx answers skipped before the final one
# After the verdict the rest of the answer is read and dropped, so that closing does not reset
# the connection under the backend; bounded, as a backend may ignore "Connection: close".
_DRAIN_LIMIT = 64 * 1024  # bytes
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    passed: bool
    detail: str  # "status 200", "connect-refused", ...
    status: int | None = None  # the HTTP status, when one arrived


class _Failed(Exception):
    """A probe step failed; the message is the result's detail."""


async def run_probe(spec: ProbeSpec) -> ProbeResult:
    """Probe once; bounded by ``spec.connect_timeout + spec.timeout`` (plus a clean close)."""
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await _connect(spec)
    except _Failed as exc:
        return ProbeResult(False, str(exc))
    deadline = loop.time() + spec.timeout
    try:
        if spec.protocol == "ajp13":
            return await _cping(reader, writer, spec)  # the connection stays quiet after it
        result = await _http(reader, writer, spec)
        await _drain(reader, min(_DRAIN_SECONDS, deadline - loop.time()))
        return result
    except _Failed as exc:
        return ProbeResult(False, str(exc))
    finally:
        writer.close()
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()


def request_bytes(spec: ProbeSpec) -> bytes:
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    path = quote(spec.path, safe="/-._~!$&'()*+,;=:@%?")
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{spec.port}\r\nConnection: close\r\n"
        f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")


def parse_status_line(line: bytes) -> int:
    """The status code of one status line (CRLF included); raises ``ValueError``."""
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(match.group(1))


def judge(status: int, pass_below: int) -> ProbeResult:
    passed = 200 <= status < pass_below
    return ProbeResult(passed, f"status {status}", status)


async def _connect(spec: ProbeSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (spec.source, 0) if spec.source else None
    try:
        async with asyncio.timeout(spec.connect_timeout):
            return await asyncio.open_connection(
                spec.host, spec.port, local_addr=local, limit=_LINE_LIMIT
            )
    except TimeoutError:
        raise _Failed("connect-timeout") from None
    except ConnectionRefusedError:
        raise _Failed("connect-refused") from None
    except OSError as exc:
        raise _Failed(f"connect-error: {exc.strerror or exc}") from None


async def _http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: ProbeSpec
) -> ProbeResult:
    writer.write(request_bytes(spec))
    try:
        async with asyncio.timeout(spec.timeout):
            return await _final_status(reader, spec.pass_below)
    except TimeoutError:
        raise _Failed(f"no-answer within {spec.timeout * 1000:.0f}ms") from None


async def _final_status(reader: asyncio.StreamReader, pass_below: int) -> ProbeResult:
    for _ in range(_MAX_INTERIM + 1):
        status = parse_or_fail(await _line(reader))
        if status >= 200:
            return judge(status, pass_below)
        while await _line(reader) != b"\r\n":  # the interim answer's header fields
            pass
    raise _Failed("too many 1xx answers")


def parse_or_fail(line: bytes) -> int:
    try:
        return parse_status_line(line)
    except ValueError:
        raise _Failed("bad-status-line") from None


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError:
        raise _Failed("closed-before-answer") from None
    except asyncio.LimitOverrunError:
        raise _Failed("line-too-long") from None
    except OSError as exc:
        raise _Failed(f"read-error: {exc.strerror or exc}") from None


async def _cping(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: ProbeSpec
) -> ProbeResult:
    writer.write(AJP_CPING)
    try:
        async with asyncio.timeout(spec.timeout):
            answer = await reader.readexactly(len(AJP_CPONG))
    except TimeoutError:
        raise _Failed(f"no-cpong within {spec.timeout * 1000:.0f}ms") from None
    except asyncio.IncompleteReadError:
        raise _Failed("closed-before-answer") from None
    except OSError as exc:
        raise _Failed(f"read-error: {exc.strerror or exc}") from None
    if answer != AJP_CPONG:
        raise _Failed("not-a-cpong")
    return ProbeResult(True, "cpong")


async def _drain(reader: asyncio.StreamReader, seconds: float) -> None:
    """Read what the backend still sends; the verdict is made, so failures are ignored."""
    if seconds <= 0:
        return
    try:
        async with asyncio.timeout(seconds):
            got = 0
            while got < _DRAIN_LIMIT:
                chunk = await reader.read(_DRAIN_LIMIT - got)
                if not chunk:
                    return
                got += len(chunk)
    except (OSError, TimeoutError):
        return
