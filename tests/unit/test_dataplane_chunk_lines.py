"""Following a chunked body's size lines (balancer.dataplane.chunk_lines), as plain data."""

from __future__ import annotations

import pytest

from balancer.dataplane.chunk_lines import ChunkLines, chunk_size


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
        (b"1A\r", 26),
        # int(x, 16) takes these; llhttp does not (a negative size once made feed loop forever)
        (b"-6\r", None),
        (b"+5\r", None),
        (b"1_0\r", None),
        (b"\x0b5\r", None),
        (b"0x5\r", None),
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


def test_the_trailer_section_is_followed_to_its_blank_line_and_the_end_is_where_it_ended() -> None:
    body = b"3\r\nabc\r\n0\r\nX-T: ab\r\nX-U:\r\n\r\n"
    after = b"GET / HTTP/1.1\r\n\r\n"
    lines = ChunkLines(fields=2, size=30)
    lines.feed(b"head" + body + after, 4)
    assert lines.done and lines.end == 4 + len(body)
    assert (lines.fields, lines.size) == (4, 30 + len(b"X-T: ab\r\n") + len(b"X-U:\r\n"))


def test_the_end_is_found_in_the_read_that_holds_it_however_the_bytes_are_split() -> None:
    body = b"2;e=1\r\nhi\r\n0\r\nX-T: v\r\n\r\n"
    for k in range(1, len(body)):
        lines = ChunkLines()
        lines.feed(body[:k])
        assert not lines.done
        lines.feed(body[k:] + b"next")
        assert lines.done and lines.end == len(body) - k, k
        assert (lines.fields, lines.size) == (1, len(b"X-T: v\r\n"))


def test_a_trailer_line_not_ended_counts_against_the_size_limit() -> None:
    lines = ChunkLines(fields=1, size=10)
    lines.feed(b"0\r\nX-Long: " + b"v" * 100)
    assert not lines.done
    assert lines.over(max_fields=5, max_size=100)
    assert not lines.over(max_fields=5, max_size=200)
    assert ChunkLines(fields=6).over(max_fields=5, max_size=100)


@pytest.mark.parametrize("cut", range(4, 38))
def test_the_chunk_data_offsets_give_the_data_however_the_bytes_are_split(cut: int) -> None:
    body = b"HEAD3;x=y\r\nabc\r\n0002\r\nde\r\n0\r\nT: t\r\n\r\n"
    start = 4  # the body begins after a head in the first read
    lines = ChunkLines()
    data: list[bytes] = []
    for piece, at in ((body[:cut], start), (body[cut:], 0)):
        spans: list[tuple[int, int]] = []
        lines.feed(piece, at, spans)
        data += [piece[begin:end] for begin, end in spans]
    assert b"".join(data) == b"abcde"
    assert all(data)  # no empty spans
    assert lines.done and not lines.bad and lines.body == 5
