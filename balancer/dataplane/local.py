"""Answers of the balancer's own: Fail statuses, the router's local responses, and local
handlers that read the request body first (status-worker POSTs).

A mixin of ``Exchange`` (balancer.dataplane.exchange), whose state it uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from balancer.dataplane import http11 as h
from balancer.dataplane.routes import LocalHandler, LocalResponse

if TYPE_CHECKING:
    from balancer.dataplane.downstream import ClientConnection
    from balancer.dataplane.proxy import ProxyServer
    from balancer.dataplane.request import Request

log = logging.getLogger("balancer.dataplane.exchange")


class LocalAnswers:
    """The exchange answering by itself (a mixin: the state is the exchange's)."""

    __slots__ = ()

    client: ClientConnection
    server: ProxyServer
    req: Request
    done: bool
    status: int
    resp_started: bool
    resp_bytes: int
    body: list[bytes]
    body_size: int
    local_limit: int
    handler: LocalHandler | None

    if TYPE_CHECKING:  # provided by the class this is mixed into

        def flush(self) -> None: ...

        def client_failed(self, status: int) -> None: ...

        def _end(self, keep_alive: bool) -> None: ...

    def _fail(self, status: int) -> None:
        self._answer(LocalResponse(status))

    def _answer(self, resp: LocalResponse) -> None:
        if self.done:
            return
        self.flush()
        req = self.req
        keep = req.keep_alive and req.complete and not req.upgrade_ws and not resp.close
        self.status = resp.status
        self.resp_started = True
        data = h.local_response(
            resp.status,
            close=not keep,
            body=resp.body,
            content_type=resp.content_type,
            headers=resp.headers,
            head_only=req.method == b"HEAD",
            keep_alive_10=keep and not req.http11,
        )
        self.resp_bytes = len(data)
        transport = self.client.transport
        if transport is not None and not self.client.closed:
            transport.write(data)
        self._end(keep)

    def _read_for_handler(self, decision: LocalHandler) -> None:
        req = self.req
        limit = decision.max_body
        if limit is None:
            limit = self.server.limits.max_local_body_size
        if req.content_length is not None and req.content_length > limit:
            self._fail(413)
            return
        self.local_limit = limit
        self.handler = decision
        pending, complete = req.attach(self)
        self.body = pending
        self.body_size = sum(map(len, pending))
        self.client.pending_taken()
        if self.body_size > limit:
            self.client_failed(413)
            return
        if complete:
            self._run_handler()
        elif req.expect_continue:
            self.client.transport.write(h.CONTINUE_100)  # type: ignore[union-attr]

    def _run_handler(self) -> None:
        self.client.loop.create_task(self._handler_task())

    async def _handler_task(self) -> None:
        handler = self.handler
        assert handler is not None
        try:
            resp = await handler.handler(self.req, b"".join(self.body))
        except Exception:
            log.exception("local handler failed for %r", self.req)
            resp = LocalResponse(500)
        self._answer(resp)
