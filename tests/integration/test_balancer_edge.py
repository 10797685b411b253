"""Real balancer at the edge: huge streamed bodies, malformed requests, slow clients."""

# ruff: noqa: E501  (the malformed corpus is raw request bytes, one request per line)

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.integration.conftest import BACKENDS, Stack, http_json
from tests.support.procs import free_port, memory_mib, port_open, wait_for

pytestmark = pytest.mark.integration

GIB = 1 << 30


def peak_rss_mib(pid: int) -> float:
    return memory_mib(pid, "VmHWM")


async def test_a_1_gib_body_streams_both_ways_with_bounded_memory(stack: Stack):
    stack.start_backend("n1")
    stack.start_balancer(stack.workers_properties(["n1"], "worker.max_body_size=0"))
    block = bytes(range(256)) * 256  # 64 KiB
    expected = hashlib.sha256()
    for _ in range(GIB // len(block)):
        expected.update(block)

    async def body():
        for _ in range(GIB // len(block)):
            yield block

    timeout = aiohttp.ClientTimeout(total=240)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(f"{stack.url}/app/upload", data=body()) as resp:
            assert resp.status == 200
            result = await resp.json()
        assert result == {"node": "n1", "bytes": GIB, "sha256": expected.hexdigest()}
        got = 0
        async with session.get(f"{stack.url}/app/download?size={GIB}") as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(1 << 20):
                got += len(chunk)
        assert got == GIB
    assert stack.balancer is not None
    assert peak_rss_mib(stack.balancer.pid) < 200


MALFORMED = [
    # request smuggling: both framings, duplicate / bad / empty Content-Length
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    # header syntax: obs-fold, control characters, bad names, bare LF
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nX_A: b\r\n\r\n",
    b"GET /app/x HTTP/1.1\nHost: a\n\n",
    # Host: duplicate, missing on 1.1, malformed
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nHost: a b\r\n\r\n",
    # request line: method, version, target
    b"G(T /app/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /app/x HTTP/9.1\r\nHost: a\r\n\r\n",
    b"GET /app/x\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /app/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /app/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /app/a%2fb HTTP/1.1\r\nHost: a\r\n\r\n",
    # sizes
    b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /app/x HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    + b"\r\n",
    b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
]


def _exchange(
    port: int,
    payload: bytes,
    timeout: float = 5.0,
    wrap: Callable[[socket.socket], socket.socket] = lambda s: s,
) -> bytes:
    """Send ``payload`` and a good request behind it; ``wrap`` makes it TLS (test_tls_*)."""
    with wrap(socket.create_connection(("127.0.0.1", port), timeout=timeout)) as sock:
        sock.sendall(payload)
        # a valid request pipelined behind the bad one must not reach the backend either
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /app/after HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
        return data


def test_malformed_requests_get_4xx_and_nothing_reaches_the_backend(stack: Stack, tmp_path):
    record = tmp_path / "received.bin"
    record.write_bytes(b"")
    port = free_port()
    proc = stack.group.python(str(BACKENDS / "recorder.py"), str(port), str(record), name="rec")
    wait_for(lambda: port_open(port), 10, what="recorder")
    stack.backends["n1"] = type("B", (), {"port": port, "proc": proc, "name": "n1"})()
    stack.start_balancer(stack.workers_properties(["n1"]))
    for payload in MALFORMED:
        answer = _exchange(stack.port, payload)
        code = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
        assert 400 <= code < 500 or code in (501, 505), (payload[:80], answer[:200])
        assert answer.count(b"HTTP/1.") == 1, (payload[:80], answer[:300])
        assert b"recorded" not in answer
    assert record.read_bytes() == b""
    # the same recorder does receive a good request: the corpus result is not vacuous
    ok = _exchange(stack.port, b"GET /app/fine HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200") and b"recorded" in ok
    assert b"GET /app/fine" in record.read_bytes()


def test_a_request_head_that_never_completes_gets_408_and_is_closed(stack: Stack):
    stack.start_backend("n1")
    stack.start_balancer(stack.workers_properties(["n1"], "worker.header_timeout=1"))
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: a\r\n")
        data = b""
        for _ in range(10):  # slowloris: a header line now and then, never the end
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                break
            if chunk:
                data += chunk
                continue
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        data += _read_until_closed(sock, time.monotonic() + 5)
        elapsed = time.monotonic() - began
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert 0.9 <= elapsed < 5


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize(
    ("framing", "first", "rest"),
    [
        (b"Content-Length: 10\r\n", b"01234", b"56789"),
        (b"Transfer-Encoding: chunked\r\n", b"5\r\n01234\r\n", b"5\r\n56789\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_pipelined_behind_a_slow_request_arrives_whole_in_its_turn(
    stack: Stack, framing: bytes, first: bytes, rest: bytes
):
    # The balancer stops reading a connection while a request waits behind the one in flight;
    # the waiting request's body, unfinished, must be read on when its turn comes (it hung).
    backend = stack.start_backend("n1")
    stack.start_balancer(stack.workers_properties(["n1"]))
    posts = f"http://127.0.0.1:{backend.port}/-/posts"
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(b"GET /app/slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: http_json(posts)["inflight"] == 1, 10, what="/app/slow in flight")
        sock.sendall(
            b"PUT /app/p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + framing + b"\r\n" + first
        )
        # (spacing, not waiting for anything: the rest of the body in a later read than its
        # head, while /app/slow is still in flight)
        time.sleep(0.2)
        sock.sendall(rest)
        data = _read_until_closed(sock, time.monotonic() + 10)
    assert data.count(b"HTTP/1.1 200") == 2, data[:800]
    answer = json.loads(data.rsplit(b"\r\n\r\n", 1)[1])
    assert (answer["method"], answer["body_len"]) == ("PUT", 10), answer


def test_a_slow_head_gets_its_408_on_time_while_another_client_idles_in_keep_alive(stack: Stack):
    # The client connections' deadlines share one loop timer (timer_wheel.py). The idle client,
    # woken at its first deadline, arms again for its keep-alive one 10 s ahead; the slow
    # client's header deadline, due between the two, once waited for that one.
    stack.start_backend("n1")
    extra = "worker.header_timeout=1\nworker.keepalive_timeout=10"
    stack.start_balancer(stack.workers_properties(["n1"], extra))
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as idle:
        idle_from = time.monotonic()
        idle.sendall(b"GET /app/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        # (spacing, not waiting for anything: the slow client's header deadline falls in a
        # later bucket than the idle client's first one, and before it fires)
        time.sleep(max(0.0, idle_from + 0.3 - time.monotonic()))
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as slow:
            began = time.monotonic()
            slow.sendall(b"GET /app/x HTTP/1.1\r\nHost: a\r\n")  # never the end of the head
            data = _read_until_closed(slow, began + 4)
            elapsed = time.monotonic() - began
        assert data.startswith(b"HTTP/1.1 408"), (data[:200], elapsed)
        assert 0.9 <= elapsed < 1.4  # header_timeout, and at most a tick and some slack more
        # the idle client is still open: its keep-alive deadline is 10 s away
        idle.settimeout(0.05)
        with pytest.raises(TimeoutError):
            idle.recv(1)
