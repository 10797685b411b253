"""The balancer's data plane: HTTP/1.1 on asyncio Protocols and llhttp (httptools).

Public interface (wired by balancer/server.py):

- ``ProxyServer(router, limits, trusted_proxies, access_log)`` — listens and forwards.
- ``Limits`` — sizes, counts and deadlines, with documented defaults.
- ``Request`` — what the router sees.
- ``LocalResponse`` / ``LocalHandler`` / ``ProxyTo`` — what the router answers.
- ``Engine`` / ``Plan`` — the engine interface driven per request (balancer.lb.decisions).
- ``AccessRecord`` — one line of the access log.
"""

from balancer.dataplane.limits import Limits
from balancer.dataplane.proxy import AccessRecord, ProxyServer
from balancer.dataplane.request import Request
from balancer.dataplane.routes import (
    Engine,
    LocalHandler,
    LocalResponse,
    Plan,
    ProxyTo,
    RouteDecision,
    Router,
)

__all__ = [
    "AccessRecord",
    "Engine",
    "Limits",
    "LocalHandler",
    "LocalResponse",
    "Plan",
    "ProxyServer",
    "ProxyTo",
    "Request",
    "RouteDecision",
    "Router",
]
