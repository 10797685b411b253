"""What every request reads of its ``ProxyServer``: the compiled base class of ProxyServer.

``ProxyServer`` (proxy.py) is an ordinary Python class: it listens, keeps the pools and
answers the status worker, none of it per request. The few things an exchange reads of it for
every request live here, as C fields of an extension type in the compiled build
(proxy_core.pxd): the router, the traffic counters, the access log, the pools by member and
the request ids. Read through ``ProxyServer``'s instance dictionary they cost a Python
attribute lookup each (~160 instructions), and the request id's counter a Python integer, an
f-string and a concatenation (~1.2k per request; docs/benchmarks.md, issue 12, session 7).
So does what a client connection reads of it when it is made and for its first request: the
limits, the admission, the deadline wheel, and the per-process caches of per-connection work
(docs/benchmarks.md, issue 12, session 8: the close path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balancer.dataplane import head_bytes as hb

if TYPE_CHECKING:
    from balancer.dataplane.admission import Admission
    from balancer.dataplane.downstream import ParserSlot
    from balancer.dataplane.limits import Limits
    from balancer.dataplane.pool import MemberPool
    from balancer.dataplane.stats import TrafficStats
    from balancer.dataplane.timer_wheel import TimerWheel


class ProxyCore:
    __slots__ = (
        "access_log",
        "admission",
        "forwarded_cache",
        "fwd_fields",
        "fwd_host",
        "fwd_peer",
        "fwd_secure",
        "limits",
        "parser_slots",
        "pools_by_member",
        "rid_counter",
        "rid_prefix",
        "router",
        "secure",
        "stats",
        "valid_host",
        "valid_hosts",
        "wheel",
    )

    def __init__(self, router: Any, stats: TrafficStats, rid_prefix: bytes) -> None:
        self.router = router
        self.stats = stats
        self.access_log: Any = None
        # the member's pool by id(member), with the member kept to tell a reused id apart
        self.pools_by_member: dict[int, tuple[object, MemberPool]] = {}
        # request ids (X-Pyjk-Request-Id): unique per process start (the random prefix) and
        # per request (the counter), the same for every try of one request
        self.rid_prefix = rid_prefix
        self.rid_counter = 0
        # What a new client connection copies (ClientConnection.__init__), set by ProxyServer:
        # its limits, who admits it, the wheel of its deadlines (made when the server
        # listens), whether every listener is TLS
        self.limits: Limits = None  # type: ignore[assignment]
        self.admission: Admission = None  # type: ignore[assignment]
        self.wheel: TimerWheel | None = None
        self.secure = False
        # Per-connection work done once per process rather than once per connection (a new
        # connection per request is the close scenario): Host values that passed
        # http11.valid_host, and the X-Forwarded-* fields of (peer, scheme, Host). Bounded:
        # emptied when full.
        self.valid_hosts: set[bytes] = set()
        self.forwarded_cache: dict[tuple[str, bool, bytes | None], bytes] = {}
        # ... and the last of each, compared before hashing (a new connection's Host and peer
        # address are new objects whose hash is computed anew: ~400 instructions a lookup,
        # where the bytes compare of a repeat costs a few dozen)
        self.valid_host: bytes | None = None
        self.fwd_peer = ""
        self.fwd_secure = False
        self.fwd_host: bytes | None = None
        self.fwd_fields = b""
        # llhttp parsers kept for new client connections (downstream.ParserSlot)
        self.parser_slots: list[ParserSlot] = []

    def next_request_id(self) -> bytes:
        """A new request's id: the prefix and the next count in hex."""
        # Compiled, the counter is a 64-bit unsigned C integer: after 2**64 - 1 it wraps to 0
        # and the ids of this process start would repeat (pure Python goes on to 17 digits).
        # Unreachable: at a million requests a second, 2**64 takes 584,000 years.
        n = self.rid_counter + 1
        self.rid_counter = n
        return hb.hex_id(self.rid_prefix, n)
