"""The client side: one ``asyncio.Protocol`` per client connection, parsing with llhttp.

Every request head is validated completely before the router sees it, so nothing of a
malformed request reaches a backend. Requests are answered one at a time and in order: a
request pipelined behind the one in flight is parsed and queued (at most
``Limits.max_pipelined``), and a parse error behind it is answered in its turn and closes the
connection — the parser is dead after an error, so nothing behind it is ever parsed.

llhttp calls the connection back for each part of a request (on_message_begin ...
on_message_complete); the checks of a head that llhttp leaves to us are
``request_head.check_head``.

Deadlines use one timer per connection that is re-armed lazily: the hot path only stores
timestamps, and the timer, when it fires, works out which deadline applies now.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from balancer.dataplane import http11 as h
from balancer.dataplane.chunk_lines import ChunkLines, locate_body
from balancer.dataplane.exchange import Exchange
from balancer.dataplane.request import Request
from balancer.dataplane.request_head import (
    FIELD_KINDS,
    PAUSE_DONE,
    PAUSE_HOLD,
    PAUSE_PENDING,
    PAUSE_UPSTREAM,
    check_head,
    upgrade_pause,
)
from balancer.dataplane.tls_facts import TlsInfo, tls_info

if TYPE_CHECKING:
    from balancer.dataplane.proxy import ProxyServer
    from balancer.dataplane.tunnel import Tunnel

log = logging.getLogger(__name__)

__all__ = ["PAUSE_DONE", "PAUSE_HOLD", "PAUSE_PENDING", "PAUSE_UPSTREAM", "ClientConnection"]

# how long a refused client may go on sending before the connection closes (see close())
LINGER_SECONDS = 2.0


class ClientConnection:  # an asyncio.Protocol (uvloop needs only the methods)
    __slots__ = (
        "body_read_at",
        "body_timeout",
        "chunk_lines",
        "chunked_heads",
        "closed",
        "conn_at",
        "eof",
        "exchange",
        "forwarded_fields",
        "forwarded_host",
        "fresh",
        "head_raw",
        "head_size",
        "head_started",
        "header_timeout",
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
        "reject_status",
        "replay_buffer_size",
        "req",
        "reseed",
        "secure",
        "server",
        "starting",
        "stop_after",
        "timer",
        "timer_at",
        "tls",
        "transport",
        "trusted",
        "tunnel",
        "upgrade_rest",
        "valid_host",
        "write_paused_at",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = limits = server.limits
        # the limits read for every request, as fields of the connection's own (C fields when
        # compiled: a read of a Limits attribute from compiled code is a Python lookup)
        self.max_head_size = limits.max_head_size
        self.max_headers = limits.max_headers
        self.max_pipelined = limits.max_pipelined
        self.max_body_size = limits.max_body_size
        self.replay_buffer_size = limits.replay_buffer_size
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self.loop = server.loop
        self.secure = server.secure
        self.tls: TlsInfo | None = None  # set when the connection is TLS (tls_listener)
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.peer_ip = ""
        self.trusted = False
        self.req: Request | None = None  # the request being parsed
        self.queue: deque[Request | int] = deque()  # parsed, not started; int = reject status
        self.exchange: Exchange | None = None
        self.tunnel: Tunnel | None = None
        self.head_size = 0  # exact size of the head being parsed (target + fields)
        self.head_raw = 0  # bytes read while a head stayed incomplete
        # a chunked request body's size lines, followed to bound them (chunk_lines.py):
        # the body being followed, and the chunked heads that completed in the current read
        self.chunk_lines: ChunkLines | None = None
        self.chunked_heads: list[Request] | None = None
        self.n_headers = 0
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
        self.fresh = True  # no request answered yet
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.conn_at = 0.0
        self.head_started = 0.0
        self.body_read_at = 0.0
        self.idle_since = 0.0
        self.write_paused_at = 0.0

    # --- connection life ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        status = self.server.admit(self)
        if status:
            self.closed = True
            transport.write(h.local_response(status, close=True))
            transport.close()
            return
        # (admit set self.trusted: whether the peer's X-Forwarded-*/Forwarded fields are kept)
        if self.secure:  # what members learn of the TLS connection, read once
            self.tls = tls_info(transport.get_extra_info("ssl_object"))
        transport.set_write_buffer_limits(high=self.limits.write_buffer_high)
        now = self.loop.time()
        self.conn_at = self.idle_since = now
        self._arm(now + self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.closed = True
        self.server.release(self)
        if self.tunnel is not None:
            self.tunnel.side_lost(self)
        elif self.exchange is not None:
            self.exchange.client_lost()
        self.transport = None
        # llhttp's parser holds bound methods of this connection: without this, every
        # connection is a reference cycle that only the cyclic collector frees (~9 objects per
        # Connection: close request; its passes showed in that scenario's p99). Nothing is
        # parsed after connection_lost.
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
            transport.close()

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
            lines.feed(data)
            if lines.longest > self.limits.max_chunk_line:
                self.chunk_lines = None
                self._reject_parsing(400)
                return
            if lines.done:
                self.chunk_lines = None
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            rest = upgrade_pause(self, data, exc.args[0])
            if rest:
                self._feed(rest)
        except HttpParserError as exc:
            self._parse_failed(exc)
        if self.chunked_heads is not None:
            self._follow_chunks(data)
        req = self.req
        if req is not None and not req.head_done and not self.parse_dead:
            # llhttp has no head size limit and buffers a field until it ends: count raw bytes
            # while the head is incomplete (over by at most one read).
            self.head_raw += len(data)
            if self.head_raw > self.max_head_size:
                self._reject_parsing(431)
            else:
                self._ensure_deadline(self.head_started + self.header_timeout)
        elif req is not None and not self.pause_flags:
            # a body is on its way: the client may not stall it
            since = max(self.body_read_at, self.head_started)
            self._ensure_deadline(since + self.body_timeout)
        if self.exchange is None:
            if self.queue:
                self.start_next()
        elif self.queue:
            self._pause(PAUSE_HOLD)

    def _feed(self, data: bytes) -> None:
        while True:
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

    def _follow_chunks(self, data: bytes) -> None:
        """Chunked request heads ended in this read: find where each body began and follow
        its size lines from there (the check for later reads runs before llhttp's)."""
        heads, self.chunked_heads = self.chunked_heads or [], None
        for req in heads:
            if self.parse_dead:
                return
            lines = locate_body(data, req.body_received, req.complete)
            if lines is None:
                continue
            if lines.longest > self.limits.max_chunk_line:
                queue = self.queue
                if req is not self.req and any(q is req for q in queue):
                    # complete already (and perhaps more parsed behind it): none is served
                    while queue[-1] is not req:
                        queue.pop()
                    self.req = req
                self._reject_parsing(400)
                return
            if not lines.done:
                self.chunk_lines = lines

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
        self.req = Request(self.peer_ip, self.secure)
        self.head_size = self.head_raw = self.n_headers = 0
        self.head_started = self.conn_at if self.fresh else self.loop.time()

    def on_url(self, url: bytes) -> None:
        req = self.req
        assert req is not None
        req.target += url
        if len(req.target) > self.max_head_size:
            self.reject_status = 414
            raise h.ParserStop

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        assert req is not None
        self.n_headers += 1
        self.head_size += len(name) + len(value) + 4
        if self.n_headers > self.max_headers or self.head_size > self.max_head_size:
            self.reject_status = 431
            raise h.ParserStop
        if req.head_done:
            return  # a trailer field of a chunked body: counted above, never forwarded
        lname = name.lower()
        entry = FIELD_KINDS.get(lname)
        if entry is None:
            if 0x5F in name:  # "_" (an int: see check_head's "#")
                policy = self.limits.underscores_in_headers
                if policy == "reject":
                    self.reject_status = 400
                    raise h.ParserStop
                if policy == "drop":
                    return
            if lname.startswith(h.OWN_HEADER_PREFIX):
                return  # ours to set, never the client's
            req.headers.append((name, value))
            return
        kind, bit = entry
        if bit:
            if req.singletons & bit:
                self.reject_status = 400
                raise h.ParserStop
            req.singletons |= bit
        if kind == h.H_HOST:
            if req.host is not None:
                self.reject_status = 400
                raise h.ParserStop
            req.host = value
        elif kind == h.H_SINGLETON:
            req.headers.append((name, value))
        elif kind == h.H_COOKIE:
            req.headers.append((name, value))
            req.cookies.append(value)
        elif kind == h.H_CONTENT_LENGTH:
            req.content_length = int(value)  # llhttp checked digits and duplicates
        elif kind == h.H_TRANSFER_ENCODING:
            if req.te is not None:
                self.reject_status = 400
                raise h.ParserStop
            req.te = value
        elif kind == h.H_CONNECTION:
            req.connection += h.connection_tokens(value)
        elif kind == h.H_EXPECT:
            req.expect = value
        elif kind == h.H_UPGRADE:
            req.upgrade = value
        elif kind == h.H_XFF:
            req.xff = value if req.xff is None else req.xff + b", " + value
        elif kind == h.H_XFPROTO:
            req.xfproto = value
        elif kind == h.H_XFHOST:
            req.xfhost = value
        elif kind == h.H_FORWARDED:
            if req.forwarded is None:
                req.forwarded = []
            req.forwarded.append(value)
        # H_HOP: dropped

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        status = check_head(self, req)
        if status:
            self.reject_status = status
            raise h.ParserStop
        req.head_done = True
        self.queue.append(req)

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        n = len(body)
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
        self.close(linger=True)

    # --- exchanges ----------------------------------------------------------------------------

    def start_next(self) -> None:
        if self.starting:
            return
        self.starting = True
        try:
            while self.exchange is None and self.queue and not self.closed:
                item = self.queue.popleft()
                if type(item) is int:
                    self.reject_now(item)
                    return
                ex = Exchange(self, item)  # type: ignore[arg-type]  # (an int is a refusal)
                self.exchange = ex
                ex.start()
        finally:
            self.starting = False
        if self.exchange is None and not self.closed:
            self._idle()

    def exchange_done(self, keep_alive: bool) -> None:
        self.exchange = None
        self.fresh = False
        if self.closed:
            return
        if not keep_alive:
            # unread input is likely when the request itself was not read to its end
            self.close(linger=self.req is not None or self.parse_dead)
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
        self.idle_since = now = self.loop.time()
        when = now + self.keepalive_timeout
        if self.timer is None or self.timer_at > when:
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
        self._resume(PAUSE_HOLD)

    def start_tunnel(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.exchange = None
        self.pause_flags = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # --- deadlines ----------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _ensure_deadline(self, when: float) -> None:
        if self.timer is None or self.timer_at > when:
            self._arm(when)

    def _on_timer(self) -> None:
        self.timer = None
        if self.lingering:
            if self.transport is not None:
                self.transport.close()
            return
        if self.closed or self.tunnel is not None:
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
            if not req.head_done:
                return self.head_started + limits.header_timeout, 1
            if self.pause_flags:
                return None, 0  # we are not reading the body: not the client's delay
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
