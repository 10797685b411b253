"""Messages from the web server to the container: forward request, body packets, CPing.

``encode_forward_request`` builds the packet pyjk sends; ``decode_forward_request`` and
``decode_body_packet`` read them back (for test containers and for checking the encoder).

A forward request (protocol reference, "Request Packet Structure"):

    0x02, method (byte), protocol, req_uri, remote_addr, remote_host, server_name (strings),
    server_port (integer), is_ssl (boolean), num_headers (integer),
    headers: name (a 2-byte code 0xA0xx, or a string) + value (string),
    attributes: code (byte) + value (string; SSL_KEY_SIZE an integer; REQ_ATTRIBUTE two strings),
    0xFF

A request body travels in packets of its own: a 2-byte data length and the data, at most
max_packet_size - 6 bytes of data each. An empty packet (payload length 0) ends the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from balancer.ajp import codes as c
from balancer.ajp.errors import AjpError
from balancer.ajp.wire import Reader, string, to_container, u16

CPING_PACKET = to_container(bytes([c.CPING]))  # 0x12 0x34 0x00 0x01 0x0A
END_OF_BODY_PACKET = to_container(b"")  # 0x12 0x34 0x00 0x00

# Attributes whose value is one string, in the order they are written.
_STRING_ATTRIBUTES = (
    ("remote_user", c.A_REMOTE_USER),
    ("auth_type", c.A_AUTH_TYPE),
    ("query_string", c.A_QUERY_STRING),
    ("route", c.A_JVM_ROUTE),
    ("ssl_cert", c.A_SSL_CERT),
    ("ssl_cipher", c.A_SSL_CIPHER),
    ("ssl_session", c.A_SSL_SESSION),
)
_STRING_ATTRIBUTE_FIELDS = {code: name for name, code in _STRING_ATTRIBUTES}


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    """One request as AJP carries it. Byte strings throughout; ``None`` = attribute absent."""

    method: bytes
    uri: bytes
    protocol: bytes = b"HTTP/1.1"
    remote_addr: bytes = b""
    remote_host: bytes | None = None
    server_name: bytes = b""
    server_port: int = 80
    is_ssl: bool = False
    headers: Sequence[tuple[bytes, bytes]] = ()
    # attributes
    remote_user: bytes | None = None
    auth_type: bytes | None = None
    query_string: bytes | None = None
    route: bytes | None = None  # the member's route (jvm_route)
    ssl_cert: bytes | None = None
    ssl_cipher: bytes | None = None
    ssl_session: bytes | None = None
    ssl_key_size: int | None = None
    secret: bytes | None = None
    request_attributes: Sequence[tuple[bytes, bytes]] = ()  # named attributes, in order


def encode_forward_request(req: ForwardRequest, max_packet_size: int) -> bytes:
    """The whole packet; AjpError when a field cannot be encoded or it exceeds the size."""
    method = req.method
    code = c.METHODS.get(method, c.METHOD_STORED)
    parts = [
        bytes((c.FORWARD_REQUEST, code)),
        string(req.protocol),
        string(req.uri),
        string(req.remote_addr),
        string(req.remote_host),
        string(req.server_name),
        u16(req.server_port),
        b"\x01" if req.is_ssl else b"\x00",
        u16(len(req.headers)),
    ]
    coded = c.REQUEST_HEADER_CODES
    for name, value in req.headers:
        hc = coded.get(name.lower())
        if hc is not None:
            parts.append(u16(hc))
        else:
            if not name or len(name) >> 8 == c.CODED_NAME_MARK:
                raise AjpError(f"header name of {len(name)} bytes cannot be encoded")
            parts.append(string(name))
        parts.append(string(value))
    for field, acode in _STRING_ATTRIBUTES:
        value = getattr(req, field)
        if value is not None:
            parts += (bytes((acode,)), string(value))
    if req.ssl_key_size is not None:
        parts += (bytes((c.A_SSL_KEY_SIZE,)), u16(req.ssl_key_size))
    if req.secret is not None:
        parts += (bytes((c.A_SECRET,)), string(req.secret))
    if code == c.METHOD_STORED:
        parts += (bytes((c.A_STORED_METHOD,)), string(method))
    for name, value in req.request_attributes:
        parts += (bytes((c.A_REQ_ATTRIBUTE,)), string(name), string(value))
    parts.append(bytes((c.A_ARE_DONE,)))
    payload = b"".join(parts)
    size = len(payload) + c.PACKET_HEADER_SIZE
    if size > max_packet_size:
        raise AjpError(
            f"forward request of {size} bytes exceeds max_packet_size {max_packet_size} "
            "(a long URI, many or long headers)"
        )
    return to_container(payload)


def body_packet(data: bytes) -> bytes:
    """One request body packet; ``b""`` gives the empty packet that ends the body."""
    if not data:
        return END_OF_BODY_PACKET
    n = len(data)
    return c.TO_CONTAINER_MAGIC + u16(n + 2) + u16(n) + data


def max_body_chunk(max_packet_size: int) -> int:
    """Most request body bytes one packet carries."""
    return max_packet_size - c.BODY_PACKET_OVERHEAD


# --- decoding (the container's side) ---------------------------------------------------------


def decode_forward_request(payload: bytes) -> ForwardRequest:
    """A FORWARD_REQUEST payload (without the packet header); AjpError when malformed."""
    r = Reader(payload, "FORWARD_REQUEST")
    kind = r.byte("message type")
    if kind != c.FORWARD_REQUEST:
        raise AjpError(f"FORWARD_REQUEST: message type is {kind}, expected {c.FORWARD_REQUEST}")
    code = r.byte("method")
    protocol = r.text("protocol")
    uri = r.text("req_uri")
    remote_addr = r.text("remote_addr")
    remote_host = r.string("remote_host")
    server_name = r.text("server_name")
    server_port = r.u16("server_port")
    is_ssl = r.boolean("is_ssl")
    count = r.u16("num_headers")
    headers = []
    for i in range(count):
        if r.peek_byte(f"header {i} name") == c.CODED_NAME_MARK:
            hc = r.u16(f"header {i} code")
            name = c.REQUEST_HEADER_NAMES.get(hc)
            if name is None:
                raise AjpError(f"FORWARD_REQUEST: header {i} has unknown code {hc:#06x}")
        else:
            name = r.text(f"header {i} name")
        headers.append((name, r.text(f"header {i} value")))
    fields: dict[str, object] = {}
    named = []
    stored: bytes | None = None
    while True:
        acode = r.byte("attribute code")
        if acode == c.A_ARE_DONE:
            break
        if acode in _STRING_ATTRIBUTE_FIELDS:
            fields[_STRING_ATTRIBUTE_FIELDS[acode]] = r.text(f"attribute {acode:#04x}")
        elif acode == c.A_SSL_KEY_SIZE:
            fields["ssl_key_size"] = r.u16("ssl_key_size")
        elif acode == c.A_SECRET:
            fields["secret"] = r.text("secret")
        elif acode == c.A_STORED_METHOD:
            stored = r.text("stored method")
        elif acode == c.A_REQ_ATTRIBUTE:
            named.append((r.text("attribute name"), r.text("attribute value")))
        else:
            raise AjpError(f"FORWARD_REQUEST: unknown attribute code {acode:#04x}")
    r.end()
    if code == c.METHOD_STORED:
        if stored is None:
            raise AjpError("FORWARD_REQUEST: method code 0xff without a stored method attribute")
        method = stored
    else:
        known = c.METHOD_NAMES.get(code)
        if known is None:
            raise AjpError(f"FORWARD_REQUEST: unknown method code {code}")
        method = known
    return ForwardRequest(
        method=method,
        uri=uri,
        protocol=protocol,
        remote_addr=remote_addr,
        remote_host=remote_host,
        server_name=server_name,
        server_port=server_port,
        is_ssl=is_ssl,
        headers=tuple(headers),
        request_attributes=tuple(named),
        **fields,  # type: ignore[arg-type]
    )


def decode_body_packet(payload: bytes) -> bytes:
    """The data of a request body packet payload; ``b""`` for the empty one that ends a body."""
    if not payload:
        return b""
    r = Reader(payload, "body packet")
    n = r.u16("data length")
    data = r.raw(n, "data")
    r.end()
    return data
