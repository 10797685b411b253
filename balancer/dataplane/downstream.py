"""The client side: one ``asyncio.Protocol`` per client connection, parsing with llhttp.

Every request head is validated completely before the router sees it, so nothing of a
malformed request reaches a backend. Requests are answered one at a time and in order: a
request pipelined behind the one in flight is parsed and queued (at most
``Limits.max_pipelined``), and a parse error behind it is answered in its turn and closes the
connection — the parser is dead after an error, so nothing behind it is ever parsed. While a
request waits in the queue the connection is not read (the hold, ``PAUSE_HOLD``): a pipelining
client gets no more read than that. The hold ends when the last one waiting starts, whose
body may not have been read whole yet.

llhttp calls the connection back at a request's begin, at its head's end, for body bytes and
at its end — never per field: the bytes of the head are kept as they arrive (a head split over
reads too), and when llhttp has accepted a head ``request_head.read_head`` scans them for the
fields pyjk uses and checks what llhttp leaves to us. llhttp reports no positions, so the
connection follows where each message ends in the read (``rpos``): at the head's blank line,
plus the body bytes llhttp delivers, or where ``ChunkLines`` saw a chunked body end.

Deadlines use one wake-up per connection that is re-armed lazily: the hot path only stores
timestamps, and the wake-up, when it comes, works out which deadline applies now. The wake-ups
of all connections share one loop timer (``timer_wheel.py``: no TimerHandle per connection),
so a deadline fires up to ``timer_wheel.TICK`` (100 ms) after it is due.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from balancer.dataplane import http11 as h
from balancer.dataplane import request_head as rh
from balancer.dataplane.chunk_lines import ChunkLines
from balancer.dataplane.exchange import Exchange
from balancer.dataplane.request import Request
from balancer.dataplane.request_head import (
    PAUSE_DONE,
    PAUSE_HOLD,
    PAUSE_PENDING,
    PAUSE_UPSTREAM,
    upgrade_pause,
)
from balancer.dataplane.tls_facts import TlsInfo, tls_info

if TYPE_CHECKING:
    from balancer.dataplane.admission import Admission
    from balancer.dataplane.proxy import ProxyServer
    from balancer.dataplane.timer_wheel import TimerWheel
    from balancer.dataplane.tunnel import Tunnel

log = logging.getLogger(__name__)

__all__ = [
    "PAUSE_DONE",
    "PAUSE_HOLD",
    "PAUSE_PENDING",
    "PAUSE_UPSTREAM",
    "ClientConnection",
    "ParserSlot",
]

# how long a refused client may go on sending before the connection closes (see close())
LINGER_SECONDS = 2.0
# parsers kept for new connections (ParserSlot), per server: as many as close at once
PARSERS_KEPT = 256


_NO_CONNECTION = "a pooled parser slot was fed: it serves no connection"


class ParserSlot:
    """An llhttp parser and the callbacks it calls, kept from one client connection to the
    next (``ProxyCore.parser_slots``).

    Making a parser per connection cost ~4k instructions (issue 12, session 8): llhttp's
    state, eight attribute lookups on the protocol and four bound methods made, then all of
    it freed when the connection closes — a tenth of a connection's cost where each request
    comes on a new one. The parser calls this slot, which calls the connection it serves now
    (C calls, compiled); a connection that closes between messages leaves the parser ready
    for the next one.

    After a message that closes its connection (``Connection: close``, HTTP/1.0) llhttp would
    refuse any further message, and a parser kept would refuse its next connection's first
    one: so the parser continues (``lenient_keep_alive``), and the connection refuses what
    follows a closing request itself (``ClientConnection.stop_after``), as it did before.
    """

    __slots__ = ("conn", "parser")

    def __init__(self) -> None:
        self.conn: ClientConnection | None = None
        self.parser: HttpRequestParser | None = HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_keep_alive=True)

    # llhttp's callbacks, for the connection served now. A slot in the pool serves none: fed
    # there (no path does), compiled, a C call on None would crash the process (SIGSEGV), so
    # each callback checks first (one pointer compare) and the feed fails as a bug (a 500).
    def on_message_begin(self) -> None:
        if self.conn is None:
            raise RuntimeError(_NO_CONNECTION)
        self.conn.on_message_begin()

    def on_headers_complete(self) -> None:
        if self.conn is None:
            raise RuntimeError(_NO_CONNECTION)
        self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.conn is None:
            raise RuntimeError(_NO_CONNECTION)
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        if self.conn is None:
            raise RuntimeError(_NO_CONNECTION)
        self.conn.on_message_complete()


class ClientConnection:  # an asyncio.Protocol (uvloop needs only the methods)
    __slots__ = (
        "admission",
        "body_read_at",
        "body_timeout",
        "chunk_end",
        "chunk_lines",
        "closed",
        "conn_at",
        "eof",
        "exchange",
        "forwarded_fields",
        "forwarded_host",
        "fresh",
        "head_at",
        "head_end",
        "head_part",
        "head_raw",
        "head_size",
        "head_started",
        "header_timeout",
        "held_at",
        "idle_since",
        "keepalive_timeout",
        "limits",
        "lingering",
        "loop",
        "max_body_size",
        "max_head_size",
        "max_headers",
        "max_pipelined",
        "n_headers",
        "overflow",
        "parse_dead",
        "parser",
        "pause_flags",
        "peer_ip",
        "queue",
        "rbuf",
        "reject_status",
        "replay_buffer_size",
        "req",
        "reseed",
        "rpos",
        "secure",
        "server",
        "slot",
        "starting",
        "stop_after",
        "timer_at",
        "timer_slot",
        "tls",
        "transport",
        "trusted",
        "tunnel",
        "upgrade_rest",
        "valid_host",
        "wheel",
        "write_paused_at",
    )

    def __init__(self, server: ProxyServer) -> None:
        # What is read of the server here is read through ``self.server``: compiled, C fields
        # of its base (proxy_core.pxd), where a read of the untyped argument is a Python
        # lookup (~150 instructions each)
        self.server = server
        self.limits = self.server.limits
        self.admission: Admission = self.server.admission
        # the limits read for every request, as fields of the connection's own (C fields when
        # compiled, copied from the admission's C fields: a read of a Limits attribute from
        # compiled code is a Python lookup)
        self.max_head_size = self.admission.max_head_size
        self.max_headers = self.admission.max_headers
        self.max_pipelined = self.admission.max_pipelined
        self.max_body_size = self.admission.max_body_size
        self.replay_buffer_size = self.admission.replay_buffer_size
        self.header_timeout = self.admission.header_timeout
        self.body_timeout = self.admission.body_timeout
        self.keepalive_timeout = self.admission.keepalive_timeout
        # (made when the server listens; the loop read from it, not from ProxyServer.loop, a
        # property: a Python call per connection)
        self.wheel: TimerWheel = self.server.wheel  # type: ignore[assignment]
        self.loop = self.wheel.loop
        self.secure = self.server.secure
        self.tls: TlsInfo | None = None  # set when the connection is TLS (tls_listener)
        self.transport: asyncio.Transport | None = None
        slots = self.server.parser_slots
        self.slot: ParserSlot | None = slots.pop() if slots else ParserSlot()
        self.slot.conn = self  # type: ignore[union-attr]
        self.parser = self.slot.parser  # type: ignore[union-attr]
        self.peer_ip = ""
        self.trusted = False
        self.req: Request | None = None  # the request being parsed
        # parsed, not started; int = reject status. A list, not a deque: at most
        # max_pipelined long, and made with no Python call (and used with C calls) compiled
        self.queue: list[Request | int] = []
        self.exchange: Exchange | None = None
        self.tunnel: Tunnel | None = None
        self.head_size = 0  # size of the last head's fields (as its trailers count on)
        self.n_headers = 0  # its field count
        self.head_raw = 0  # bytes read while a head stayed incomplete
        # Where llhttp is in the read it parses (``rbuf``): ``rpos``, where the last message
        # ended (or 0); ``head_at``, where the head being parsed began; ``head_part``, its
        # bytes while it spans reads (bounded: head_raw); ``head_end``, where read_head saw it
        # end in the bytes it scanned.
        self.rbuf = b""
        self.rpos = 0
        self.head_at = 0
        self.head_end = 0
        self.head_part: bytes | None = None
        # a chunked request body's framing, followed to bound its size lines and trailers
        # and to find its end (chunk_lines.py): the body being followed across reads, and
        # where in the read the last one ended
        self.chunk_lines: ChunkLines | None = None
        self.chunk_end = -1
        self.reject_status = 0
        self.overflow = False  # too many pipelined requests: stop parsing
        self.stop_after = False  # the last parsed request closes the connection
        self.parse_dead = False
        self.reseed: bytes | None = None  # see _upgrade_pause
        self.upgrade_rest: bytes | None = None
        self.valid_host: bytes | None = None  # the last Host that passed the check
        # X-Forwarded-* for the last Host (untrusted peer): built by the exchange, kept here
        self.forwarded_host: bytes | None = None
        self.forwarded_fields = b""
        self.pause_flags = 0
        self.starting = False
        self.closed = False
        self.lingering = False
        self.eof = False
        self.fresh = True  # no message begun yet
        self.timer_slot = 0  # the wheel's bucket of the armed deadline, 0: none (timer_wheel)
        self.timer_at = 0.0
        self.conn_at = 0.0
        self.head_started = 0.0
        self.body_read_at = 0.0
        self.idle_since = 0.0
        self.write_paused_at = 0.0
        self.held_at = 0.0  # when the hold began (_lift_hold)

    # --- connection life ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer_ip = ip = peer[0] if peer else ""
        status = self.admission.admit(self, ip, self.secure)
        if status:
            self.closed = True
            transport.write(h.local_response(status, close=True))
            transport.close()
            return
        # whether the peer's X-Forwarded-*/Forwarded fields are kept
        self.trusted = self.admission.is_trusted(ip)
        if self.secure:  # what members learn of the TLS connection, read once
            self.tls = tls_info(transport.get_extra_info("ssl_object"))
        transport.set_write_buffer_limits(self.admission.write_buffer_high)  # (high)
        now = self.loop.time()
        self.conn_at = self.idle_since = now
        self._arm(now + self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer_slot:
            self.wheel.remove(self, self.timer_slot)
            self.timer_slot = 0
        self.closed = True
        self.admission.release(self, self.peer_ip)
        if self.tunnel is not None:
            self.tunnel.side_lost(self)
        elif self.exchange is not None:
            self.exchange.client_lost()
        self.transport = None
        # The parser's slot points back here: without this, every connection is a reference
        # cycle that only the cyclic collector frees (~9 objects per Connection: close
        # request; its passes showed in that scenario's p99). Nothing is parsed after
        # connection_lost. A parser that stands between messages serves the next connection
        # (ParserSlot); any other is dropped, with its slot (which it holds bound methods of).
        slot = self.slot
        if slot is not None:
            self.slot = None
            slot.conn = None
            slots = self.server.parser_slots
            if (
                self.parser is slot.parser  # (not re-seeded: request_head.upgrade_pause)
                and self.req is None
                and not self.parse_dead
                and self.tunnel is None
                and len(slots) < PARSERS_KEPT
            ):
                slots.append(slot)
            else:
                slot.parser = None
        self.parser = None

    def eof_received(self) -> bool:
        self.eof = True
        if self.lingering:
            return False
        if self.tunnel is not None:
            return self.tunnel.side_eof(self)
        if self.req is not None and not self.parse_dead:
            self._reject_parsing(400)  # a request cut short
        elif self.exchange is not None:
            # The client hung up while its request was served. Browsers and load testers close
            # this way; treating it as an abort (nginx's 499) frees the backend try at once.
            self.exchange.client_lost()
        if self.exchange is None and not self.queue:
            self.close()
            return False
        return True

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()
        self._ensure_deadline(self.write_paused_at + self.limits.send_timeout)
        if self.tunnel is not None:
            self.tunnel.pause_from(self)
        elif self.exchange is not None:
            self.exchange.client_write_paused()

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        if self.tunnel is not None:
            self.tunnel.resume_from(self)
        elif self.exchange is not None:
            self.exchange.client_write_resumed()

    def close(self, linger: bool = False) -> None:
        """Close after what was written is flushed.

        ``linger``: the client may still be sending (a refused or unfinished request). Closing
        with unread input makes the kernel reset the connection, and the reset can destroy the
        error response before the client reads it; so send FIN after the response, read and
        drop what still comes for up to ``LINGER_SECONDS``, then close (nginx lingering_close).
        """
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        if transport is None:
            return
        if linger and transport.can_write_eof():
            self.lingering = True
            transport.write_eof()
            transport.resume_reading()
            self._arm(self.loop.time() + LINGER_SECONDS)
        else:
            self._close_transport(transport)

    def _close_transport(self, transport: asyncio.Transport) -> None:
        """Close once what was written is flushed, but within ``send_timeout``: the transport
        waits for the flush, and a client that never reads would keep the connection, its
        unsent bytes and the read buffers they view (read_buffers.py) for as long as it keeps
        its socket. ``_on_timer`` aborts a closed connection still here then."""
        transport.close()
        if transport.get_write_buffer_size():
            self._arm(self.loop.time() + self.limits.send_timeout)

    def abort(self) -> None:
        """Close now, dropping unsent data (a response that cannot be completed)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # --- flow control -----------------------------------------------------------------------

    def _pause(self, why: int) -> None:
        if not self.pause_flags and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.pause_flags |= why

    def _resume(self, why: int) -> None:
        if self.pause_flags & why:
            self.pause_flags &= ~why
            if not self.pause_flags and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def pause_body(self) -> None:
        self._pause(PAUSE_UPSTREAM)

    def resume_body(self) -> None:
        self._resume(PAUSE_UPSTREAM)

    def pause_pending(self) -> None:
        self._pause(PAUSE_PENDING)

    def pending_taken(self) -> None:
        self._resume(PAUSE_PENDING)

    # --- bytes in ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.tunnel is not None:
            self.tunnel.data_from(self, data)
            return
        if self.parse_dead:
            return
        if self.stop_after:  # more after a closing request: dropped, and the close lingers
            self.parse_dead = True
            return
        lines = self.chunk_lines
        if lines is not None:
            # checked before llhttp reads any of it: nothing of a refused line goes anywhere
            status = self._follow(lines, data, 0)
            if status:
                self._reject_parsing(status)
                return
        self.rbuf = data
        self.rpos = 0
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            rest = upgrade_pause(self, data, exc.args[0])
            if rest:
                self._feed(rest)
        except HttpParserError as exc:
            self._parse_failed(exc)
        req = self.req
        if req is not None and not self.head_started:
            self.head_started = self.loop.time()  # (on_message_begin left it to here)
        if req is not None and not req.head_done and not self.parse_dead:
            # the head goes on in the next read: keep its bytes for read_head
            if self.head_part is None:
                self.head_part = self.rbuf[self.head_at :]
            else:
                self.head_part += self.rbuf
            # llhttp has no head size limit: count raw bytes while the head is incomplete
            # (over by at most one read), which also bounds head_part.
            self.head_raw += len(data)
            if self.head_raw > self.max_head_size:
                self._reject_parsing(self._over_status())
            else:
                self._ensure_deadline(self.head_started + self.header_timeout)
        elif req is not None and not self.pause_flags:
            # a body is on its way: the client may not stall it
            since = max(self.body_read_at, self.head_started)
            self._ensure_deadline(since + self.body_timeout)
        self.rbuf = b""  # llhttp is done with this read: an idle connection holds none
        if self.exchange is None:
            if self.queue:
                self.start_next()
        elif self.queue:
            if not self.pause_flags & PAUSE_HOLD:
                self.held_at = self.loop.time()
            self._pause(PAUSE_HOLD)

    def _feed(self, data: bytes) -> None:
        while True:
            self.rbuf = data
            self.rpos = 0
            try:
                self.parser.feed_data(data)
                return
            except HttpParserUpgrade as exc:
                rest = upgrade_pause(self, data, exc.args[0])
                if not rest:
                    return
                data = rest
            except HttpParserError as exc:
                self._parse_failed(exc)
                return

    def _follow(self, lines: ChunkLines, data: bytes, start: int) -> int:
        """Follow a chunked body's framing over ``data`` from ``start``; the status that refuses
        the request when its size lines or trailers are over the limits, else 0."""
        lines.feed(data, start)
        if lines.bad:
            # a size line ChunkLines cannot read. llhttp would refuse it too; but where the
            # next pipelined head begins is taken from ChunkLines (``end``), so the request is
            # refused here, fail-closed, rather than read on from a position it does not know
            self.chunk_lines = None
            return 400
        if lines.longest > self.limits.max_chunk_line:
            self.chunk_lines = None
            return 400
        if lines.over(self.max_headers, self.max_head_size):
            self.chunk_lines = None
            return 431
        if lines.done:
            self.chunk_lines = None
            self.chunk_end = lines.end
        else:
            self.chunk_lines = lines
        return 0

    def _over_status(self) -> int:
        """The status for a head over the size limit that has not ended: 414 when its target
        alone is (as when llhttp called back with the target), else 431."""
        part = self.head_part or b""
        sp = part.find(b" ")
        while 0 <= sp < len(part) - 1 and part[sp + 1] == 32:
            sp += 1  # a run of spaces stands for one SP (llhttp, read_head)
        if sp >= 0:
            end = part.find(b" ", sp + 1)
            if end < 0:
                end = part.find(b"\r", sp + 1)
            if end < 0:
                end = len(part)
            if end - sp - 1 > self.max_head_size:
                return 414
        return 431

    # --- llhttp's callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.stop_after:
            # bytes after a closing request (in the read that ended it): never parsed, and
            # the close lingers since the client may still be sending
            self.parse_dead = True
            raise h.ParserStop
        if len(self.queue) >= self.max_pipelined:
            self.overflow = True
            raise h.ParserStop
        req = self.req = Request.__new__(Request)  # compiled: no argument parsing (setup)
        req.setup(self.peer_ip, self.secure)
        self.head_raw = 0
        # where its head begins: llhttp skips the empty lines between messages
        p = self.rbuf  # compiled: a C pointer to the bytes (downstream.pxd)
        n = len(self.rbuf)
        i = self.rpos
        if i < 0 or i > n:  # (a backstop: the position of the message before is always known)
            self.reject_status = 400
            raise h.ParserStop
        while i < n and (p[i] == 13 or p[i] == 10):
            i += 1
        self.head_at = i
        self.head_part = None
        self.chunk_end = -1
        # the head's clock: a connection's first message runs from its accept; a later one
        # from the read it begins in, read from the loop only if the message outlasts that read
        # (data_received): most end in it, and their clock is never looked at. (Only the first
        # message: one pipelined behind it, begun while it is served, is not late for that.)
        self.head_started = self.conn_at if self.fresh else 0.0
        self.fresh = False

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        part = self.head_part
        if part is None:  # the usual case: the head is in this read, read without a copy
            status = rh.read_head(self, req, self.rbuf, self.head_at)  # compiled: a C call
            end = self.head_end
        else:
            self.head_part = None
            status = rh.read_head(self, req, part + self.rbuf, 0)
            end = self.head_end - len(part)
        if status:
            self.reject_status = status
            raise h.ParserStop
        self.rpos = end
        req.head_done = True
        if req.chunked:
            status = self._follow(ChunkLines(self.n_headers, self.head_size), self.rbuf, end)
            if status:
                self.reject_status = status
                raise h.ParserStop
        self.queue.append(req)

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        n = len(body)
        self.rpos += n  # a Content-Length body's bytes follow its head (chunked: chunk_end)
        req.body_received += n
        max_body = self.max_body_size
        if max_body and req.body_received > max_body:
            self.reject_status = 413
            raise h.ParserStop
        self.body_read_at = self.loop.time()
        sink = req.sink
        if sink is not None:
            sink.request_body(body)
        else:
            req.pending.append(body)
            req.pending_size += n
            if req.pending_size > self.replay_buffer_size:
                self._pause(PAUSE_PENDING)

    def on_message_complete(self) -> None:
        req = self.req
        assert req is not None
        if self.reseed is not None and not req.upgrade_ws:
            return  # the body follows; see _upgrade_pause
        self.req = None
        req.complete = True
        if req.chunked:
            if self.chunk_end < 0:  # llhttp saw the end ChunkLines did not: never read on
                self.reject_status = 400
                raise h.ParserStop
            self.rpos = self.chunk_end
        if not req.keep_alive:
            self.stop_after = True
        sink = req.sink
        if sink is not None:
            sink.request_complete()
        # After a closing request nothing more is parsed: on_message_begin stops llhttp if
        # this read holds more, data_received drops later reads. Not stopping llhttp here
        # spares the common Connection: close request two exceptions and a lingering close.

    # --- parse outcomes -----------------------------------------------------------------------

    def _parse_failed(self, exc: HttpParserError) -> None:
        if self.overflow or self.stop_after:
            self.parse_dead = True
            self.req = None
            if self.exchange is None and not self.queue:
                self.close()
            return
        status = self.reject_status or 400
        if isinstance(exc, HttpParserCallbackError) and not self.reject_status:
            # a callback failed for a reason of ours: a bug, not the client's fault
            log.error("request parsing failed peer=%s error=%r", self.peer_ip, exc.__context__)
            status = 500
        self._reject_parsing(status)

    def _reject_parsing(self, status: int) -> None:
        self.parse_dead = True
        self._pause(PAUSE_DONE)
        req, self.req = self.req, None
        ex = self.exchange
        if ex is not None and req is not None and req is ex.req:
            ex.client_failed(status)  # the body of the request in flight is broken
            return
        if req is not None and self.queue and self.queue[-1] is req:
            self.queue.pop()  # its head was fine, its body is not: it never starts
        if ex is not None or self.queue:
            self.queue.append(status)  # answered in its turn
        else:
            self.reject_now(status)

    def reject_now(self, status: int) -> None:
        if self.transport is not None and not self.closed:
            data = h.local_response(status, close=True)
            self.transport.write(data)
            self.server.log_refusal(self, status, len(data))
        self.close(True)

    # --- exchanges ----------------------------------------------------------------------------

    def start_next(self) -> None:
        if self.starting:
            return
        self.starting = True
        try:
            while self.exchange is None and self.queue and not self.closed:
                queue = self.queue
                item = queue[0]
                del queue[0]  # compiled: a C call, where pop(0) calls the list's Python method
                if type(item) is int:
                    self.reject_now(item)
                    return
                ex = Exchange.__new__(Exchange)  # compiled: no argument parsing (setup)
                ex.setup(self, item)  # type: ignore[arg-type]  # (an int is a refusal)
                self.exchange = ex
                ex.start()
        finally:
            self.starting = False
        if self.exchange is None:
            if not self.closed:
                self._idle()
        elif not self.queue and self.pause_flags & PAUSE_HOLD:
            # Nothing waits behind the request now in flight, so the hold (which bounds what a
            # pipelining client gets read) has nothing to bound: the state of a connection's
            # first request. Its body may be unfinished (only the last request parsed can be;
            # any before it was read whole) and must be read on.
            self._lift_hold()

    def exchange_done(self, keep_alive: bool, now: float = 0.0) -> None:
        """The exchange in flight ended (``now``: the loop's time, when its caller read it)."""
        self.exchange = None
        if self.closed:
            return
        if not keep_alive:
            # unread input is likely when the request itself was not read to its end
            # (positional: compiled, close is a C call, where a keyword makes it a Python one)
            self.close(self.req is not None or self.parse_dead)
            return
        if self.queue:
            if not self.starting:
                self.start_next()
            return
        if self.starting:
            return
        if self.parse_dead or self.eof:
            self.close()
            return
        # idle: _idle(), inlined for the common case
        self.idle_since = now = now or self.loop.time()
        when = now + self.keepalive_timeout
        if not self.timer_slot or self.timer_at > when:
            self._arm(when)
        if self.pause_flags:
            self._resume(PAUSE_HOLD)

    def _idle(self) -> None:
        if self.queue or self.exchange is not None:
            return
        if self.parse_dead or self.eof:
            self.close()
            return
        self.idle_since = now = self.loop.time()
        self._ensure_deadline(now + self.keepalive_timeout)
        if self.pause_flags & PAUSE_HOLD:
            self._lift_hold()

    def _lift_hold(self) -> None:
        """Read on after the hold. The held time was ours, not the client's: the clock of the
        message being read goes on without it — a head's moves forward by the time held (a
        client that trickles it still gets its 408), a body's starts again."""
        req = self.req
        if req is not None:
            now = self.loop.time()
            self.body_read_at = now
            if not req.head_done:
                self.head_started += now - self.held_at
                self._ensure_deadline(self.head_started + self.header_timeout)
        self._resume(PAUSE_HOLD)

    def start_tunnel(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.exchange = None
        self.pause_flags = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # --- deadlines ----------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self.timer_slot:
            self.wheel.remove(self, self.timer_slot)
        self.timer_at = when
        self.timer_slot = self.wheel.add(self, when)

    def _ensure_deadline(self, when: float) -> None:
        if not self.timer_slot or self.timer_at > when:
            self._arm(when)

    def _on_timer(self) -> None:  # the wheel's wake-up
        self.timer_slot = 0
        if self.lingering:
            self.lingering = False
            if self.transport is not None:
                self._close_transport(self.transport)
            return
        if self.closed:
            if self.transport is not None:  # not flushed in send_timeout (_close_transport)
                self.transport.abort()
            return
        if self.tunnel is not None:
            return
        now = self.loop.time()
        when, kind = self._deadline()
        if when is None:
            self._arm(now + self.header_timeout)  # nothing to watch now: look again
        elif now < when:
            self._arm(when)
        else:
            self._expired(kind)

    def _deadline(self) -> tuple[float | None, int]:
        limits = self.limits
        if self.write_paused_at:
            return self.write_paused_at + limits.send_timeout, 3
        req = self.req
        if req is not None and not self.parse_dead:
            if self.pause_flags:
                return None, 0  # we are not reading its head or body: not the client's delay
            if not req.head_done:
                return self.head_started + limits.header_timeout, 1
            return max(self.body_read_at, self.head_started) + limits.body_timeout, 2
        if self.exchange is not None or self.queue:
            return None, 0
        if self.fresh:
            return self.conn_at + limits.header_timeout, 0
        return self.idle_since + limits.keepalive_timeout, 0

    def _expired(self, kind: int) -> None:
        if kind in (1, 2):  # the head did not arrive in time (slowloris), or the body stalled
            self._reject_parsing(408)
        elif kind == 3:  # the client does not read our response
            self.abort()
        else:  # idle keep-alive, or a connection that never sent a byte
            self.close()
