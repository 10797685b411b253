"""What a router may answer for a request, and the engine interface the data plane drives.

The router (written by whoever wires the balancer: URI map + workers) is a plain callable
``router(request) -> RouteDecision``. It is called once per request, after the request head is
fully validated and before any byte of the body is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from balancer.config.model import RuleExtensions

if TYPE_CHECKING:
    from balancer.dataplane.request import Request
    from balancer.lb.decisions import Outcome, RequestFacts, Step


class Plan(Protocol):
    """One request's plan (balancer.lb.decisions): the data plane only carries it out."""

    def next(self, now: float) -> Step: ...

    def report(self, outcome: Outcome, now: float) -> None: ...

    def response_head(
        self, status: int, now: float, *, replayable: bool = True, refusal: str | None = None
    ) -> bool: ...

    def finish(self, bytes_sent: int, bytes_received: int, now: float) -> None: ...


class Engine(Protocol):
    def plan(self, facts: RequestFacts, now: float) -> Plan: ...


@dataclass(frozen=True, slots=True)
class LocalResponse:
    """Answer the request here (status worker page, 404 for an unmapped URI, 400 ...)."""

    status: int
    body: bytes | None = None  # None: "<status> <reason>\n"
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # close the connection after this answer: a rejected request (400 for a path that escapes
    # the root, ...) must not let anything pipelined behind it through
    close: bool = False


@dataclass(frozen=True, slots=True)
class LocalHandler:
    """Answer here, from a coroutine that needs the request body (status worker POSTs).

    The body is read first, up to ``max_body`` bytes (``Limits.max_local_body_size`` when
    None): a longer one gets 413.
    """

    handler: Callable[[Request, bytes], Awaitable[LocalResponse]]
    max_body: int | None = None


class ProxyTo:
    """Forward through ``engine`` (an lb worker, or a single member wrapped as one).

    A value: treat it as immutable (the router's table hands one to every request of a path;
    compiled, its fields are read-only C fields the exchange reads at C level, routes.pxd).
    """

    __slots__ = ("engine", "name", "route_override", "rule")

    def __init__(
        self,
        engine: Engine,
        rule: RuleExtensions | None = None,  # None: RuleExtensions()
        route_override: str | None = None,  # mod_jk's JK_ROUTE
        name: str = "",  # the worker's name, for the access log
    ) -> None:
        self.engine = engine
        self.rule = RuleExtensions() if rule is None else rule
        self.route_override = route_override
        self.name = name

    def __repr__(self) -> str:
        return (
            f"ProxyTo(engine={self.engine!r}, rule={self.rule!r}, "
            f"route_override={self.route_override!r}, name={self.name!r})"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not ProxyTo:
            return NotImplemented
        return (self.engine, self.rule, self.route_override, self.name) == (
            other.engine,
            other.rule,
            other.route_override,
            other.name,
        )

    __hash__ = None  # type: ignore[assignment]


RouteDecision = LocalResponse | LocalHandler | ProxyTo
Router = Callable[["Request"], RouteDecision]
