"""The floor of pyjk's stack: a bare HTTP/1.1 keep-alive reverse proxy on uvloop + httptools.

A benchmark peer, not a product. It answers one question in the proxy race (``--peers
pyjk,relay,nginx``): how cheap can a request be on the stack pyjk chose — asyncio protocols on
uvloop's transports, llhttp through httptools, Python callbacks — once every feature is gone?
What pyjk costs above this relay is pyjk; what this relay costs above nginx is the stack.

    python bench/bare_relay.py --listen 127.0.0.1:8080 \\
        --upstream 127.0.0.1:8201 --upstream 127.0.0.1:8202,127.0.0.1:8203

What it does, and nothing more: one process, one event loop; each request goes to the next
upstream in round robin, on an idle keep-alive connection from that upstream's pool (a new one
when the pool is empty). Request and response bytes pass through unchanged: the parsers only
find where a message ends (Content-Length, chunked, close-delimited), whether the client wants
the connection closed, and whether an upstream connection can go back to the pool. No routing
decision, no header checks, no logging, no counters. Large responses use the transports' flow
control (a full client buffer pauses reading from the upstream, and the other way round).

With ``--read-headers`` (the race's peer ``relay-headers``) it does the least any real balancer
on this stack must also do per request: hand the URL and every header to Python (httptools'
``on_url`` and ``on_header``), keep the path, Host and Cookie (bytes, never decoded), send a
request whose ``JSESSIONID`` carries a known route after its first dot to that member (mod_jk's
sticky session; ``--upstream ROUTE=HOST:PORT``, by default node1, node2, ... in order) and the
others in round robin, and bound each request with its own timer (``loop.call_later``, cancelled
when the response is complete). Without it the relay is the floor of moving bytes; with it, the
floor of a balancer.

Choices a real proxy would make differently, kept because they are cheap and honest:

* The one rewrite: a request carrying ``Connection: close`` has that header removed before it
  goes upstream, so the upstream connection stays pooled (nginx and pyjk do the same: every
  peer in the race keeps its upstream pool in the close scenarios), and its response head gets
  ``Connection: close`` instead of the upstream's ``keep-alive`` before the relay closes the
  client connection (a client such as wrk believes the response head, not the close).
* A request deadline (--read-headers) closes the client connection when it passes; a real
  proxy would answer 504 when nothing of the response has been sent yet. Only arming and
  cancelling the timer is the cost measured; a race never lets one fire.
* Pipelined requests stay on the upstream connection of the first one until every response
  has come back (no per-request offsets from httptools, so the bytes are not split).
* HEAD responses and pipelined responses behind a HEAD take a slow path (the response parser
  cannot be told that a HEAD response has no body); interim 1xx responses are relayed and not
  counted; upgrades (101, CONNECT) are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import httptools
import uvloop

MAX_HEAD = 64 * 1024  # a request head still incomplete at this size is refused (431)
REQUEST_TIMEOUT = 60.0  # --read-headers: seconds a request may take (nginx's proxy_read_timeout)
_CONNECTION_LINE = re.compile(rb"\r\nconnection:[^\r\n]*(?=\r\n|\Z)", re.IGNORECASE)


def _reply(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


BAD_REQUEST = _reply(b"400 Bad Request")
HEAD_TOO_LARGE = _reply(b"431 Request Header Fields Too Large")
NOT_IMPLEMENTED = _reply(b"501 Not Implemented")
BAD_GATEWAY = _reply(b"502 Bad Gateway")


def without_connection_header(data: bytes, replacement: bytes = b"") -> bytes:
    """The message with the Connection lines of its head removed, and replacement (a header
    line with its leading CRLF) added at the end of the head; body bytes untouched."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    return _CONNECTION_LINE.sub(b"", data[:end]) + replacement + data[end:]


def closing(data: bytes) -> bytes:
    """A response head (with what follows) that says Connection: close."""
    return without_connection_header(data, b"\r\nConnection: close")


