"""Reading request heads: the checks llhttp leaves to us, and the parser re-seeded after an
ignored upgrade — functions taking the client connection (downstream.py), whose llhttp
callbacks call them.

llhttp runs in its strict mode (no lenient flags): it rejects CL+TE, duplicate or invalid
Content-Length, Transfer-Encoding that does not end in chunked, bare LF/CR, bad chunk framing,
obs-fold, control characters in names and values, and unknown methods. ``check_head``
adds the rest of front-door-security.md: Host, singletons, underscores,
versions, targets, framing, Expect, Upgrade, sizes and counts. A callback refuses a request by
setting ``reject_status`` and raising ``h.ParserStop``, which leaves llhttp dead: nothing after a
refused request is ever parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from httptools import HttpRequestParser

from balancer.dataplane import http11 as h
from balancer.dataplane.request import Request

if TYPE_CHECKING:
    from balancer.dataplane.downstream import ClientConnection

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
FIELD_KINDS = {
    name: (kind, _SINGLETON_BITS.get(name, 0)) for name, kind in h.REQUEST_HEADERS.items()
}


def check_head(conn: ClientConnection, req: Request) -> int:
    """The rules llhttp leaves to us, for the head ``req`` that ``conn`` read; 0 when it is
    acceptable, else the status that refuses it."""
    parser = conn.parser
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
    elif host != conn.valid_host:  # keep-alive clients repeat their Host
        known = conn.server.valid_hosts
        if host not in known:
            if not h.valid_host(host):
                return 400
            if len(known) >= h.CACHE_LIMIT:
                known.clear()
            known.add(host)
        conn.valid_host = host
    has_body = bool(req.content_length)
    if req.te is not None:
        if not req.http11:
            return 400  # RFC 9112 §6.1: HTTP/1.0 framing with TE is faulty
        if req.te.strip(b" \t").lower() != b"chunked":
            return 501
        req.chunked = has_body = True
        # its size lines are followed (ClientConnection._follow_chunks)
        if conn.chunked_heads is None:
            conn.chunked_heads = [req]
        else:
            conn.chunked_heads.append(req)
    max_body = conn.max_body_size
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
            conn.reseed = (
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


def upgrade_pause(conn: ClientConnection, data: bytes, offset: int) -> bytes | None:
    """llhttp stopped after a head that asked to switch protocols (``offset`` into ``data``,
    the read); returns the bytes ``conn`` should parse next."""
    rest = data[offset:]
    req = conn.queue[-1] if conn.queue else None
    if req is not None and req.upgrade_ws:
        # Parse nothing more: after a 101 the bytes are the new protocol's, otherwise the
        # connection closes after the response.
        conn.parse_dead = True
        conn.upgrade_rest = rest
        conn._pause(PAUSE_DONE)
        return None
    # An ignored upgrade (h2c ...). llhttp ended the message at its head; when it has a
    # body, a fresh parser is primed with a head carrying the same framing, so the body
    # (and anything pipelined after it) is parsed and validated as usual.
    seed, conn.reseed = conn.reseed, None
    if seed is not None and req is not None:
        relay = _Relay(conn)
        parser = HttpRequestParser(relay)
        parser.feed_data(b"POST / HTTP/1.1\r\nHost: x\r\n" + seed + b"\r\n\r\n")
        relay.live = True
        conn.parser = parser
        conn.req = req
    return rest


class _Relay:
    """Callbacks of a re-seeded parser: the primer head is swallowed, the rest forwarded."""

    __slots__ = ("conn", "live")

    def __init__(self, conn: ClientConnection) -> None:
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
