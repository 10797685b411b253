"""A client request as the client side parsed and validated it.

What the router sees (method, target, path, headers, host, client address) and what the
forwarding needs (framing, keep-alive, forwarded-header inputs, body buffering until an
exchange takes the body over). ``headers`` holds only end-to-end fields: Host, framing,
hop-by-hop fields, Expect, Upgrade, ``X-Forwarded-*``/``Forwarded`` and the balancer's own
``X-Pyjk-*`` are held apart or dropped, so they can never be relayed by accident.
"""

from __future__ import annotations

from typing import Protocol


class BodySink(Protocol):
    """Who takes a request body over once an exchange starts."""

    def request_body(self, data: bytes) -> None: ...

    def request_complete(self) -> None: ...


class Request:
    __slots__ = (
        "body_received",
        "chunked",
        "client_ip",
        "complete",
        "connection",
        "content_length",
        "cookies",
        "expect",
        "expect_continue",
        "forwarded",
        "head_done",
        "headers",
        "host",
        "http11",
        "keep_alive",
        "method",
        "path",
        "pending",
        "pending_size",
        "query",
        "secure",
        "singletons",
        "sink",
        "target",
        "te",
        "upgrade",
        "upgrade_ws",
        "xff",
        "xfhost",
        "xfproto",
    )

    def __init__(self, client_ip: str, secure: bool) -> None:
        self.setup(client_ip, secure)

    def setup(self, client_ip: str, secure: bool) -> None:
        """What ``__init__`` does. The client connection makes its requests with
        ``Request.__new__(Request)`` and this: compiled, a C call where calling the class
        parses its arguments (request.pxd)."""
        self.client_ip = client_ip
        self.secure = secure  # the client connection is TLS
        self.method = b""
        self.target = b""  # origin form as forwarded (absolute form converted)
        self.path = b""  # target before "?" (";jsessionid" kept)
        self.query = b""  # after "?", without it
        self.http11 = True
        self.headers: list[tuple[bytes, bytes]] = []  # end-to-end fields, as received
        self.host: bytes | None = None
        self.cookies: list[bytes] = []  # every Cookie header value, in order
        self.xff: bytes | None = None  # client-supplied forwarded fields (used when trusted)
        self.xfproto: bytes | None = None
        self.xfhost: bytes | None = None
        self.forwarded: list[bytes] | None = None
        self.connection: list[bytes] = []  # Connection tokens, lower-cased
        self.singletons = 0  # bit set of singleton headers seen
        self.content_length: int | None = None
        self.te: bytes | None = None
        self.chunked = False
        self.expect: bytes | None = None
        self.expect_continue = False
        self.upgrade: bytes | None = None
        self.upgrade_ws = False  # a validated WebSocket upgrade: forwarded with its Upgrade
        self.keep_alive = True
        self.head_done = False
        self.complete = False  # the whole message (body included) has been read
        self.body_received = 0
        self.pending: list[bytes] = []  # body read before an exchange took it over
        self.pending_size = 0
        self.sink: BodySink | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: str) -> bytes | None:
        """The first end-to-end header called ``name`` (case-insensitive), for routers."""
        want = name.lower().encode("latin-1")
        for n, v in self.headers:
            if n.lower() == want:
                return v
        return None

    def attach(self, sink: BodySink) -> tuple[list[bytes], bool]:
        """Hand the body over to ``sink``: returns what was read so far and whether it is all."""
        self.sink = sink
        pending, self.pending, self.pending_size = self.pending, [], 0
        return pending, self.complete

    def __repr__(self) -> str:
        return f"<Request {self.method!r} {self.target!r} from {self.client_ip}>"
