"""The upstream side for ``ajp13`` members: one pooled AJP/1.3 connection to a container.

It implements ``MemberConnection`` (member_connection.py) as ``UpstreamConnection`` does for
``http`` members — the same calls both ways (``send_request``, ``body_data``,
``request_done``, ``pause_reading_for_client`` ...; the exchange's ``upstream_head``,
``upstream_body``, ``upstream_complete``, ``upstream_failed``) and the same attributes for the
relay (``status``, ``reason``, ``headers``, ``content_length`` ...) — so the plan loop, the
relay, the pool and the lb engine treat both kinds of member alike. The bytes are the codec's
(``balancer.ajp``); the field mapping is ``ajp_fields``, the request body's packets
``ajp_body``, the member's settings ``ajp_settings``.

Reading: each read is split into packets and decoded by the codec; SEND_HEADERS is checked
(``ajp_fields.response_head``) before the relay sees it, SEND_BODY_CHUNK is counted against
the Content-Length, GET_BODY_CHUNK is answered from the request body, END_RESPONSE ends the
try. Anything malformed, out of order or oversized is BAD_RESPONSE (502) — READ_FAILED once
response bytes reached the client, which then loses its connection — and never more than
that one request.

One request on a connection:

    [CPing -> CPong]                 ping_mode C (fresh connection, connect_timeout) or
                                     P (every request, prepost_timeout)
    FORWARD_REQUEST [+ first body packet, unasked, when the body has a length > 0: mod_jk
                     does, and Tomcat reads it without asking]
    <- GET_BODY_CHUNK n  -> one body packet of <= n bytes (an empty one once the body is done)
    <- SEND_HEADERS, SEND_BODY_CHUNK..., END_RESPONSE reuse   (GET_BODY_CHUNK may interleave)

Failures map onto the same outcomes as http members: CPing unanswered in time ->
CONNECT_FAILED, connection closed instead of a CPong -> READ_FAILED (nothing of the request was
sent in either case), connection lost later -> SEND_FAILED / READ_FAILED, malformed or oversized
packets -> BAD_RESPONSE (502), silence -> REPLY_TIMEOUT. A connection goes back to the pool only
after END_RESPONSE with reuse=1 and with the stream in step (no body packet owed, no byte
after the end).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from balancer.ajp.errors import AjpError
from balancer.ajp.reply import (
    BodyChunk,
    CPong,
    EndResponse,
    GetBodyChunk,
    SendHeaders,
    decode_reply,
)
from balancer.ajp.request import CPING_PACKET, encode_forward_request, max_body_chunk
from balancer.ajp.wire import from_container_deframer
from balancer.dataplane.ajp_body import RequestBody
from balancer.dataplane.ajp_fields import forward_request, response_head
from balancer.dataplane.ajp_settings import AjpSettings, ajp_settings
from balancer.dataplane.deadlines import next_deadline
from balancer.dataplane.member_connection import MemberSocket
from balancer.lb.decisions import OutcomeKind

if TYPE_CHECKING:
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.pool import MemberPool

__all__ = ["AjpConnection", "AjpSettings", "ajp_settings"]


log = logging.getLogger("balancer.dataplane.ajp")

# the phases of one request on a connection
IDLE = 0  # no request, or one not started
PING = 1  # CPing sent, waiting for CPong
SENT = 2  # forward request sent, response being read
DONE = 3  # END_RESPONSE read


class AjpConnection(MemberSocket):
    __slots__ = (
        "body_got",
        "body_paused",
        "deframer",
        "final_head",
        "max_chunk",
        "phase",
        "ping_timer",
        "settings",
        "upload",
    )

    def __init__(self, pool: MemberPool) -> None:
        super().__init__(pool)
        settings = pool.ajp
        assert settings is not None
        self.settings = settings
        self.deframer = from_container_deframer(settings.max_packet_size)
        self.max_chunk = max_body_chunk(settings.max_packet_size)
        self.ping_timer: asyncio.TimerHandle | None = None  # (tunnel: None, AJP never switches)
        self.phase = IDLE
        self.upload = RequestBody(self.max_chunk)
        self.body_paused = False
        self._reset_response()

    def _reset_response(self) -> None:
        self._reset_head()  # chunked stays False: AJP bodies are never chunked on the wire
        self.final_head = False
        self.body_got = 0

    # --- connection life ------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timers()
        ex = self.exchange
        self.pool.lost(self)
        if ex is None:
            return
        reason = "connection-reset" if exc is not None else "connection-closed"
        if self.phase == PING:
            if self.reused and not ex.stale_retried:
                # a pooled connection the container closed while it was idle is not a
                # failure of the member: ask once for a fresh one (as for http members)
                ex.stale_retried = True
                self.exchange = None
                self.pool.acquire(ex, fresh=True)
                return
            # The container accepted the connection and closed it instead of answering: the
            # failure an http member shows when it closes without a response, a read failure
            # (502 when it is the last; mod_jk answers 502 here, modjk.md §9 item 2) — though
            # only the CPing went out, so the request itself may still go anywhere.
            ex.upstream_failed(OutcomeKind.READ_FAILED, f"cping-failed: {reason}")
        else:
            sent_all = ex.body_done_up and not self.upload
            kind = (
                OutcomeKind.READ_FAILED if (sent_all or self.received) else OutcomeKind.SEND_FAILED
            )
            ex.upstream_failed(kind, reason)
        ex.flush()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()
        if self.exchange is not None:
            self._body_flow(self.exchange)

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        if self.exchange is not None:
            self._body_flow(self.exchange)

    def close(self) -> None:
        self._cancel_timers()
        self._unpause_client()
        self.exchange = None
        self._close_transport()

    # --- one request: the exchange's calls -------------------------------------------------

    def send_request(self, ex: Exchange, reply_timeout: float, head_request: bool) -> None:
        """``ex`` owns the connection now: start its request (CPing first when configured)."""
        self.exchange = ex
        self.received = 0
        self.head_request = head_request
        self.reply_timeout = reply_timeout
        self.socket_timeout = self.pool.socket_timeout
        self.phase = IDLE
        self._reset_response()
        self.upload = RequestBody(self.max_chunk, b"".join(ex.body), ex.body_complete)
        if ex.client.pause_flags:
            ex.client.pending_taken()  # the body read so far is ours now
        s = self.settings
        timeout = (
            s.connect_timeout if (s.connect_timeout and not self.reused) else s.prepost_timeout
        )
        if timeout:
            self.phase = PING
            self._write(CPING_PACKET)
            self.ping_timer = self.loop.call_later(timeout, self._ping_expired)
            self._body_flow(ex)
            return
        self._send_forward(ex)

    def body_data(self, data: bytes) -> None:
        """More of the client's body (Exchange.request_body)."""
        ex = self.exchange
        if ex is None:
            return
        self.upload.add(data)
        if self.phase == SENT and self.upload.waiting:
            self._pump(ex)
        else:
            self._body_flow(ex)

    def request_done(self) -> None:
        """The client's body is complete (Exchange.request_complete)."""
        self.upload.finish()
        ex = self.exchange
        if ex is not None and self.phase == SENT and self.upload.waiting:
            self._pump(ex)

    def detach(self) -> None:
        """The exchange is done with this connection (before it goes back to the pool)."""
        self._unpause_client()
        self.exchange = None
        self._cancel_timers()
        self.upload = RequestBody(self.max_chunk)
        if self.read_paused:
            self.resume_reading_for_client()

    # --- bytes in: container packets, the exchange told what came --------------------------

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            self.pool.discard(self)  # type: ignore[arg-type]  # bytes nobody asked for
            return
        self.received += len(data)
        if self.timer is not None:
            self.last_read = self.loop.time()
        try:
            payloads = self.deframer.feed(data)
        except AjpError as exc:
            self._broken(ex, exc)
            return
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            try:
                msg = decode_reply(payload)
            except AjpError as exc:
                self._broken(ex, exc)
                return
            kind = type(msg)
            if self.phase == PING:
                if kind is not CPong:
                    self._broken(ex, AjpError(f"{kind.__name__} while waiting for CPONG"))
                    return
                self._pinged(ex)
            elif kind is BodyChunk:
                if not self._body(ex, msg.data):  # type: ignore[union-attr]
                    return
            elif kind is GetBodyChunk:
                self.upload.ask(msg.size)  # type: ignore[union-attr]
                self._pump(ex)
            elif kind is SendHeaders:
                if not self._head(ex, msg):  # type: ignore[arg-type]
                    return
            elif kind is EndResponse:
                more = i < last or self.deframer.pending > 0
                self._end(ex, msg.reuse, more)  # type: ignore[union-attr]
                return
            else:
                self._broken(ex, AjpError("CPONG without a CPING"))
                return
            if self.exchange is not ex:
                return  # the exchange let go of this connection (fail_on_status, ...)
        if ex.wbuf:
            ex.flush()

    def _pinged(self, ex: Exchange) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        self._send_forward(ex)

    def _head(self, ex: Exchange, msg: SendHeaders) -> bool:
        if self.final_head:
            self._broken(ex, AjpError("a second SEND_HEADERS"))
            return False
        try:
            head = response_head(msg)
        except AjpError as exc:
            self._broken(ex, exc)
            return False
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.set_cookies = head.set_cookies
        self.content_length = head.content_length
        self.final_head = head.status >= 200  # 1xx: interim, the final head follows
        ex.upstream_head()
        return self.exchange is ex

    def _counts_length(self) -> bool:
        return (
            self.content_length is not None
            and not self.head_request
            and self.status not in (204, 304)
        )

    def _body(self, ex: Exchange, data: bytes) -> bool:
        if not self.final_head:
            self._broken(ex, AjpError("SEND_BODY_CHUNK before SEND_HEADERS"))
            return False
        self.body_got += len(data)
        if self._counts_length() and self.body_got > self.content_length:  # type: ignore[operator]
            # the client was promised Content-Length bytes: a byte more would be the start
            # of a response it never asked for
            self._broken(ex, AjpError("more body than its Content-Length"))
            return False
        if data:
            ex.upstream_body(data)
        return True

    def _end(self, ex: Exchange, reuse: bool, more: bool) -> None:
        if not self.final_head:
            self._broken(ex, AjpError("END_RESPONSE before SEND_HEADERS"))
            return
        if self._counts_length() and self.body_got < self.content_length:  # type: ignore[operator]
            ex.upstream_failed(OutcomeKind.READ_FAILED, "response shorter than its Content-Length")
            ex.flush()
            return
        self.phase = DONE
        # reusable only in step: nothing after the end, no body packet the container waits for
        reusable = reuse and not more and not self.upload.owed and not self.closed
        self._finish()
        ex.upstream_complete(reusable)

    def _broken(self, ex: Exchange, exc: AjpError) -> None:
        log.info("member=%s bad AJP from the container: %s", self.pool.name, exc)
        if self.phase == PING:
            ex.upstream_failed(OutcomeKind.CONNECT_FAILED, f"cping-failed: {exc}")
        else:
            ex.upstream_failed(OutcomeKind.BAD_RESPONSE, f"bad-response: {exc}")
        ex.flush()

    # --- sending ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def _send_forward(self, ex: Exchange) -> None:
        req = ex.req
        complete = self.upload.complete
        # a chunked body read whole goes with its length, as for http members; otherwise its
        # length is unknown and the container asks for every packet
        length = (len(self.upload) if complete else None) if req.chunked else req.content_length
        client = ex.client
        transport = client.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        local = transport.get_extra_info("sockname") if transport is not None else None
        tls = client.tls
        route = ex.route
        fwd = ex.fwd
        member = fwd.member if fwd is not None else None
        # mod_jk sends JK_LB_ACTIVATION for lb members, not for a directly mapped worker
        direct = route is not None and route.name == self.pool.name
        # the member's configuration as loaded now: a reload that changed the secret applies
        # to the next request, even on a connection opened before it
        cfg = getattr(member, "config", None)
        secret = cfg.secret if cfg is not None else self.settings.secret
        try:
            msg = forward_request(
                req,
                content_length=length,
                request_id=ex.request_id,
                trusted=client.trusted,
                is_trusted=ex.server.is_trusted,
                route=getattr(member, "route", "") or self.pool.name,
                secret=secret,
                activation=None if direct or fwd is None else fwd.activation,
                peer_port=peer[1] if isinstance(peer, tuple) else None,
                local_addr=local[0] if isinstance(local, tuple) else None,
                tls=tls,
            )
            packet = encode_forward_request(msg, self.settings.max_packet_size)
        except (AjpError, ValueError) as exc:
            log.warning(
                "member=%s request cannot be sent over AJP (max_packet_size=%d): %s",
                self.pool.name,
                self.settings.max_packet_size,
                exc,
            )
            self.phase = DONE
            ex.client_failed(431)
            return
        self.phase = SENT
        self._write(packet)
        ex.sent += len(packet)
        self.upload.announce(length)
        ex.request_out(complete)
        self._pump(ex)
        self._watch()

    def _pump(self, ex: Exchange) -> None:
        """Answer what the container asked for with what the client has sent."""
        out = self.upload.packets()
        if out and self.transport is not None and not self.closed:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)
            ex.sent += sum(map(len, out))
            self.last_read = self.loop.time()  # the container's turn starts now
        self._body_flow(ex)

    def _body_flow(self, ex: Exchange) -> None:
        """Hold the client's body back while the container has not asked for what we hold."""
        high = self.pool.limits.write_buffer_high
        held = len(self.upload)
        if self.write_paused_at or held > high:
            if not self.body_paused:
                self.body_paused = True
                ex.client.pause_body()
        elif self.body_paused and held <= high // 2:
            self.body_paused = False
            ex.client.resume_body()

    def _finish(self) -> None:
        """The response ended: nothing more to time, hold back or send for this request."""
        self._cancel_timers()
        self._unpause_client()
        self.upload = RequestBody(self.max_chunk)

    def _unpause_client(self) -> None:
        if self.body_paused:
            self.body_paused = False
            ex = self.exchange
            if ex is not None:
                ex.client.resume_body()

    # --- timeouts -----------------------------------------------------------------------------

    def _ping_expired(self) -> None:
        self.ping_timer = None
        ex = self.exchange
        if ex is None or self.closed or self.phase != PING:
            return
        ex.upstream_failed(OutcomeKind.CONNECT_FAILED, "cping-timeout")
        ex.flush()

    def _watch(self) -> None:
        """Arm the read deadline (reply_timeout, socket_timeout) once the request is out."""
        first = min(t for t in (self.reply_timeout, self.socket_timeout, 1e18) if t)
        if first < 1e18 and self.timer is None:
            self.last_read = now = self.loop.time()
            self.timer = self.loop.call_at(now + first, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        ex = self.exchange
        if ex is None or self.closed or self.phase != SENT:
            return
        now = self.loop.time()
        if self.read_paused or self.upload.waiting:
            # we hold reading back for a slow client, or the container waits for the
            # client's body: neither is the container's silence
            self.last_read = now
        last_read = self.last_read
        # the reply clock restarts with each read (the request is out: phase SENT)
        due = next_deadline(
            last_read, self.reply_timeout, last_read, self.socket_timeout, self.write_paused_at
        )
        if due is None:
            return
        best, kind, reason = due
        if now < best:
            self.timer = self.loop.call_at(best, self._on_timer)
            return
        ex.upstream_failed(kind, reason)
        ex.flush()

    def _cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
