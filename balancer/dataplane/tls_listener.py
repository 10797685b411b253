"""HTTPS listening sockets: accept, look at the ClientHello, hand the socket over to TLS.

A TLS listener does not use ``create_server(ssl=...)``: there, a handshake that fails or
stalls disappears inside the event loop (uvloop logs it at debug level and drops the
connection), so nothing could be counted or answered. Instead each accepted socket waits, under
the handshake deadline, until its first bytes arrive; they are *peeked*
(``MSG_PEEK``, nothing consumed) and judged by ``hello_verdict``:

- not a TLS handshake record: plain HTTP gets nginx's answer (400, "plain HTTP request sent to
  HTTPS port") and anything else is closed;
- a ClientHello that declares more than ``max_client_hello`` bytes is closed unread;
- otherwise the socket goes to ``loop.connect_accepted_socket(..., ssl=ctx,
  ssl_handshake_timeout=<what is left of the deadline>)``, which raises with OpenSSL's reason
  when the handshake fails — each failure is counted by reason (``tls.failure_reason``).

The certificates in use (``Certificates``) are swapped whole by ``Terminator.reload``; each
handshake takes the contexts current when it starts, so connections in flight keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from balancer.dataplane.tls import (
    Certificates,
    TlsError,
    TlsSettings,
    TlsStats,
    failure_reason,
    load_certificates,
)
from balancer.dataplane.tls_tickets import SECRET_SIZE, TicketKeys, TicketRatchet, period_of

log = logging.getLogger("pyjk.tls")

MORE = "more"  # hello_verdict: not enough bytes yet
PEEK = 9  # record header (5) + handshake header (4)
POLL_AGAIN = 0.02  # s between looks at a ClientHello that arrives a few bytes at a time
ACCEPT_BATCH = 64
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n"
    b"Connection: close\r\n\r\nThe plain HTTP request was sent to an HTTPS port\n"
)


def hello_verdict(head: bytes, max_client_hello: int) -> str | None:
    """What the first bytes of a connection say: None (a ClientHello: go on), ``MORE``, or
    the reason to close it (``plain-http``, ``not-tls``, ``oversized-client-hello``)."""
    if not head:
        return MORE
    if head[0] != 0x16:  # TLS record type "handshake"
        # an HTTP method starts with a capital letter (GET, POST, PRI * HTTP/2.0, ...)
        return "plain-http" if 0x41 <= head[0] <= 0x5A else "not-tls"
    if len(head) < PEEK:
        return MORE
    if head[1] != 3 or head[5] != 1:  # record version 3.x, handshake type ClientHello
        return "not-tls"
    declared = int.from_bytes(head[6:9], "big")
    if declared > max_client_hello:
        return "oversized-client-hello"
    return None


class Terminator:
    """The certificates and counters all HTTPS listeners of a process share."""

    def __init__(
        self,
        settings: TlsSettings,
        now: datetime | None = None,
        ticket_secret: tuple[int, bytes] | None = None,
    ) -> None:
        self.stats = TlsStats()
        self.settings = settings
        # the session ticket keys (tls_tickets.py): with --processes N from the period and
        # secret the supervisor published, so every process has the same keys
        self.tickets: TicketKeys | None = None
        if settings.ticket_rotation > 0:
            period, secret = ticket_secret or (
                self._period_now(settings),
                secrets.token_bytes(SECRET_SIZE),
            )
            self.tickets = TicketKeys(TicketRatchet(period, secret))
        self.shared_keys = True  # False where OpenSSL's keys cannot be set (see rotate)
        self.certs = self._load(settings, now)  # TlsError: nothing to serve

    @property
    def period(self) -> int:
        """The ticket key period the contexts have (-1: no tickets)."""
        return self.tickets.ratchet.period if self.tickets is not None else -1

    def _load(self, settings: TlsSettings, now: datetime | None) -> Certificates:
        certs = load_certificates(settings, now)
        certs.default.sni_callback = self._sni_callback(certs)
        if settings.ticket_rotation > 0 and self.tickets is not None:
            self.tickets.ratchet.advance(self._period_now(settings))
            self._set_keys(certs)
        return certs

    @staticmethod
    def _period_now(settings: TlsSettings) -> int:
        return period_of(time.time(), settings.ticket_rotation)

    def _set_keys(self, certs: Certificates) -> None:
        """The ratchet's ticket keys on every context of ``certs`` (a rebuilt context gets
        the keys it had, so a reload does not end the sessions of the period)."""
        assert self.tickets is not None
        contexts = (certs.default, *certs.exact.values(), *certs.wildcard.values())
        if not all([self.tickets.install(ctx) for ctx in contexts]) and self.shared_keys:
            self.shared_keys = False
            log.warning("tls session ticket keys cannot be set here: each context has its own")

    def rotate_keys(self, period: int) -> None:
        """Ratchet forward to the keys of ``period``: the previous period's keys still open
        (and renew) tickets; older ones no longer resume. Every context reads the ratchet."""
        if self.tickets is not None and self.tickets.ratchet.advance(period):
            log.info("tls session ticket keys rotated period=%d", period)

    def _sni_callback(self, certs: Certificates) -> Callable[[Any, str | None, Any], int | None]:
        # a refusal fails the handshake with OpenSSL's CALLBACK_FAILED: counted there
        refuse = certs.settings.unknown_sni == "refuse"
        stats = self.stats

        def choose(ssl_object: Any, server_name: str | None, _ctx: Any) -> int | None:
            ctx = certs.context_for(server_name)
            if ctx is None:
                if refuse:
                    return 112  # ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
                stats.sni_default += 1
                return None
            if ctx is not certs.default:
                ssl_object.context = ctx
            return None

        return choose

    def reload(self, settings: TlsSettings | None = None, why: str = "reloaded") -> bool:
        """Read the certificates again; on any error keep the running ones (and say why)."""
        settings = settings or self.settings
        try:
            certs = self._load(settings, None)
        except TlsError as exc:
            self.stats.reload_failures += 1
            log.error("tls reload rejected: %s; the running certificates stay", exc)
            return False
        self.certs, self.settings = certs, settings
        self.stats.reloads += 1
        log.info(
            "tls %s: %s",
            why,
            " ".join(f"{i.cert_file}(until {i.not_after:%Y-%m-%d})" for i in certs.infos),
        )
        return True

    async def rotate(self) -> None:
        """With session tickets on: the next period's keys at each period boundary (the
        same instant in every process). Where the keys cannot be set, new contexts (fresh
        random keys) every ``ticket_rotation`` seconds instead."""
        while (rotation := self.settings.ticket_rotation) > 0:
            if not self.shared_keys:
                await asyncio.sleep(rotation)
                self.reload(why="session ticket keys rotated")
                continue
            await asyncio.sleep(max(0.0, (self.period + 1) * rotation - time.time()) + 0.001)
            period = period_of(time.time(), rotation)
            if period != self.period:
                self.rotate_keys(period)


class _Waiting:
    """An accepted socket whose ClientHello has not been judged yet."""

    __slots__ = ("deadline", "sock", "timer")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None


class TlsListener:
    """One HTTPS listening socket. ``factory`` makes the client Protocol (as create_server's)."""

    def __init__(
        self,
        terminator: Terminator,
        factory: Callable[[], asyncio.Protocol],
        has_room: Callable[[], bool],
    ) -> None:
        self.terminator = terminator
        self.factory = factory
        # whether one more connection may wait for its handshake: the proxy's one cap
        # (worker.max_connections) counts these and the established connections together
        self.has_room = has_room
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self.waiting: set[_Waiting] = set()
        self.handshaking: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(
        self, host: str, port: int, backlog: int = 1024, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``host:port``, or on ``sock``: a listening socket made elsewhere (a
        supervisor's, shared by its data-plane processes)."""
        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=backlog)
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; drop connections still before or in their handshake."""
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for w in list(self.waiting):
            self._drop(w, None)
        for task in self.handshaking:
            task.cancel()

    # --- accept and judge the first bytes ---------------------------------------------------

    def _accept(self) -> None:
        assert self.sock is not None
        stats = self.terminator.stats
        timeout = self.terminator.settings.handshake_timeout
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: the next readiness tries again
                log.warning("tls accept failed: %s", exc)
                return
            if not self.has_room():
                stats.failed("overload")
                sock.close()
                continue
            sock.setblocking(False)
            w = _Waiting(sock, self.loop.time() + timeout)
            self.waiting.add(w)
            w.timer = self.loop.call_at(w.deadline, self._drop, w, "timeout")
            self.loop.add_reader(sock.fileno(), self._look, w)

    def _look(self, w: _Waiting) -> None:
        try:
            head = w.sock.recv(PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(w, "closed")
            return
        if not head:
            self._drop(w, "closed")
            return
        verdict = hello_verdict(head, self.terminator.settings.max_client_hello)
        if verdict is None:
            self._handover(w)
        elif verdict == MORE:
            # the peeked bytes stay readable: look again a little later instead of spinning
            self.loop.remove_reader(w.sock.fileno())
            self.loop.call_later(POLL_AGAIN, self._look_again, w)
        else:
            if verdict == "plain-http":
                with contextlib.suppress(OSError):
                    w.sock.recv(65536)  # read the request, so closing sends FIN, not RST
                    w.sock.send(PLAIN_HTTP_ANSWER)
            self._drop(w, verdict)

    def _look_again(self, w: _Waiting) -> None:
        if w in self.waiting:
            self.loop.add_reader(w.sock.fileno(), self._look, w)

    def _drop(self, w: _Waiting, reason: str | None) -> None:
        if w not in self.waiting:
            return
        self.waiting.discard(w)
        if w.timer is not None:
            w.timer.cancel()
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(w.sock.fileno())
        if reason is not None:
            self.terminator.stats.failed(reason)
        w.sock.close()

    # --- the handshake ------------------------------------------------------------------------

    def _handover(self, w: _Waiting) -> None:
        self.waiting.discard(w)
        if w.timer is not None:
            w.timer.cancel()
        self.loop.remove_reader(w.sock.fileno())
        left = max(0.001, w.deadline - self.loop.time())
        task = self.loop.create_task(self._handshake(w.sock, left))
        self.handshaking.add(task)
        task.add_done_callback(self.handshaking.discard)

    async def _handshake(self, sock: socket.socket, timeout: float) -> None:
        terminator = self.terminator
        ctx = terminator.certs.default  # the certificates as loaded now, for this connection
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                self.factory, sock, ssl=ctx, ssl_handshake_timeout=timeout
            )
        except Exception as exc:
            terminator.stats.failed(failure_reason(exc))
            log.debug("tls handshake failed: %r", exc)
            with contextlib.suppress(OSError):
                sock.close()
            return
        ssl_object = transport.get_extra_info("ssl_object")
        cipher = ssl_object.cipher() if ssl_object is not None else None
        terminator.stats.handshake_done(
            ssl_object.version() if ssl_object is not None else None,
            cipher[0] if cipher else None,
        )
