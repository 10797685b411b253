"""The response-head scanner (response_head.py): what the http member connection reads of a
head from its bytes, and the bytes the client gets.

The reference is what llhttp reports per field (the per-field callback the connection used to
take): the same fields are read and kept, in the same order, for heads of every shape llhttp
accepts; and a head llhttp refuses never reaches the scanner."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.dataplane import http11 as h
from balancer.dataplane.response_head import ResponseFields, field_list, has_field


class _Reader:
    """Feeds reads to llhttp as UpstreamConnection does: each read goes to ``add`` first, the
    head is read when llhttp says it is complete; llhttp's own per-field report is kept as the
    reference."""

    def __init__(self) -> None:
        self.rf = ResponseFields()
        self.parser = httptools.HttpResponseParser(self)
        self.llhttp_fields: list[tuple[bytes, bytes]] = []
        self.heads: list[tuple[bytes, object, object, object, object, object]] = []
        self.in_body = False
        self.lines: list[tuple[int, bool, bytes]] = []

    def feed(self, data: bytes) -> None:
        if not self.in_body:
            self.rf.add(data)
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_body:
            self.llhttp_fields.append((name, value))

    def on_headers_complete(self) -> None:
        rf = self.rf
        rf.read_head()
        self.heads.append(
            (
                b"".join(rf.fields),
                rf.content_length,
                rf.te,
                rf.conn_tokens,
                rf.upgrade,
                rf.set_cookies,
            )
        )
        self.lines.append((rf.status, rf.http1, rf.reason))
        if self.parser.get_status_code() >= 200:
            self.in_body = True
            rf.clear()


def read(*pieces: bytes) -> _Reader:
    r = _Reader()
    for piece in pieces:
        r.feed(piece)
    return r


def expected(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What the client gets of llhttp's fields (the old per-field rule): hop-by-hop, framing
    and Connection dropped, and the fields Connection names."""
    named: set[bytes] = set()
    for n, v in fields:
        if n.lower() == b"connection" and v not in (b"keep-alive", b"close"):
            named |= h.named_fields(h.connection_tokens(v)) or set()
    return [
        (n, v)
        for n, v in fields
        if h.RESPONSE_HEADERS.get(n.lower(), 0) in (0, h.R_CONTENT_LENGTH, h.R_SET_COOKIE)
        and n.lower() not in named
    ]


def test_a_head_with_nothing_to_drop_is_relayed_as_its_bytes() -> None:
    fields = b"Server: nginx\r\nDate: Mon, 07 Dec 2026 00:00:00 GMT\r\nContent-Length: 2\r\n"
    r = read(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nhi")
    assert r.heads == [(fields, 2, None, None, None, None)]
    assert r.rf.fields == [fields]  # one slice of the read, nothing joined


@pytest.mark.parametrize(
    ("line", "status", "http1", "reason"),
    [
        (b"HTTP/1.1 200 OK", 200, True, b"OK"),
        (b"HTTP/1.0 404 Not Found", 404, True, b"Not Found"),
        (b"HTTP/1.1 204", 204, True, b""),
        (b"HTTP/1.1 299 ", 299, True, b""),
        (b"HTTP/1.1 200 OK \t", 200, True, b"OK \t"),
        (b"HTTP/1.1 200 Ok\xff", 200, True, b"Ok\xff"),
        (b"HTTP/2.0 200 OK", 200, False, b"OK"),
        (b"HTTP/1.1 999 X", 999, True, b"X"),
    ],
)
def test_the_status_line_is_read_from_the_bytes(
    line: bytes, status: int, http1: bool, reason: bytes
) -> None:
    r = _Reader()
    try:
        r.feed(line + b"\r\nContent-Length: 0\r\n\r\n")
    except httptools.HttpParserError:
        pytest.fail("llhttp refused a status line the connection checks itself")
    assert r.lines == [(status, http1, reason)]


def test_connection_hop_by_hop_framing_and_upgrade_fields_are_cut_out_and_read() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nTrailer: X-T\r\nProxy-Connection: x\r\nProxy-Authenticate: y\r\n"
        b"Upgrade: h2c\r\nX-B: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    ((fields, length, te, tokens, upgrade, cookies),) = read(raw).heads
    assert fields == b"X-A: 1\r\nX-B: 2\r\n"
    assert (length, te, tokens, upgrade, cookies) == (None, b"chunked", None, b"h2c", None)


def test_names_are_matched_in_any_case_and_values_kept_as_written() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nCONTENT-length:  2 \t\r\nset-COOKIE: a=1; Path=/\r\n"
        b"X-Odd:\t  v  \t\r\ncOnNeCtIoN: close\r\nSet-Cookie:b=2\r\n\r\nhi"
    )
    ((fields, length, _, tokens, _, cookies),) = read(raw).heads
    assert fields == (
        b"CONTENT-length:  2 \t\r\nset-COOKIE: a=1; Path=/\r\nX-Odd:\t  v  \t\r\nSet-Cookie:b=2\r\n"
    )
    assert length == 2 and tokens is None
    assert cookies == [b"a=1; Path=/", b"b=2"]


