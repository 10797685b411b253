"""What a client request becomes in AJP, and what an AJP response head becomes in HTTP. No I/O.

Requests: the same end-to-end fields an ``http`` member gets (balancer.dataplane.exchange:
the client's fields, Host, Content-Length, X-Forwarded-*, X-Pyjk-Request-Id), plus what AJP
carries as attributes: the query string, the member's route, the shared secret, TLS facts when
the client connection is TLS, the client's port and the local address (``AJP_REMOTE_PORT``,
``AJP_LOCAL_ADDR``, read by Tomcat itself), and mod_jk's ``JK_LB_ACTIVATION``.

Responses: the checks an ``http`` member's response head gets (balancer.dataplane.upstream),
applied to SEND_HEADERS: status 100-599 (no 101: AJP cannot switch protocols), no control
bytes in the reason, header names that are tokens and values without control bytes (a CR or LF
from a backend must never reach the client as a header break), one Content-Length. Framing and
hop-by-hop fields are dropped: AJP frames the body itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from balancer.ajp import codes as c
from balancer.ajp.errors import AjpError
from balancer.ajp.reply import SendHeaders
from balancer.ajp.request import ForwardRequest
from balancer.dataplane import http11 as h
from balancer.dataplane.tls_facts import TlsInfo, tls_info

if TYPE_CHECKING:
    from balancer.dataplane.request import Request

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = b"0123456789"
_CTL = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"

__all__ = [
    "ResponseHead",
    "TlsInfo",
    "client_address",
    "forward_request",
    "response_head",
    "split_host",
    "tls_info",
]


def split_host(host: bytes, secure: bool) -> tuple[bytes, int]:
    """Server name and port from a Host value (already a valid authority); the scheme's
    default port when it names none."""
    default = 443 if secure else 80
    if host.startswith(b"["):
        end = host.find(b"]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(b":") else b""
    else:
        name, _, port = host.partition(b":")
    return name, int(port) if port else default


def client_address(req: Request, is_trusted: Callable[[str], bool]) -> str | None:
    """The client behind trusted proxies: the last X-Forwarded-For hop that is not a trusted
    proxy itself (as Tomcat's RemoteIpValve and httpd's mod_remoteip read it); None when the
    peer is not trusted or names no valid address."""
    if not req.xff or not is_trusted(req.client_ip):
        return None
    hops = [hop.strip() for hop in req.xff.decode("latin-1").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            break
    else:
        hop = hops[0] if hops else ""
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def forward_request(
    req: Request,
    *,
    content_length: int | None,
    request_id: bytes,
    trusted: bool,
    is_trusted: Callable[[str], bool] | None = None,
    route: str,
    secret: str,
    activation: str | None,
    peer_port: int | None = None,
    local_addr: str | None = None,
    tls: TlsInfo | None = None,
) -> ForwardRequest:
    """The forward request for ``req``. ``activation`` None: no JK_LB_ACTIVATION attribute
    (mod_jk sends it only for lb members).

    AJP carries the client's address and TLS flag itself (remote_addr, is_ssl): behind a trusted
    proxy (``trusted``; ``is_trusted`` tells which addresses are) they are the client's, from
    X-Forwarded-For and X-Forwarded-Proto, as httpd with mod_remoteip would send them.
    """
    ip = req.client_ip.encode("ascii")
    secure = req.secure
    remote = ip
    if trusted and is_trusted is not None:
        client = client_address(req, is_trusted)
        if client is not None:
            remote = client.encode("ascii")
            peer_port = None  # the proxy's port, not the client's
        if req.xfproto is not None:
            secure = secure or req.xfproto.strip().lower() == b"https"
    host = req.host or b""
    headers: list[tuple[bytes, bytes]] = []
    if host:
        headers.append((b"Host", host))
    headers += req.headers
    if content_length is not None:
        headers.append((b"Content-Length", b"%d" % content_length))
    scheme = b"https" if secure else b"http"
    if trusted:
        # as for http members: a trusted proxy's forwarded fields are kept and extended
        xff = req.xff + b", " + ip if req.xff else ip
        proto = req.xfproto or scheme
        xfhost = req.xfhost or host
        headers += [(b"Forwarded", v) for v in req.forwarded or ()]
    else:
        xff, proto, xfhost = ip, scheme, host
    headers += [(b"X-Forwarded-For", xff), (b"X-Forwarded-Proto", proto)]
    if xfhost:
        headers.append((b"X-Forwarded-Host", xfhost))
    headers.append((b"X-Pyjk-Request-Id", request_id))
    if host:
        server_name, server_port = split_host(host, secure)
    else:
        server_name, server_port = (local_addr or "").encode("ascii"), 443 if secure else 80
    attributes: list[tuple[bytes, bytes]] = []
    if peer_port is not None:
        attributes.append((c.REMOTE_PORT_ATTRIBUTE, b"%d" % peer_port))
    if local_addr:
        attributes.append((c.LOCAL_ADDR_ATTRIBUTE, local_addr.encode("ascii")))
    if tls is not None and tls.protocol:
        attributes.append((c.SSL_PROTOCOL_ATTRIBUTE, tls.protocol))
    if activation is not None:
        attributes.append((c.ACTIVATION_ATTRIBUTE, activation.encode("ascii")))
    return ForwardRequest(
        method=req.method,
        uri=req.path,
        protocol=b"HTTP/1.1" if req.http11 else b"HTTP/1.0",
        remote_addr=remote,
        remote_host=remote,  # no reverse lookups (mod_jk without HostnameLookups)
        server_name=server_name,
        server_port=server_port,
        is_ssl=secure,
        headers=headers,
        query_string=req.query or None,
        route=route.encode("latin-1") if route else None,
        ssl_cert=tls.cert if tls else None,
        ssl_cipher=tls.cipher if tls else None,
        ssl_session=tls.session if tls else None,
        ssl_key_size=tls.key_size if tls else None,
        secret=secret.encode("latin-1") if secret else None,
        request_attributes=attributes,
    )


@dataclass(slots=True)
class ResponseHead:
    """A checked SEND_HEADERS, ready to relay (the attributes the relay reads)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    set_cookies: list[bytes] | None
    content_length: int | None


