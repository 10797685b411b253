"""AJP/1.3 numbers: packet magics, message types, method, header and attribute codes.

Facts from the protocol reference (tomcat.apache.org/connectors-doc/ajp/ajpv13a.html), checked
against the constants of the Tomcat 10 AJP connector. Integers on the wire are 2 bytes, big-endian.
"""

from __future__ import annotations

# A packet is a 2-byte magic, a 2-byte payload length, then the payload.
TO_CONTAINER_MAGIC = b"\x12\x34"  # web server (pyjk) -> container (Tomcat)
FROM_CONTAINER_MAGIC = b"AB"  # container -> web server
PACKET_HEADER_SIZE = 4

# max_packet_size (the whole packet, header included): mod_jk's bounds and default
MIN_PACKET_SIZE = 8192
MAX_PACKET_SIZE = 65536
DEFAULT_PACKET_SIZE = 8192
# a request body packet carries its own 2-byte data length after the packet header
BODY_PACKET_OVERHEAD = PACKET_HEADER_SIZE + 2

NULL_STRING_LENGTH = 0xFFFF  # a string whose length is 0xFFFF is "null" (no bytes, no NUL)

# --- message types (the first payload byte) -------------------------------------------------

# web server -> container
FORWARD_REQUEST = 2
SHUTDOWN = 7
PING = 8
CPING = 10
# container -> web server
SEND_BODY_CHUNK = 3
SEND_HEADERS = 4
END_RESPONSE = 5
GET_BODY_CHUNK = 6
CPONG = 9

MESSAGE_NAMES = {
    FORWARD_REQUEST: "FORWARD_REQUEST",
    SHUTDOWN: "SHUTDOWN",
    PING: "PING",
    CPING: "CPING",
    SEND_BODY_CHUNK: "SEND_BODY_CHUNK",
    SEND_HEADERS: "SEND_HEADERS",
    END_RESPONSE: "END_RESPONSE",
    GET_BODY_CHUNK: "GET_BODY_CHUNK",
    CPONG: "CPONG",
}

# --- methods -----------------------------------------------------------------------------------

METHODS: dict[bytes, int] = {
    name: code
    for code, name in enumerate(
        (
            b"OPTIONS",
            b"GET",
            b"HEAD",
            b"POST",
            b"PUT",
            b"DELETE",
            b"TRACE",
            b"PROPFIND",
            b"PROPPATCH",
            b"MKCOL",
            b"COPY",
            b"MOVE",
            b"LOCK",
            b"UNLOCK",
            b"ACL",
            b"REPORT",
            b"VERSION-CONTROL",
            b"CHECKIN",
            b"CHECKOUT",
            b"UNCHECKOUT",
            b"SEARCH",
            b"MKWORKSPACE",
            b"UPDATE",
            b"LABEL",
            b"MERGE",
            b"BASELINE-CONTROL",
            b"MKACTIVITY",
        ),
        start=1,
    )
}
METHOD_NAMES: dict[int, bytes] = {code: name for name, code in METHODS.items()}
# any other method: this code, and the name in the STORED_METHOD attribute
METHOD_STORED = 0xFF

# --- request headers (SC_REQ_*): sent as a 2-byte code instead of the name ---------------------

REQUEST_HEADER_CODES: dict[bytes, int] = {
    name: 0xA000 + i
    for i, name in enumerate(
        (
            b"accept",
            b"accept-charset",
            b"accept-encoding",
            b"accept-language",
            b"authorization",
            b"connection",
            b"content-type",
            b"content-length",
            b"cookie",
            b"cookie2",
            b"host",
            b"pragma",
            b"referer",
            b"user-agent",
        ),
        start=1,
    )
}
REQUEST_HEADER_NAMES: dict[int, bytes] = {c: n for n, c in REQUEST_HEADER_CODES.items()}

# --- response headers (SC_RESP_*) --------------------------------------------------------------

RESPONSE_HEADER_NAMES: dict[int, bytes] = {
    0xA000 + i: name
    for i, name in enumerate(
        (
            b"Content-Type",
            b"Content-Language",
            b"Content-Length",
            b"Date",
            b"Last-Modified",
            b"Location",
            b"Set-Cookie",
            b"Set-Cookie2",
            b"Servlet-Engine",
            b"Status",
            b"WWW-Authenticate",
        ),
        start=1,
    )
}
RESPONSE_HEADER_CODES: dict[bytes, int] = {n.lower(): c for c, n in RESPONSE_HEADER_NAMES.items()}

# A header name on the wire is a code when its first byte is 0xA0; otherwise it is a string, whose
# 2-byte length therefore must not start with 0xA0 (the encoder refuses names that long).
CODED_NAME_MARK = 0xA0

# --- request attributes (SC_A_*) ---------------------------------------------------------------

A_CONTEXT = 0x01  # unused by Tomcat
A_SERVLET_PATH = 0x02  # unused by Tomcat
A_REMOTE_USER = 0x03
A_AUTH_TYPE = 0x04
A_QUERY_STRING = 0x05
A_JVM_ROUTE = 0x06
A_SSL_CERT = 0x07
A_SSL_CIPHER = 0x08
A_SSL_SESSION = 0x09
A_REQ_ATTRIBUTE = 0x0A  # a named attribute: name string, value string
A_SSL_KEY_SIZE = 0x0B  # an integer, not a string
A_SECRET = 0x0C
A_STORED_METHOD = 0x0D
A_ARE_DONE = 0xFF  # ends the attribute list (and the forward request)

# Named request attributes (A_REQ_ATTRIBUTE) the Tomcat connector reads itself: the client's
# port and the local address (AJP has no field for them), and the TLS protocol.
REMOTE_PORT_ATTRIBUTE = b"AJP_REMOTE_PORT"
LOCAL_ADDR_ATTRIBUTE = b"AJP_LOCAL_ADDR"
SSL_PROTOCOL_ATTRIBUTE = b"AJP_SSL_PROTOCOL"
# mod_jk's member activation (ACT/DIS/STP); Tomcat 9.0.31+ and 10 answer 403 to a request that
# carries it unless the connector's allowedRequestAttributesPattern admits it (modjk.md §9 item 12)
ACTIVATION_ATTRIBUTE = b"JK_LB_ACTIVATION"
