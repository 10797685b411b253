"""One request, from routing to the last byte of its response: the plan loop and the relay.

The loop of ``balancer.lb.decisions`` is run here, driven by callbacks rather than a
coroutine — a task and two futures per request cost about a fifth of the throughput on one
core, and every step of the loop is an event anyway (a connection, a response head, a failure):

    _advance:   step = plan.next(now)
                Forward -> _forward: pooled connection -> _attach (head + body go out)
                Wait    -> call_later(seconds, _advance)
                Fail    -> answer with the status
    a try ends  -> upstream_failed: plan.report(Outcome) -> _advance
                -> upstream_head: plan.response_head(status) False -> discard -> _advance
                                  True -> relay ... upstream_complete -> plan.finish

Every Forward is closed exactly once: ``fwd`` is set while one is open and cleared by the
call that closes it (report, finish, or response_head returning False).

Retries are the plan's, with one exception: a *reused* pooled connection that fails before
any response byte is retried once on a fresh connection without telling the engine — the
backend closing an idle keep-alive connection as it is reused is not a member failure (what
HTTP clients such as Go's net/http do). The request was written to that connection, so the
retry is taken only when the request may be re-sent at all: the same
``recovery.resend_refusal`` the engine applies, with the member's ``recovery_options``
(``1`` forbids it even for a GET; a non-idempotent method needs ``0x80``). ``request_sent``
stays true for the rest of the request once any byte of it was written, so a fresh
connection that then fails to connect is still reported as "sent" (issue 11 item 1).

A request body is kept in memory while it fits ``Limits.replay_buffer_size``, so a failed try
can be replayed; past that it streams, and once sent it cannot be replayed (replayable=False).

The exchange never asks which protocol a member speaks: it attaches a ``MemberConnection``
(member_connection.py) and calls ``send_request``; the http connection frames an HTTP/1.1
request (upstream.py, http_request.py), the ajp13 one an AJP forward request.

The client's response head is built by ``relay.py`` (pure functions of the member's head) and
the balancer's own answers by ``local.py`` (functions taking the exchange). Output made while
llhttp parses one read of the member (head, body chunks, the last chunk) is collected in
``wbuf`` and written once after the read: a small response leaves in one send.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from balancer.dataplane import head_bytes as hb
from balancer.dataplane import http11 as h
from balancer.dataplane import local
from balancer.dataplane.answers import RouteAnswers
from balancer.dataplane.relay import (
    MODE_CHUNKED,
    MODE_CLOSE,
    MODE_NONE,
    body_mode,
    final_head,
    interim_head,
    switch_head,
)
from balancer.dataplane.response_head import field_list
from balancer.dataplane.routes import LocalHandler, LocalResponse, ProxyTo
from balancer.lb.decisions import (
    Fail,
    Forward,
    Outcome,
    OutcomeKind,
    Wait,
    new_facts,
    refusal_of,
)
from balancer.lb.engine import LbEngine
from balancer.lb.plan import RequestPlan
from balancer.lb.recovery import resend_refusal

if TYPE_CHECKING:
    import asyncio

    from balancer.dataplane.downstream import ClientConnection
    from balancer.dataplane.member_connection import MemberConnection
    from balancer.dataplane.pool import MemberPool
    from balancer.dataplane.request import Request
    from balancer.dataplane.routes import Plan

log = logging.getLogger(__name__)

# a body piece over this size makes flush write the pieces as they are (writelines) rather than
# join them with the head into one buffer: joining copies, and copying 64 KiB costs more than
# uvloop's writev of a few pieces
_JOIN_MAX = 4096
_READ_FAILED = OutcomeKind.READ_FAILED
_SEND_FAILED = OutcomeKind.SEND_FAILED
_METHOD_NAMES = {
    m.encode("ascii"): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "PROPFIND")
}


class Exchange:
    __slots__ = (
        "attached_at",
        "body",
        "body_complete",
        "body_done_up",
        "body_size",
        "client",
        "client_ka",
        "done",
        "ended_at",
        "failed",
        "first_byte_at",
        "fwd",
        "handler",
        "head_parts",
        "local_limit",
        "member",
        "mode",
        "plan",
        "pool",
        "pool_timer",
        "received",
        "replayable",
        "req",
        "request_id",
        "request_sent",
        "resp_bytes",
        "resp_started",
        "reused",
        "route",
        "sent",
        "server",
        "set_cookie",
        "stale_retried",
        "started",
        "status",
        "up",
        "wait_timer",
        "wbuf",
        "wbuf_big",
    )

    def __init__(self, client: ClientConnection, req: Request) -> None:
        self.setup(client, req)

    def setup(self, client: ClientConnection, req: Request) -> None:
        """What ``__init__`` does. The client connection makes its exchanges with
        ``Exchange.__new__(Exchange)`` and this: compiled, a C call where calling the class
        parses its arguments (exchange.pxd)."""
        self.client = client
        self.req = req
        self.server = client.server
        self.route: ProxyTo | None = None
        self.plan: Plan | None = None
        self.fwd: Forward | None = None
        self.up: MemberConnection | None = None
        self.pool: MemberPool | None = None
        self.pool_timer: asyncio.TimerHandle | None = None
        self.wait_timer: asyncio.TimerHandle | None = None
        self.reused = False
        self.stale_retried = False
        self.done = False
        self.body: list[bytes] = []  # body kept for a replay, or not sent yet
        self.body_size = 0
        self.received = 0  # body bytes read from the client so far
        self.replayable = True  # nothing of the body was dropped after sending
        self.body_complete = False
        self.body_done_up = False  # this try sent the whole request
        self.request_sent = False
        self.sent = 0  # bytes written upstream, this try
        self.request_id = b""
        self.resp_started = False
        self.resp_bytes = 0
        self.mode = MODE_NONE
        self.client_ka = False
        self.status = 0
        # the final head's parts at the start of wbuf, while it is only there (0: none)
        self.head_parts = 0
        self.set_cookie: bytes | None = None
        self.member = ""
        self.local_limit = -1  # >= 0: the body is read for a LocalHandler
        self.handler: LocalHandler | None = None
        self.wbuf: list[bytes] = []
        self.wbuf_big = False  # wbuf holds a large body piece: written as it is, not joined
        self.started = time.monotonic()
        self.attached_at = 0.0  # when the last try got its member connection
        self.first_byte_at = 0.0  # when the response head was taken for the client
        self.ended_at = 0.0  # when the response was read to its end (0: it was not)
        self.failed = ""  # the reason the last try failed: the next one is a retry

    # --- start ------------------------------------------------------------------------------

    def start(self) -> None:
        router = self.server.router
        try:
            if type(router) is RouteAnswers:
                answers = router  # typed in exchange.pxd: a C call, a hit one dict lookup
                decision = answers.answer(self.req)
            else:
                decision = router(self.req)
        except Exception:
            log.exception("router failed for %r", self.req)
            local.answer(self, LocalResponse(500))
            return
        if type(decision) is ProxyTo:
            self._proxy(decision)
            return
        if type(decision) is LocalResponse:
            local.answer(self, decision)
        elif type(decision) is LocalHandler:
            local.read_for_handler(self, decision)
        else:
            log.error("router returned %r for %r", decision, self.req)
            local.answer(self, LocalResponse(500))

    def _proxy(self, route: ProxyTo) -> None:
        req = self.req
        self.route = route
        # compiled: a C call, the counter a C field of the server's base (proxy_core.pxd)
        self.request_id = self.server.next_request_id()
        method = req.method
        names = _METHOD_NAMES  # a typed dict in the compiled build: get() is a C call
        # (GET first: comparing the bytes is cheaper than hashing the request's new object)
        name = "GET" if method == b"GET" else names.get(method) or method.decode("latin-1")
        facts = new_facts(  # RequestFacts(...) as a C call (decisions.py)
            name,
            # the path and the Cookie values as the request's bytes: the lb scans them as bytes
            # (sticky.py) and decodes only the session id it finds; the request is read whole
            req.path,
            req.cookies,
            route.rule,
            route.route_override,
            req.secure,
        )
        engine = route.engine
        try:
            now = self.started  # the exchange began a moment ago: one clock read for both
            if type(engine) is LbEngine:
                lb = engine  # typed in exchange.pxd: plan() is a C call
                self.plan = lb.plan(facts, now)
            else:  # another Engine (routes.py), e.g. a test's
                self.plan = engine.plan(facts, now)
        except Exception:
            log.exception("engine.plan failed for %r", req)
            local.answer(self, LocalResponse(500))
            return
        req.sink = self
        complete = self.body_complete = req.complete
        pending = req.pending
        if pending:
            req.pending = []
            req.pending_size = 0
            self.body = pending
            self.body_size = self.received = sum(map(len, pending))
            self.client.pending_taken()
        if req.expect_continue and not complete:
            self.client.transport.write(h.CONTINUE_100)  # type: ignore[union-attr]
        self._advance(now)

    # --- the plan loop -----------------------------------------------------------------------

    def _advance(self, now: float = 0.0) -> None:
        self.wait_timer = None
        if self.done:
            return
        now = now or time.monotonic()
        plan = self.plan
        try:
            if type(plan) is RequestPlan:
                lb_plan = plan  # typed in exchange.pxd: next() is a C call
                step = lb_plan.next(now)
            else:  # another Plan (routes.py), e.g. a test's
                step = plan.next(now)  # type: ignore[union-attr]
        except Exception:
            log.exception("plan.next failed for %r", self.req)
            self._fail(500)
            return
        kind = type(step)
        if kind is Forward:
            self._forward(step, now)  # type: ignore[arg-type]
        elif kind is Wait:
            self.wait_timer = self.client.loop.call_later(step.seconds, self._advance)  # type: ignore[union-attr]
        elif kind is Fail:
            self._fail(step.status)  # type: ignore[union-attr]
        else:
            log.error("plan.next returned %r", step)
            self._fail(500)

    def _forward(self, fwd: Forward, now: float) -> None:
        self.fwd = fwd
        # (request_sent is not reset: once written anywhere, the request stays "sent")
        if self.failed:
            self.server.stats.retry(self.route.name, self.failed)  # type: ignore[union-attr]
            self.failed = ""
        self.sent = 0
        if not self.replayable:
            # The engine was told the body cannot be sent again; close the Forward without
            # blaming the member, and answer as for a failed send.
            self._report(OutcomeKind.CLIENT_ERROR, "body-not-replayable")
            self._fail(502)
            return
        member = fwd.member
        pools = self.server.pools_by_member
        hit = pools.get(id(member))
        if hit is not None and hit[0] is member:
            pool = hit[1]
        else:
            try:
                pool = self.server.pool_for(member)
            except Exception:
                log.exception("no pool for member %r", member)
                self._report(OutcomeKind.CONNECT_FAILED, "no-pool")
                self._advance()
                return
        self.pool = pool
        self.member = pool.name
        sc = fwd.set_cookie
        self.set_cookie = sc.encode("latin-1") if sc else None
        conn = pool.take_idle()  # compiled: a C call
        if conn is not None:
            conn.reused = True
            self._attach(conn, True, now)
            return
        pool.acquire(self)

    # pool callbacks
    def pool_ready(self, conn: MemberConnection) -> None:
        self._attach(conn, conn.reused)

    def pool_failed(self, kind: OutcomeKind, reason: str) -> None:
        self._report(kind, reason)
        self._advance()

    def _report(self, kind: OutcomeKind, reason: str) -> None:
        """Close the open Forward with a failed outcome."""
        up = self.up
        self._report_received(kind, reason, up.received if up is not None else 0)

    # --- sending ----------------------------------------------------------------------------

    def _attach(self, conn: MemberConnection, reused: bool, now: float = 0.0) -> None:
        fwd = self.fwd
        assert fwd is not None
        self.up = conn
        self.attached_at = now or time.monotonic()  # an idle pooled connection: the plan's now
        self.reused = reused
        self.body_done_up = False
        # each protocol frames the request its own way
        conn.send_request(self, fwd.reply_timeout_ms / 1000, self.req.method == b"HEAD")

    def request_out(self, complete: bool) -> None:
        """The attached connection wrote the request head (and the body so far)."""
        self.request_sent = True
        if self.body and (
            self.body_size > self.server.limits.replay_buffer_size or not self.replayable
        ):
            self.replayable = False  # sent and too big to keep: no replay from here on
            self.body = []
            self.body_size = 0
        if complete:
            self.body_done_up = True

    # request body from the client (BodySink)
    def request_body(self, data: bytes) -> None:
        if self.done:
            return
        n = len(data)
        self.received += n
        if self.local_limit >= 0:
            self.body.append(data)
            self.body_size += n
            if self.body_size > self.local_limit:
                self.client_failed(413)
            return
        up = self.up
        if up is not None and not self.body_done_up:
            up.body_data(data)
            if self.replayable:
                self.body_size += n
                if self.body_size > self.server.limits.replay_buffer_size:
                    self.replayable = False
                    self.body = []
                    self.body_size = 0
                else:
                    self.body.append(data)
        else:
            self.body.append(data)
            self.body_size += n
            if self.body_size > self.server.limits.replay_buffer_size:
                self.client.pause_pending()  # until a connection takes it

    def request_complete(self) -> None:
        if self.done:
            return
        self.body_complete = True
        if self.local_limit >= 0:
            local.run_handler(self)
            return
        up = self.up
        if up is not None and not self.body_done_up:
            self.body_done_up = True
            up.request_done()

    def _finish_forward(self, received: int, now: float) -> None:
        """Close the open Forward with success (``received``: bytes read from the member)."""
        if self.fwd is None:
            return
        self.fwd = None
        plan = self.plan
        try:
            if type(plan) is RequestPlan:
                lb_plan = plan  # compiled: typed (exchange.pxd), so finish is a C call
                lb_plan.finish(self.sent, received, now)
            else:
                plan.finish(self.sent, received, now)  # type: ignore[union-attr]
        except Exception:
            log.exception("plan.finish failed for %r", self.req)

    def upstream_failed(self, kind: OutcomeKind, reason: str) -> None:
        """The try broke: connection lost, timeout, or a response that is not valid HTTP."""
        up = self.up
        if up is None or self.done:
            return
        received = up.received
        self._drop_up()
        if self.resp_started and self.head_parts:
            # The head (and any 1xx before it) and what followed came in the read that broke
            # and are still only in wbuf: nothing reached the client, so it gets a clean
            # answer (a malformed chunk in the same read as the head: 502 like HAProxy, or
            # another member).
            self.wbuf = []
            self.head_parts = 0
            self.wbuf_big = False  # (else the next small response is written unjoined)
            self.resp_started = False
            self.resp_bytes = 0
        if self.resp_started:
            # half a response went out: it cannot be retried, only cut off
            if kind == OutcomeKind.BAD_RESPONSE:
                kind = OutcomeKind.READ_FAILED
            self._report_received(kind, reason, received)
            self.flush()
            self.client.close()
            self.end(False)
            return
        if (
            self.reused
            and not self.stale_retried
            and not received
            and (kind is _READ_FAILED or kind is _SEND_FAILED)
            and self._may_resend(kind)
        ):
            self.stale_retried = True
            self.server.stats.retry(self.route.name, "stale-connection")  # type: ignore[union-attr]
            self.pool.acquire(self, fresh=True)  # type: ignore[union-attr]
            return
        self._report_received(kind, reason, received)
        self._advance()

    def _may_resend(self, kind: OutcomeKind) -> bool:
        """Whether the request, written to the open Forward's member, may be sent again."""
        fwd = self.fwd
        if fwd is None:
            return False
        method = self.req.method
        refusal = resend_refusal(
            _METHOD_NAMES.get(method) or method.decode("latin-1"),
            fwd.member.recovery_options,
            kind,
            request_sent=True,
            replayable=self.replayable,
            response_started=self.resp_started,
        )
        return refusal is None

    def _report_received(self, kind: OutcomeKind, reason: str, received: int) -> None:
        """Close the open Forward with a failed outcome, ``received`` bytes read from upstream."""
        if self.fwd is None:
            return
        self.fwd = None
        self.failed = kind.value
        outcome = Outcome(
            kind,
            request_sent=self.request_sent,
            replayable=self.replayable,
            response_started=self.resp_started,
            bytes_sent=self.sent,
            bytes_received=received,
            reason=reason,
        )
        try:
            self.plan.report(outcome, time.monotonic())  # type: ignore[union-attr]
        except Exception:
            log.exception("plan.report failed for %r", self.req)

    def _drop_up(self) -> None:
        up = self.up
        if up is not None:
            self.up = None
            self.client.resume_body()
            self.pool.discard(up)  # type: ignore[union-attr]

    # --- the response (the member connection's callbacks) ---------------------------------------

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
                self.status = 101
                self.resp_started = True
                self.wbuf.append(switch_head(up.reason, up.headers, up.fields, up.upgrade))
            elif status != 100 and req.http11:
                # 102/103 go to the client (not 100: the balancer answers Expect itself);
                # counted as a head part (nothing but heads precedes it in wbuf): if this read
                # breaks, it never left, and the client gets a clean answer (upstream_failed)
                self.resp_started = True
                self.wbuf.append(interim_head(status, up.reason, up.headers, up.fields))
                self.head_parts += 1
            return
        # a member's "cluster full" 503 names itself (plan.py: relayed, not retried); the
        # keyword goes only with it, so plans written before it keep working
        refusal = refusal_of(up.headers or field_list(up.fields)) if status == 503 else None
        plan = self.plan
        now = time.monotonic()
        try:
            if type(plan) is RequestPlan:
                lb_plan = plan  # compiled: typed (exchange.pxd), so this is a C call
                keep = lb_plan.response_head(
                    status, now, replayable=self.replayable, refusal=refusal
                )
            elif refusal is None:
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
            self._finish_forward(up.received, now)
            self._drop_up()
            self._fail(status)
            return
        mode = self.mode = body_mode(req, status, up.content_length, up.chunked)
        self.status = status
        client_ka = self.client_ka = (
            req.keep_alive and req.complete and mode != MODE_CLOSE and not req.upgrade_ws
        )
        self.resp_started = True
        self.first_byte_at = now
        parts = final_head(
            status,
            up.reason,
            up.headers,
            up.fields,
            up.set_cookies,
            mode,
            req,
            client_ka,
            self.set_cookie,
            self.server,
        )
        if self.wbuf:  # after 1xx heads still in wbuf (counted in head_parts)
            self.wbuf.append(hb.join(parts))
            self.head_parts += 1
        else:
            # its parts start wbuf: flush joins them with a small body in one buffer (one join,
            # not one for the head and one for the send); counted, to tell, if the read that
            # brought it breaks, that it never left (upstream_failed)
            self.wbuf = parts
            self.head_parts = len(parts)

    def upstream_body(self, data: bytes | memoryview) -> None:
        """A piece of the member's body (``bytes``, or a ``memoryview`` of the member's read:
        upstream.py relays large pieces without a copy)."""
        n = len(data)
        self.resp_bytes += n
        mode = self.mode
        if mode == MODE_NONE:
            return
        if n > _JOIN_MAX or type(data) is not bytes:
            self.wbuf_big = True  # (flush's C join takes bytes only)
        if mode == MODE_CHUNKED:
            self.wbuf += h.chunk(data)  # type: ignore[arg-type]
        else:
            self.wbuf.append(data)  # type: ignore[arg-type]

    def flush(self) -> None:
        buf = self.wbuf
        if not buf:
            return
        self.wbuf = []
        big = self.wbuf_big
        self.wbuf_big = False
        head = self.head_parts  # (the head's parts count as one piece)
        self.head_parts = 0
        client = self.client
        transport = client.transport
        if transport is not None and not client.closed:
            if len(buf) == 1:
                transport.write(buf[0])
            elif len(buf) - head + (head > 0) < 5 and not big:
                transport.write(hb.join(buf))  # a small response: one buffer, one send
            else:
                # a large body is not copied into one buffer: uvloop sends the pieces with
                # one writev (and keeps what the kernel does not take without a copy either);
                # the head's parts go as one
                if head:
                    buf[:head] = [hb.join(buf[:head])]
                transport.writelines(buf)

    def upstream_complete(self, reusable: bool) -> None:
        """The response was read to its end (``reusable``: the connection may serve again)."""
        if self.mode == MODE_CHUNKED:
            self.wbuf.append(h.LAST_CHUNK)
        self.flush()  # a C call in the compiled build: no need to inline it
        # the loop's time, read once for both idle clocks that start now: the member
        # connection's in the pool and the client's keep-alive (a Python call each otherwise)
        loop_now = self.client.loop.time()
        up = self.up
        received = 0
        if up is not None:
            received = up.received
            self.up = None
            if reusable and self.body_done_up and not up.closed:
                self.pool.release(up, loop_now)  # type: ignore[union-attr]
            else:
                self.client.resume_body()
                self.pool.discard(up)  # type: ignore[union-attr]
        self.ended_at = now = time.monotonic()  # (_observe reads it: one clock read)
        self._finish_forward(received, now)
        self.end(self.client_ka and self.req.complete, loop_now)

    def upstream_upgraded(self, rest: bytes) -> None:
        """The backend switched protocols: from now on bytes flow both ways untouched."""
        from balancer.dataplane.tunnel import Tunnel

        up = self.up
        assert up is not None
        self.flush()
        self.up = None
        self._finish_forward(up.received, time.monotonic())
        self.pool.forget_tunnel(up)  # type: ignore[union-attr]
        client = self.client
        self.done = True
        self._log()
        Tunnel(client, up, client.upgrade_rest or b"", rest)

    # --- the client side ----------------------------------------------------------------------

    def client_write_paused(self) -> None:
        if self.up is not None:
            self.up.pause_reading_for_client()

    def client_write_resumed(self) -> None:
        if self.up is not None:
            self.up.resume_reading_for_client()

    def client_lost(self) -> None:
        """The client closed or broke its connection."""
        if self.done:
            return
        self._report(OutcomeKind.CLIENT_ERROR, "client-gone")
        self._drop_up()
        self.status = self.status or 499
        self._stop_waiting()
        self.end(False)

    def client_failed(self, status: int) -> None:
        """The client's body broke the rules (framing, size, stall): answer and close."""
        if self.done:
            return
        self._report(OutcomeKind.CLIENT_ERROR, f"client-body-{status}")
        self._drop_up()
        self._stop_waiting()
        if not self.resp_started:
            self.status = status
            transport = self.client.transport
            if transport is not None and not self.client.closed:
                transport.write(h.local_response(status, close=True))
        self.end(False)

    def _stop_waiting(self) -> None:
        if self.wait_timer is not None:
            self.wait_timer.cancel()
            self.wait_timer = None

    # --- the end ------------------------------------------------------------------------------

    def end(self, keep_alive: bool, loop_now: float = 0.0) -> None:
        """The exchange is over (``loop_now``: the loop's time, when the caller read it)."""
        if self.done:
            return
        self.done = True
        if self.wait_timer is not None:
            self.wait_timer.cancel()
            self.wait_timer = None
        # request <-> exchange is a reference cycle: break it, so both (and the plan) are freed
        # at once rather than by the cyclic collector (whose passes cost ~6% of the CPU)
        self.req.sink = None
        self._observe()
        self.client.exchange_done(keep_alive, loop_now)

    def _fail(self, status: int) -> None:
        local.answer(self, LocalResponse(status))

    def _log(self) -> None:
        self._observe()

    def _observe(self) -> None:
        """The request's one observation in the traffic counters and, when the balancer
        writes an access log, its record. Compiled, ``answered`` is a C call (stats.pxd): with
        no access log (the common case) nothing at the end of a request runs as Python."""
        server = self.server
        started = self.started
        ended = self.ended_at
        if not ended:
            ended = time.monotonic()
        total = ended - started
        first = self.first_byte_at - started if self.first_byte_at else total
        route = self.route
        worker = route.name if route is not None else ""
        stats = server.stats
        stats.answered(worker, self.member, self.status, first, total)
        if server.access_log is not None:
            server.log_access(self, worker, first, total)