def response_head(msg: SendHeaders) -> ResponseHead:
    """Check and translate a SEND_HEADERS; AjpError (-> 502) when it cannot be relayed."""
    status = msg.status
    if not 100 <= status <= 599:
        raise AjpError(f"SEND_HEADERS: status {status} outside 100-599")
    if status == 101:
        raise AjpError("SEND_HEADERS: 101 Switching Protocols (AJP cannot switch)")
    reason = msg.reason
    if not h.valid_reason(reason):
        raise AjpError("SEND_HEADERS: control bytes in the reason phrase")
    if not reason:
        reason = h.REASONS.get(status, b"")
    headers: list[tuple[bytes, bytes]] = []
    set_cookies: list[bytes] | None = None
    content_length: int | None = None
    named: set[bytes] = set()
    for name, value in msg.headers:
        if not name or not _TOKEN.issuperset(name):
            raise AjpError(f"SEND_HEADERS: header name {name[:40]!r} is not a token")
        if len(value.translate(None, _CTL)) != len(value):
            raise AjpError(f"SEND_HEADERS: control bytes in the value of {name.decode()}")
        kind = h.RESPONSE_HEADERS.get(name.lower())
        if kind is None:
            headers.append((name, value))
        elif kind == h.R_CONTENT_LENGTH:
            length = _content_length(value)
            if content_length is not None and length != content_length:
                raise AjpError("SEND_HEADERS: two different Content-Length values")
            if content_length is None:
                headers.append((name, value.strip(b" \t")))
            content_length = length
        elif kind == h.R_SET_COOKIE:
            headers.append((name, value))
            if set_cookies is None:
                set_cookies = []
            set_cookies.append(value)
        elif kind == h.R_CONNECTION:
            named.update(h.connection_tokens(value))
        # Transfer-Encoding, Upgrade and the other hop-by-hop fields: dropped
    named -= {b"close", b"keep-alive", b"upgrade"}
    named -= h.PROTECTED_FROM_CONNECTION
    if named:
        headers = h.strip_named(headers, named)
    return ResponseHead(status, reason, headers, set_cookies, content_length)


def _content_length(value: bytes) -> int:
    digits = value.strip(b" \t")
    if not digits or len(digits) > 18 or digits.translate(None, _DIGITS):
        raise AjpError(f"SEND_HEADERS: Content-Length {value[:40]!r} is not a number")
    return int(digits)
