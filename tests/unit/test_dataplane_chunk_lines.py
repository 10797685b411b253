"""Following a chunked body's size lines (balancer.dataplane.chunk_lines), as plain data."""

from __future__ import annotations

import pytest

from balancer.dataplane.chunk_lines import ChunkLines, chunk_size, locate_body

HEAD = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"1a\r", 26),
        (b"5;name=value\r", 5),
        (b"0\r", 0),
        (b"ffffffffffffffff\r", 2**64 - 1),
        (b"zz\r", None),
        (b"\r", None),
        (b"1ffffffffffffffff\r", None),
    ],
)
def test_chunk_size_reads_the_hex_before_any_extension(line: bytes, size: int | None) -> None:
    assert chunk_size(line) == size


def feed_all(pieces: list[bytes]) -> ChunkLines:
    lines = ChunkLines()
    for piece in pieces:
        lines.feed(piece)
    return lines


def test_size_lines_data_and_the_last_chunk_are_followed() -> None:
    body = b"5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n"
    lines = feed_all([body])
    assert (lines.body, lines.done, lines.longest) == (8, True, 6)


def test_the_longest_line_is_counted_across_reads_however_the_bytes_are_split() -> None:
    body = b"2\r\nhi\r\n4;" + b"e" * 5000 + b"\r\nabcd\r\n0\r\n\r\n"
    whole = feed_all([body])
    bytewise = feed_all([body[i : i + 1] for i in range(len(body))])
    assert (whole.longest, whole.body, whole.done) == (5003, 6, True)
    assert (bytewise.longest, bytewise.body, bytewise.done) == (5003, 6, True)


def test_a_malformed_size_stops_following_and_says_so() -> None:
    lines = feed_all([b"zz\r\nab\r\n"])
    assert lines.done and lines.bad


def test_locate_body_finds_the_body_after_its_head() -> None:
    data = HEAD + b"5;" + b"e" * 100
    lines = locate_body(data, 0, False)
    assert lines is not None and lines.longest == 102 and not lines.done


def test_locate_body_skips_a_pipelined_request_ahead_of_it() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n" + HEAD + b"3\r\nabc\r\n0\r\n\r\n"
    lines = locate_body(data, 3, True)
    assert lines is not None and lines.done and lines.body == 3


def test_locate_body_finishes_a_head_end_the_previous_read_began() -> None:
    lines = locate_body(b"\n4;" + b"e" * 10 + b"\r\nab", 2, False)
    assert lines is not None and lines.longest == 13 and lines.body == 2  # CR counted


def test_locate_body_gives_up_when_nothing_fits() -> None:
    assert locate_body(b"no head end here", 0, False) is None
