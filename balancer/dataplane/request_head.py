"""Reading request heads: the llhttp callbacks of a client connection, and the checks llhttp
leaves to us.

llhttp runs in its strict mode (no lenient flags): it rejects CL+TE, duplicate or invalid
Content-Length, Transfer-Encoding that does not end in chunked, bare LF/CR, bad chunk framing,
obs-fold, control characters in names and values, and unknown methods. ``RequestParsing``
adds the rest of front-door-security.md (``_check_head``): Host, singletons, underscores,
versions, targets, framing, Expect, Upgrade, sizes and counts. A callback refuses a request by
setting ``reject_status`` and raising ``h.ParserStop``, which leaves llhttp dead: nothing after a
refused request is ever parsed.

A mixin of ``ClientConnection`` (balancer.dataplane.downstream), whose state it uses.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpRequestParser

from balancer.dataplane import http11 as h
from balancer.dataplane.request import Request

if TYPE_CHECKING:
    import asyncio

    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.limits import Limits
    from balancer.dataplane.proxy import ProxyServer

# reasons for a client connection to stop reading (a bit set)
PAUSE_PENDING = 1  # body read before an exchange took it over is over the limit
PAUSE_UPSTREAM = 2  # the upstream connection cannot take more body now
PAUSE_HOLD = 4  # requests are queued behind the one in flight
PAUSE_DONE = 8  # nothing more will be parsed on this connection

# fields that may appear once: aiohttp's singletons (the worker apps), plus the ones whose
# meaning depends on a single value
_SINGLETON_BITS = {
    name: 1 << i
    for i, name in enumerate(
        [
            *sorted(n for n, k in h.REQUEST_HEADERS.items() if k == h.H_SINGLETON),
            b"upgrade",
            b"expect",
            b"x-forwarded-host",
            b"x-forwarded-proto",
        ]
    )
}


# lower-cased name -> (kind, singleton bit or 0): one lookup per known field
_KINDS = {name: (kind, _SINGLETON_BITS.get(name, 0)) for name, kind in h.REQUEST_HEADERS.items()}


class RequestParsing:
    """llhttp's callbacks for one client connection (a mixin: the state is the connection's)."""

    __slots__ = ()

    # the connection's state this mixin uses
    server: ProxyServer
    parser: HttpRequestParser
    limits: Limits
    loop: asyncio.AbstractEventLoop
    req: Request | None
    queue: deque[Request | int]
    exchange: Exchange | None
    peer_ip: str
    secure: bool
    fresh: bool
    conn_at: float
    head_started: float
    body_read_at: float
    head_size: int
    head_raw: int
    n_headers: int
    reject_status: int
    overflow: bool
    stop_after: bool
    parse_dead: bool
    reseed: bytes | None
    upgrade_rest: bytes | None
    chunked_heads: list[Request] | None
    valid_host: bytes | None

    if TYPE_CHECKING:  # provided by the class this is mixed into

        def _pause(self, why: int) -> None: ...

    def on_message_begin(self) -> None:
        if self.stop_after:
            # bytes after a closing request (in the read that ended it): never parsed, and
            # the close lingers since the client may still be sending
            self.parse_dead = True
            raise h.ParserStop
        if len(self.queue) >= self.limits.max_pipelined:
            self.overflow = True
            raise h.ParserStop
        self.req = Request(self.peer_ip, self.secure)
        self.head_size = self.head_raw = self.n_headers = 0
        self.head_started = self.conn_at if self.fresh else self.loop.time()

    def on_url(self, url: bytes) -> None:
        req = self.req
        assert req is not None
        req.target += url
        if len(req.target) > self.limits.max_head_size:
            self.reject_status = 414
            raise h.ParserStop

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        assert req is not None
        limits = self.limits
        self.n_headers += 1
        self.head_size += len(name) + len(value) + 4
        if self.n_headers > limits.max_headers or self.head_size > limits.max_head_size:
            self.reject_status = 431
            raise h.ParserStop
        if req.head_done:
            return  # a trailer field of a chunked body: counted above, never forwarded
        lname = name.lower()
        entry = _KINDS.get(lname)
        if entry is None:
            if 0x5F in name:  # "_" (an int: see _check_head's "#")
                policy = limits.underscores_in_headers
                if policy == "reject":
                    self.reject_status = 400
                    raise h.ParserStop
                if policy == "drop":
                    return
            if lname.startswith(h.OWN_HEADER_PREFIX):
                return  # ours to set, never the client's
            req.headers.append((name, value))
            return
        kind, bit = entry
        if bit:
            if req.singletons & bit:
                self.reject_status = 400
                raise h.ParserStop
            req.singletons |= bit
        if kind == h.H_HOST:
            if req.host is not None:
                self.reject_status = 400
                raise h.ParserStop
            req.host = value
        elif kind == h.H_SINGLETON:
            req.headers.append((name, value))
        elif kind == h.H_COOKIE:
            req.headers.append((name, value))
            req.cookies.append(value)
        elif kind == h.H_CONTENT_LENGTH:
            req.content_length = int(value)  # llhttp checked digits and duplicates
        elif kind == h.H_TRANSFER_ENCODING:
            if req.te is not None:
                self.reject_status = 400
                raise h.ParserStop
            req.te = value
        elif kind == h.H_CONNECTION:
            req.connection += h.connection_tokens(value)
        elif kind == h.H_EXPECT:
            req.expect = value
        elif kind == h.H_UPGRADE:
            req.upgrade = value
        elif kind == h.H_XFF:
            req.xff = value if req.xff is None else req.xff + b", " + value
        elif kind == h.H_XFPROTO:
            req.xfproto = value
        elif kind == h.H_XFHOST:
            req.xfhost = value
        elif kind == h.H_FORWARDED:
            if req.forwarded is None:
                req.forwarded = []
            req.forwarded.append(value)
        # H_HOP: dropped

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        status = self._check_head(req)
        if status:
            self.reject_status = status
            raise h.ParserStop
        req.head_done = True
        self.queue.append(req)

    def _check_head(self, req: Request) -> int:
        """The rules llhttp does not apply; 0 when the head is acceptable."""
        parser = self.parser
        version = parser.get_http_version()
        if version == "1.1":
            req.http11 = True
        elif version == "1.0":
            req.http11 = False
        else:
            return 505
        method = parser.get_method()
        if method == b"CONNECT":
            return 405  # a reverse proxy, not a tunnel to arbitrary hosts
        req.method = method
        target = req.target
        first = target[0]  # llhttp never reports an empty target
        if first == 0x2A:  # "*"
            if method != b"OPTIONS" or target != b"*":
                return 400
        elif first != 0x2F:  # not "/"
            split = h.split_absolute_target(target)
            if split is None or not h.valid_host(split[0]):
                return 400
            # RFC 9112 §3.2.2 lets the target's authority win over Host; a reverse proxy that
            # followed it would serve (and let a cache store) another host's page under this
            # one's name. pyjk takes an absolute-form target only when it names the Host the
            # request carries — what the client says twice cannot disagree — else 400.
            authority, target = split
            if req.host is None or not h.same_authority(authority, req.host):
                return 400
            req.target = target
        # an int, not b"#": `bytes in bytes` first tries the needle as an integer and clears
        # the TypeError (CPython 3.11), ~2k instructions against ~0.2k for a byte value
        if 0x23 in target:  # "#"
            return 400
        host = req.host
        if host is None:
            if req.http11:
                return 400
            req.host = b""
        elif host != self.valid_host:  # keep-alive clients repeat their Host
            known = self.server.valid_hosts
            if host not in known:
                if not h.valid_host(host):
                    return 400
                if len(known) >= h.CACHE_LIMIT:
                    known.clear()
                known.add(host)
            self.valid_host = host
        has_body = bool(req.content_length)
        if req.te is not None:
            if not req.http11:
                return 400  # RFC 9112 §6.1: HTTP/1.0 framing with TE is faulty
            if req.te.strip(b" \t").lower() != b"chunked":
                return 501
            req.chunked = has_body = True
            # its size lines are followed (downstream._follow_chunks)
            if self.chunked_heads is None:
                self.chunked_heads = [req]
            else:
                self.chunked_heads.append(req)
        max_body = self.limits.max_body_size
        if max_body and req.content_length is not None and req.content_length > max_body:
            return 413
        tokens = req.connection
        req.keep_alive = (b"close" not in tokens) if req.http11 else (b"keep-alive" in tokens)
        if req.expect is not None and req.http11:
            if req.expect.strip(b" \t").lower() != b"100-continue":
                return 417
            req.expect_continue = has_body
        if req.upgrade is not None and parser.should_upgrade():
            # llhttp stops after this head (HttpParserUpgrade). Only a WebSocket upgrade is
            # forwarded; any other Upgrade is ignored and the request served as plain HTTP.
            if h.websocket_upgrade(req.upgrade, tokens) and req.http11 and method == b"GET":
                if has_body or not h.websocket_handshake_ok(req.headers):
                    return 400  # refused at the edge rather than left to the backend
                req.upgrade_ws = True
            elif has_body:
                self.reseed = (
                    b"Transfer-Encoding: chunked"
                    if req.chunked
                    else (
                        b"Content-Length: %d" % req.content_length  # type: ignore[str-format]
                    )
                )
        if tokens:
            named = h.named_fields(tokens)
            if named:
                req.headers = h.strip_named(req.headers, named)
        q = target.find(b"?")
        if q >= 0:
            req.path, req.query = target[:q], target[q + 1 :]
        else:
            req.path = target
        return 0

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        n = len(body)
        req.body_received += n
        max_body = self.limits.max_body_size
        if max_body and req.body_received > max_body:
            self.reject_status = 413
            raise h.ParserStop
        self.body_read_at = self.loop.time()
        sink = req.sink
        if sink is not None:
            sink.request_body(body)
        else:
            req.pending.append(body)
            req.pending_size += n
            if req.pending_size > self.limits.replay_buffer_size:
                self._pause(PAUSE_PENDING)

    def on_message_complete(self) -> None:
        req = self.req
        assert req is not None
        if self.reseed is not None and not req.upgrade_ws:
            return  # the body follows; see _upgrade_pause
        self.req = None
        req.complete = True
        if not req.keep_alive:
            self.stop_after = True
        sink = req.sink
        if sink is not None:
            sink.request_complete()
        # After a closing request nothing more is parsed: on_message_begin stops llhttp if
        # this read holds more, data_received drops later reads. Not stopping llhttp here
        # spares the common Connection: close request two exceptions and a lingering close.

    def _upgrade_pause(self, data: bytes, offset: int) -> bytes | None:
        """llhttp stopped after a head that asked to switch protocols; returns bytes to parse."""
        rest = data[offset:]
        req = self.queue[-1] if self.queue else None
        if req is not None and req.upgrade_ws:
            # Parse nothing more: after a 101 the bytes are the new protocol's, otherwise the
            # connection closes after the response.
            self.parse_dead = True
            self.upgrade_rest = rest
            self._pause(PAUSE_DONE)
            return None
        # An ignored upgrade (h2c ...). llhttp ended the message at its head; when it has a
        # body, a fresh parser is primed with a head carrying the same framing, so the body
        # (and anything pipelined after it) is parsed and validated as usual.
        seed, self.reseed = self.reseed, None
        if seed is not None and req is not None:
            relay = _Relay(self)
            parser = HttpRequestParser(relay)
            parser.feed_data(b"POST / HTTP/1.1\r\nHost: x\r\n" + seed + b"\r\n\r\n")
            relay.live = True
            self.parser = parser
            self.req = req
        return rest


class _Relay:
    """Callbacks of a re-seeded parser: the primer head is swallowed, the rest forwarded."""

    __slots__ = ("conn", "live")

    def __init__(self, conn: RequestParsing) -> None:
        self.conn = conn
        self.live = False

    def on_message_begin(self) -> None:
        if self.live:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self.live:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.live:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.live:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.live:
            self.conn.on_body(body)

    def on_message_complete(self) -> None:
        if self.live:
            self.conn.on_message_complete()
