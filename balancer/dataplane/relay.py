"""Relaying a member's response to the client: head, body, end, and the switch to a tunnel.

A mixin of ``Exchange`` (balancer.dataplane.exchange), whose state it uses. Output made while
llhttp parses one read of the member (head, body chunks, the last chunk) is collected in
``wbuf`` and written once after the read: a small response leaves in one send.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING

from balancer.dataplane import http11 as h
from balancer.lb.decisions import OutcomeKind, refusal_of

if TYPE_CHECKING:
    from balancer.dataplane.downstream import ClientConnection
    from balancer.dataplane.member_connection import MemberConnection
    from balancer.dataplane.pool import MemberPool
    from balancer.dataplane.request import Request
    from balancer.dataplane.routes import Plan, ProxyTo
    from balancer.lb.decisions import Forward

log = logging.getLogger("balancer.dataplane.exchange")

_OK_LINE = h.status_line(200, b"OK")

# how the response body goes to the client
MODE_NONE = 0  # no body (HEAD, 204, 304, 1xx)
MODE_LENGTH = 1  # Content-Length, relayed as is
MODE_CHUNKED = 2  # re-chunked (chunked or close-delimited upstream, HTTP/1.1 client)
MODE_CLOSE = 3  # ends when the connection closes (HTTP/1.0 client, unknown length)


class ResponseRelay:
    """The response half of an exchange (a mixin: the state is the exchange's)."""

    __slots__ = ()

    client: ClientConnection
    req: Request
    route: ProxyTo | None
    plan: Plan | None
    fwd: Forward | None
    up: MemberConnection | None
    pool: MemberPool | None
    done: bool
    replayable: bool
    request_sent: bool
    body_done_up: bool
    sent: int
    resp_started: bool
    resp_bytes: int
    mode: int
    client_ka: bool
    status: int
    set_cookie: bytes | None
    unsent_head: bytes | None
    failed: str
    first_byte_at: float
    ended_at: float
    wbuf: list[bytes]

    if TYPE_CHECKING:  # provided by the class this is mixed into
        # the exchange's own steps
        def _advance(self) -> None: ...

        def _fail(self, status: int) -> None: ...

        def _drop_up(self) -> None: ...

        def _finish_forward(self, received: int) -> None: ...

        def _end(self, keep_alive: bool) -> None: ...

        def _log(self) -> None: ...

        def upstream_failed(self, kind: OutcomeKind, reason: str) -> None: ...

    def upstream_head(self) -> None:
        up = self.up
        assert up is not None
        status = up.status
        req = self.req
        if status < 200:
            if status == 101:
                if not req.upgrade_ws:
                    self.upstream_failed(OutcomeKind.BAD_RESPONSE, "bad-response: 101 unasked")
                    return
                self._switch_head(up)
            elif status != 100 and req.http11:
                # 102/103 go to the client (not 100: the balancer answers Expect itself)
                self.resp_started = True
                self.wbuf.append(self._head(up, status, MODE_NONE, interim=True))
            return
        # a member's "cluster full" 503 names itself (plan.py: relayed, not retried); the
        # keyword goes only with it, so plans written before it keep working
        refusal = refusal_of(up.headers) if status == 503 else None
        plan = self.plan
        now = monotonic()
        try:
            if refusal is None:
                keep = plan.response_head(status, now, replayable=self.replayable)  # type: ignore[union-attr]
            else:
                keep = plan.response_head(  # type: ignore[union-attr]
                    status, now, replayable=self.replayable, refusal=refusal
                )
        except Exception:
            log.exception("plan.response_head failed for %r", req)
            keep = True
        if not keep:
            # fail_on_status: the response is thrown away with its connection
            self.fwd = None
            self.failed = "fail-on-status"
            self._drop_up()
            if self.resp_started:
                self._fail(503)  # a 103 went out already: no other member can answer now
            else:
                self._advance()
            return
        rule = self.route.rule if self.route is not None else None
        use_own = rule.use_server_errors if rule is not None else None
        if use_own and status >= use_own:
            # the backend's error body is replaced by the balancer's own page (mod_jk §4.5)
            self._finish_forward(up.received)
            self._drop_up()
            self._fail(status)
            return
        if req.method == b"HEAD" or status in (204, 304):
            mode = MODE_NONE
        elif up.content_length is not None and not up.chunked:
            mode = MODE_LENGTH
        elif req.http11:
            mode = MODE_CHUNKED
        else:
            mode = MODE_CLOSE
        self.mode = mode
        self.status = status
        self.client_ka = (
            req.keep_alive and req.complete and mode != MODE_CLOSE and not req.upgrade_ws
        )
        self.resp_started = True
        self.first_byte_at = now
        # kept to tell, if the read that brought it breaks, that it never left (exchange.py)
        head = self.unsent_head = self._head(up, status, mode)
        self.wbuf.append(head)

    def _head(self, up: MemberConnection, status: int, mode: int, interim: bool = False) -> bytes:
        reason = up.reason
        line = _OK_LINE if status == 200 and reason == b"OK" else h.status_line(status, reason)
        parts = [line]
        for name, value in up.headers:
            parts += (name, b": ", value, b"\r\n")
        if interim:
            parts.append(b"\r\n")
            return b"".join(parts)
        sc = self.set_cookie
        if sc is not None and not self._backend_sets(sc, up):
            parts += (b"Set-Cookie: ", sc, b"\r\n")
        if mode == MODE_CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if self.req.secure and self.client.server.hsts:
            parts.append(self.client.server.hsts_for(up.headers))
        if self.req.http11:
            if not self.client_ka:
                parts.append(b"Connection: close\r\n")
        elif self.client_ka:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    @staticmethod
    def _backend_sets(cookie: bytes, up: MemberConnection) -> bool:
        # pyjk does not add the routing cookie over one of the application's own with the same
        # name: the browser would keep ours and lose the session id (mod_jk §9 item 4)
        if not up.set_cookies:
            return False
        name = h.set_cookie_name(cookie)
        return any(h.set_cookie_name(v) == name for v in up.set_cookies)

    def upstream_body(self, data: bytes) -> None:
        n = len(data)
        self.resp_bytes += n
        mode = self.mode
        if mode == MODE_CHUNKED:
            self.wbuf += h.chunk(data)
        elif mode != MODE_NONE:
            self.wbuf.append(data)

    def flush(self) -> None:
        buf = self.wbuf
        if not buf:
            return
        self.wbuf = []
        client = self.client
        transport = client.transport
        if transport is not None and not client.closed:
            if len(buf) == 1:
                transport.write(buf[0])
            elif len(buf) < 5:
                transport.write(b"".join(buf))  # a small response: one buffer, one send
            else:
                transport.writelines(buf)

    def upstream_complete(self, reusable: bool) -> None:
        """The response was read to its end (``reusable``: the connection may serve again)."""
        buf = self.wbuf
        if self.mode == MODE_CHUNKED:
            buf.append(h.LAST_CHUNK)
        if buf:
            # flush(), inlined for the usual small response
            self.wbuf = []
            client = self.client
            transport = client.transport
            if transport is not None and not client.closed:
                if len(buf) == 1:
                    transport.write(buf[0])
                elif len(buf) < 5:
                    transport.write(b"".join(buf))  # a small response: one buffer, one send
                else:
                    transport.writelines(buf)
        up = self.up
        received = 0
        if up is not None:
            received = up.received
            self.up = None
            if reusable and self.body_done_up and not up.closed:
                self.pool.release(up)  # type: ignore[union-attr]
            else:
                self.client.resume_body()
                self.pool.discard(up)  # type: ignore[union-attr]
        self.ended_at = now = monotonic()  # (ProxyServer.finished reads it: one clock read)
        if self.fwd is not None:
            self.fwd = None
            try:
                self.plan.finish(self.sent, received, now)  # type: ignore[union-attr]
            except Exception:
                log.exception("plan.finish failed for %r", self.req)
        self._end(self.client_ka and self.req.complete)

    def _switch_head(self, up: MemberConnection) -> None:
        parts = [h.status_line(101, up.reason)]
        for name, value in up.headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Connection: Upgrade\r\nUpgrade: ", up.upgrade or b"websocket", b"\r\n\r\n")
        self.status = 101
        self.resp_started = True
        self.wbuf.append(b"".join(parts))

    def upstream_upgraded(self, rest: bytes) -> None:
        """The backend switched protocols: from now on bytes flow both ways untouched."""
        from balancer.dataplane.tunnel import Tunnel

        up = self.up
        assert up is not None
        self.flush()
        self.up = None
        self._finish_forward(up.received)
        self.pool.forget_tunnel(up)  # type: ignore[union-attr]
        client = self.client
        self.done = True
        self._log()
        Tunnel(client, up, client.upgrade_rest or b"", rest)
