"""Who may read a worker's own admin endpoints (``/cluster-manager``, ``/metrics``).

A loopback client that did not come through a proxy (no Forwarded / X-Forwarded-For: the
balancer on the same host would otherwise make every client look local), or anyone with
``Authorization: Bearer <token>`` when a token is configured (front-door-security.md: admin
pages stay on loopback by default).
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

__all__ = ["allowed", "loopback"]


def loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def allowed(request: web.Request, token: str) -> bool:
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    proxied = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    return loopback(request) and not proxied
