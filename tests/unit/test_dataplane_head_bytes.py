"""The byte steps both head scanners share (head_bytes.py): finding a byte, splitting a field
line into name and value, matching a field name in any case, reading a Content-Length.

Compiled they are C functions only the scanners can call, so the first tests (the functions
themselves) run with PYJK_PURE=1 (scripts/test.sh runs this file both ways); the last ones run
both ways and check that a request head and a response head read the same field line alike."""

from __future__ import annotations

import pytest

from balancer.dataplane import Limits
from balancer.dataplane import head_bytes as hb
from tests.unit.test_dataplane_request_scan import one
from tests.unit.test_dataplane_response_head import read

pure_only = pytest.mark.skipif(
    not hasattr(hb, "find"), reason="compiled: C functions, exercised through the scanners"
)


@pure_only
@pytest.mark.parametrize(
    ("buf", "c", "i", "n", "found"),
    [
        (b"Host: x\r\n", 58, 0, 9, 4),
        (b"Host: x\r\n", 13, 5, 9, 7),
        (b"Host: x\r\n", 13, 0, 7, 7),  # none before n: n
        (b"Host: x\r\n", 10, 9, 9, 9),  # from the end: n
        (b"a:b:c", 58, 2, 5, 3),  # the first at or after i
    ],
)
def test_find_is_the_first_byte_at_or_after_i_and_before_n(
    buf: bytes, c: int, i: int, n: int, found: int
) -> None:
    assert hb.find(buf, buf, c, i, n) == found


@pure_only
@pytest.mark.parametrize(
    ("line", "parts"),
    [
        (b"A:v\r\n", (1, 2, 3)),
        (b"A: v\r\n", (1, 3, 4)),
        (b"A:\t \tv \r\n", (1, 5, 7)),  # trailing OWS kept, as llhttp does
        (b"A:\r\n", (1, 2, 2)),
        (b"Ab: x:y\r\n", (2, 4, 7)),  # the first colon ends the name
    ],
)
def test_field_line_is_the_colon_the_value_after_its_ows_and_the_cr(
    line: bytes, parts: tuple[int, int, int]
) -> None:
    assert hb.field_line(line, line, 0, len(line)) == parts
    assert hb.field_line(b"X: 1\r\n" + line, b"X: 1\r\n" + line, 6, len(line) + 6) == tuple(
        at + 6 for at in parts
    )


@pure_only
@pure_only
@pytest.mark.parametrize("line", [b"SM\r\n", b"SM", b""])
def test_a_line_with_no_colon_has_an_empty_value_at_the_end_never_one_ending_before_it(
    line: bytes,
) -> None:
    # what follows an HTTP/0.9 line llhttp ended at a bare LF (review-b F2): compiled, a value
    # that ended before it began was a slice of negative length, SystemError
    assert hb.field_line(line, line, 0, len(line)) == (len(line), len(line), len(line))


@pure_only
def test_named_matches_a_lower_case_name_in_any_case_and_nothing_else() -> None:
    assert hb.named(b"X: CONTENT-length", 3, b"content-length")
    assert hb.named(b"Keep-Alive", 0, b"keep-alive")
    assert not hb.named(b"Keep_Alive", 0, b"keep-alive")
    assert not hb.named(b"close", 0, b"clos\x05")


@pure_only
@pytest.mark.parametrize(
    ("text", "value"),
    [(b"0", 0), (b"42 \t", 42), (b"9" * 18, int(b"9" * 18)), (b"1" * 19, -1), (b"", 0)],
)
def test_number_reads_digits_up_to_what_a_c_long_long_surely_holds(text: bytes, value: int) -> None:
    assert hb.number(text, 0, len(text)) == value


@pure_only
@pytest.mark.parametrize("count", [0, 1, 10, 11, 40])
def test_join_is_bytes_join(count: int) -> None:
    parts = [b"X-%d: %s\r\n" % (k, b"v" * k) for k in range(count)] + [b""]
    assert hb.join(parts) == b"".join(parts)


@pytest.mark.parametrize(
    "value",
    [b"12", b"\t 12", b"12 \t", b"0", b"9" * 18, b"1" + b"0" * 18, b"%d" % (2**64 - 1)],
)
def test_both_scanners_read_a_content_length_alike(value: bytes) -> None:
    field = b"content-LENGTH:" + value + b"\r\n"
    req = one(b"POST / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n", Limits(max_body_size=0))
    resp = read(b"HTTP/1.1 200 OK\r\n" + field + b"\r\n").heads[0]
    assert req["content_length"] == resp[1] == int(value.strip(b" \t"))


@pytest.mark.parametrize("ows", [b"", b" ", b"\t", b" \t "])
def test_both_scanners_keep_a_value_from_after_its_leading_ows_to_the_line_end(ows: bytes) -> None:
    req = one(b"GET / HTTP/1.1\r\nHost: x\r\nCookie:" + ows + b"a=1 \r\n\r\n")
    resp = read(b"HTTP/1.1 200 OK\r\nSet-Cookie:" + ows + b"a=1 \r\nContent-Length: 0\r\n\r\n")
    assert req["cookies"] == resp.heads[0][5] == [b"a=1 "]


@pure_only
@pytest.mark.parametrize(
    ("n", "text"), [(1, b"1"), (15, b"f"), (16, b"10"), (0xABC0, b"abc0"), (2**64 - 1, b"f" * 16)]
)
def test_hex_id_is_the_prefix_and_the_count_in_lower_case_hex(n: int, text: bytes) -> None:
    assert hb.hex_id(b"0123456789ab-", n) == b"0123456789ab-" + text
