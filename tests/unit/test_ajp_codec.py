"""The AJP/1.3 codec against byte sequences written out by hand from the protocol reference
(tomcat.apache.org/connectors-doc/ajp/ajpv13a.html): packets, strings, every message type."""

from __future__ import annotations

import pytest

from balancer.ajp import (
    CPING_PACKET,
    CPONG_PACKET,
    END_OF_BODY_PACKET,
    AjpError,
    BodyChunk,
    CPong,
    EndResponse,
    ForwardRequest,
    GetBodyChunk,
    SendHeaders,
    body_packet,
    decode_body_packet,
    decode_forward_request,
    decode_reply,
    encode_forward_request,
    from_container_deframer,
    max_body_chunk,
    to_container_deframer,
)
from balancer.ajp.reply import (
    encode_body_chunk,
    encode_end_response,
    encode_get_body_chunk,
    encode_send_headers,
)
from balancer.ajp.wire import Reader, string


def s(text: bytes) -> bytes:
    """A string as the reference defines it, written out: 2-byte length, bytes, NUL."""
    return bytes((len(text) >> 8, len(text) & 0xFF)) + text + b"\x00"


def packet_to_container(payload: bytes) -> bytes:
    return b"\x12\x34" + bytes((len(payload) >> 8, len(payload) & 0xFF)) + payload


def packet_from_container(payload: bytes) -> bytes:
    return b"AB" + bytes((len(payload) >> 8, len(payload) & 0xFF)) + payload


def payload_of(packet: bytes) -> bytes:
    return packet[4:]


# --- CPing / CPong ------------------------------------------------------------------------------


def test_cping_is_the_five_bytes_of_the_reference() -> None:
    assert bytes((0x12, 0x34, 0x00, 0x01, 0x0A)) == CPING_PACKET


def test_cpong_decodes_from_the_five_bytes_of_the_reference() -> None:
    assert bytes((0x41, 0x42, 0x00, 0x01, 0x09)) == CPONG_PACKET
    (payload,) = from_container_deframer(8192).feed(bytes((0x41, 0x42, 0x00, 0x01, 0x09)))
    assert decode_reply(payload) == CPong()


def test_a_cpong_with_extra_bytes_is_malformed() -> None:
    with pytest.raises(AjpError, match="CPONG"):
        decode_reply(b"\x09\x00")


# --- strings ----------------------------------------------------------------------------------


def test_strings_are_length_prefixed_and_nul_terminated() -> None:
    assert string(b"abc") == b"\x00\x03abc\x00"
    assert string(b"") == b"\x00\x00\x00"


def test_the_null_string_is_ffff_without_a_terminator() -> None:
    assert string(None) == b"\xff\xff"
    assert Reader(b"\xff\xff", "t").string("f") is None


def test_a_string_without_its_nul_is_malformed() -> None:
    with pytest.raises(AjpError, match="not NUL-terminated"):
        Reader(b"\x00\x03abcX", "t").string("f")


def test_a_string_longer_than_the_packet_is_malformed() -> None:
    with pytest.raises(AjpError, match="runs past the end"):
        Reader(b"\x00\x09abc\x00", "t").string("f")


# --- forward request --------------------------------------------------------------------------


def test_forward_request_for_get_with_headers_and_attributes() -> None:
    req = ForwardRequest(
        method=b"GET",
        uri=b"/app/x",
        protocol=b"HTTP/1.1",
        remote_addr=b"10.0.0.1",
        remote_host=b"10.0.0.1",
        server_name=b"example.test",
        server_port=80,
        is_ssl=False,
        headers=[
            (b"Host", b"example.test"),
            (b"Cookie", b"JSESSIONID=abc.n1"),
            (b"User-Agent", b"t"),
            (b"X-Custom", b"yes"),
        ],
        query_string=b"a=1&b=2",
        route=b"n1",
        secret=b"s3cret",
        request_attributes=[(b"JK_LB_ACTIVATION", b"ACT")],
    )
    expected_payload = (
        b"\x02"  # FORWARD_REQUEST
        + b"\x02"  # GET
        + s(b"HTTP/1.1")
        + s(b"/app/x")
        + s(b"10.0.0.1")
        + s(b"10.0.0.1")
        + s(b"example.test")
        + b"\x00\x50"  # port 80
        + b"\x00"  # is_ssl false
        + b"\x00\x04"  # 4 headers
        + b"\xa0\x0b"
        + s(b"example.test")  # SC_REQ_HOST
        + b"\xa0\x09"
        + s(b"JSESSIONID=abc.n1")  # SC_REQ_COOKIE
        + b"\xa0\x0e"
        + s(b"t")  # SC_REQ_USER_AGENT
        + s(b"X-Custom")
        + s(b"yes")  # not a common header: the name as a string
        + b"\x05"
        + s(b"a=1&b=2")  # query_string
        + b"\x06"
        + s(b"n1")  # jvm_route
        + b"\x0c"
        + s(b"s3cret")  # secret
        + b"\x0a"
        + s(b"JK_LB_ACTIVATION")
        + s(b"ACT")  # req_attribute
        + b"\xff"  # are_done
    )
    packet = encode_forward_request(req, 8192)
    assert packet == packet_to_container(expected_payload)
    back = decode_forward_request(expected_payload)
    assert back.method == b"GET" and back.uri == b"/app/x" and back.server_port == 80
    assert back.headers[0] == (b"host", b"example.test")
    assert back.headers[3] == (b"X-Custom", b"yes")
    assert (back.query_string, back.route, back.secret) == (b"a=1&b=2", b"n1", b"s3cret")
    assert back.request_attributes == ((b"JK_LB_ACTIVATION", b"ACT"),)


