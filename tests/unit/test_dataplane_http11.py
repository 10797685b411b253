"""The pure HTTP/1.1 helpers and the limits' validation."""

from __future__ import annotations

import pytest

from balancer.dataplane import Limits
from balancer.dataplane import http11 as h


@pytest.mark.parametrize(
    "host",
    [
        b"example.test",
        b"example.test:8080",
        b"127.0.0.1",
        b"127.0.0.1:80",
        b"[::1]",
        b"[::1]:8443",
        b"[2001:db8::1]",
        b"xn--bcher-kva.test",
        b"a_b.test",
        b"host:",
    ],
)
def test_valid_hosts_are_accepted(host: bytes) -> None:
    assert h.valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        b"",
        b"exa mple",
        b"example.test/path",
        b"user@example.test",
        b"example.test:80x",
        b"example.test:123456",
        b"[::1",
        b"[::g]",
        b"[::1]x",
        b":80",
        b"ex\x00ample",
        b"example.test:80:90",
    ],
)
def test_malformed_hosts_are_refused(host: bytes) -> None:
    assert not h.valid_host(host)


@pytest.mark.parametrize(
    ("reason", "valid"),
    [
        (b"OK", True),
        (b"", True),
        (b"Not Found\tHere", True),
        (b"\xe9t\xe9", True),  # obs-text
        (b"O\x01K", False),
        (b"O\x00K", False),
        (b"O\rK", False),
        (b"O\nK", False),
        (b"O\x7fK", False),
    ],
)
def test_reason_phrases_may_not_hold_control_bytes(reason: bytes, valid: bool) -> None:
    assert h.valid_reason(reason) is valid


@pytest.mark.parametrize(
    ("target", "split"),
    [
        (b"http://a.test/p?q", (b"a.test", b"/p?q")),
        (b"HTTPS://a.test:8443", (b"a.test:8443", b"/")),
        (b"http://a.test?q=1", (b"a.test", b"/?q=1")),
        (b"http://a.test/;jsessionid=X", (b"a.test", b"/;jsessionid=X")),
        (b"ftp://a.test/", None),
        (b"a.test/p", None),
    ],
)
def test_absolute_targets_split_into_authority_and_origin_form(
    target: bytes, split: tuple[bytes, bytes] | None
) -> None:
    assert h.split_absolute_target(target) == split


def test_connection_tokens_are_trimmed_lowered_and_never_empty() -> None:
    assert h.connection_tokens(b" Keep-Alive ,,X-Foo,\tclose ") == [
        b"keep-alive",
        b"x-foo",
        b"close",
    ]


def test_websocket_upgrade_needs_the_token_and_connection_upgrade() -> None:
    assert h.websocket_upgrade(b"WebSocket", [b"keep-alive", b"upgrade"])
    assert h.websocket_upgrade(b"foo, websocket", [b"upgrade"])
    assert not h.websocket_upgrade(b"websocket", [b"keep-alive"])
    assert not h.websocket_upgrade(b"h2c", [b"upgrade"])
    assert not h.websocket_upgrade(None, [b"upgrade"])


def test_set_cookie_name_is_what_precedes_the_first_equals_sign() -> None:
    assert h.set_cookie_name(b"JSESSIONID=.n1;PATH=/;HttpOnly") == b"JSESSIONID"
    assert h.set_cookie_name(b" a = b; Path=/") == b"a"
    assert h.set_cookie_name(b"flag") == b"flag"


def test_local_responses_are_short_and_framed() -> None:
    data = h.local_response(503, close=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Connection: close" in head
    assert b"Content-Length: %d" % len(body) in head
    assert body == b"503 Service Unavailable\n"
    head_only = h.local_response(503, close=False, head_only=True)
    assert head_only.endswith(b"\r\n\r\n") and b"Connection" not in head_only
    assert b"Connection: keep-alive" in h.local_response(200, close=False, keep_alive_10=True)


def test_standard_status_lines_are_reused_and_custom_reasons_kept() -> None:
    assert h.status_line(200, b"OK") is h.status_line(200, b"OK")
    assert h.status_line(200, b"Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert h.status_line(299, b"Odd") == b"HTTP/1.1 299 Odd\r\n"


def test_chunks_are_framed_in_hex() -> None:
    assert b"".join(h.chunk(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"


def test_limits_have_the_documented_defaults() -> None:
    limits = Limits()
    assert limits.max_head_size == 16 * 1024
    assert limits.max_headers == 100
    assert limits.header_timeout == 10.0
    assert limits.keepalive_timeout == 60.0
    assert limits.max_body_size == 1024 * 1024
    assert limits.max_connections == 10000
    assert limits.underscores_in_headers == "reject"
    assert limits.replay_buffer_size == 64 * 1024


@pytest.mark.parametrize(
    "bad",
    [
        {"header_timeout": 0},
        {"keepalive_timeout": -1},
        {"max_head_size": 0},
        {"max_body_size": -1},
        {"max_pipelined": 0},
        {"underscores_in_headers": "ignore"},
        {"write_buffer_high": 10},
    ],
)
def test_limits_refuse_nonsense_and_name_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        (
            [
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"Sec-WebSocket-Version", b"13"),
            ],
            True,
        ),
        (
            [
                (b"sec-websocket-key", b" dGhlIHNhbXBsZSBub25jZQ== "),
                (b"SEC-WEBSOCKET-VERSION", b"13"),
            ],
            True,
        ),
        ([(b"Sec-WebSocket-Version", b"13")], False),
        ([(b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==")], False),
        (
            [(b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"Sec-WebSocket-Version", b"8")],
            False,
        ),
        ([(b"Sec-WebSocket-Key", b"a2V5"), (b"Sec-WebSocket-Version", b"13")], False),
        (
            [
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=!"),
                (b"Sec-WebSocket-Version", b"13"),
            ],
            False,
        ),
        (
            [
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"Sec-WebSocket-Version", b"13"),
            ],
            False,
        ),
    ],
)
def test_websocket_handshake_fields_are_checked(
    headers: list[tuple[bytes, bytes]], ok: bool
) -> None:
    assert h.websocket_handshake_ok(headers) is ok


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (b"example.test", b"EXAMPLE.test", True),
        (b"example.test:80", b"example.test", True),
        (b"example.test", b"example.test:443", True),
        (b"example.test:8080", b"example.test", False),
        (b"other.example", b"example.test", False),
    ],
)
def test_same_authority_ignores_case_and_default_ports(a: bytes, b: bytes, same: bool) -> None:
    assert h.same_authority(a, b) is same
