"""A member's response head read from its bytes (response_fields.py), and relayed as written."""

from __future__ import annotations

import asyncio

import pytest

from balancer.dataplane.response_fields import (
    drop_named,
    field_lines,
    field_pairs,
    has_field,
    read_fields,
)
from tests.unit.test_dataplane_support import BackendConn, BackendRequest, get, proxied, uvloop_test


def block(*lines: bytes) -> bytes:
    """The part of a head read_fields takes: the status line's CRLF through the last field's."""
    return b"\r\n" + b"".join(line + b"\r\n" for line in lines)


def test_a_head_without_framing_or_hop_fields_is_relayed_as_it_is() -> None:
    b = block(b"Server: nginx", b"date:Thu, 01 Jan 1970", b"X-Odd-Spacing:   v  ")
    fields, length, te, upgrade, cookies, tokens = read_fields(b)
    assert fields == b[2:]
    assert (length, te, upgrade, cookies, tokens) == (None, None, None, None, None)


def test_a_head_without_fields_has_no_field_lines() -> None:
    assert read_fields(b"\r\n") == (b"", None, None, None, None, None)


def test_content_length_and_set_cookie_are_read_and_kept_in_any_spelling() -> None:
    b = block(b"CONTENT-LENGTH:  12 ", b"Set-Cookie: a=1; Path=/", b"set-cookie:B=2")
    fields, length, _, _, cookies, _ = read_fields(b)
    assert fields == b[2:]
    assert length == 12
    assert cookies == [b"a=1; Path=/", b"B=2"]  # the value's case is the member's


def test_hop_by_hop_fields_are_cut_and_what_they_say_is_read() -> None:
    b = block(
        b"Server: x",
        b"Connection: keep-alive",
        b"Keep-Alive: timeout=5",
        b"Transfer-Encoding: chunked",
        b"X-Mid: 1",
        b"TE: trailers",
        b"Trailer: X-T",
        b"Proxy-Connection: x",
        b"Proxy-Authenticate: Basic",
        b"UPGRADE: WebSocket",
        b"connection: Upgrade, X-Secret",
    )
    fields, length, te, upgrade, cookies, tokens = read_fields(b)
    assert fields == b"Server: x\r\nX-Mid: 1\r\n"
    assert te == b"chunked" and upgrade == b"WebSocket" and length is None and cookies is None
    assert tokens == [b"upgrade", b"x-secret"]  # keep-alive and close name no field


def test_names_that_only_begin_like_a_hop_field_are_relayed() -> None:
    b = block(b"Tex: 1", b"X-Connection: 2", b"Te-Foo: 3", b"Connections: 4")
    assert read_fields(b)[0] == b[2:]


def test_fields_named_by_connection_are_dropped_and_the_others_kept_as_written() -> None:
    fields = b"X-Secret: 1\r\nx-kept:2\r\nx-SECRET: 3\r\n"
    assert drop_named(fields, {b"x-secret"}) == b"x-kept:2\r\n"


def test_the_rare_readers_get_names_and_values_without_ows() -> None:
    fields = b"X-Pyjk-Refusal:  cluster-full \r\nStrict-Transport-Security: max-age=1\r\n"
    assert field_pairs(fields) == [
        (b"X-Pyjk-Refusal", b"cluster-full"),
        (b"Strict-Transport-Security", b"max-age=1"),
    ]
    assert has_field(fields, b"strict-transport-security")
    assert not has_field(b"X-A: strict-transport-security: 1\r\n", b"strict-transport-security")
    assert field_lines([(b"A", b"1"), (b"B", b"2")]) == b"A: 1\r\nB: 2\r\n"


async def _raw_response(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


@uvloop_test
async def test_the_member_s_field_lines_reach_the_client_byte_for_byte() -> None:
    # relayed from its bytes: spelling, spacing and order as the member wrote them
    raw = (
        b"HTTP/1.1 200 OK\r\nx-lower:a\r\nConnection: keep-alive\r\nX-UPPER:   b\r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    async with proxied(responder=lambda c, r: raw) as (_, proxy):
        head = await _raw_response(proxy.port, get("/"))
    assert head == b"HTTP/1.1 200 OK\r\nx-lower:a\r\nX-UPPER:   b\r\nContent-Length: 2\r\n\r\n"


@pytest.mark.parametrize("piece", [1, 7])
@uvloop_test
async def test_a_head_that_comes_in_pieces_is_read_whole(piece: int) -> None:
    raw = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 Fine\r\nX-A: 1\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"
    )

    async def drip(conn: BackendConn, req: BackendRequest) -> None:
        for i in range(0, len(raw), piece):
            conn.write(raw[i : i + piece])
            await asyncio.sleep(0)  # one write, one read on the balancer's side (mostly)
        return None

    async with proxied(responder=lambda c, r: drip(c, r)) as (_, proxy):
        client = await proxy.connect()
        try:
            client.send(get("/"))
            hints = await client.response()
            resp = await client.response()
        finally:
            client.close()
    assert hints.status == 103 and hints.header("link") == b"</a.css>"
    assert resp.status == 200 and resp.reason == b"Fine" and resp.body == b"hi"
    assert resp.header("x-a") == b"1" and resp.header("connection") is None
