"""pyjk terminates HTTPS itself: a real balancer, real TLS, certificates the test makes.

Clients are Python's ``ssl`` with a server name of the test's choosing (SNI) against
127.0.0.1; the certificates come from a test CA (tests/support/certs.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.integration.conftest import BACKENDS, Stack, http_get
from tests.integration.test_balancer_edge import MALFORMED, _exchange
from tests.integration.test_balancer_processes import each_served_more, processes, served_by_each
from tests.support.certs import Ca, Pair, make_ca, make_pair
from tests.support.procs import ROOT, free_port, port_open, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Tls:
    ca: Ca
    a: Pair  # a.test (the default)
    b: Pair  # b.test and *.b.test
    port: int

    def context(self, client: Pair | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        return ctx


def tls_args(tls: Tls, *extra: str) -> tuple[str, ...]:
    return (
        "--listen",
        f"https://127.0.0.1:{tls.port}",
        "--tls-cert",
        str(tls.a.cert),
        "--tls-key",
        str(tls.a.key),
        "--tls-cert",
        str(tls.b.cert),
        "--tls-key",
        str(tls.b.key),
        "--tls-handshake-timeout",
        "1",
        *extra,
    )


def make_tls(tmp: Path) -> Tls:
    ca = make_ca(tmp)
    a = make_pair(tmp / "certs", "a", ["a.test"], ca)
    b = make_pair(tmp / "certs", "b", ["b.test", "*.b.test"], ca)
    return Tls(ca, a, b, free_port())


def start(stack: Stack, tls: Tls, *extra: str) -> None:
    stack.start_backend("n1")
    stack.start_balancer(stack.workers_properties(["n1"]), args=tls_args(tls, *extra))
    wait_for(lambda: port_open(tls.port), 10, what="https listener")


@pytest.fixture
def tls(stack: Stack) -> Tls:
    return make_tls(stack.tmp)


def https(
    tls: Tls,
    path: str,
    name: str = "a.test",
    ctx: ssl.SSLContext | None = None,
    headers: str = "",
) -> tuple[int, bytes, x509.Certificate]:
    """One request on a new connection: (status, body, the certificate the server showed)."""
    ctx = ctx or tls.context()
    raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname=name) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {name}\r\n{headers}Connection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, cert


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def metrics(stack: Stack) -> str:
    status, _, body = http_get(f"{stack.url}/jkmanager?mime=prometheus")
    assert status == 200, body[:300]
    return body.decode()


def cn(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def test_two_names_get_their_own_certificates_and_members_learn_https(stack: Stack, tls: Tls):
    start(stack, tls)
    status, body, cert = https(tls, "/app/x", "a.test")
    assert status == 200 and cn(cert) == "CN=a.test"
    seen = json.loads(body)
    assert seen["xfproto"] == "https"
    assert seen["forwarded"] == ["for=127.0.0.1;host=a.test;proto=https"]
    assert seen["client_cert"] is None
    status, body, cert = https(tls, "/app/y", "b.test")
    assert status == 200 and cn(cert) == "CN=b.test"
    status, _, cert = https(tls, "/app/y", "www.b.test")  # the wildcard
    assert status == 200 and cn(cert) == "CN=b.test"
    # the plain listener beside it still says http, and carries no Forwarded of ours
    status, _, body = http_get(f"{stack.url}/app/z")
    assert status == 200 and json.loads(body)["xfproto"] == "http"
    assert json.loads(body)["forwarded"] == []
    # with several data-plane processes, each one's counters reach the others within 50 ms
    # (and a scrape may be answered by either process: check the one that had all three)
    scrapes: list[str] = []

    def three() -> bool:
        scrapes.append(metrics(stack))
        return "pyjk_tls_handshakes_total 3.0" in scrapes[-1]

    wait_for(three, 5, what="3 handshakes")
    text = scrapes[-1]
    assert 'pyjk_tls_handshakes_by_protocol_total{protocol="TLSv1.3"} 3.0' in text
    assert f'pyjk_tls_listener_info{{address="https://127.0.0.1:{tls.port}"}} 1.0' in text
    assert f'file="{tls.a.cert}",names="a.test"' in text  # the expiry gauge


def test_tls_1_1_and_weak_ciphers_are_refused(stack: Stack, tls: Tls):
    start(stack, tls)
    old = tls.context()
    with warnings.catch_warnings():  # deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # OpenSSL may refuse TLS 1.1 itself (seclevel)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(tls, "/app/x", ctx=old)
    cbc = tls.context()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC: not in Mozilla's intermediate list
    with pytest.raises(ssl.SSLError):
        https(tls, "/app/x", ctx=cbc)
    tls12 = tls.context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert https(tls, "/app/x", ctx=tls12)[0] == 200
    # each data-plane process publishes its TLS counters every 50 ms: poll until they are in
    expected = (
        'reason="no-shared-cipher"',
        'pyjk_tls_handshakes_by_protocol_total{protocol="TLSv1.2"} 1.0',
    )
    wait_for(lambda: all(e in metrics(stack) for e in expected), 5, what="the TLS counters")


def _raw(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if payload:
            sock.sendall(payload)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
        return data


def test_bad_input_on_the_tls_port_closes_that_connection_and_is_counted(stack: Stack, tls: Tls):
    start(stack, tls)
    # a client speaking plain HTTP to the TLS port gets nginx's 400
    answer = _raw(tls.port, b"GET /app/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"HTTPS port" in answer
    # a handshake that never starts, and one that stops half way, end at the deadline (1 s)
    began = time.monotonic()
    assert _raw(tls.port, b"") == b""
    assert _raw(tls.port, b"\x16\x03\x01") == b""
    assert time.monotonic() - began < 4.5
    # a ClientHello declaring 1 MiB is closed unread
    hello = b"\x16\x03\x01\x40\x00" + b"\x01" + (1 << 20).to_bytes(3, "big") + b"\x03\x03"
    assert _raw(tls.port, hello + b"\x00" * 1000) == b""
    # garbage that is neither TLS nor HTTP
    assert _raw(tls.port, b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09") == b""
    # an unknown server name gets the default certificate (the default policy)
    name_ctx = tls.context()
    name_ctx.check_hostname = False
    status, _, cert = https(tls, "/app/x", "unknown.test", ctx=name_ctx)
    assert status == 200 and cn(cert) == "CN=a.test"
    # nothing else was disturbed
    assert https(tls, "/app/x")[0] == 200
    expected = [
        f'pyjk_tls_handshake_failures_total{{reason="{reason}"}}'
        for reason in ("plain-http", "oversized-client-hello", "not-tls")
    ]
    expected += [
        'pyjk_tls_handshake_failures_total{reason="timeout"} 2.0',
        "pyjk_tls_sni_default_total 1.0",
    ]
    # with several data-plane processes, each one's counters reach the others within 50 ms
    wait_for(lambda: all(e in metrics(stack) for e in expected), 5, what="the TLS counters")
    assert stack.balancer is not None and stack.balancer.alive()


def test_a_certificate_directory_serves_by_name_and_refuses_unknown_names(stack: Stack, tls: Tls):
    cert_dir = stack.tmp / "tls-dir"
    make_pair(cert_dir, "shop.test", ["shop.test", "www.shop.test"], tls.ca)
    make_pair(cert_dir, "api.test", ["api.test"], tls.ca)
    stack.start_backend("n1")
    args = ("--listen", f"https://127.0.0.1:{tls.port}", "--tls-dir", str(cert_dir))
    stack.start_balancer(
        stack.workers_properties(["n1"]), args=(*args, "--tls-unknown-sni", "refuse")
    )
    wait_for(lambda: port_open(tls.port), 10, what="https listener")
    assert cn(https(tls, "/app/x", "www.shop.test")[2]) == "CN=shop.test"
    assert cn(https(tls, "/app/x", "api.test")[2]) == "CN=api.test"
    name_ctx = tls.context()
    name_ctx.check_hostname = False
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https(tls, "/app/x", "unknown.test", ctx=name_ctx)
    assert https(tls, "/app/x", "shop.test")[0] == 200
    refused = 'pyjk_tls_handshake_failures_total{reason="unknown-sni"} 1.0'
    wait_for(lambda: refused in metrics(stack), 5, what="the refusal counted")  # 50 ms publish


def test_client_certificates_reach_the_member_and_cannot_be_forged(stack: Stack, tls: Tls):
    start(stack, tls, "--tls-client-ca", str(tls.ca.cert))
    client = make_pair(stack.tmp / "client", "alice", ["alice"], tls.ca, client=True)
    forged = "Client-Cert: :Zm9yZ2Vk:\r\n"
    status, body, _ = https(tls, "/app/x", ctx=tls.context(client), headers=forged)
    assert status == 200
    sent = json.loads(body)["client_cert"]
    der = x509.load_pem_x509_certificate(client.cert.read_bytes()).public_bytes(Encoding.DER)
    assert sent == ":" + base64.b64encode(der).decode() + ":"
    # optional: no certificate is fine, and a forged header from the client is dropped
    status, body, _ = https(tls, "/app/x", headers=forged)
    assert status == 200 and json.loads(body)["client_cert"] is None


def test_check_validates_the_certificates(tmp_path: Path):
    ca = make_ca(tmp_path)
    good = make_pair(tmp_path / "c", "good", ["good.test"], ca)
    other = make_pair(tmp_path / "c", "other", ["other.test"], ca)
    expired = make_pair(tmp_path / "c", "old", ["old.test"], ca, days=-1, not_before_days=-10)
    workers = tmp_path / "workers.properties"
    workers.write_text("worker.list=n1\nworker.n1.type=http\nworker.n1.host=127.0.0.1\n")

    def check(cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
        args = ["--check", "--workers", str(workers), "--listen", "https://127.0.0.1:8443"]
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "balancer",
                *args,
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = check(good.cert, good.key)
    assert ok.returncode == 0, ok.stderr
    assert f"{good.cert} (default): good.test; expires " in ok.stdout
    mismatched = check(good.cert, other.key)
    assert mismatched.returncode == 1
    assert f"{other.key}: the key does not match the certificate {good.cert}" in mismatched.stderr
    old = check(expired.cert, expired.key)
    assert old.returncode == 1 and f"{expired.cert}: expired on" in old.stderr
    missing = check(tmp_path / "nope.crt", good.key)
    assert missing.returncode == 1 and "nope.crt: cannot read the certificate" in missing.stderr


def test_sighup_swaps_certificates_under_traffic_with_no_failed_request(stack: Stack, tls: Tls):
    start(stack, tls)
    assert stack.balancer is not None
    first_serial = https(tls, "/app/x")[2].serial_number
    failures: list[str] = []
    served: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        ctx = tls.context()
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and len(served) < 5000:
            try:
                status, _, cert = https(tls, "/app/x", ctx=ctx)
                if status != 200:
                    failures.append(f"status {status}")
                served.append(cert.serial_number)
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    # a keep-alive connection opened before the reloads: it goes on with its certificate
    kept = tls.context().wrap_socket(
        socket.create_connection(("127.0.0.1", tls.port), timeout=5), server_hostname="a.test"
    )
    try:
        wait_for(lambda: len(served) > 20, 10, what="traffic")
        # a bad pair first: rejected, the running certificate stays
        good_key = tls.a.key.read_bytes()
        tls.a.key.write_bytes(make_pair(stack.tmp / "x", "x", ["a.test"], tls.ca).key.read_bytes())
        stack.balancer.signal(signal.SIGHUP)
        wait_for(lambda: "tls reload rejected" in stack.balancer.output(), 10, what="rejection")
        assert f"{tls.a.key}: the key does not match" in stack.balancer.output()
        tls.a.key.write_bytes(good_key)
        n = len(served)
        wait_for(lambda: len(served) > n + 20, 10, what="traffic after the rejected reload")
        assert served[-1] == first_serial
        # then a new certificate for a.test: new connections get it
        make_pair(tls.a.cert.parent, "a", ["a.test"], tls.ca)
        stack.balancer.signal(signal.SIGHUP)
        wait_for(lambda: served[-1] != first_serial, 10, what="the new certificate")
        n = len(served)
        wait_for(lambda: len(served) > n + 20, 10, what="traffic after the reload")
        for _ in range(3):
            kept.sendall(b"GET /app/kept HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert read_response(kept).startswith(b"HTTP/1.1 200 ")
        kept_cert = x509.load_der_x509_certificate(kept.getpeercert(binary_form=True))
        assert kept_cert.serial_number == first_serial
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        kept.close()
    assert failures == []
    text = metrics(stack)
    assert "pyjk_tls_handshake_failures_total" in text
    assert 'reason="' not in text.split("pyjk_tls_handshake_failures_total", 1)[1].split("#")[0]


def test_the_malformed_corpus_gets_4xx_over_tls_and_nothing_reaches_the_backend(
    stack: Stack, tls: Tls
):
    record = stack.tmp / "received.bin"
    record.write_bytes(b"")
    port = free_port()
    proc = stack.group.python(str(BACKENDS / "recorder.py"), str(port), str(record), name="rec")
    wait_for(lambda: port_open(port), 10, what="recorder")
    stack.backends["n1"] = type("B", (), {"port": port, "proc": proc, "name": "n1"})()
    stack.start_balancer(stack.workers_properties(["n1"]), args=tls_args(tls))
    wait_for(lambda: port_open(tls.port), 10, what="https listener")
    ctx = tls.context()

    def wrap(sock: socket.socket) -> socket.socket:
        return ctx.wrap_socket(sock, server_hostname="a.test")

    for payload in MALFORMED:
        answer = _exchange(tls.port, payload, wrap=wrap)
        code = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
        assert 400 <= code < 500 or code in (501, 505), (payload[:80], answer[:200])
        assert answer.count(b"HTTP/1.") == 1, (payload[:80], answer[:300])
    assert record.read_bytes() == b""
    ok = _exchange(
        tls.port, b"GET /app/fine HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", wrap=wrap
    )
    assert ok.startswith(b"HTTP/1.1 200") and b"recorded" in ok


def _plain(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_hsts_and_the_https_redirect_when_asked_for(stack: Stack, tls: Tls):
    start(stack, tls, "--hsts", "31536000", "--https-redirect")
    answer = _plain(
        stack.port, b"GET /app/x?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n"
    )
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 301 ")
    assert f"Location: https://a.test:{tls.port}/app/x?q=1" in head
    assert "Strict-Transport-Security" not in head  # never over plain HTTP (RFC 6797 §7.2)
    post = _plain(
        stack.port,
        b"POST /app/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    assert post.startswith(b"HTTP/1.1 308 ")
    ctx = tls.context()
    raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname="a.test") as sock:
        sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 200 ")
    assert "Strict-Transport-Security: max-age=31536000" in head


def test_without_the_settings_there_is_no_hsts_and_no_redirect(stack: Stack, tls: Tls):
    start(stack, tls)
    assert (
        _plain(stack.port, b"GET /app/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[:12]
        == b"HTTP/1.1 200"
    )
    ctx = tls.context()
    raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname="a.test") as sock:
        sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = sock.recv(65536)
    assert b"Strict-Transport-Security" not in data


def test_a_session_resumes_on_either_process_and_after_reloads(stack: Stack, tls: Tls):
    start(stack, tls, "--processes", "2", "--tls-session-tickets", "60")
    wait_for(lambda: len(processes(stack)) == 2, 20, what="two processes")
    ctx = tls.context()

    def one(session: ssl.SSLSession | None) -> tuple[bool, ssl.SSLSession | None]:
        raw = socket.create_connection(("127.0.0.1", tls.port), timeout=5)
        with raw, ctx.wrap_socket(raw, server_hostname="a.test", session=session) as sock:
            sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            return sock.session_reused, sock.session

    _, session = one(None)
    before = [0, 0]
    reused = [one(session)[0] for _ in range(24)]  # new connections: both processes take some
    each_served_more(stack, before)
    assert all(reused), reused
    # a reload (files and certificates) and a URI-map-only one keep the keys of the period
    assert stack.balancer is not None and stack.mounts_file is not None
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "generation=2" in stack.balancer.output(), 10, what="the reload")
    stack.mounts_file.write_text(stack.mounts_file.read_text() + "/other|/*=lb\n")
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "generation=3" in stack.balancer.output(), 10, what="the second reload")
    assert all(one(session)[0] for _ in range(12))


def test_a_rejected_file_on_sighup_still_renews_every_processes_certificate(stack: Stack, tls: Tls):
    """A typo in workers.properties and a renewed certificate, one SIGHUP, --processes 2: the
    file is rejected, and every process serves the new certificate all the same (before: the
    supervisor published no generation, so no process read the certificates again)."""
    start(stack, tls, "--processes", "2")
    wait_for(lambda: len(processes(stack)) == 2, 20, what="two processes")
    assert stack.balancer is not None and stack.workers_file is not None
    first = https(tls, "/app/x")[2].serial_number
    stack.workers_file.write_text(stack.workers_file.read_text() + "worker.n1.prot=1\n")
    make_pair(tls.a.cert.parent, "a", ["a.test"], tls.ca)
    stack.balancer.signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in stack.balancer.output(), 10, what="the rejection")
    before = served_by_each(stack)

    def renewed() -> bool:
        return all(https(tls, "/app/x")[2].serial_number != first for _ in range(8))

    wait_for(renewed, 10, what="the new certificate")
    for _ in range(16):  # new connections: both processes take some, all with the new one
        assert https(tls, "/app/x")[2].serial_number != first
    each_served_more(stack, before)
    assert "worker.n1.prot" in stack.balancer.output()  # the bad line was named
