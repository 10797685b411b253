"""The race's bare relay (bench/bare_relay.py), run for real in front of the race's backends.

Starts one nginx serving the three backend ports (bench/backend.py) and the relay as a
process of its own (with and without --read-headers); skipped when nginx is not installed
(bench/setup.sh). Where a backend must misbehave on purpose (a head in two writes, no answer
at all), a scripted one in this process serves real TCP instead.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import backend
import pytest
import race_configs as cfg
from bare_relay import (
    closing,
    closing_head,
    command,
    parse_args,
    session_route,
    without_connection_header,
)
from race_checks import find_binary, smoke_check
from race_procs import Supervisor, free_ports, wait_http_ready

HOST = "127.0.0.1"
BARE_RELAY = Path(__file__).resolve().parent / "bare_relay.py"


def _start_relay(sup: Supervisor, workdir: Path, members: Sequence[cfg.Member], *extra: str) -> int:
    """The relay in front of members, as the race runs it; its port once it listens."""
    (port,) = free_ports(1)
    upstreams = [(m.route, m.host, m.port) for m in members]
    argv = [*command(sys.executable, (HOST, port), upstreams), *extra]
    child = sup.start("relay", argv, cpu=None, log=workdir / f"relay-{port}.log")
    deadline = time.monotonic() + 10
    while True:  # (not wait_http_ready: a scripted backend may not answer /100)
        try:
            socket.create_connection((HOST, port), timeout=10).close()
            return port
        except OSError:
            assert child.popen.poll() is None, child.log_tail()
            assert time.monotonic() < deadline, "the relay did not listen in 10 s"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Path, Supervisor, list[cfg.Member]]]:
    """The race's three nginx backends (stopped, with all the module's relays, at the end)."""
    nginx = find_binary("nginx") or pytest.skip("nginx not installed (bench/setup.sh)")
    # not under pytest's tmp_path: its parents are 0700, and nginx's worker (nobody) must read
    # the 64 KiB body file, as in the race (which uses mkdtemp too)
    workdir = Path(tempfile.mkdtemp(prefix="pyjk-relay-test-"))
    members = cfg.members_for(free_ports(3))
    sup = Supervisor(taskset=None)
    try:
        conf = backend.write_backend(members, workdir)
        back = sup.start(
            "backends", backend.nginx_argv(nginx, conf, workdir), cpu=None, log=workdir / "b.log"
        )
        for m in members:
            wait_http_ready(back, m.host, m.port, "/100", 10.0)
        yield workdir, sup, members
    finally:
        sup.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def relay(
    backends: tuple[Path, Supervisor, list[cfg.Member]],
) -> tuple[int, list[cfg.Member]]:
    """(the relay's port, its members): the race's peer `relay`."""
    workdir, sup, members = backends
    return _start_relay(sup, workdir, members), members


@pytest.fixture(scope="module")
def header_relay(
    backends: tuple[Path, Supervisor, list[cfg.Member]],
) -> tuple[int, list[cfg.Member]]:
    """(the relay's port, its members): the race's peer `relay-headers`."""
    workdir, sup, members = backends
    return _start_relay(sup, workdir, members, "--read-headers"), members


class _Scripted(socketserver.ThreadingTCPServer):
    """A backend that misbehaves on purpose, by the request's path (keep-alive, one thread per
    connection): /split sends its head in two writes, /continue a 100 and the final response in
    one, /silent never answers; anything else gets a plain 200."""

    daemon_threads = True
    allow_reuse_address = True
    RESPONSE = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self) -> None:
        super().__init__((HOST, 0), _ScriptedHandler)
        self.port: int = self.server_address[1]


class _ScriptedHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            resp = _Scripted.RESPONSE
            if path == b"/split":
                cut = resp.index(b"Content-Length")  # inside the head, after Connection:
                sock.sendall(resp[:cut])
                # not a synchronisation: the pause makes the two writes two reads for the relay
                time.sleep(0.2)
                sock.sendall(resp[cut:])
            elif path == b"/continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + resp)
            elif path != b"/silent":
                sock.sendall(resp)


@pytest.fixture()
def scripted(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(a relay's port, a header-reading relay's port), both in front of one _Scripted backend
    with a request deadline of 1 s."""
    server = _Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sup = Supervisor(taskset=None)
    members = [cfg.Member(name="node1", route="node1", port=server.port)]
    try:
        plain = _start_relay(sup, tmp_path, members)
        reading = _start_relay(sup, tmp_path, members, "--read-headers", "--request-timeout", "1")
        yield plain, reading
    finally:
        sup.stop_all()
        server.shutdown()
        server.server_close()


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


def _through_closing_head(reads: list[bytes]) -> bytes:
    out, held = b"", b""
    for data in reads:
        if held is None:  # the head is done: the rest passes untouched
            out += data
            continue
        now, held = closing_head(held, data)
        out += now
    assert held is None  # the final head was seen
    return out


def test_the_final_head_says_close_however_the_reads_split_it() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 8\r\n\r\n\r\n\r\nbody"
    want = interim + closing(final)
    assert b"keep-alive" not in want and want.count(b"Connection: close") == 1
    stream = interim + final
    for cut in range(1, len(stream)):  # every place one split can fall
        assert _through_closing_head([stream[:cut], stream[cut:]]) == want, cut
    for a in range(1, len(stream), 7):  # and three reads
        for b in range(a + 1, len(stream), 5):
            assert _through_closing_head([stream[:a], stream[a:b], stream[b:]]) == want, (a, b)


def test_interim_heads_go_out_before_the_final_head_is_whole() -> None:
    now, held = closing_head(b"", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert (now, held) == (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    ("cookie", "route"),
    [
        (b"JSESSIONID=abc.node2", b"node2"),
        (b"a=1; JSESSIONID=abc.node3; b=2", b"node3"),
        (b"JSESSIONID=abc.node1.x", b"node1.x"),  # after the *first* dot, as mod_jk
        (b"JSESSIONID=abc", b""),  # no route
        (b"XJSESSIONID=abc.node2", b""),  # another cookie's name
        (b"XJSESSIONID=abc.node2;JSESSIONID=d.node1", b"node1"),
        (b"a=b", b""),
    ],
)
def test_session_route_is_what_follows_the_first_dot_of_jsessionid(
    cookie: bytes, route: bytes
) -> None:
    assert session_route(cookie) == route


def test_relay_command_line_takes_repeated_and_comma_separated_upstreams() -> None:
    args = parse_args(["--listen", "127.0.0.1:80", "--upstream", "h:1,h:2", "--upstream", "h:3"])
    assert args.listen == ("127.0.0.1", 80)
    assert args.upstream == [("h", 1), ("h", 2), ("h", 3)]
    with pytest.raises(SystemExit):
        parse_args(["--listen", "127.0.0.1:80", "--upstream", "nohost"])
    assert not args.read_headers
    assert args.routes == [b"node1", b"node2", b"node3"]  # the default routes: by place


def test_relay_command_line_names_routes_and_reads_back() -> None:
    upstreams = [("a", "127.0.0.1", 1), ("b", "127.0.0.1", 2)]
    argv = command("/py", ("127.0.0.1", 80), upstreams, read_headers=True)
    assert argv[:2] == ["/py", str(BARE_RELAY)]
    args = parse_args(argv[2:])
    assert (args.routes, args.upstream) == ([b"a", b"b"], [("127.0.0.1", 1), ("127.0.0.1", 2)])
    assert args.read_headers and args.request_timeout == 60.0
    for bad in (["--upstream", "a=h:1,a=h:2"], ["--upstream", "=h:1"], ["--request-timeout", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--listen", "127.0.0.1:80", "--upstream", "h:3", *bad])


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
        and f"--listen {HOST}:{port} ".encode() in _cmdline(int(pid))
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
@pytest.mark.parametrize("path", ["/split", "/continue"])
def test_a_closing_response_says_close_when_its_head_comes_in_pieces(
    scripted: tuple[int, int], path: str
) -> None:
    """The final head split over two reads, or behind a 100 in one read: the client must still
    be told Connection: close (the old relay rewrote only a head whole in the first read)."""
    for port in scripted:
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            raw = _read_all(sock)
        final = raw[raw.index(b"HTTP/1.1 200") :]
        (resp,) = _responses(final, ["GET"])
        assert (resp.status, resp.body) == (200, b"ok")  # type: ignore[attr-defined]
        assert resp.getheader("Connection") == "close", raw
        assert b"keep-alive" not in raw


@pytest.mark.integration
def test_reading_relay_routes_sticky_sessions_and_balances_the_rest(
    header_relay: tuple[int, list[cfg.Member]],
) -> None:
    port, members = header_relay
    assert smoke_check(port, balanced=True, sticky=True) == []  # the race's check, sticky too
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:

        def backend_of(headers: dict[str, str], path: str = "/100") -> str:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, backend.BODY_100)
            return str(resp.getheader("X-Backend"))

        for m in members:  # each route to its member (X-Backend names the route), every time
            cookie = {"Cookie": f"a=1; JSESSIONID=x.{m.route}"}
            went = [backend_of(cookie) for _ in range(3)] + [backend_of(cookie, "/100?q=.node1")]
            assert went == [m.route] * 4
        # the session cookie in a second Cookie header line
        conn.putrequest("GET", "/100")
        conn.putheader("Cookie", "a=1")
        conn.putheader("Cookie", "JSESSIONID=y.node3")
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        assert resp.getheader("X-Backend") == "node3"
        # an unknown route, or none: round robin
        assert len({backend_of({"Cookie": "JSESSIONID=x.node9"}) for _ in range(3)}) == 3
    finally:
        conn.close()


@pytest.mark.integration
def test_a_request_past_its_deadline_is_closed_and_answered_ones_are_not(
    scripted: tuple[int, int],
) -> None:
    _, port = scripted  # the reading relay, deadline 1 s
    with socket.create_connection((HOST, port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_all(sock) == b""  # closed, with nothing said
        assert 0.9 < time.monotonic() - started < 5
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/ok")
        assert conn.getresponse().read() == b"ok"
        # not a synchronisation: outliving the first request's deadline is what is tested
        time.sleep(1.5)
        conn.request("GET", "/ok")  # the deadline was cancelled with the response: still open
        resp = conn.getresponse()
        assert (resp.status, resp.read(), resp.will_close) == (200, b"ok", False)
    finally:
        conn.close()


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
def test_an_upstream_that_refuses_gets_the_client_a_502(tmp_path: Path) -> None:
    (dead,) = free_ports(1)  # nothing listens on `dead`
    sup = Supervisor(taskset=None)
    try:
        port = _start_relay(sup, tmp_path, [cfg.Member(name="n", route="n", port=dead)])
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET /100 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(sock).startswith(b"HTTP/1.1 502 ")
    finally:
        sup.stop_all()
