"""Reading request heads: the fields scanned from a head's own bytes, the checks llhttp leaves
to us, and the parser re-seeded after an ignored upgrade — functions taking the client
connection (downstream.py), whose llhttp callbacks call them.

llhttp runs in its strict mode (no lenient flags) and stays the judge of what is malformed: it
rejects CL+TE, duplicate or invalid Content-Length, Transfer-Encoding that does not end in
chunked, bare LF/CR, bad chunk framing, obs-fold, control characters in names and values, and
unknown methods. It calls the connection back only at a message's begin, at its head's end,
for body bytes and at its end — no per-field callbacks; when it has accepted a head,
``read_head`` reads the fields pyjk uses from the head's bytes and ``check_head`` adds the rest
of front-door-security.md: Host, singletons, underscores, versions, targets, framing, Expect,
Upgrade, sizes and counts. A callback refuses a request by setting ``reject_status`` and
raising ``h.ParserStop``, which leaves llhttp dead: nothing after a refused request is ever
parsed.

Compiled (request_head.pxd) the scan is a C loop over the bytes; ``PYJK_PURE=1`` runs this same
code in Python (slower, same results: the unit tests run both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from httptools import HttpRequestParser

from balancer.dataplane import head_bytes as hb
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


# Field codes of the scan: the field's kind (http11.H_*) and its singleton bit (<< 8), as C
# ints in the compiled build; 0 is every other field.
def _code_of(name: bytes) -> int:
    kind, bit = FIELD_KINDS[name]
    return kind | bit << 8


_C_HOST = _code_of(b"host")
_C_CONTENT_LENGTH = _code_of(b"content-length")
_C_TRANSFER_ENCODING = _code_of(b"transfer-encoding")
_C_CONNECTION = _code_of(b"connection")
_C_EXPECT = _code_of(b"expect")
_C_UPGRADE = _code_of(b"upgrade")
_C_COOKIE = _code_of(b"cookie")
_C_XFF = _code_of(b"x-forwarded-for")
_C_XFPROTO = _code_of(b"x-forwarded-proto")
_C_XFHOST = _code_of(b"x-forwarded-host")
_C_FORWARDED = _code_of(b"forwarded")
_C_KEEP_ALIVE = _code_of(b"keep-alive")
_C_PROXY_CONNECTION = _code_of(b"proxy-connection")
_C_PROXY_AUTHORIZATION = _code_of(b"proxy-authorization")
_C_PROXY_AUTHENTICATE = _code_of(b"proxy-authenticate")
_C_TE = _code_of(b"te")
_C_TRAILER = _code_of(b"trailer")
_C_CLIENT_CERT = _code_of(b"client-cert")
_C_CLIENT_CERT_CHAIN = _code_of(b"client-cert-chain")
_C_CONTENT_TYPE = _code_of(b"content-type")
_C_CONTENT_LOCATION = _code_of(b"content-location")
_C_CONTENT_RANGE = _code_of(b"content-range")
_C_MAX_FORWARDS = _code_of(b"max-forwards")
_C_USER_AGENT = _code_of(b"user-agent")
_C_AUTHORIZATION = _code_of(b"authorization")

# the kinds of http11.REQUEST_HEADERS, as C ints in the compiled build (a read of ``h.H_HOST``
# there is a module attribute lookup and a Python comparison per field)
_H_HOST = h.H_HOST
_H_CONTENT_LENGTH = h.H_CONTENT_LENGTH
_H_TRANSFER_ENCODING = h.H_TRANSFER_ENCODING
_H_CONNECTION = h.H_CONNECTION
_H_EXPECT = h.H_EXPECT
_H_UPGRADE = h.H_UPGRADE
_H_COOKIE = h.H_COOKIE
_H_XFF = h.H_XFF
_H_XFPROTO = h.H_XFPROTO
_H_XFHOST = h.H_XFHOST
_H_FORWARDED = h.H_FORWARDED
_H_HOP = h.H_HOP
_H_SINGLETON = h.H_SINGLETON

_CR = 13
_SP = 32
_UNDERSCORE = 0x5F
_G = 71
_P = 80
_O = 79
_H = 72
_CLOSE = b"close"
_KEEP_ALIVE_TOKEN = b"keep-alive"
_GET = b"GET"
_POST = b"POST"
_HEAD = b"HEAD"


def read_head(conn: ClientConnection, req: Request, buf: bytes, start: int) -> int:
    """Read the head that begins at ``start`` of ``buf`` into ``req`` — one llhttp has just
    accepted whole (strict: CRLF line ends, a token method, a target without spaces or control
    bytes, token names, no control bytes in values, no obs-fold, Content-Length digits and
    duplicates, Content-Length with Transfer-Encoding) — and check it; 0 when it is
    acceptable, else the status that refuses it. ``conn.head_end`` is set to the offset just
    past its blank line.

    llhttp gets no per-field callback (issue 12): a Python call and two bytes objects per
    field were most of what reading a request head cost. The scan looks at one thing per
    field — its name — and makes Python objects only for the fields pyjk keeps or acts on.
    Fields are taken in order, so the first offending one decides the status, as when llhttp
    called back per field.
    """
    p = buf  # compiled: a C pointer to the bytes (request_head.pxd)
    n = len(buf)
    i = start
    # the request line: method SP target SP "HTTP/" DIGIT "." DIGIT CRLF, or HTTP/0.9's
    # method SP target CRLF (refused below); llhttp's getters would build a version string.
    # llhttp takes a run of spaces where one SP stands, and so does this scan.
    sp = hb.find(buf, p, _SP, i, n)
    if sp - i == 3 and p[i] == _G:
        req.method = _GET  # the usual ones: no new object
    elif sp - i == 4 and p[i] == _P and p[i + 1] == _O:
        req.method = _POST
    elif sp - i == 4 and p[i] == _H:
        req.method = _HEAD
    else:
        req.method = p[i:sp]
    i = sp + 1
    eol = hb.find(buf, p, _CR, i, n)
    while i < eol and p[i] == _SP:
        i += 1
    sp = hb.find(buf, p, _SP, i, eol)
    if sp - i > conn.max_head_size:
        return 414
    req.target = p[i:sp]
    while sp < eol and p[sp] == _SP:
        sp += 1
    if eol - sp != 8:  # no HTTP/x.y: HTTP/0.9
        # refused before its fields are read: llhttp ends an HTTP/0.9 message at its line
        # (at a bare LF too), so what follows is no head it checked (a review found the
        # compiled scan raised SystemError there: a 500 and an error logged per request)
        return 505
    version = (p[sp + 5] - 48) * 10 + (p[sp + 7] - 48)
    i = eol + 2
    max_headers = conn.max_headers
    max_size = conn.max_head_size
    fields = 0
    size = 0
    while i < n and p[i] != _CR:
        line = i
        colon, value, value_end = hb.field_line(buf, p, i, n)
        name_len = colon - line
        i = value_end + 2
        fields += 1
        size += name_len + (value_end - value) + 4
        if fields > max_headers or size > max_size:
            return 431
        code = _code(p, line, name_len)
        if code == 0:
            if hb.find(buf, p, _UNDERSCORE, line, line + name_len) < line + name_len:
                policy = conn.limits.underscores_in_headers
                if policy == "reject":
                    return 400
                if policy == "drop":
                    continue
            if name_len >= 7 and hb.named(p, line, h.OWN_HEADER_PREFIX):
                continue  # ours to set, never the client's
            req.headers.append((p[line : line + name_len], p[value:value_end]))
            continue
        bit = code >> 8
        if bit:
            if req.singletons & bit:
                return 400
            req.singletons |= bit
        kind = code & 0xFF
        if kind == _H_HOST:
            if req.host is not None:
                return 400
            req.host = p[value:value_end]
        elif kind == _H_COOKIE:
            val = p[value:value_end]
            req.headers.append((p[line : line + name_len], val))
            req.cookies.append(val)
        elif kind == _H_SINGLETON:
            req.headers.append((p[line : line + name_len], p[value:value_end]))
        elif kind == _H_CONTENT_LENGTH:
            length = hb.number(p, value, value_end)  # llhttp checked digits and duplicates
            req.content_length = length if length >= 0 else int(p[value:value_end])
        elif kind == _H_HOP:
            continue  # dropped
        elif kind == _H_TRANSFER_ENCODING:
            if req.te is not None:
                return 400
            req.te = p[value:value_end]
        elif kind == _H_CONNECTION:
            length = value_end - value
            # the usual single options name no field: no Python call, no new object
            if length == 5 and hb.named(p, value, b"close"):
                req.connection.append(_CLOSE)
            elif length == 10 and hb.named(p, value, b"keep-alive"):
                req.connection.append(_KEEP_ALIVE_TOKEN)
            else:
                req.connection += h.connection_tokens(p[value:value_end])
        elif kind == _H_EXPECT:
            req.expect = p[value:value_end]
        elif kind == _H_UPGRADE:
            req.upgrade = p[value:value_end]
        elif kind == _H_XFF:
            val = p[value:value_end]
            req.xff = val if req.xff is None else req.xff + b", " + val
        elif kind == _H_XFPROTO:
            req.xfproto = p[value:value_end]
        elif kind == _H_XFHOST:
            req.xfhost = p[value:value_end]
        elif kind == _H_FORWARDED:
            if req.forwarded is None:
                req.forwarded = []
            req.forwarded.append(p[value:value_end])
    conn.n_headers = fields
    conn.head_size = size
    conn.head_end = i + 2 if i + 2 <= n else n  # (never past the read)
    return check_head(conn, req, version)


def check_head(conn: ClientConnection, req: Request, version: int) -> int:
    """The rules llhttp leaves to us, for the head ``req`` that ``conn`` read (``version``:
    10 * major + minor); 0 when it is acceptable, else the status that refuses it."""
    if version == 11:
        req.http11 = True
    elif version == 10:
        req.http11 = False
    else:
        return 505
    method = req.method
    if method == b"CONNECT":
        return 405  # a reverse proxy, not a tunnel to arbitrary hosts
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
    t = target  # compiled: a C pointer to the bytes (request_head.pxd)
    n = len(target)
    if hb.find(target, t, 0x23, 0, n) < n:  # "#"
        return 400
    host = req.host
    if host is None:
        if req.http11:
            return 400
        req.host = b""
    elif host != conn.valid_host:  # keep-alive clients repeat their Host
        server = conn.server
        # new connections too (the last Host that passed on any): compared before hashed
        if host != server.valid_host:
            known = server.valid_hosts
            if host not in known:
                if not h.valid_host(host):
                    return 400
                if len(known) >= h.CACHE_LIMIT:
                    known.clear()
                known.add(host)
            server.valid_host = host
        conn.valid_host = host
    has_body = bool(req.content_length)
    if req.te is not None:
        if not req.http11:
            return 400  # RFC 9112 §6.1: HTTP/1.0 framing with TE is faulty
        if req.te.strip(b" \t").lower() != b"chunked":
            return 501
        req.chunked = has_body = True  # its framing is followed (ClientConnection)
    max_body = conn.max_body_size
    if max_body and req.content_length is not None and req.content_length > max_body:
        return 413
    tokens = req.connection
    req.keep_alive = (b"close" not in tokens) if req.http11 else (b"keep-alive" in tokens)
    if req.expect is not None and req.http11:
        if req.expect.strip(b" \t").lower() != b"100-continue":
            return 417
        req.expect_continue = has_body
    if req.upgrade is not None and conn.parser.should_upgrade():
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
    if tokens and not (
        len(tokens) == 1 and (tokens[0] is _CLOSE or tokens[0] is _KEEP_ALIVE_TOKEN)
    ):
        named = h.named_fields(tokens)
        if named:
            req.headers = h.strip_named(req.headers, named)
    q = hb.find(target, t, 0x3F, 0, n)  # "?"
    if q < n:
        req.path, req.query = t[:q], t[q + 1 : n]
    else:
        req.path = target
    return 0


def _code(p: bytes, at: int, n: int) -> int:
    """The code of the field name of ``n`` bytes at ``at`` (any case), 0 for a name
    REQUEST_HEADERS does not list (by its length first: most names are not compared at all).
    A test checks it against FIELD_KINDS."""
    if n == 4:
        if hb.named(p, at, b"host"):
            return _C_HOST
    elif n == 10:
        if hb.named(p, at, b"user-agent"):
            return _C_USER_AGENT
        if hb.named(p, at, b"connection"):
            return _C_CONNECTION
        if hb.named(p, at, b"keep-alive"):
            return _C_KEEP_ALIVE
    elif n == 6:
        if hb.named(p, at, b"cookie"):
            return _C_COOKIE
        if hb.named(p, at, b"expect"):
            return _C_EXPECT
    elif n == 14:
        if hb.named(p, at, b"content-length"):
            return _C_CONTENT_LENGTH
    elif n == 12:
        if hb.named(p, at, b"content-type"):
            return _C_CONTENT_TYPE
        if hb.named(p, at, b"max-forwards"):
            return _C_MAX_FORWARDS
    elif n == 13:
        if hb.named(p, at, b"authorization"):
            return _C_AUTHORIZATION
        if hb.named(p, at, b"content-range"):
            return _C_CONTENT_RANGE
    elif n == 17:
        if hb.named(p, at, b"transfer-encoding"):
            return _C_TRANSFER_ENCODING
        if hb.named(p, at, b"x-forwarded-proto"):
            return _C_XFPROTO
        if hb.named(p, at, b"client-cert-chain"):
            return _C_CLIENT_CERT_CHAIN
    elif n == 15:
        if hb.named(p, at, b"x-forwarded-for"):
            return _C_XFF
    elif n == 16:
        if hb.named(p, at, b"x-forwarded-host"):
            return _C_XFHOST
        if hb.named(p, at, b"proxy-connection"):
            return _C_PROXY_CONNECTION
        if hb.named(p, at, b"content-location"):
            return _C_CONTENT_LOCATION
    elif n == 7:
        if hb.named(p, at, b"upgrade"):
            return _C_UPGRADE
        if hb.named(p, at, b"trailer"):
            return _C_TRAILER
    elif n == 9:
        if hb.named(p, at, b"forwarded"):
            return _C_FORWARDED
    elif n == 2:
        if hb.named(p, at, b"te"):
            return _C_TE
    elif n == 11:
        if hb.named(p, at, b"client-cert"):
            return _C_CLIENT_CERT
    elif n == 18:
        if hb.named(p, at, b"proxy-authenticate"):
            return _C_PROXY_AUTHENTICATE
    elif n == 19 and hb.named(p, at, b"proxy-authorization"):
        return _C_PROXY_AUTHORIZATION
    return 0


def upgrade_pause(conn: ClientConnection, data: bytes, offset: int) -> bytes | None:
    """llhttp stopped after a head that asked to switch protocols (``offset`` into ``data``,
    the read); returns the bytes ``conn`` should parse next."""
    rest = data[offset:]
    if conn.chunk_end >= 0:
        conn.chunk_end -= offset  # where a chunked body ended, now in ``rest``
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

    def on_headers_complete(self) -> None:
        if self.live:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.live:
            self.conn.on_body(body)

    def on_message_complete(self) -> None:
        if self.live:
            self.conn.on_message_complete()
