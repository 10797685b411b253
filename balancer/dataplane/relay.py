"""The response head a client receives for a member's head: how its body is framed, and the
bytes of the head (the member's fields, plus routing cookie, framing, HSTS and Connection).

Pure functions of the member's parsed head (status, reason, fields) and the request: the exchange
(exchange.py) calls them from its response callbacks and collects the bytes it gets back. The
member's fields come either as bytes ready to relay (``fields``: the http connection's pieces of
the head's bytes, response_head.py) or as (name, value) pairs (``headers``: ajp13's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from balancer.dataplane import http11 as h

if TYPE_CHECKING:
    from balancer.dataplane.proxy import ProxyServer
    from balancer.dataplane.request import Request

_OK_LINE = h.status_line(200, b"OK")

# how the response body goes to the client
MODE_NONE = 0  # no body (HEAD, 204, 304, 1xx)
MODE_LENGTH = 1  # Content-Length, relayed as is
MODE_CHUNKED = 2  # re-chunked (chunked or close-delimited upstream, HTTP/1.1 client)
MODE_CLOSE = 3  # ends when the connection closes (HTTP/1.0 client, unknown length)


def body_mode(req: Request, status: int, content_length: int | None, chunked: bool) -> int:
    """How the body of a final response (status >= 200) reaches the client, given the
    member's framing (``content_length``, ``chunked``)."""
    if req.method == b"HEAD" or status in (204, 304):
        return MODE_NONE
    if content_length is not None and not chunked:
        return MODE_LENGTH
    if req.http11:
        return MODE_CHUNKED
    return MODE_CLOSE


def _status_and_fields(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], fields: Sequence[bytes]
) -> list[bytes]:
    line = _OK_LINE if status == 200 and reason == b"OK" else h.status_line(status, reason)
    parts = [line]
    if fields:
        parts.extend(fields)  # compiled: the C list extend (+= goes by the number protocol)
        return parts
    for name, value in headers:
        # four appends, not += of a tuple: compiled, each is a C list append (no tuple)
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    return parts


def interim_head(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], fields: Sequence[bytes]
) -> bytes:
    """A 1xx head relayed as the member wrote it (102, 103)."""
    parts = _status_and_fields(status, reason, headers, fields)
    parts.append(b"\r\n")
    return b"".join(parts)


def final_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    fields: Sequence[bytes],
    set_cookies: list[bytes] | None,
    mode: int,
    req: Request,
    keep_alive: bool,
    set_cookie: bytes | None,
    server: ProxyServer,
) -> list[bytes]:
    """The parts of the client's head of a final response (the exchange joins them with what
    follows): the member's fields (``headers`` or ``fields``; its ``set_cookies`` values
    apart) plus the routing cookie (``set_cookie``), the framing of ``mode``, HSTS and what
    ``keep_alive`` needs said."""
    parts = _status_and_fields(status, reason, headers, fields)
    if set_cookie is not None and not backend_sets(set_cookie, set_cookies):
        parts += (b"Set-Cookie: ", set_cookie, b"\r\n")
    if mode == MODE_CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if req.secure and server.hsts:
        parts.append(server.hsts_for(headers, fields))
    if req.http11:
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
    elif keep_alive:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return parts


def switch_head(
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    fields: Sequence[bytes],
    upgrade: bytes | None,
) -> bytes:
    """The ``101 Switching Protocols`` head of an accepted upgrade."""
    parts = _status_and_fields(101, reason, headers, fields)
    parts += (b"Connection: Upgrade\r\nUpgrade: ", upgrade or b"websocket", b"\r\n\r\n")
    return b"".join(parts)


def backend_sets(cookie: bytes, set_cookies: list[bytes] | None) -> bool:
    """Whether the member's response sets (``set_cookies``) a cookie of the routing cookie's
    name.

    pyjk does not add the routing cookie over one of the application's own with the same
    name: the browser would keep ours and lose the session id (mod_jk §9 item 4).
    """
    if not set_cookies:
        return False
    name = h.set_cookie_name(cookie)
    # a loop, not any(genexpr): a generator is a closure, which a compiled cpdef cannot hold
    for value in set_cookies:  # noqa: SIM110
        if h.set_cookie_name(value) == name:
            return True
    return False
