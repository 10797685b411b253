"""Messages from the container to the web server: headers, body chunks, end, body requests, CPong.

``decode_reply`` turns one packet payload into a message or raises AjpError; the encoders build
the packets a container sends (for test containers and for checking the decoder).

    SEND_HEADERS    0x04, status (integer), reason (string), num_headers (integer),
                    headers: name (a 2-byte code 0xA0xx, or a string) + value (string)
    SEND_BODY_CHUNK 0x03, length (integer), that many bytes [, one NUL: Tomcat adds it]
    END_RESPONSE    0x05, reuse (boolean: 1 = the connection may carry another request)
    GET_BODY_CHUNK  0x06, requested length (integer)
    CPONG           0x09
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from balancer.ajp import codes as c
from balancer.ajp.errors import AjpError
from balancer.ajp.wire import Reader, from_container, string, u16

CPONG_PACKET = from_container(bytes([c.CPONG]))  # "AB" 0x00 0x01 0x09


@dataclass(frozen=True, slots=True)
class SendHeaders:
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class BodyChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndResponse:
    reuse: bool


@dataclass(frozen=True, slots=True)
class GetBodyChunk:
    size: int


@dataclass(frozen=True, slots=True)
class CPong:
    pass


Reply = SendHeaders | BodyChunk | EndResponse | GetBodyChunk | CPong
_CPONG = CPong()
_END_REUSE = EndResponse(True)
_END_CLOSE = EndResponse(False)


def decode_reply(payload: bytes) -> Reply:
    """One container message from its packet payload; AjpError when it is not a valid one."""
    if not payload:
        raise AjpError("empty packet from the container (no message type)")
    kind = payload[0]
    if kind == c.SEND_BODY_CHUNK:
        return _body_chunk(payload)
    if kind == c.SEND_HEADERS:
        return _send_headers(payload)
    if kind == c.END_RESPONSE:
        if len(payload) != 2:
            raise AjpError(f"END_RESPONSE: payload of {len(payload)} bytes, expected 2")
        flag = payload[1]
        if flag > 1:
            raise AjpError(f"END_RESPONSE: reuse flag is {flag}, expected 0 or 1")
        return _END_REUSE if flag else _END_CLOSE
    if kind == c.GET_BODY_CHUNK:
        if len(payload) != 3:
            raise AjpError(f"GET_BODY_CHUNK: payload of {len(payload)} bytes, expected 3")
        size = (payload[1] << 8) | payload[2]
        if size == 0:
            raise AjpError("GET_BODY_CHUNK: requested length is 0")
        return GetBodyChunk(size)
    if kind == c.CPONG:
        if len(payload) != 1:
            raise AjpError(f"CPONG: payload of {len(payload)} bytes, expected 1")
        return _CPONG
    name = c.MESSAGE_NAMES.get(kind)
    what = f"{name} ({kind})" if name else f"unknown message type {kind}"
    raise AjpError(f"{what} is not a message a container sends")


def _body_chunk(payload: bytes) -> BodyChunk:
    total = len(payload)
    if total < 3:
        raise AjpError(f"SEND_BODY_CHUNK: payload of {total} bytes has no length")
    n = (payload[1] << 8) | payload[2]
    extra = total - 3 - n
    # Tomcat ends the chunk with a NUL that the length does not count; mod_jk ignores it
    if extra == 0 or (extra == 1 and payload[-1] == 0):
        return BodyChunk(payload[3 : 3 + n])
    raise AjpError(f"SEND_BODY_CHUNK: length {n} does not match the payload of {total} bytes")


def _send_headers(payload: bytes) -> SendHeaders:
    r = Reader(payload, "SEND_HEADERS", pos=1)
    status = r.u16("status")
    reason = r.string("reason") or b""
    count = r.u16("num_headers")
    headers = []
    names = c.RESPONSE_HEADER_NAMES
    for i in range(count):
        if r.peek_byte(f"header {i} name") == c.CODED_NAME_MARK:
            code = r.u16(f"header {i} code")
            name = names.get(code)
            if name is None:
                raise AjpError(f"SEND_HEADERS: header {i} has unknown code {code:#06x}")
        else:
            name = r.text(f"header {i} name")
        headers.append((name, r.text(f"header {i} value")))
    r.end()
    return SendHeaders(status, reason, tuple(headers))


# --- encoding (the container's side) -----------------------------------------------------------


def encode_send_headers(
    status: int, reason: bytes, headers: Sequence[tuple[bytes, bytes]], coded: bool = True
) -> bytes:
    """SEND_HEADERS; known names go as codes unless ``coded`` is False."""
    parts = [bytes((c.SEND_HEADERS,)), u16(status), string(reason), u16(len(headers))]
    for name, value in headers:
        code = c.RESPONSE_HEADER_CODES.get(name.lower()) if coded else None
        parts += (u16(code) if code is not None else string(name), string(value))
    return from_container(b"".join(parts))


def encode_body_chunk(data: bytes, nul: bool = True) -> bytes:
    """SEND_BODY_CHUNK, with Tomcat's trailing NUL unless ``nul`` is False."""
    return from_container(
        bytes((c.SEND_BODY_CHUNK,)) + u16(len(data)) + data + (b"\x00" if nul else b"")
    )


def encode_end_response(reuse: bool) -> bytes:
    return from_container(bytes((c.END_RESPONSE, 1 if reuse else 0)))


def encode_get_body_chunk(size: int) -> bytes:
    return from_container(bytes((c.GET_BODY_CHUNK,)) + u16(size))
