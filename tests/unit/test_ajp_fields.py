"""What a client request becomes in AJP and what an AJP response head becomes in HTTP (pure)."""

from __future__ import annotations

import pytest

from balancer.ajp import AjpError, SendHeaders
from balancer.dataplane.ajp_fields import (
    TlsInfo,
    client_address,
    forward_request,
    response_head,
    split_host,
    tls_info,
)
from balancer.dataplane.request import Request


def request(**fields: object) -> Request:
    req = Request(str(fields.pop("client_ip", "192.0.2.10")), bool(fields.pop("secure", False)))
    req.method = b"GET"
    req.target = req.path = b"/app/x"
    req.host = b"shop.test"
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def build(req: Request, **kw: object):
    args: dict[str, object] = {
        "content_length": None,
        "request_id": b"rid-1",
        "trusted": False,
        "route": "n1",
        "secret": "",
        "activation": "ACT",
    }
    args.update(kw)
    return forward_request(req, **args)  # type: ignore[arg-type]


def names(msg) -> list[bytes]:
    return [n.lower() for n, _ in msg.headers]


def test_the_forward_request_carries_the_http_fields_an_http_member_would_get() -> None:
    req = request(headers=[(b"Cookie", b"JSESSIONID=a.n1"), (b"Accept", b"*/*")], query=b"q=1")
    msg = build(req, content_length=0, peer_port=40000, local_addr="127.0.0.1")
    assert msg.method == b"GET" and msg.uri == b"/app/x" and msg.query_string == b"q=1"
    assert msg.remote_addr == msg.remote_host == b"192.0.2.10"
    assert (msg.server_name, msg.server_port, msg.is_ssl) == (b"shop.test", 80, False)
    assert names(msg) == [
        b"host",
        b"cookie",
        b"accept",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-pyjk-request-id",
    ]
    assert dict(msg.request_attributes) == {
        b"AJP_REMOTE_PORT": b"40000",
        b"AJP_LOCAL_ADDR": b"127.0.0.1",
        b"JK_LB_ACTIVATION": b"ACT",
    }
    assert msg.route == b"n1" and msg.secret is None


def test_no_content_length_without_a_known_length_and_no_activation_when_none() -> None:
    msg = build(request(), activation=None, secret="s")
    assert b"content-length" not in names(msg)
    assert b"JK_LB_ACTIVATION" not in dict(msg.request_attributes)
    assert msg.secret == b"s"


def test_http_1_0_and_a_host_with_a_port() -> None:
    msg = build(request(http11=False, host=b"[::1]:8443"))
    assert msg.protocol == b"HTTP/1.0"
    assert (msg.server_name, msg.server_port) == (b"[::1]", 8443)


@pytest.mark.parametrize(
    ("host", "secure", "expected"),
    [
        (b"a.test", False, (b"a.test", 80)),
        (b"a.test", True, (b"a.test", 443)),
        (b"a.test:81", False, (b"a.test", 81)),
        (b"[2001:db8::1]", True, (b"[2001:db8::1]", 443)),
    ],
)
def test_split_host(host: bytes, secure: bool, expected: tuple[bytes, int]) -> None:
    assert split_host(host, secure) == expected


def test_an_untrusted_peers_forwarded_fields_are_replaced() -> None:
    req = request(xff=b"6.6.6.6", xfproto=b"https")
    msg = build(req, is_trusted=lambda ip: False)
    assert msg.remote_addr == b"192.0.2.10" and not msg.is_ssl
    assert dict(msg.headers)[b"X-Forwarded-For"] == b"192.0.2.10"
    assert dict(msg.headers)[b"X-Forwarded-Proto"] == b"http"


def test_behind_a_trusted_proxy_ajp_carries_the_clients_address_and_tls_flag() -> None:
    trusted = {"192.0.2.10", "10.0.0.2"}
    req = request(xff=b"203.0.113.7, 10.0.0.2", xfproto=b"https")
    msg = build(req, trusted=True, is_trusted=trusted.__contains__, peer_port=5555)
    assert msg.remote_addr == msg.remote_host == b"203.0.113.7"
    assert msg.is_ssl and msg.server_port == 443
    assert b"AJP_REMOTE_PORT" not in dict(msg.request_attributes)  # that was the proxy's port
    assert dict(msg.headers)[b"X-Forwarded-For"] == b"203.0.113.7, 10.0.0.2, 192.0.2.10"


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        (b"203.0.113.7", "203.0.113.7"),
        (b"198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the rightmost untrusted hop
        (b"10.0.0.2, 10.0.0.3", "10.0.0.2"),  # all trusted: the first
        (b"unknown", None),
        (b"", None),
    ],
)
def test_client_address_behind_trusted_proxies(xff: bytes, expected: str | None) -> None:
    trusted = {"192.0.2.10", "10.0.0.2", "10.0.0.3"}
    assert client_address(request(xff=xff), trusted.__contains__) == expected