@pytest.mark.parametrize(
    ("method", "code"),
    [(b"OPTIONS", 1), (b"GET", 2), (b"HEAD", 3), (b"POST", 4), (b"PUT", 5), (b"DELETE", 6),
     (b"TRACE", 7), (b"PROPFIND", 8), (b"MKCOL", 10), (b"REPORT", 16), (b"MKACTIVITY", 27)],
)  # fmt: skip
def test_method_codes(method: bytes, code: int) -> None:
    payload = payload_of(encode_forward_request(ForwardRequest(method, b"/"), 8192))
    assert payload[1] == code
    assert decode_forward_request(payload).method == method


def test_an_uncommon_method_goes_as_code_ff_with_a_stored_method_attribute() -> None:
    payload = payload_of(encode_forward_request(ForwardRequest(b"PATCH", b"/"), 8192))
    assert payload[1] == 0xFF
    assert payload.endswith(b"\x0d" + s(b"PATCH") + b"\xff")
    assert decode_forward_request(payload).method == b"PATCH"


def test_tls_attributes_and_the_ssl_flag() -> None:
    req = ForwardRequest(
        b"GET",
        b"/",
        is_ssl=True,
        ssl_cert=b"-----BEGIN CERTIFICATE-----",
        ssl_cipher=b"TLS_AES_128_GCM_SHA256",
        ssl_session=b"abcd",
        ssl_key_size=128,
    )
    payload = payload_of(encode_forward_request(req, 8192))
    tail = (
        b"\x07"
        + s(b"-----BEGIN CERTIFICATE-----")
        + b"\x08"
        + s(b"TLS_AES_128_GCM_SHA256")
        + b"\x09"
        + s(b"abcd")
        + b"\x0b\x00\x80"  # ssl_key_size is an integer, not a string
        + b"\xff"
    )
    assert payload.endswith(tail)
    # is_ssl sits right after server_port
    head = b"\x02\x02" + s(b"HTTP/1.1") + s(b"/") + s(b"") + b"\xff\xff" + s(b"") + b"\x00\x50"
    assert payload.startswith(head + b"\x01\x00\x00")
    back = decode_forward_request(payload)
    assert back.is_ssl and back.ssl_key_size == 128 and back.ssl_session == b"abcd"


def test_a_forward_request_larger_than_max_packet_size_is_refused() -> None:
    req = ForwardRequest(b"GET", b"/", headers=[(b"X-Big", b"x" * 9000)])
    with pytest.raises(AjpError, match="exceeds max_packet_size 8192"):
        encode_forward_request(req, 8192)
    assert len(encode_forward_request(req, 16384)) > 9000


def test_a_header_name_whose_length_would_read_as_a_code_is_refused() -> None:
    req = ForwardRequest(b"GET", b"/", headers=[(b"x" * 0xA001, b"v")])
    with pytest.raises(AjpError, match="cannot be encoded"):
        encode_forward_request(req, 65536 * 2)


def test_unknown_attribute_codes_are_malformed() -> None:
    payload = payload_of(encode_forward_request(ForwardRequest(b"GET", b"/"), 8192))
    with pytest.raises(AjpError, match="unknown attribute code 0x42"):
        decode_forward_request(payload[:-1] + b"\x42" + s(b"x") + b"\xff")


# --- request body packets -----------------------------------------------------------------------


def test_body_packet_carries_its_own_data_length() -> None:
    assert body_packet(b"hello") == b"\x12\x34\x00\x07\x00\x05hello"
    assert decode_body_packet(b"\x00\x05hello") == b"hello"


def test_the_empty_body_packet_ends_a_body() -> None:
    assert body_packet(b"") == END_OF_BODY_PACKET == b"\x12\x34\x00\x00"
    assert decode_body_packet(b"") == b""


def test_a_body_packet_holds_at_most_max_packet_size_minus_six_bytes() -> None:
    assert max_body_chunk(8192) == 8186
    assert max_body_chunk(65536) == 65530
    assert len(body_packet(b"x" * 8186)) == 8192


# --- replies -------------------------------------------------------------------------------------


