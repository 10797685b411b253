"""Whatever a backend sends, the AJP decoders answer with a message or AjpError, nothing else.

Arbitrary bytes and mutations of valid packets go through the same steps the data plane uses:
the stream splitter, the message decoder, and the response-head checks.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancer.ajp import (
    AjpError,
    ForwardRequest,
    SendHeaders,
    decode_body_packet,
    decode_forward_request,
    decode_reply,
    encode_forward_request,
    from_container_deframer,
)
from balancer.ajp.reply import (
    encode_body_chunk,
    encode_end_response,
    encode_get_body_chunk,
    encode_send_headers,
)
from balancer.ajp.request import CPING_PACKET, body_packet
from balancer.dataplane.ajp_fields import response_head

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID_REPLIES = [
    encode_send_headers(
        200,
        b"OK",
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"X-A", b"b")],
    ),
    encode_send_headers(404, b"", [(b"Set-Cookie", b"a=b"), (b"Connection", b"x-a")]),
    encode_body_chunk(b"hello"),
    encode_body_chunk(b"", nul=False),
    encode_end_response(True),
    encode_end_response(False),
    encode_get_body_chunk(8186),
    b"AB\x00\x01\x09",
]


def decode_stream(data: bytes, max_packet_size: int = 8192) -> None:
    """What AjpConnection.data_received does with a read, minus the exchange."""
    d = from_container_deframer(max_packet_size)
    for payload in d.feed(data):
        msg = decode_reply(payload)
        if isinstance(msg, SendHeaders):
            response_head(msg)


def only_ajp_errors(data: bytes) -> None:
    with contextlib.suppress(AjpError):
        decode_stream(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_messages_or_ajp_error(data: bytes) -> None:
    only_ajp_errors(data)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_payloads_behind_a_valid_header_give_messages_or_ajp_error(
    payload: bytes,
) -> None:
    only_ajp_errors(b"AB" + len(payload).to_bytes(2, "big") + payload)


@st.composite
def mutated(draw: st.DrawFn, packets: list[bytes]) -> bytes:
    stream = bytearray(b"".join(draw(st.lists(st.sampled_from(packets), min_size=1, max_size=4))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(stream) - 1)))
        if op == "flip" and stream:
            stream[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            stream[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and stream:
            del stream[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del stream[pos:]
    return bytes(stream)


@FUZZ
@given(mutated(VALID_REPLIES))
def test_mutated_valid_replies_give_messages_or_ajp_error(data: bytes) -> None:
    only_ajp_errors(data)


@FUZZ
@given(st.binary(max_size=1024))
def test_arbitrary_forward_request_payloads_give_a_request_or_ajp_error(data: bytes) -> None:
    with contextlib.suppress(AjpError):
        decode_forward_request(b"\x02" + data)
    with contextlib.suppress(AjpError):
        decode_body_packet(data)


VALID_REQUESTS = [
    encode_forward_request(
        ForwardRequest(
            b"POST",
            b"/a",
            headers=[(b"Host", b"h"), (b"Content-Length", b"3"), (b"X-A", b"b")],
            query_string=b"q=1",
            route=b"n1",
            secret=b"s",
            ssl_key_size=256,
            request_attributes=[(b"JK_LB_ACTIVATION", b"ACT")],
        ),
        8192,
    ),
    encode_forward_request(ForwardRequest(b"PATCH", b"/"), 8192),
    body_packet(b"abc"),
    body_packet(b""),
    CPING_PACKET,
]


@FUZZ
@given(mutated(VALID_REQUESTS))
def test_mutated_forward_requests_give_a_request_or_ajp_error(data: bytes) -> None:
    from balancer.ajp import to_container_deframer

    try:
        for payload in to_container_deframer(8192).feed(data):
            if payload and payload[0] == 0x02:
                decode_forward_request(payload)
            else:
                decode_body_packet(payload)
    except AjpError:
        pass


header_bytes = st.binary(min_size=0, max_size=30)


@FUZZ
@given(
    st.builds(
        ForwardRequest,
        method=st.sampled_from([b"GET", b"POST", b"PATCH", b"BREW", b"MKACTIVITY"]),
        uri=header_bytes,
        protocol=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
        remote_addr=header_bytes,
        remote_host=st.none() | header_bytes,
        server_name=header_bytes,
        server_port=st.integers(0, 65535),
        is_ssl=st.booleans(),
        headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), header_bytes), max_size=8),
        query_string=st.none() | header_bytes,
        route=st.none() | header_bytes,
        ssl_key_size=st.none() | st.integers(0, 65535),
        secret=st.none() | header_bytes,
        request_attributes=st.lists(st.tuples(header_bytes, header_bytes), max_size=3),
    )
)
def test_forward_requests_survive_a_round_trip(req: ForwardRequest) -> None:
    back = decode_forward_request(encode_forward_request(req, 65536)[4:])
    assert back.method == req.method and back.uri == req.uri
    assert back.remote_host == req.remote_host and back.server_port == req.server_port
    assert [v for _, v in back.headers] == [v for _, v in req.headers]
    assert [n.lower() for n, _ in back.headers] == [n.lower() for n, _ in req.headers]
    assert (back.query_string, back.route, back.secret, back.ssl_key_size) == (
        req.query_string,
        req.route,
        req.secret,
        req.ssl_key_size,
    )
    assert back.request_attributes == tuple(req.request_attributes)
