"""What the data plane tells the lb engine, and what the engine tells it to do.

The contract between the pure engine (``balancer.lb``) and the I/O around it. A request is
driven like this (``now`` is ``time.monotonic()`` read by the caller, in seconds):

    plan = engine.plan(facts, now)
    while True:
        step = plan.next(now)
        match step:
            case Wait(seconds):      await asyncio.sleep(seconds)           # retry_interval
            case Fail(status):       answer the client with status; stop
            case Forward(member=member):  # (by keyword: an extension type, no __match_args__)
                try the member once (one connection attempt + request)
                - connect/send/read failure, timeout, busy, bad response:
                      plan.report(Outcome(kind, ...), now) and loop
                - a response head arrived: if plan.response_head(status, now) is False the
                      response is discarded (fail_on_status) and the loop goes on; otherwise relay
                      it, then plan.finish(bytes_sent, bytes_received, now) and stop
                      (plan.report(Outcome(CLIENT_ERROR | READ_FAILED, response_started=True))
                      if relaying broke half way — the engine never retries then).

Every Forward is closed by exactly one of ``report``, ``finish``, or ``response_head`` returning
False: that is how the engine keeps ``busy`` right.

Member-level retries (``retries`` on the member, with ``retry_interval`` sleeps), lb rounds
(lb ``retries``), ``lb_retries`` per round, forced recovery and the final status are all the
plan's decisions (mod_jk §3.6 and §9.2); the data plane only carries them out.

The classes below are values: treat them as immutable. They are not ``frozen`` dataclasses
only because one of each is made per request, and a frozen dataclass's ``__init__`` costs about
three times as much (``object.__setattr__`` per field). ``RequestFacts`` and ``Forward`` are made
for every request: compiled (setup.py, decisions.pxd) they are extension types with C fields,
which the plan and the exchange read at C level and make with ``new_facts``/``new_forward``
(C calls, no argument parsing); so they are plain classes here rather than dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from balancer.config.rules import RuleExtensions

if TYPE_CHECKING:
    from balancer.lb.member import Member

# Methods whose replay after the backend may have received them is harmless (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class RequestFacts:
    """What the engine needs to know of a request to route it."""

    __slots__ = ("cookies", "method", "route_override", "rule", "secure", "uri")

    def __init__(
        self,
        method: str,
        uri: bytes,  # the forwarded URI as sent (raw path, ;jsessionid kept, no query)
        cookies: Sequence[bytes] = (),  # every Cookie header value as sent, in order
        rule: RuleExtensions | None = None,  # None: RuleExtensions()
        route_override: str | None = None,  # mod_jk's JK_ROUTE
        secure: bool = False,  # the client connection is TLS (;Secure on the routing cookie)
    ) -> None:
        self.method = method
        self.uri = uri
        self.cookies = cookies
        self.rule = RuleExtensions() if rule is None else rule
        self.route_override = route_override
        self.secure = secure

    def __repr__(self) -> str:
        return (
            f"RequestFacts(method={self.method!r}, uri={self.uri!r}, cookies={self.cookies!r}, "
            f"rule={self.rule!r}, route_override={self.route_override!r}, secure={self.secure!r})"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not RequestFacts:
            return NotImplemented
        return (self.method, self.uri, tuple(self.cookies), self.rule, self.route_override,
                self.secure) == (other.method, other.uri, tuple(other.cookies), other.rule,
                other.route_override, other.secure)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # a value that compares by fields, as before


def new_facts(
    method: str,
    uri: bytes,
    cookies: Sequence[bytes],
    rule: RuleExtensions,
    route_override: str | None,
    secure: bool,
) -> RequestFacts:
    """``RequestFacts(...)`` for the data plane's every request: compiled, a C call that fills
    the C fields of a new object, where calling the class parses its arguments (~1k
    instructions; docs/benchmarks.md, issue 12, session 5)."""
    facts = RequestFacts.__new__(RequestFacts)
    facts.method = method
    facts.uri = uri
    facts.cookies = cookies
    facts.rule = rule
    facts.route_override = route_override
    facts.secure = secure
    return facts


class OutcomeKind(Enum):
    """How one try on a member ended, when it did not end with a relayed response."""

    CONNECT_FAILED = "connect-failed"  # nothing was sent: always safe to try elsewhere
    BUSY = "busy"  # no free pooled connection in connection_acquire_timeout
    SEND_FAILED = "send-failed"  # broke while sending the request
    READ_FAILED = "read-failed"  # broke before/while reading the response
    BAD_RESPONSE = "bad-response"  # backend sent something that is not valid HTTP -> 502
    REPLY_TIMEOUT = "reply-timeout"  # no byte from the backend within reply_timeout
    CLIENT_ERROR = "client-error"  # the client went away or sent a broken body: stop


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    # a member may have received the request: true from its first byte written, on this try
    # or an earlier one (the data plane never resets it within a request)
    request_sent: bool = False
    # the request can be sent again (its body is fully buffered or there is none)
    replayable: bool = True
    # some byte of the response reached the client: never retry after that
    response_started: bool = False
    bytes_sent: int = 0
    bytes_received: int = 0
    reason: str = ""  # for logs and the status page's last error, e.g. "connect-refused"


# A member's 503 with this header says the whole cluster refuses (pyjk workers at
# max_active_sessions: every node holds every session, so every member is full at once). The
# plan passes it to the client instead of trying the other members (plan.py).
REFUSAL_HEADER = b"x-pyjk-refusal"


def refusal_of(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The X-Pyjk-Refusal value of a response head (names in any case), or None."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == REFUSAL_HEADER:
            return value.decode("latin-1").strip()
    return None


# The reason of a connect the member's host refused (RST to the SYN): nothing listens there, so
# the plan tries the member again without the retry_interval pause (see plan.py).
CONNECT_REFUSED = "connect-refused"


class Forward:
    """Send the request to ``member`` now."""

    __slots__ = ("activation", "member", "probe", "reply_timeout_ms", "set_cookie", "sticky")

    def __init__(
        self,
        member: Member,
        sticky: bool,  # routed by the session's route
        set_cookie: str | None,  # a Set-Cookie header value to add to the response, or None
        reply_timeout_ms: int,  # 0 = none; the rule's override already applied
        probe: bool,  # the member was ERR/REC: this request is its recovery probe
        activation: str,  # ACT / DIS / STP as the member is now, for the activation header
    ) -> None:
        self.member = member
        self.sticky = sticky
        self.set_cookie = set_cookie
        self.reply_timeout_ms = reply_timeout_ms
        self.probe = probe
        self.activation = activation

    def __repr__(self) -> str:
        return (
            f"Forward(member={self.member!r}, sticky={self.sticky!r}, "
            f"set_cookie={self.set_cookie!r}, reply_timeout_ms={self.reply_timeout_ms!r}, "
            f"probe={self.probe!r}, activation={self.activation!r})"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not Forward:
            return NotImplemented
        return (self.member, self.sticky, self.set_cookie, self.reply_timeout_ms, self.probe,
                self.activation) == (other.member, other.sticky, other.set_cookie,
                other.reply_timeout_ms, other.probe, other.activation)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]


def new_forward(
    member: Member,
    sticky: bool,
    set_cookie: str | None,
    reply_timeout_ms: int,
    probe: bool,
    activation: str,
) -> Forward:
    """``Forward(...)`` for the plan (see ``new_facts``)."""
    fwd = Forward.__new__(Forward)
    fwd.member = member
    fwd.sticky = sticky
    fwd.set_cookie = set_cookie
    fwd.reply_timeout_ms = reply_timeout_ms
    fwd.probe = probe
    fwd.activation = activation
    return fwd


@dataclass(slots=True)
class Wait:
    """Sleep before the next step (retry_interval between tries and between rounds)."""

    seconds: float


@dataclass(slots=True)
class Fail:
    """Give up: answer the client with ``status``."""

    status: int
    reason: str


Step = Forward | Wait | Fail
