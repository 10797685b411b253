"""The reading half of an AJP connection: container packets in, the exchange told what came.

A mixin of ``AjpConnection`` (balancer.dataplane.ajp_upstream), whose state it uses, as
``relay.py`` is the response half of ``Exchange``. Each read is split into packets and decoded
by the codec; SEND_HEADERS is checked (``ajp_fields.response_head``) before the relay sees it,
SEND_BODY_CHUNK is counted against the Content-Length, GET_BODY_CHUNK is answered from the
request body, END_RESPONSE ends the try. Anything malformed, out of order or oversized is
BAD_RESPONSE (502) — READ_FAILED once response bytes reached the client, which then loses its
connection — and never more than that one request.
"""

from __future__ import annotations

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
from balancer.dataplane.ajp_fields import response_head
from balancer.lb.decisions import OutcomeKind

if TYPE_CHECKING:
    import asyncio

    from balancer.ajp.wire import Deframer
    from balancer.dataplane.ajp_body import RequestBody
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.pool import MemberPool

log = logging.getLogger("balancer.dataplane.ajp")

# the phases of one request on a connection
IDLE = 0  # no request, or one not started
PING = 1  # CPing sent, waiting for CPong
SENT = 2  # forward request sent, response being read
DONE = 3  # END_RESPONSE read


class AjpResponse:
    """The reading half of an AJP connection (a mixin: the state is the connection's)."""

    __slots__ = ()

    pool: MemberPool
    loop: asyncio.AbstractEventLoop
    exchange: Exchange | None
    deframer: Deframer
    upload: RequestBody
    phase: int
    received: int
    timer: asyncio.TimerHandle | None
    ping_timer: asyncio.TimerHandle | None
    last_read: float
    head_request: bool
    closed: bool
    # what the relay reads (the same names as UpstreamConnection's)
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    set_cookies: list[bytes] | None
    content_length: int | None
    final_head: bool
    body_got: int

    if TYPE_CHECKING:  # provided by the class this is mixed into

        def _send_forward(self, ex: Exchange) -> None: ...

        def _pump(self, ex: Exchange) -> None: ...

        def _finish(self) -> None: ...

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