def test_send_headers_with_coded_and_string_headers() -> None:
    payload = (
        b"\x04"
        + b"\x00\xc8"  # 200
        + s(b"OK")
        + b"\x00\x04"
        + b"\xa0\x01"
        + s(b"text/html;charset=UTF-8")  # SC_RESP_CONTENT_TYPE
        + b"\xa0\x03"
        + s(b"42")  # SC_RESP_CONTENT_LENGTH
        + b"\xa0\x07"
        + s(b"JSESSIONID=ABC.n1; Path=/")  # SC_RESP_SET_COOKIE
        + s(b"X-Node")
        + s(b"n1")  # a string name
    )
    msg = decode_reply(payload)
    assert msg == SendHeaders(
        200,
        b"OK",
        (
            (b"Content-Type", b"text/html;charset=UTF-8"),
            (b"Content-Length", b"42"),
            (b"Set-Cookie", b"JSESSIONID=ABC.n1; Path=/"),
            (b"X-Node", b"n1"),
        ),
    )
    assert encode_send_headers(200, b"OK", msg.headers) == packet_from_container(payload)


def test_send_headers_with_an_unknown_header_code_is_malformed() -> None:
    payload = b"\x04\x00\xc8" + s(b"OK") + b"\x00\x01\xa0\x20" + s(b"x")
    with pytest.raises(AjpError, match="unknown code 0xa020"):
        decode_reply(payload)


def test_send_headers_cut_short_is_malformed() -> None:
    payload = b"\x04\x00\xc8" + s(b"OK") + b"\x00\x02\xa0\x01" + s(b"text/plain")
    with pytest.raises(AjpError, match="SEND_HEADERS"):
        decode_reply(payload)


def test_send_body_chunk_with_tomcats_trailing_nul_and_without() -> None:
    assert decode_reply(b"\x03\x00\x05hello\x00") == BodyChunk(b"hello")
    assert decode_reply(b"\x03\x00\x05hello") == BodyChunk(b"hello")
    assert encode_body_chunk(b"hello") == packet_from_container(b"\x03\x00\x05hello\x00")


def test_send_body_chunk_whose_length_disagrees_with_the_packet_is_malformed() -> None:
    with pytest.raises(AjpError, match="does not match"):
        decode_reply(b"\x03\x00\x09hello\x00")
    with pytest.raises(AjpError, match="does not match"):
        decode_reply(b"\x03\x00\x02hello\x00")


def test_end_response_reuse_flag() -> None:
    assert decode_reply(b"\x05\x01") == EndResponse(True)
    assert decode_reply(b"\x05\x00") == EndResponse(False)
    assert encode_end_response(True) == b"AB\x00\x02\x05\x01"
    with pytest.raises(AjpError, match="reuse flag is 2"):
        decode_reply(b"\x05\x02")


def test_get_body_chunk_asks_for_a_length() -> None:
    assert decode_reply(b"\x06\x1f\xfa") == GetBodyChunk(8186)
    assert encode_get_body_chunk(8186) == b"AB\x00\x03\x06\x1f\xfa"
    with pytest.raises(AjpError, match="requested length is 0"):
        decode_reply(b"\x06\x00\x00")


@pytest.mark.parametrize("kind", [0x02, 0x07, 0x0A, 0x42])
def test_messages_a_container_never_sends_are_malformed(kind: int) -> None:
    with pytest.raises(AjpError, match="not a message a container sends"):
        decode_reply(bytes((kind, 0, 0)))


# --- the stream splitter --------------------------------------------------------------------------


def test_packets_split_across_reads_and_several_in_one_read() -> None:
    stream = encode_send_headers(200, b"OK", []) + encode_body_chunk(b"x" * 100)
    stream += encode_end_response(True)
    d = from_container_deframer(8192)
    got = []
    for i in range(0, len(stream), 7):
        got += d.feed(stream[i : i + 7])
    assert [decode_reply(p) for p in got] == [
        SendHeaders(200, b"OK", ()),
        BodyChunk(b"x" * 100),
        EndResponse(True),
    ]
    assert d.pending == 0
    assert len(from_container_deframer(8192).feed(stream)) == 3


def test_a_packet_with_the_wrong_magic_is_refused() -> None:
    with pytest.raises(AjpError, match="does not start with b'AB'"):
        from_container_deframer(8192).feed(b"\x12\x34\x00\x01\x09")
    with pytest.raises(AjpError, match="does not start with"):
        to_container_deframer(8192).feed(b"AB\x00\x01\x09")


def test_a_packet_over_max_packet_size_is_refused_before_its_bytes_arrive() -> None:
    d = from_container_deframer(8192)
    assert d.feed(b"AB\x1f\xfc") == []  # 8188 + 4 = 8192: allowed, waits for the payload
    with pytest.raises(AjpError, match="8193 bytes exceeds max_packet_size 8192"):
        from_container_deframer(8192).feed(b"AB\x1f\xfd")


def test_an_empty_packet_from_the_container_is_malformed() -> None:
    (payload,) = from_container_deframer(8192).feed(b"AB\x00\x00")
    with pytest.raises(AjpError, match="no message type"):
        decode_reply(payload)
