"""Answers of the balancer's own: Fail statuses, the router's local responses, and local
handlers that read the request body first (status-worker POSTs).

Functions taking the exchange (balancer.dataplane.exchange) that answers: they write its
response and end it through its ``flush``, ``end`` and ``client_failed``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from balancer.dataplane import http11 as h
from balancer.dataplane.routes import LocalHandler, LocalResponse

if TYPE_CHECKING:
    from balancer.dataplane.exchange import Exchange

log = logging.getLogger("balancer.dataplane.exchange")


def answer(ex: Exchange, resp: LocalResponse) -> None:
    """Answer ``ex``'s request with ``resp`` and end the exchange."""
    if ex.done:
        return
    ex.flush()
    req = ex.req
    keep = req.keep_alive and req.complete and not req.upgrade_ws and not resp.close
    ex.status = resp.status
    ex.resp_started = True
    data = h.local_response(
        resp.status,
        close=not keep,
        body=resp.body,
        content_type=resp.content_type,
        headers=resp.headers,
        head_only=req.method == b"HEAD",
        keep_alive_10=keep and not req.http11,
    )
    ex.resp_bytes = len(data)
    client = ex.client
    transport = client.transport
    if transport is not None and not client.closed:
        transport.write(data)
    ex.end(keep)


def read_for_handler(ex: Exchange, decision: LocalHandler) -> None:
    """Read the request body (up to the handler's limit) for a local handler, then run it."""
    req = ex.req
    limit = decision.max_body
    if limit is None:
        limit = ex.server.limits.max_local_body_size
    if req.content_length is not None and req.content_length > limit:
        answer(ex, LocalResponse(413))
        return
    ex.local_limit = limit
    ex.handler = decision
    pending, complete = req.attach(ex)
    ex.body = pending
    ex.body_size = sum(map(len, pending))
    ex.client.pending_taken()
    if ex.body_size > limit:
        ex.client_failed(413)
        return
    if complete:
        run_handler(ex)
    elif req.expect_continue:
        ex.client.transport.write(h.CONTINUE_100)  # type: ignore[union-attr]


def run_handler(ex: Exchange) -> None:
    """The body is complete: run the local handler in a task."""
    ex.client.loop.create_task(_handler_task(ex))


async def _handler_task(ex: Exchange) -> None:
    handler = ex.handler
    assert handler is not None
    try:
        resp = await handler.handler(ex.req, b"".join(ex.body))
    except Exception:
        log.exception("local handler failed for %r", ex.req)
        resp = LocalResponse(500)
    answer(ex, resp)