def closing_head(held: bytes, data: bytes) -> tuple[bytes, bytes | None]:
    """(what can go to the client now, what must wait) of a response stream whose final head
    must say Connection: close. held is what waited from earlier reads. Interim (1xx) heads pass
    as they are; the final head is rewritten once its end is in; nothing waits (None) after it.

    A head can arrive split over reads, and a 1xx and the final head can share one: the rewrite
    needs the final head whole, or the upstream's keep-alive would reach the client."""
    buf = held + data if held else data
    start = 0
    while True:
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            return buf[:start], buf[start:]
        if buf[start + 9 : start + 10] != b"1":  # "HTTP/1.1 1xx": not the final response
            return closing_at(buf, start, end), None
        start = end + 4


def closing_at(buf: bytes, start: int, end: int) -> bytes:
    """buf with the head from start to end (where its blank line begins) saying Connection:
    close. closing() with the head's end already found: searching a response twice for it cost
    the close scenarios ~2.5k instructions per request."""
    head = _CONNECTION_LINE.sub(b"", buf[start:end])
    return buf[:start] + head + b"\r\nConnection: close" + buf[end:]


def session_route(cookie: bytes) -> bytes:
    """The route of the JSESSIONID in a Cookie header: after the first dot of its value, as
    mod_jk reads it (reference §3.5); b"" when there is none."""
    at = cookie.find(b"JSESSIONID=")
    while at > 0 and cookie[at - 1] not in b" ;":  # e.g. XJSESSIONID=: another cookie's name
        at = cookie.find(b"JSESSIONID=", at + 11)
    if at < 0:
        return b""
    value_end = cookie.find(b";", at)
    value = cookie[at + 11 : value_end if value_end >= 0 else len(cookie)]
    dot = value.find(b".")
    return value[dot + 1 :].strip() if dot >= 0 else b""


class Relay:
    """What every connection shares: the upstreams, their idle pools, the round-robin cursor,
    and (--read-headers) the members' routes and the request deadline."""

    __slots__ = ("loop", "next", "pools", "routes", "timeout", "upstreams")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        upstreams: Sequence[tuple[str, int]],
        routes: Sequence[bytes] = (),
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.loop = loop
        self.upstreams = list(upstreams)
        self.pools: list[list[Upstream]] = [[] for _ in self.upstreams]
        self.next = 0
        self.routes = {route: i for i, route in enumerate(routes)}
        self.timeout = timeout


