"""The request as an ``http`` member receives it: the HTTP/1.1 head the balancer writes.

The request line and the client's fields (hop-by-hop ones already dropped by the request
checks), then the forwarded fields (X-Forwarded-*, and for TLS listeners RFC 7239 Forwarded
and RFC 9440 Client-Cert), the request id and a validated WebSocket upgrade. The head is the
same for every try of a request; ``request_head`` gives its parts, to which
``UpstreamConnection`` adds the member's activation and the body's framing before it joins
them once (a retry builds the parts again: rarer than the join of a kept head was costly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balancer.dataplane.http11 import CACHE_LIMIT

if TYPE_CHECKING:
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.tls_facts import TlsInfo

ACTIVATION_FIELDS = {
    a: b"X-Pyjk-Activation: %s\r\n" % a.encode("ascii") for a in ("ACT", "DIS", "STP")
}


def activation_field(activation: str) -> bytes:
    """The field for an activation not in ``ACTIVATION_FIELDS`` (looked up there first)."""
    return b"X-Pyjk-Activation: %s\r\n" % activation.encode("latin-1")


def request_head(ex: Exchange) -> list[bytes]:
    """The parts of the request line and fields, the same for every try of ``ex``'s request
    (no blank line)."""
    req = ex.req
    client = ex.client
    parts = [req.method, b" ", req.target, b" HTTP/1.1\r\nHost: ", req.host or b"", b"\r\n"]
    for name, value in req.headers:
        # four appends, not += of a tuple: compiled, each is a C list append (no tuple)
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    if client.trusted:
        # a trusted proxy's forwarded fields are kept and extended (Traefik trustedIPs)
        ip = client.peer_ip.encode("ascii")
        xff = req.xff + b", " + ip if req.xff else ip
        proto = req.xfproto or (b"https" if req.secure else b"http")
        xfhost = req.xfhost or req.host
        for value in req.forwarded or ():
            parts += (b"Forwarded: ", value, b"\r\n")
        parts += (b"X-Forwarded-For: ", xff, b"\r\nX-Forwarded-Proto: ", proto, b"\r\n")
        if xfhost:
            parts += (b"X-Forwarded-Host: ", xfhost, b"\r\n")
        parts.append(tls_fields(client.peer_ip, req.host, client.tls))
    else:
        # anything the client claims about the path before us is replaced: the fields
        # depend on the connection and the Host only, and are kept for the next request
        host = req.host
        if host != client.forwarded_host or not client.forwarded_fields:
            client.forwarded_host = host
            if client.tls is None:  # the same for every connection of this peer and Host
                server = ex.server
                peer = client.peer_ip
                secure = req.secure
                # the last connection's, compared before the key is hashed (a new
                # connection's peer address is a new string: its hash is computed anew)
                if (
                    peer == server.fwd_peer
                    and host == server.fwd_host
                    and secure == server.fwd_secure
                    and server.fwd_fields
                ):
                    fields = server.fwd_fields
                else:
                    key = (peer, secure, host)
                    cache = server.forwarded_cache
                    found = cache.get(key)
                    if found is None:
                        fields = forwarded_fields(peer, secure, host)
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        cache[key] = fields
                    else:
                        fields = found
                    server.fwd_peer = peer
                    server.fwd_host = host
                    server.fwd_secure = secure
                    server.fwd_fields = fields
            else:
                fields = forwarded_fields(client.peer_ip, req.secure, host)
                fields += tls_fields(client.peer_ip, host, client.tls)
            client.forwarded_fields = fields
        parts.append(client.forwarded_fields)
    # three appends, not += of a tuple: compiled, C list appends (no tuple, no number protocol)
    parts.append(b"X-Pyjk-Request-Id: ")
    parts.append(ex.request_id)
    parts.append(b"\r\n")
    if req.upgrade_ws:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", req.upgrade or b"websocket", b"\r\n")
    return parts


def forwarded_fields(peer_ip: str, secure: bool, host: bytes | None) -> bytes:
    """X-Forwarded-* for a peer that is not a trusted proxy."""
    fields = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (
        peer_ip.encode("ascii"),
        b"https" if secure else b"http",
    )
    if host:
        fields += b"X-Forwarded-Host: %s\r\n" % host
    return fields


def tls_fields(peer_ip: str, host: bytes | None, tls: TlsInfo | None) -> bytes:
    """What an http member learns of a TLS connection (tls_facts): RFC 7239 ``Forwarded``
    with ``proto=https`` and, when the client showed one, its certificate (RFC 9440). Both
    names are dropped from client requests (http11.REQUEST_HEADERS), so only pyjk sets them."""
    if tls is None:
        return b""
    node = peer_ip.encode("ascii")
    if 0x3A in node:  # ":" (a byte value: cheaper than b":", request_head.check_head)
        node = b'"[' + node + b']"'
    fields = b"Forwarded: for=" + node
    if host:
        fields += b';host="' + host + b'"' if 0x3A in host else b";host=" + host
    fields += b";proto=https\r\n"
    cert = tls.client_cert_field
    if cert is not None:
        fields += b"Client-Cert: " + cert + b"\r\n"
    return fields