def test_no_client_address_from_an_untrusted_peer() -> None:
    assert client_address(request(xff=b"203.0.113.7"), lambda ip: False) is None


def test_tls_facts_become_ssl_attributes() -> None:
    tls = TlsInfo(b"TLS_AES_256_GCM_SHA384", 256, b"ab12", b"TLSv1.3", b"PEM")
    msg = build(request(secure=True, host=b"shop.test"), tls=tls)
    assert msg.is_ssl and msg.server_port == 443
    assert (msg.ssl_cipher, msg.ssl_key_size, msg.ssl_session, msg.ssl_cert) == (
        b"TLS_AES_256_GCM_SHA384",
        256,
        b"ab12",
        b"PEM",
    )
    assert dict(msg.request_attributes)[b"AJP_SSL_PROTOCOL"] == b"TLSv1.3"


class FakeSsl:
    class session:
        id = b"\x01\x02"

    def cipher(self):
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def version(self):
        return "TLSv1.3"

    def getpeercert(self, binary_form: bool = False):
        return None


def test_tls_info_reads_an_ssl_object() -> None:
    info = tls_info(FakeSsl())
    assert info == TlsInfo(b"TLS_AES_128_GCM_SHA256", 128, b"0102", b"TLSv1.3", None)
    assert tls_info(None) is None


# --- response heads ----------------------------------------------------------------------------


def test_a_head_with_its_fields_set_cookies_and_length() -> None:
    head = response_head(
        SendHeaders(
            200,
            b"",
            (
                (b"Content-Type", b"text/html"),
                (b"Set-Cookie", b"a=1"),
                (b"Set-Cookie", b"b=2"),
                (b"Content-Length", b" 12 "),
            ),
        )
    )
    assert (head.status, head.reason, head.content_length) == (200, b"OK", 12)
    assert head.set_cookies == [b"a=1", b"b=2"]
    assert head.headers[-1] == (b"Content-Length", b"12")


def test_hop_by_hop_and_named_fields_are_dropped_but_protected_ones_kept() -> None:
    head = response_head(
        SendHeaders(
            200,
            b"OK",
            (
                (b"Connection", b"close, X-Secret, Set-Cookie"),
                (b"X-Secret", b"1"),
                (b"Set-Cookie", b"s=1"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Upgrade", b"h2c"),
                (b"X-Kept", b"y"),
            ),
        )
    )
    assert head.headers == [(b"Set-Cookie", b"s=1"), (b"X-Kept", b"y")]


def test_the_same_content_length_twice_is_one() -> None:
    head = response_head(
        SendHeaders(200, b"OK", ((b"Content-Length", b"5"), (b"content-length", b"5")))
    )
    assert head.content_length == 5 and len(head.headers) == 1


@pytest.mark.parametrize(
    ("status", "reason", "headers", "message"),
    [
        (99, b"", (), "outside 100-599"),
        (600, b"", (), "outside 100-599"),
        (101, b"", (), "cannot switch"),
        (200, b"O\rK", (), "reason"),
        (200, b"OK", ((b"X-A", b"a\nb"),), "control bytes"),
        (200, b"OK", ((b"X-A", b"a\x00b"),), "control bytes"),
        (200, b"OK", ((b"Bad Name", b"v"),), "not a token"),
        (200, b"OK", ((b"X:A", b"v"),), "not a token"),
        (200, b"OK", ((b"Content-Length", b"-1"),), "not a number"),
        (200, b"OK", ((b"Content-Length", b""),), "not a number"),
        (200, b"OK", ((b"Content-Length", b"1"), (b"Content-Length", b"2")), "different"),
    ],
)
def test_heads_that_cannot_be_relayed(status, reason, headers, message) -> None:
    with pytest.raises(AjpError, match=message):
        response_head(SendHeaders(status, reason, headers))


def test_obs_text_and_tabs_in_values_are_relayed() -> None:
    head = response_head(SendHeaders(200, b"OK", ((b"X-Latin", b"caf\xe9\tok"),)))
    assert head.headers == [(b"X-Latin", b"caf\xe9\tok")]