class Client(asyncio.Protocol):
    """One client connection. Between requests it holds no upstream; from a request head to the
    end of its response (and of any requests pipelined behind it) it owns one."""

    __slots__ = (
        "close_after",  # the client asked for Connection: close (or spoke HTTP/1.0)
        "heads",  # numbers (nreq) of outstanding HEAD requests, in order
        "hold",  # bytes waiting: a head not yet complete, or an upstream still connecting
        "in_msg",  # the request parser is inside a message
        "member",  # the member chosen for the request just parsed; -1: round robin
        "nreq",  # request heads seen on this connection
        "nresp",  # final responses relayed on it
        "parser",
        "reading_paused",  # we paused reading the client: the upstream's buffer was full
        "relay",
        "timers",  # deadlines of the requests not answered yet, in order (--read-headers)
        "transport",
        "up",  # the upstream connection owned now, or None
        "writing_paused",  # the client's buffer is full: don't read from an upstream
    )

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.up: Upstream | None = None
        self.hold: bytes | bytearray | None = None
        self.heads: deque[int] = deque()
        # (a shared empty tuple: a deque per connection would cost the plain relay's close
        # scenarios an allocation it has no use for; HeaderClient brings its own)
        self.timers: deque[asyncio.TimerHandle] | tuple[()] = ()
        self.member = -1
        self.nreq = self.nresp = 0
        self.in_msg = self.close_after = False
        self.reading_paused = self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    # -- httptools callbacks (three: framing and the connection's fate; see HeaderClient) ------

    def on_message_begin(self) -> None:
        self.in_msg = True

    def on_headers_complete(self) -> None:
        self.nreq += 1
        parser = self.parser
        if not parser.should_keep_alive():
            self.close_after = True
        if parser.get_method() == b"HEAD":
            self.heads.append(self.nreq)

    def on_message_complete(self) -> None:
        self.in_msg = False
        if self.up is not None and self.nresp == self.nreq:
            # The upstream answered before the request ended (an early error response): the
            # rest of the request is not worth sending, and the connection is out of step.
            self.fail(None)

    # -- the transport's events -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        up = self.up
        if up is not None:
            # An exchange is on: the bytes go to its upstream as they are (a body, or requests
            # pipelined behind it). They are parsed only to see where messages end.
            if self.hold is None:
                up.transport.write(data)
            else:
                self.hold += data  # the upstream is still connecting
            self._feed(data)
            return
        # The common case from here on: a new request, its head whole in data. _feed and the
        # taking of an upstream are written out here (one Python call less each, per request).
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._refuse(exc)
            return
        if self.hold is not None:  # the start of this head came earlier (already parsed)
            data = self.hold + data
            self.hold = None
        if self.nreq == self.nresp:  # the head is not complete yet
            if self.in_msg:
                if len(data) > MAX_HEAD:
                    self.fail(HEAD_TOO_LARGE)
                else:
                    self.hold = data
            return  # (without in_msg: only the blank lines allowed between requests)
        closes = self.close_after and self.nreq == self.nresp + 1
        if closes:
            data = without_connection_header(data)
        relay = self.relay
        i = self.member
        if i < 0:
            i = relay.next
            relay.next = i + 1 if i + 1 < len(relay.upstreams) else 0
        pool = relay.pools[i]
        if pool:
            up = pool.pop()
            up.client = self
            self.up = up
            if self.writing_paused:
                up.pause()
            up.transport.write(data)
        else:
            up = Upstream(relay, i)
            up.client = self
            self.up = up
            self.hold = bytearray(data)
            relay.loop.create_task(up.connect())
        up.closing = closes

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._refuse(exc)

    def _refuse(self, exc: Exception) -> None:
        upgrade = isinstance(exc, httptools.HttpParserUpgrade)
        self.fail(NOT_IMPLEMENTED if upgrade else BAD_REQUEST)

    def fail(self, reply: bytes | None) -> None:
        """Drop the exchange (if any) and close, after writing reply (if any)."""
        up = self.up
        if up is not None:
            self.up = None
            up.client = None
            up.close()
        if reply is not None and not self.transport.is_closing():
            self.transport.write(reply)
        self.transport.close()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.up is not None:
            self.up.pause()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.up is not None:
            self.up.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        # The parser holds bound methods of this object: a reference cycle that would wait for
        # the cyclic collector, once per connection (pyjk measured it: docs/benchmarks.md).
        self.parser = None
        for timer in self.timers:  # (each holds this object for as long as the deadline)
            timer.cancel()
        up = self.up
        if up is not None:  # a response (or a request body) was in flight: the upstream is dirty
            self.up = None
            up.client = None
            up.close()


class HeaderClient(Client):
    """--read-headers: a client connection that also does what every balancer on this stack
    must do per request, and nothing else: read the URL and the headers in Python, keep the
    path, Host and Cookie, choose the member by the session's route, arm a deadline."""

    __slots__ = ("cookie", "host", "path", "url")

    def __init__(self, relay: Relay) -> None:
        super().__init__(relay)
        self.timers = deque()
        self.url = self.path = self.host = self.cookie = b""

    def on_message_begin(self) -> None:
        self.in_msg = True
        self.url = self.host = self.cookie = b""

    def on_url(self, url: bytes) -> None:
        self.url += url  # llhttp hands the URL over in pieces when it spans reads

    def on_header(self, name: bytes, value: bytes) -> None:
        # (httptools joins a name or value split over reads before calling this)
        n = len(name)  # the length first: most headers are neither, and cost no lower()
        if n == 4 and name.lower() == b"host":
            self.host = value
        elif n == 6 and name.lower() == b"cookie":
            self.cookie = self.cookie + b"; " + value if self.cookie else value

    def on_headers_complete(self) -> None:
        Client.on_headers_complete(self)
        url = self.url
        query = url.find(b"?")
        self.path = url if query < 0 else url[:query]  # what a URI map would match
        relay = self.relay
        cookie = self.cookie
        self.member = relay.routes.get(session_route(cookie), -1) if cookie else -1
        self.timers.append(relay.loop.call_later(relay.timeout, self.expire))  # type: ignore[union-attr]

    def expire(self) -> None:
        """A request's deadline passed before its response was complete."""
        self.fail(None)


