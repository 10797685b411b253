"""pyjk in front of two real Tomcat 10 instances over AJP/1.3, as Apache httpd + mod_jk would be.

One pair of Tomcats (n1, n2; jvmRoute = node name; AJP with a secret) and one balancer serve the
whole module: these tests only read. Failover, CPing and clustering, which stop Tomcats, have
modules of their own.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import http_get
from tests.integration.tomcat import kit
from tests.support.procs import ProcGroup

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kit.missing() is not None, reason=str(kit.missing())),
]

MB = 1024 * 1024
ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-"


def pattern(size: int) -> bytes:
    """What stream.jsp writes: the 64-character alphabet repeated."""
    return (ALPHABET * (size // 64 + 1))[:size]


Site = kit.TomcatStack


def connection(site: Site, timeout: float = 30.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", site.port, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Named ``stack`` so that a failed test's report carries every process log (conftest)."""
    tmp = tmp_path_factory.mktemp("tomcat-interop")
    site = Site(ProcGroup(tmp), tmp)
    try:
        n1, _ = site.start_tomcats("n1", "n2")
        # a member that points at n1 with the wrong secret, mapped under /bad/
        bad = n1.worker_lines("wrongsecret", secret="not-the-secret")
        site.start_pyjk(
            # the tests are their own TLS-terminating proxy: 127.0.0.1 is trusted
            extra=("worker.max_body_size=0", "worker.trusted_proxies=127.0.0.1/32", *bad),
            mounts="/bad/*=wrongsecret\n" + kit.MOUNTS,
            worker_list="lb,jkstatus,wrongsecret",
        )
        yield site
    finally:
        site.group.stop_all()


@pytest.fixture
def site(stack: Site) -> Site:
    return stack


def counter(site: Site, cookie: str | None = None) -> tuple[dict[str, str], list[str]]:
    headers = {"Cookie": f"JSESSIONID={cookie}"} if cookie else {}
    status, hdrs, body = http_get(f"{site.url}/counter.jsp", headers)
    assert status == 200, body
    fields = dict(part.split("=", 1) for part in body.decode().split())
    return fields, hdrs.get_all("Set-Cookie") or []


def test_a_session_page_counts_through_pyjk(site: Site) -> None:
    first, cookies = counter(site)
    sid = first["session"]
    node = first["node"]
    assert sid.endswith("." + node)  # Tomcat's jvmRoute names the node in the session id
    assert cookies == [f"JSESSIONID={sid}; Path=/; HttpOnly"]
    for expected in (2, 3, 4):
        again, cookies = counter(site, sid)
        assert (again["session"], again["node"], again["count"]) == (sid, node, str(expected))
        assert cookies == []


def test_sessions_stick_to_the_node_named_by_tomcats_jvm_route(site: Site) -> None:
    sessions: dict[str, str] = {}
    for _ in range(6):  # new sessions are spread over both nodes
        fields, _ = counter(site)
        sessions[fields["session"]] = fields["node"]
    assert set(sessions.values()) == {"n1", "n2"}
    for sid, node in sessions.items():
        served = {counter(site, sid)[0]["node"] for _ in range(4)}
        assert served == {node}


def test_tomcat_sees_what_mod_jk_would_tell_it(site: Site) -> None:
    status, _, body = http_get(
        f"{site.url}/info.jsp?a=1&b=%C3%A9", {"X-Custom": "yes", "Host": "shop.test:8443"}
    )
    assert status == 200, body
    info = dict(line.split("=", 1) for line in body.decode().splitlines())
    assert info["method"] == "GET" and info["uri"] == "/info.jsp"
    assert info["query"] == "a=1&b=%C3%A9"
    assert info["protocol"] == "HTTP/1.1"
    assert info["remote_addr"] == "127.0.0.1" and int(info["remote_port"]) > 0
    assert (info["server_name"], info["server_port"]) == ("shop.test", "8443")
    assert info["secure"] == "false"
    assert info["activation"] == "ACT"  # JK_LB_ACTIVATION, admitted by the connector
    assert info["x_forwarded_for"] == "127.0.0.1"
    assert info["request_id"] != "null" and info["x_custom"] == "yes"


