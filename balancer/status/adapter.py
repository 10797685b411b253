"""Glue between the data plane and the status worker (the only I/O-side part of this package).

The router answers a request mapped to a status worker with ``local_handler(worker)``: the data
plane reads the body (up to ``max_body``), the handler reads the clocks and calls the pure
``StatusWorker.handle``. The data plane drops the body of a HEAD answer itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from balancer.dataplane.request import Request
from balancer.dataplane.routes import LocalHandler, LocalResponse
from balancer.status.messages import StatusRequest, StatusResponse
from balancer.status.worker import StatusWorker

MAX_BODY = 16 * 1024  # a status form is a few hundred bytes


def status_request(
    req: Request, body: bytes, *, client_ip: str | None = None, user: str | None = None
) -> StatusRequest:
    """The status worker's view of a data-plane request. ``client_ip``: the address after
    trusted-proxy resolution when the wiring did one (default: the peer address)."""
    return StatusRequest(
        method=req.method.decode("latin-1"),
        path=req.path.decode("latin-1"),
        query=req.query.decode("latin-1"),
        headers=tuple(req.headers),
        body=body,
        client_ip=req.client_ip if client_ip is None else client_ip,
        user=user,
    )


def local_response(resp: StatusResponse) -> LocalResponse:
    return LocalResponse(
        status=resp.status,
        body=resp.body,
        content_type=resp.content_type.encode("latin-1"),
        headers=tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in resp.headers),
    )


def local_handler(
    worker: StatusWorker,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    client_ip: Callable[[Request], str] | None = None,
    max_body: int = MAX_BODY,
) -> LocalHandler:
    """A ``LocalHandler`` answering with ``worker``; ``client_ip(req)`` may resolve trusted
    proxies (default: the peer address)."""

    async def handle(req: Request, body: bytes) -> LocalResponse:
        ip = client_ip(req) if client_ip is not None else None
        answer = worker.handle(status_request(req, body, client_ip=ip), monotonic(), wall())
        return local_response(answer)

    return LocalHandler(handle, max_body=max_body)