class Upstream(asyncio.Protocol):
    """One connection to an upstream: idle in its pool, or owned by one client."""

    __slots__ = (
        "client",
        "closing",  # the response head to come must say Connection: close (closing_head())
        "done",  # set by on_message_complete (the slow path feeds byte by byte)
        "headbuf",  # the slow path's bytes of a HEAD response's head
        "held",  # response bytes waiting for the end of the head closing_head() rewrites
        "index",
        "parser",
        "paused",
        "relay",
        "reusable",
        "transport",
    )

    def __init__(self, relay: Relay, index: int) -> None:
        self.relay = relay
        self.index = index
        self.client: Client | None = None
        self.transport: asyncio.Transport | None = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.reusable = True
        self.paused = self.done = self.closing = False
        self.headbuf = bytearray()
        self.held = b""

    async def connect(self) -> None:
        host, port = self.relay.upstreams[self.index]
        try:
            await self.relay.loop.create_connection(lambda: self, host, port)
        except OSError:
            client = self.client
            if client is not None:
                client.fail(BAD_GATEWAY)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        client = self.client
        if client is None:  # the client left while we connected: a fresh connection to keep
            if self.reusable:
                self.relay.pools[self.index].append(self)
            else:
                transport.close()
            return
        if client.writing_paused:
            self.pause()
        transport.write(bytes(client.hold or b""))  # type: ignore[attr-defined]
        client.hold = None

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # bytes on an idle connection: it is out of step, drop it
            self.close()
            return
        if self.closing:
            end = -1 if self.held or data[9:10] == b"1" else data.find(b"\r\n\r\n")
            if end > 0:  # the common case: a final head whole in one read (one call less)
                self.closing = False
                client.transport.write(closing_at(data, 0, end))
            else:
                out, held = closing_head(self.held, data)
                self.held = held or b""
                self.closing = held is not None
                if out:
                    client.transport.write(out)
        else:
            client.transport.write(data)
        try:
            if client.heads:
                self._slow(client, data)
            else:
                self.parser.feed_data(data)
        except httptools.HttpParserError:
            client.fail(None)

    def on_message_complete(self) -> None:
        parser = self.parser
        if parser.get_status_code() < 200:
            return  # interim (100 Continue): the final response follows
        self.done = True
        if not parser.should_keep_alive():
            self.reusable = False
        self.response_done()

    def response_done(self) -> None:
        """A final response is relayed whole: the exchange ends when it was the last one."""
        client = self.client
        if client is None:
            return
        client.nresp += 1
        if client.timers:  # (--read-headers) this request's deadline
            client.timers.popleft().cancel()
        if client.nresp == client.nreq and not client.in_msg:
            # Every response is back and no request is half sent: the exchange ends, and this
            # connection goes back to its pool. (Written out here, not as a method of the
            # client: one Python call less per request.)
            client.up = None
            self.client = None
            if self.paused:
                self.resume()
            if client.reading_paused:
                client.reading_paused = False
                client.transport.resume_reading()
            if self.reusable:
                self.relay.pools[self.index].append(self)
            else:
                self.transport.close()  # type: ignore[union-attr]
            if client.close_after:
                client.transport.close()
        elif not self.reusable:
            client.fail(None)  # requests pipelined behind this response will not be answered

    def _slow(self, client: Client, data: bytes) -> None:
        """A HEAD request is outstanding: find each response's end without trusting its
        Content-Length when it answers a HEAD, and byte by byte otherwise (so the parser
        never reads past the response before a HEAD's)."""
        i, n = 0, len(data)
        while i < n and self.client is client:
            if client.heads and client.heads[0] == client.nresp + 1:
                before = len(self.headbuf)
                self.headbuf += data[i:]
                end = self.headbuf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.headbuf[: end + 4])
                self.headbuf.clear()
                i += end + 4 - before
                if head[9:10] == b"1":
                    continue  # interim
                client.heads.popleft()
                lowered = head.lower()
                if b"\r\nconnection: close" in lowered or head.startswith(b"HTTP/1.0"):
                    self.reusable = False
                self.response_done()
            else:
                self.done = False
                while i < n and not self.done:
                    self.parser.feed_data(data[i : i + 1])
                    i += 1

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        client = self.client
        if client is not None and not client.reading_paused:
            client.reading_paused = True
            client.transport.pause_reading()

    def resume_writing(self) -> None:
        client = self.client
        if client is not None and client.reading_paused:
            client.reading_paused = False
            client.transport.resume_reading()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if client is None:
            pool = self.relay.pools[self.index]
            if self in pool:
                pool.remove(self)
            return
        # A close-delimited body ends here, or the upstream went away mid-exchange: either way
        # the client learns the end of the response from the close.
        self.client = None
        client.up = None
        client.transport.close()


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host, int(port)