def test_behind_a_trusted_proxy_tomcat_sees_the_client_and_tls(site: Site) -> None:
    status, _, body = http_get(
        f"{site.url}/info.jsp",
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Host": "shop.test"},
    )
    assert status == 200, body
    info = dict(line.split("=", 1) for line in body.decode().splitlines())
    # AJP's own fields, as httpd + mod_remoteip + mod_ssl would fill them
    assert info["remote_addr"] == "203.0.113.9"
    assert info["secure"] == "true" and info["server_port"] == "443"
    assert info["x_forwarded_for"] == "203.0.113.9, 127.0.0.1"


def test_a_member_with_the_wrong_secret_gets_403_from_tomcat(site: Site) -> None:
    status, _, _ = http_get(f"{site.url}/bad/info.jsp")
    assert status == 403
    assert http_get(f"{site.url}/info.jsp")[0] == 200


def test_a_20_mb_upload_reaches_tomcat_whole(site: Site) -> None:
    body = random.Random(7).randbytes(20 * MB)
    conn = connection(site)
    conn.request("POST", "/echo.jsp", body=body, headers={"Content-Type": "application/x-bin"})
    resp = conn.getresponse()
    answer = resp.read().decode()
    conn.close()
    assert resp.status == 200, answer
    assert answer == f"size={len(body)} sha256={hashlib.sha256(body).hexdigest()}"


def test_a_streamed_chunked_upload_reaches_tomcat_whole(site: Site) -> None:
    parts = [random.Random(i).randbytes(100_000 + i) for i in range(30)]
    conn = connection(site)
    conn.request("POST", "/echo.jsp", body=iter(parts), encode_chunked=True)
    resp = conn.getresponse()
    answer = resp.read().decode()
    conn.close()
    whole = b"".join(parts)
    assert answer == f"size={len(whole)} sha256={hashlib.sha256(whole).hexdigest()}"


def test_a_20_mb_download_streams_back(site: Site) -> None:
    size = 20 * MB
    conn = connection(site)
    conn.request("GET", f"/stream.jsp?size={size}&length=1")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Length") == str(size)
    body = resp.read()
    conn.close()
    assert len(body) == size and body == pattern(size)


def test_a_chunked_response_reaches_the_client_part_by_part(site: Site) -> None:
    size, parts, delay = 40_000, 4, 0.4
    conn = connection(site)
    started = time.monotonic()
    conn.request("GET", f"/stream.jsp?size={size}&parts={parts}&delay={int(delay * 1000)}")
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    first = resp.read1(65536)
    first_at = time.monotonic() - started
    rest = resp.read()
    total = time.monotonic() - started
    conn.close()
    assert first + rest == pattern(size)
    # Tomcat flushed the first part at once and slept between parts: streamed, not buffered
    assert total >= (parts - 1) * delay
    assert first_at < total - delay, (first_at, total)


def test_non_ascii_response_header_values_pass_as_latin_1_bytes(site: Site) -> None:
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:
        s.sendall(b"GET /headers.jsp HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert b"X-Latin: caf\xe9 na\xefve" in lines  # ISO-8859-1, as Tomcat sent it over AJP
    assert lines.count(b"X-Twice: one") == 1 and lines.count(b"X-Twice: two") == 1
    assert body == b"ok"


def test_tomcats_404_and_500_pass_through(site: Site) -> None:
    status, hdrs, body = http_get(f"{site.url}/no-such-page")
    assert status == 404 and b"Not Found" in body
    assert hdrs.get("Content-Type", "").startswith("text/html")
    status, _, body = http_get(f"{site.url}/fail.jsp")
    assert status == 500 and b"Internal Server Error" in body
    status, _, _ = http_get(f"{site.url}/fail.jsp?status=418")
    assert status == 418


def test_the_status_worker_lists_the_ajp_members(site: Site) -> None:
    text = site.status_txt()
    members = re.findall(r"^Member: name=(n\d) type=(\w+) ", text, re.MULTILINE)
    assert sorted(members) == [("n1", "ajp13"), ("n2", "ajp13")], text
