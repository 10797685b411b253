"""The race's bare relay (bench/bare_relay.py), run for real in front of the race's backends.

Starts one nginx serving the three backend ports (bench/backend.py) and the relay as a
process of its own; skipped when nginx is not installed (bench/setup.sh).
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import backend
import pytest
import race_configs as cfg
from bare_relay import closing, parse_args, without_connection_header
from race_checks import find_binary, smoke_check
from race_procs import Supervisor, free_ports, wait_http_ready

HOST = "127.0.0.1"
BARE_RELAY = Path(__file__).resolve().parent / "bare_relay.py"


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[int, list[cfg.Member]]]:
    """(the relay's port, its members); both processes are stopped even when a test fails."""
    nginx = find_binary("nginx") or pytest.skip("nginx not installed (bench/setup.sh)")
    # not under pytest's tmp_path: its parents are 0700, and nginx's worker (nobody) must read
    # the 64 KiB body file, as in the race (which uses mkdtemp too)
    workdir = Path(tempfile.mkdtemp(prefix="pyjk-relay-test-"))
    port, *ports = free_ports(4)
    members = cfg.members_for(ports)
    sup = Supervisor(taskset=None)
    try:
        conf = backend.write_backend(members, workdir)
        back = sup.start(
            "backends", backend.nginx_argv(nginx, conf, workdir), cpu=None, log=workdir / "b.log"
        )
        for m in members:
            wait_http_ready(back, m.host, m.port, "/100", 10.0)
        upstreams = [a for m in members for a in ("--upstream", f"{m.host}:{m.port}")]
        argv = [sys.executable, str(BARE_RELAY), "--listen", f"{HOST}:{port}", *upstreams]
        child = sup.start("relay", argv, cpu=None, log=workdir / "relay.log")
        wait_http_ready(child, HOST, port, "/100", 10.0)
        yield port, members
    finally:
        sup.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


class _Unclosable:
    """One buffered reader shared by several HTTPResponse objects (pipelined responses):
    each would otherwise close it, or buffer past its own response in a reader of its own."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw = raw

    def makefile(self, _mode: str) -> _Unclosable:
        return self

    def __getattr__(self, name: str) -> object:
        return getattr(self.raw, name)

    def close(self) -> None:
        pass


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes (a socket timeout fails the test instead of hanging)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _responses(raw: bytes, methods: list[str]) -> list[http.client.HTTPResponse]:
    shared = _Unclosable(io.BufferedReader(io.BytesIO(raw)))  # type: ignore[arg-type]
    out = []
    for method in methods:
        resp = http.client.HTTPResponse(shared, method=method)  # type: ignore[arg-type]
        resp.begin()
        resp.body = resp.read()  # type: ignore[attr-defined]
        out.append(resp)
    return out


def _upstream_connections(pid: int, ports: set[int]) -> int:
    """Established TCP connections of process pid to the given local ports (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and remote_port in ports and fields[9] in inodes:
            count += 1
    return count


# -- pure helpers ----------------------------------------------------------------------------


def test_connection_lines_leave_the_request_head_and_nothing_else() -> None:
    req = b"POST / HTTP/1.1\r\nHost: x\r\nconnection: Close\r\nX: 1\r\n\r\nConnection: close"
    assert without_connection_header(req) == b"POST / HTTP/1.1\r\nHost: x\r\nX: 1\r\n\r\n" + (
        b"Connection: close"  # the body is not the head
    )
    last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert without_connection_header(last) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_closing_response_says_so_once() -> None:
    resp = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    assert closing(resp) == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def test_relay_command_line_takes_repeated_and_comma_separated_upstreams() -> None:
    args = parse_args(["--listen", "127.0.0.1:80", "--upstream", "h:1,h:2", "--upstream", "h:3"])
    assert args.listen == ("127.0.0.1", 80)
    assert args.upstream == [("h", 1), ("h", 2), ("h", 3)]
    with pytest.raises(SystemExit):
        parse_args(["--listen", "127.0.0.1:80", "--upstream", "nohost"])


# -- the real relay --------------------------------------------------------------------------


@pytest.mark.integration
def test_keep_alive_connection_carries_small_and_64k_responses_round_robin(
    relay: tuple[int, list[cfg.Member]],
) -> None:
    port, _ = relay
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        seen = []
        sock = None
        for path, size in [("/100", 100), ("/64k", 65536)] * 3:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert (resp.status, len(body)) == (200, size)
            assert body == backend.PATHS[path[1:]]  # whole and in order, not just the length
            assert not resp.will_close
            assert sock is None or conn.sock is sock  # one client connection for all six
            sock = conn.sock
            seen.append(resp.getheader("X-Backend"))
    finally:
        conn.close()
    # round robin: each member in turn (where the cycle starts depends on earlier requests)
    assert len(set(seen[:3])) == 3 and seen[:3] == seen[3:]


@pytest.mark.integration
@pytest.mark.parametrize(("path", "size"), [("/100", 100), ("/64k", 65536)])
def test_connection_close_gets_its_response_then_the_close(
    relay: tuple[int, list[cfg.Member]], path: str, size: int
) -> None:
    port, _ = relay
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = _read_all(sock)  # returns only when the relay closes
    (resp,) = _responses(raw, ["GET"])
    assert (resp.status, len(resp.body)) == (200, size)  # type: ignore[attr-defined]
    assert resp.getheader("Connection") == "close"  # and the head says so
    assert len(raw) == raw.index(b"\r\n\r\n") + 4 + size  # nothing after the response


@pytest.mark.integration
def test_closing_clients_leave_the_upstream_connections_pooled(
    relay: tuple[int, list[cfg.Member]],
) -> None:
    port, members = relay
    relay_pid = _relay_pid(port)
    for _ in range(9):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET /100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_all(sock).endswith(backend.BODY_100)
    # Connection: close went no further than the relay: the upstream did not close its side
    backend_ports = {m.port for m in members}
    assert _upstream_connections(relay_pid, backend_ports) >= len(members)
    deadline = time.monotonic() + 2  # nothing closes them later either
    while time.monotonic() < deadline:
        assert _upstream_connections(relay_pid, backend_ports) >= len(members)
        time.sleep(0.2)


def _relay_pid(port: int) -> int:
    return next(
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit()
        and str(BARE_RELAY).encode() in _cmdline(int(pid))
        and f"{HOST}:{port}".encode() in _cmdline(int(pid))
    )


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


@pytest.mark.integration
def test_pipelined_requests_with_a_head_and_a_post_come_back_in_order(
    relay: tuple[int, list[cfg.Member]],
) -> None:
    port, _ = relay
    requests = (
        b"GET /100 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /64k HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /100 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /64k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(requests)
        raw = _read_all(sock)
    got = _responses(raw, ["GET", "HEAD", "POST", "GET"])
    assert [(r.status, len(r.body)) for r in got] == [  # type: ignore[attr-defined]
        (200, 100),
        (200, 0),
        (200, 100),
        (200, 65536),
    ]
    assert got[1].getheader("Content-Length") == "65536"  # the HEAD's, relayed, no body


@pytest.mark.integration
def test_malformed_request_gets_400_and_a_close(relay: tuple[int, list[cfg.Member]]) -> None:
    port, _ = relay
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"GET /100 HTTP/1.1\r\nHost x\r\n\r\n")
        raw = _read_all(sock)
    assert raw.startswith(b"HTTP/1.1 400 ")


@pytest.mark.integration
def test_race_smoke_check_passes_without_the_sticky_part(
    relay: tuple[int, list[cfg.Member]],
) -> None:
    port, _ = relay
    assert smoke_check(port, balanced=True, sticky=False) == []
    # the relay has no stickiness: with the sticky part the check reports exactly that
    problems = smoke_check(port, balanced=True, sticky=True)
    assert len(problems) == 1 and "not sticky" in problems[0]


@pytest.mark.integration
def test_a_client_that_reads_late_still_gets_every_64k_response_whole(
    relay: tuple[int, list[cfg.Member]],
) -> None:
    """300 pipelined 64 KiB responses (19.7 MB) are more than the sockets hold: the relay must
    pause the upstream while the client does not read, and lose nothing."""
    port, _ = relay
    pid = _relay_pid(port)
    peak_before = _peak_rss_kib(pid)
    n = 300
    requests = b"GET /64k HTTP/1.1\r\nHost: x\r\n\r\n" * (n - 1)
    requests += b"GET /64k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(requests)
        time.sleep(0.5)  # not a synchronisation: the client is deliberately slow to read
        raw = _read_all(sock)
    got = _responses(raw, ["GET"] * n)
    assert all(r.body == backend.BODY_64K for r in got)  # type: ignore[attr-defined]
    # and it did so by pausing, not by holding the megabytes the client had not read yet
    assert _peak_rss_kib(pid) - peak_before < 4096


@pytest.mark.integration
def test_an_upstream_that_refuses_gets_the_client_a_502() -> None:
    dead, port = free_ports(2)  # nothing listens on `dead`
    sup = Supervisor(taskset=None)
    workdir = Path(tempfile.mkdtemp(prefix="pyjk-relay-test-"))
    try:
        argv = [sys.executable, str(BARE_RELAY), "--listen", f"{HOST}:{port}"]
        child = sup.start(
            "relay", [*argv, "--upstream", f"{HOST}:{dead}"], cpu=None, log=workdir / "relay.log"
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection((HOST, port), timeout=10)
                break
            except OSError:
                assert child.popen.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with sock:
            sock.sendall(b"GET /100 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(sock).startswith(b"HTTP/1.1 502 ")
    finally:
        sup.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
