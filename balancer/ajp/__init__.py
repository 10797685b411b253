"""AJP/1.3, the protocol mod_jk speaks to Tomcat: a pure codec (bytes in, messages out; no I/O).

| module | holds |
|---|---|
| ``codes.py`` | magics, message types, method / header / attribute codes |
| ``wire.py`` | integers, strings, packets, the stream splitter (``Deframer``) |
| ``request.py`` | web server -> container: forward request, body packets, CPing |
| ``reply.py`` | container -> web server: headers, body chunks, end, body requests, CPong |
| ``errors.py`` | ``AjpError``, the one error every decoder raises |

The asyncio side is ``balancer.dataplane.ajp_upstream``.
"""

from __future__ import annotations

from balancer.ajp.errors import AjpError
from balancer.ajp.reply import (
    CPONG_PACKET,
    BodyChunk,
    CPong,
    EndResponse,
    GetBodyChunk,
    Reply,
    SendHeaders,
    decode_reply,
)
from balancer.ajp.request import (
    CPING_PACKET,
    END_OF_BODY_PACKET,
    ForwardRequest,
    body_packet,
    decode_body_packet,
    decode_forward_request,
    encode_forward_request,
    max_body_chunk,
)
from balancer.ajp.wire import Deframer, from_container_deframer, to_container_deframer

__all__ = [
    "CPING_PACKET",
    "CPONG_PACKET",
    "END_OF_BODY_PACKET",
    "AjpError",
    "BodyChunk",
    "CPong",
    "Deframer",
    "EndResponse",
    "ForwardRequest",
    "GetBodyChunk",
    "Reply",
    "SendHeaders",
    "body_packet",
    "decode_body_packet",
    "decode_forward_request",
    "decode_reply",
    "encode_forward_request",
    "from_container_deframer",
    "max_body_chunk",
    "to_container_deframer",
]
