"""HTTP/1.1 facts the data plane needs, as pure functions and tables (no I/O).

Header tables are keyed by lower-cased names. Values are bytes throughout: the request path
never decodes what it only relays.
"""

from __future__ import annotations

import binascii
from http import HTTPStatus


class ParserStop(Exception):
    """Raised inside an llhttp callback to stop the parser (the reason is kept elsewhere).

    Always raise the class (``raise ParserStop``), never one shared instance: raising the same
    exception object again chains the new traceback onto the one it carries, so a module-level
    instance kept every frame it was ever raised through — and with them every connection and
    transport (the balancer grew ~37 KB per fail_on_status response, issue 11 item 6).
    """


# --- status lines and local responses ------------------------------------------------------

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()
}


def status_line(status: int, reason: bytes) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; the cached line when the reason is the standard one."""
    line = _STATUS_LINES.get(status)
    if line is not None and (reason == REASONS[status]):
        return line
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def local_response(
    status: int,
    *,
    close: bool,
    body: bytes | None = None,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    head_only: bool = False,
    keep_alive_10: bool = False,
) -> bytes:
    """A complete response of the balancer's own. The default body is the status and its reason,
    nothing else: an error page must not leak what went wrong inside."""
    if body is None:
        body = b"%d %s\n" % (status, REASONS.get(status, b"Error"))
    parts = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Error\r\n" % status]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if status >= 200 and status not in (204, 304):
        parts += (b"Content-Type: ", content_type, b"\r\nContent-Length: %d\r\n" % len(body))
    if close:
        parts.append(b"Connection: close\r\n")
    elif keep_alive_10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head_only and status >= 200 and status not in (204, 304):
        parts.append(body)
    return b"".join(parts)


CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

# --- header classification ------------------------------------------------------------------

# Request header kinds: what the client side does with each.
H_HOST = 1
H_CONTENT_LENGTH = 2
H_TRANSFER_ENCODING = 3
H_CONNECTION = 4
H_EXPECT = 5
H_UPGRADE = 6
H_COOKIE = 7
H_XFF = 8
H_XFPROTO = 9
H_XFHOST = 10
H_FORWARDED = 11
H_HOP = 12  # hop-by-hop: dropped
H_SINGLETON = 13  # kept, but at most once

REQUEST_HEADERS: dict[bytes, int] = {
    b"host": H_HOST,
    b"content-length": H_CONTENT_LENGTH,
    b"transfer-encoding": H_TRANSFER_ENCODING,
    b"connection": H_CONNECTION,
    b"expect": H_EXPECT,
    b"upgrade": H_UPGRADE,
    b"cookie": H_COOKIE,
    b"x-forwarded-for": H_XFF,
    b"x-forwarded-proto": H_XFPROTO,
    b"x-forwarded-host": H_XFHOST,
    b"forwarded": H_FORWARDED,
    # RFC 9110 §7.6.1 and the usual non-standard ones
    b"keep-alive": H_HOP,
    b"proxy-connection": H_HOP,
    b"proxy-authorization": H_HOP,
    b"proxy-authenticate": H_HOP,
    b"te": H_HOP,
    b"trailer": H_HOP,
    # what pyjk says of a TLS client certificate (RFC 9440): never taken from a client
    b"client-cert": H_HOP,
    b"client-cert-chain": H_HOP,
    # Singletons as aiohttp (the worker apps) counts them: a duplicate is rejected here, before
    # two parsers can disagree about which copy wins (aiohttp http_parser.SINGLETON_HEADERS).
    b"content-type": H_SINGLETON,
    b"content-location": H_SINGLETON,
    b"content-range": H_SINGLETON,
    b"max-forwards": H_SINGLETON,
    b"user-agent": H_SINGLETON,
    b"authorization": H_SINGLETON,
}

# Response header kinds.
R_CONTENT_LENGTH = 1
R_TRANSFER_ENCODING = 2
R_CONNECTION = 3
R_HOP = 4
R_UPGRADE = 5
R_SET_COOKIE = 6

RESPONSE_HEADERS: dict[bytes, int] = {
    b"content-length": R_CONTENT_LENGTH,
    b"transfer-encoding": R_TRANSFER_ENCODING,
    b"connection": R_CONNECTION,
    b"keep-alive": R_HOP,
    b"proxy-connection": R_HOP,
    b"proxy-authenticate": R_HOP,
    b"te": R_HOP,
    b"trailer": R_HOP,
    b"upgrade": R_UPGRADE,
    b"set-cookie": R_SET_COOKIE,
}

# Names a peer cannot have removed by listing them in Connection: the balancer's own headers,
# framing, and what identifies the client and its session (front-door-security.md).
PROTECTED_FROM_CONNECTION = frozenset(
    {
        b"host",
        b"cookie",
        b"set-cookie",
        b"authorization",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-real-ip",
    }
)
OWN_HEADER_PREFIX = b"x-pyjk-"


def connection_tokens(value: bytes) -> list[bytes]:
    """The lower-cased, trimmed tokens of a Connection header value (empty ones dropped)."""
    if 0x2C not in value:  # no ",": the usual single token ("keep-alive", "close")
        token = value.strip(b" \t").lower()
        return [token] if token else []
    return [t for t in (p.strip(b" \t").lower() for p in value.split(b",")) if t]


# Connection tokens that name no field to drop: the options themselves, and the fields a peer
# cannot have removed (PROTECTED_FROM_CONNECTION, below).
_NOT_FIELDS = frozenset({b"close", b"keep-alive", b"upgrade"})


def named_fields(tokens: list[bytes]) -> set[bytes] | None:
    """The fields a Connection header's ``tokens`` ask to drop as hop-by-hop, or None."""
    named = None
    for t in tokens:
        if t not in _NOT_FIELDS and t not in PROTECTED_FROM_CONNECTION:
            if named is None:
                named = set()
            named.add(t)
    return named