def command(
    python: str,
    listen: tuple[str, int],
    upstreams: Sequence[tuple[str, str, int]],
    *,
    read_headers: bool = False,
) -> list[str]:
    """This relay's command line: upstreams as (route, host, port), in round-robin order."""
    argv = [python, str(Path(__file__).resolve()), "--listen", f"{listen[0]}:{listen[1]}"]
    for route, host, port in upstreams:
        argv += ["--upstream", f"{route}={host}:{port}"]
    return [*argv, "--read-headers"] if read_headers else argv


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=address, required=True, help="HOST:PORT to serve")
    p.add_argument(
        "--upstream",
        action="append",
        required=True,
        help="[ROUTE=]HOST:PORT of an upstream (repeat, or comma-separated); round robin in this "
        "order; ROUTE (for --read-headers) defaults to nodeN, N its place from 1",
    )
    p.add_argument("--backlog", type=int, default=1024, help="listen backlog (as pyjk's)")
    p.add_argument(
        "--read-headers",
        action="store_true",
        help="the floor of a balancer: read URL, Host and Cookie, route sticky sessions, arm a "
        "deadline per request",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        help="--read-headers: seconds a request may take (default %(default)s)",
    )
    args = p.parse_args(argv)
    items = [a for item in args.upstream for a in item.split(",") if a]
    args.routes = []
    try:
        args.upstream = [address(a.rpartition("=")[2]) for a in items]
    except argparse.ArgumentTypeError as exc:
        p.error(f"--upstream: {exc}")
    for n, item in enumerate(items, 1):
        route, sep, _ = item.rpartition("=")
        if sep and not route:
            p.error(f"--upstream: empty route in {item!r}")
        args.routes.append((route or f"node{n}").encode())
    if len(set(args.routes)) < len(args.routes):
        p.error(f"--upstream: a route named twice in {b','.join(args.routes).decode()}")
    if not args.request_timeout > 0:
        p.error("--request-timeout: want seconds > 0")
    return args


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    relay = Relay(loop, args.upstream, args.routes, args.request_timeout)
    host, port = args.listen
    protocol = HeaderClient if args.read_headers else Client
    server = await loop.create_server(
        lambda: protocol(relay), host, port, backlog=args.backlog, reuse_address=True
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    where = ", ".join(f"{h}:{p}" for h, p in relay.upstreams)
    bound = server.sockets[0].getsockname()
    mode = " (reading headers)" if args.read_headers else ""
    print(f"bare_relay: listening on http://{bound[0]}:{bound[1]} -> {where}{mode}", flush=True)
    try:
        await stop
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        uvloop.run(serve(args))
    except OSError as exc:
        print(f"bare_relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