def test_fields_named_in_connection_are_dropped_before_and_after_it_but_never_protected_ones() -> (
    None
):
    raw = (
        b"HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: X-SECRET, x-other , set-cookie\r\n"
        b"Set-Cookie: s=1\r\nx-other: 2\r\nX-Public: 3\r\nContent-Length: 0\r\n\r\n"
    )
    ((fields, _, _, tokens, _, cookies),) = read(raw).heads
    assert fields == b"Set-Cookie: s=1\r\nX-Public: 3\r\nContent-Length: 0\r\n"
    assert tokens == [b"x-secret", b"x-other", b"set-cookie"]
    assert cookies == [b"s=1"]


def test_an_interim_head_and_the_final_one_in_one_read_are_read_one_after_the_other() -> None:
    raw = (
        b"\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nLink: </a.css>\r\nContent-Length: 2\r\n\r\nhi"
    )
    r = read(raw)
    assert [head[0] for head in r.heads] == [
        b"Link: </a.css>\r\n",
        b"Link: </a.css>\r\nContent-Length: 2\r\n",
    ]


def test_transfer_encoding_fields_are_read_as_one_list() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-A: 1\r\n"
        b"transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    ((fields, _, te, _, _, _),) = read(raw).heads
    assert te == b"gzip, chunked" and fields == b"X-A: 1\r\n"


def test_a_content_length_too_long_for_the_c_loop_is_still_read() -> None:
    big = 10**19 + 7  # 20 digits: llhttp takes up to 2**64 - 1
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % big
    assert read(raw).heads[0][1] == big


HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: x-a\r\nX-A: 1\r\nSet-Cookie: s=1\r\n"
    b"Transfer-Encoding: chunked\r\nX-B:\t2 \r\n\r\n2\r\nhi\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("cut", range(1, len(HEAD)))
def test_a_head_split_over_two_reads_at_any_byte_reads_the_same(cut: int) -> None:
    whole = read(HEAD)
    split = read(HEAD[:cut], HEAD[cut:])
    assert split.heads == whole.heads
    assert whole.heads[0][0] == b"Server: x\r\nSet-Cookie: s=1\r\nX-B:\t2 \r\n"


def test_a_head_in_one_byte_reads_reads_the_same() -> None:
    assert read(*(HEAD[i : i + 1] for i in range(len(HEAD)))).heads == read(HEAD).heads


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",  # obs-fold
        b"HTTP/1.1 200 OK\r\nConnection: x-a,\r\n\tx-b\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\rY: b\r\n\r\n",
    ],
)
def test_heads_llhttp_refuses_never_reach_the_scanner(raw: bytes) -> None:
    r = _Reader()
    with pytest.raises(httptools.HttpParserError):
        r.feed(raw)
    assert r.heads == []


_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
    min_size=1,
    max_size=12,
)
_NAME = st.one_of(
    _TOKEN,
    st.sampled_from(
        [
            "Connection",
            "connection",
            "Keep-Alive",
            "TE",
            "te",
            "Trailer",
            "Upgrade",
            "Set-Cookie",
            "SET-COOKIE",
            "Proxy-Connection",
            "Proxy-Authenticate",
            "X-A",
            "x-a",
            "Content-Type",
        ]
    ),
)
_VALUE = st.text(alphabet=" \tabcXYZ=;,-x-a\x80\xff", max_size=16).map(
    lambda v: v.encode("latin-1").strip(b" \t")
)
_OWS = st.sampled_from([b"", b" ", b"\t", b"  \t"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_NAME, _OWS, _VALUE, _OWS), max_size=12),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=400),
)
def test_any_head_llhttp_accepts_reads_as_its_per_field_report_says(
    fields: list[tuple[str, bytes, bytes, bytes]], length: int, cut: int
) -> None:
    lines = b"".join(
        n.encode() + b":" + lead + v + trail + b"\r\n"
        for n, lead, v, trail in fields
        if n.lower() not in ("content-length", "transfer-encoding")
    )
    raw = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: %d\r\n\r\n" % length
    reference = _Reader()
    try:
        reference.feed(raw)
    except httptools.HttpParserError:
        return  # llhttp refused it: the connection fails it before any scan
    cut = min(cut, len(raw) - 1)
    r = read(raw[:cut], raw[cut:])
    ((relayed, got_length, _, tokens, upgrade, cookies),) = r.heads
    assert field_list([relayed]) == expected(reference.llhttp_fields)
    assert got_length == length
    llhttp = reference.llhttp_fields
    assert cookies == ([v for n, v in llhttp if n.lower() == b"set-cookie"] or None)
    upgrades = [v for n, v in llhttp if n.lower() == b"upgrade"]
    assert upgrade == (upgrades[-1] if upgrades else None)
    assert tokens is None or all(t == t.lower() for t in tokens)


def test_field_list_and_has_field_read_relayed_bytes() -> None:
    fields = [b"X-Pyjk-Refusal: cluster-full \r\n", b"Strict-Transport-Security:max-age=1\r\n"]
    assert field_list(fields) == [
        (b"X-Pyjk-Refusal", b"cluster-full "),
        (b"Strict-Transport-Security", b"max-age=1"),
    ]
    assert has_field(fields, b"strict-transport-security")
    assert not has_field(
        [b"X-Note: strict-transport-security: no\r\n"], b"strict-transport-security"
    )
    assert not has_field([], b"strict-transport-security")