def strip_named(headers: list[tuple[bytes, bytes]], named: set[bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` without the fields whose lower-cased name is in ``named``."""
    return [(n, v) for n, v in headers if n.lower() not in named]


# --- value checks ----------------------------------------------------------------------------

_CTL = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF:."


def valid_reason(reason: bytes) -> bool:
    """A reason phrase may hold HTAB, SP, VCHAR and obs-text, never other control bytes."""
    return len(reason.translate(None, _CTL)) == len(reason)


def valid_host(host: bytes) -> bool:
    """RFC 3986 authority without userinfo: reg-name / IPv4 / "[" IPv6 "]", optional ":port"."""
    if not host:
        return False
    if host[0] == 0x5B:  # "["
        end = host.find(b"]")
        if end < 3 or host[1:end].translate(None, _HEX):
            return False
        rest = host[end + 1 :]
        return not rest or (rest[0] == 0x3A and _valid_port(rest[1:]))
    colon = host.find(b":")
    if colon >= 0:
        name, port = host[:colon], host[colon + 1 :]
        if not _valid_port(port):
            return False
    else:
        name = host
    return bool(name) and not name.translate(None, _HOST_CHARS)


def _valid_port(port: bytes) -> bool:
    # an empty port is allowed by RFC 3986 ("host:")
    return len(port) <= 5 and not port.translate(None, _DIGITS)


def split_absolute_target(target: bytes) -> tuple[bytes, bytes] | None:
    """``http://authority/path?q`` -> (authority, ``/path?q``); None when not http(s) absolute.

    RFC 9112 §3.2.2: with an absolute-form target the authority replaces Host. Forwarded
    upstream in origin form, as a gateway does.
    """
    low = target[:8].lower()
    if low.startswith(b"http://"):
        rest = target[7:]
    elif low.startswith(b"https://"):
        rest = target[8:]
    else:
        return None
    end = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    authority, path = rest[:end], rest[end:]
    if not path:
        path = b"/"
    elif path[0] == 0x3F:  # "?"
        path = b"/" + path
    return authority, path


def set_cookie_name(value: bytes) -> bytes:
    """The cookie name of a Set-Cookie value (``name=value; attrs``), trimmed."""
    eq = value.find(b"=")
    return (value if eq < 0 else value[:eq]).strip(b" \t")


def websocket_upgrade(upgrade: bytes | None, connection: list[bytes]) -> bool:
    """True for a request that asks to switch to WebSocket (RFC 6455 §4.1)."""
    if upgrade is None or b"upgrade" not in connection:
        return False
    return any(t.strip(b" \t").lower() == b"websocket" for t in upgrade.split(b","))


def websocket_handshake_ok(headers: list[tuple[bytes, bytes]]) -> bool:
    """The opening handshake's own fields are there and right (RFC 6455 §4.2.1): one
    Sec-WebSocket-Key that is base64 of 16 bytes, and Sec-WebSocket-Version 13 (the only
    version there is; HAProxy refuses the others too). Checked only for upgrade requests."""
    keys = [v for n, v in headers if n.lower() == b"sec-websocket-key"]
    versions = [v for n, v in headers if n.lower() == b"sec-websocket-version"]
    if len(keys) != 1 or len(versions) != 1 or versions[0].strip(b" \t") != b"13":
        return False
    key = keys[0].strip(b" \t")
    try:
        return len(key) == 24 and len(binascii.a2b_base64(key, strict_mode=True)) == 16
    except binascii.Error:
        return False


def same_authority(a: bytes, b: bytes) -> bool:
    """Two authorities (``host[:port]``) name the same origin: case-insensitive, and an
    explicit default port (80, 443) is the same as none."""
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    for default in (b":80", b":443"):
        a = a.removesuffix(default)
        b = b.removesuffix(default)
    return a == b


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The three pieces of one chunk of a chunked body."""
    return (b"%x\r\n" % len(data), data, b"\r\n")


LAST_CHUNK = b"0\r\n\r\n"

# entries of the per-process caches of per-connection work (ProxyCore.valid_hosts,
# ProxyCore.forwarded_cache); emptied when full, so a flood of Host values costs nothing more
CACHE_LIMIT = 1024
