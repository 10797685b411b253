"""The upstream side: one pooled keep-alive HTTP/1.1 connection to a member.

Parses responses with llhttp (strict) and checks what llhttp lets through: the status range,
the version, control bytes in the reason phrase, and Transfer-Encoding other than chunked.
Anything wrong is a BAD_RESPONSE and never reaches the client.

llhttp gets no per-field callback: the head's bytes are kept as they arrive and read once llhttp
has accepted them whole (response_head.py), so the fields pyjk does not act on cost no Python
object and reach the client as the member wrote them.

Nor does it get a body callback: llhttp still reads every byte (it checks the framing and says
where the message ends), but the body is relayed from the reads themselves. The connection
knows where the head ended in the read that held it (``body_at``) and follows the body from
there: a Content-Length body by counting down what is left (``body_left``), a chunked one with
``ChunkLines`` (the offsets of the chunk data), a close-delimited one to the end of every read.
A read that is all body goes to the client as the same object, a large piece of one as a
``memoryview`` of it: no copy and no Python call per piece (httptools' ``on_body`` made a
``bytes`` copy of every piece and called back for it; issue 12, session 6). A piece goes as a
``memoryview`` only when it is over 4 KiB *and* at least an eighth of its read (of a read
buffer, an eighth of the buffer: 32 KiB), else it is copied: the view keeps the whole read
alive (up to 256 KiB) while the client transport's write-buffer limit counts only the piece,
so a slow client's queued pieces hold at most eight times what that limit counts. Where
llhttp and the count disagree on the end, the response is refused (BAD_RESPONSE), never
relayed on a guess.

While its responses are large, the connection shows uvloop a buffered protocol
(``BufferedReads``): the kernel copies a read into a buffer of read_buffers.py, and a large read
of a response in flight is relayed from that buffer (``buffer_read``): its body pieces as views
of it, the head copied out of it (``ResponseFields`` keeps the head's bytes) — found by its
blank line, only when the read begins with a final status line, which llhttp then reads and
checks as before. Every other read is copied out first and taken as ``data_received`` takes a
read, and so is every read while the connection's last buffered read is still viewed: one
connection holds at most one buffer of the pool (``read_buffers.take``), however slow its
client. Otherwise uvloop calls ``data_received`` with a new ``bytes`` of every read: a 64 KiB
copy, ``malloc`` and ``free`` per 64 KiB response, but for a small response ~1.1k instructions
less than the buffered protocol's two calls per read (issue 12, session 7). A response of
``_LARGE`` bytes or more makes the connection read buffered from the next read on;
``_SMALL_RUN`` small ones in a row make it read plainly again (``_choose_reads``) — decided
only when the connection is kept for the next request. Only uvloop reads buffered for a
protocol that is no subclass of ``asyncio.BufferedProtocol`` (``BufferedReads``, compiled, is
an extension type): on the stdlib loop, pyjk's fallback, the connection always reads plainly.

The connection reports to the exchange that owns it (``exchange``): a response head, body
chunks, the end, or a failure. The end of a response is reported only after llhttp has
returned, so a connection handed back to the pool is never fed the rest of an old read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from balancer.dataplane import head_bytes as hb
from balancer.dataplane import http11 as h
from balancer.dataplane import read_buffers as rb
from balancer.dataplane.chunk_lines import ChunkLines
from balancer.dataplane.deadlines import next_deadline
from balancer.dataplane.http_request import ACTIVATION_FIELDS, activation_field, request_head
from balancer.dataplane.member_connection import MemberSocket
from balancer.dataplane.response_head import ResponseFields
from balancer.lb.decisions import OutcomeKind

if TYPE_CHECKING:
    from balancer.dataplane.exchange import Exchange
    from balancer.dataplane.pool import MemberPool


_STANDARD_REASONS = frozenset(h.REASONS.values())

# how the body of the response being read is followed (``body_kind``)
_BODY_NONE = 0  # no body: a 1xx, 204 or 304, or none yet
_BODY_LENGTH = 1  # Content-Length: ``body_left`` bytes to come
_BODY_CHUNKED = 2  # chunked: ``lines`` follows the framing
_BODY_CLOSE = 3  # to the end of the connection
# a body piece up to this size is copied out of its read (one small copy that the relay joins
# with the head); a larger one goes as a memoryview of the read, when it is a large share of it
_COPY_MAX = 4096
# ... at least 1/_VIEW_SHARE of the read, else it is copied too: a memoryview keeps its whole
# read alive while the client transport's write-buffer limit (Limits.write_buffer_high) counts
# only the piece. Without this a member writing small chunks between long chunk extensions (or
# heads) made each ~4 KiB piece hold a 256 KiB read: a paused client could hold ~64 times
# write_buffer_high; now at most _VIEW_SHARE times
_VIEW_SHARE = 8
# the most ``body_left`` holds (a C long long, compiled): llhttp takes a Content-Length up to
# 2**64 - 1, and a body that long is followed as one that never ends (llhttp still ends it)
_LEFT_MAX = 1 << 62
# a read into a read buffer is relayed from it (as views) only from this size on: a view
# keeps the whole buffer alive, so at most _VIEW_SHARE times what the client's limit counts
_VIEW_MIN = rb.SIZE // _VIEW_SHARE
# a response of this many bytes (head and body) or more: the next ones are read buffered ...
_LARGE = 16 * 1024
# ... until this many smaller ones in a row (a switch costs a set_protocol: not every time)
_SMALL_RUN = 16
_DIGIT_1 = 49  # "1" of a 1xx status
_H = 72  # "HTTP/"
_T = 84
_P = 80
_SLASH = 47
# Run from this .py (PYJK_PURE=1, or not built) the read buffer is a bytearray, not a C pointer
_PURE = __file__.endswith(".py")


class UpstreamConnection(MemberSocket):
    __slots__ = (
        "body_at",
        "body_kind",
        "body_left",
        "chunked_up",
        "close_delimited",
        "error",
        "face",
        "head",
        "head_stop",
        "head_tail",
        "in_body",
        "keep_alive",
        "lent",
        "lines",
        "msg_done",
        "parser",
        "rbuf",
        "read_size",
        "request_done_at",
        "small_run",
        "timer_at",
    )

    def __init__(self, pool: MemberPool) -> None:
        super().__init__(pool)
        self.parser = HttpResponseParser(self)
        self.head = ResponseFields()
        self.timer_at = 0.0
        self.request_done_at = 0.0
        self.chunked_up = False  # this request's body goes up chunked
        self.body_kind = _BODY_NONE
        self.body_left = 0
        self.body_at = 0  # where the body begins in the read being parsed
        self.read_size = 0  # the size of that read
        self.head_tail = 0  # bytes of that read after what the head was given of it
        self.rbuf: bytearray | None = None  # the buffer of the read uvloop is making
        self.lent: bytearray | None = None  # the last pooled one: while viewed, no other
        self.face: BufferedReads | None = None  # what uvloop reads for, while reads are buffered
        self.small_run = 0  # small responses in a row while reads are buffered
        self.lines: ChunkLines | None = None
        self._reset()

    def _reset(self) -> None:
        self._reset_head()
        self.close_delimited = False
        self.keep_alive = True
        self.in_body = False
        self.msg_done = False
        self.head_stop = False
        self.error = ""
        self.body_kind = _BODY_NONE

    # --- connection life ------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.face = None
        self._cancel_timer()
        if self.tunnel is not None:
            self.tunnel.side_lost(self)
            return
        ex = self.exchange
        self.pool.lost(self)
        if ex is None:
            return
        if self.close_delimited and self.in_body and exc is None:
            ex.upstream_complete(False)  # the response ends where the connection does
        else:
            sent_all = ex.body_done_up
            kind = (
                OutcomeKind.READ_FAILED if (sent_all or self.received) else OutcomeKind.SEND_FAILED
            )
            reason = "connection-reset" if exc is not None else "connection-closed"
            ex.upstream_failed(kind, reason)
        ex.flush()

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            return self.tunnel.side_eof(self)
        return False

    def pause_writing(self) -> None:
        self.write_paused_at = self.loop.time()
        if self.tunnel is not None:
            self.tunnel.pause_from(self)
        elif self.exchange is not None:
            self.exchange.client.pause_body()

    def resume_writing(self) -> None:
        self.write_paused_at = 0.0
        if self.tunnel is not None:
            self.tunnel.resume_from(self)
        elif self.exchange is not None:
            self.exchange.client.resume_body()

    def close(self) -> None:
        self._cancel_timer()
        self.exchange = None
        self._close_transport()

    # --- one request --------------------------------------------------------------------------

    def send_request(self, ex: Exchange, reply_timeout: float, head_request: bool) -> None:
        """``ex`` owns the connection now: write its request head and the body read so far,
        framed for this try."""
        self.exchange = ex
        self.received = 0
        self.msg_done = self.in_body = False
        self.body_kind = _BODY_NONE
        self.head.clear()
        self.head_request = head_request
        self.reply_timeout = reply_timeout
        self.request_done_at = 0.0
        self.socket_timeout = st = self.pool.socket_timeout
        if st:
            self.last_read = self.loop.time()
            self._arm_by(self.last_read + st)
        # the parts of the head (http_request.py), this try's fields added: joined once
        parts = request_head(ex)
        activation = ex.fwd.activation  # type: ignore[union-attr]
        fields = ACTIVATION_FIELDS  # a typed dict in the compiled build: get() is a C call
        parts.append(fields.get(activation) or activation_field(activation))
        req = ex.req
        body = ex.body
        complete = ex.body_complete
        # re-framed always: Content-Length when the length is known (a chunked body read
        # whole goes up with its length), chunked otherwise
        pieces: list[bytes]  # the body read so far, as it goes up
        if req.chunked and not complete:
            self.chunked_up = True
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
            pieces = []
            for data in body:
                pieces += h.chunk(data)
        else:
            self.chunked_up = False
            if req.chunked:
                parts.append(b"Content-Length: %d\r\n\r\n" % ex.body_size)
            elif req.content_length is not None:
                parts.append(b"Content-Length: %d\r\n\r\n" % req.content_length)
            else:
                parts.append(b"\r\n")
            pieces = body
        transport = self.transport
        assert transport is not None
        data = hb.join(parts)  # compiled: a C join (head_bytes.py)
        if len(pieces) < 3:  # (a chunk is three pieces: a chunked body goes by writelines)
            if pieces:
                pieces = [data, *pieces]
                data = hb.join(pieces)
            ex.sent = len(data)
            transport.write(data)
        else:
            pieces = [data, *pieces]
            ex.sent = sum(map(len, pieces))
            transport.writelines(pieces)
        if body or not complete:
            ex.request_out(complete)
        else:  # the common bodiless request: request_out's outcome without the call (speed)
            ex.request_sent = ex.body_done_up = True
        if ex.client.pause_flags:
            ex.client.pending_taken()
        if complete and self.reply_timeout:
            self.request_done()

    def body_data(self, data: bytes) -> None:
        """More of the client's body, after the head went out."""
        ex = self.exchange
        transport = self.transport
        if ex is None or transport is None:
            return
        if self.chunked_up:
            pieces = h.chunk(data)
            transport.writelines(pieces)
            ex.sent += len(data) + len(pieces[0]) + 2
        else:
            transport.write(data)
            ex.sent += len(data)

    def request_done(self) -> None:
        """The whole request went out: the reply timeout runs from now."""
        if self.chunked_up:
            self.chunked_up = False
            ex = self.exchange
            if self.transport is not None:
                self.transport.write(h.LAST_CHUNK)
            if ex is not None:
                ex.sent += 5
        if self.reply_timeout:
            self.request_done_at = now = self.loop.time()
            when = now + self.reply_timeout
            if self.timer is None:
                self.last_read = now
                self._arm(when)
            elif self.timer_at > when:  # _arm_by(when)
                self._arm(when)

    def detach(self) -> None:
        """The exchange is done with this connection (before it goes back to the pool).

        A pending timer is left to fire: with no exchange it does nothing, and a request that
        reuses the connection before then keeps it when its own deadline is later (one timer
        per deadline span rather than a new timer and a cancel for every request)."""
        self.exchange = None
        if self.read_paused:
            self.resume_reading_for_client()

    # --- bytes in ----------------------------------------------------------------------------

    def read_buffer(self) -> bytearray:
        """The buffer uvloop reads into while reads are buffered: read_buffers.py. (Not named
        ``get_buffer``: uvloop would take the connection itself for a buffered protocol.)"""
        buf = self.rbuf = rb.take(self.lent)
        if rb.viewable(buf):
            self.lent = buf
        return buf

    def buffer_read(self, nbytes: int) -> None:
        """uvloop read ``nbytes`` into the buffer ``read_buffer`` gave. A large read of a
        response in flight is relayed from the buffer: the body as views of it, the head (when
        the read begins one) copied out; any other read is copied out whole first."""
        buf = self.rbuf
        assert buf is not None
        self.rbuf = None
        p = buf  # compiled: a C pointer into the buffer
        n = nbytes
        if n >= _VIEW_MIN and self.exchange is not None and rb.viewable(buf):
            if self.in_body:
                if self.body_kind != _BODY_CHUNKED:  # (ChunkLines reads bytes: copied)
                    self._read(memoryview(buf)[:n], p, b"")
                    return
            elif (
                not self.head.buf
                and p[9] != _DIGIT_1  # a 1xx head and the final one: copied
                and p[0] == _H
                and p[1] == _T
                and p[2] == _T
                and p[3] == _P
                and p[4] == _SLASH
            ):
                # a final head begins the read: no field line holds CR or LF, so its first
                # blank line ends it — the head llhttp reads, or one it refuses
                end = _head_end(buf, p, n)
                if end:
                    self._read(memoryview(buf)[:n], p, _bytes_of(p, 0, end))
                    return
        self.data_received(_bytes_of(p, 0, n))

    def data_received(self, data: bytes) -> None:
        self._read(data, data, data)

    def _read(self, data: bytes | memoryview, p: bytes | bytearray, head_data: bytes) -> None:
        """A read: ``data`` (``p``: its bytes), of which ``head_data`` (all of it, or the bytes
        of the head that begins it) goes to the head while one is being read."""
        ex = self.exchange
        if ex is None:
            if self.tunnel is not None:
                self.tunnel.data_from(self, data)
            else:
                self.pool.discard(self)  # bytes nobody asked for: the stream is out of step
            return
        n = self.read_size = len(data)
        self.received += n
        if self.timer is not None:
            self.last_read = self.loop.time()
        if not self.in_body:
            self.head.add(head_data)  # read when llhttp has accepted it (on_headers_complete)
            self.head_tail = n - len(head_data)
        self.body_at = 0  # (on_headers_complete moves it past a head that ends in this read)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            if self.exchange is ex:
                ex.upstream_upgraded(_bytes_of(p, exc.args[0], n))
                return
        except HttpParserError as exc:
            if self.exchange is ex:
                if self.head_stop:
                    self._head_response_done(ex, data)
                else:
                    # bytes after a complete response: its body is relayed, as far as it went
                    # (llhttp checked it), before the try fails
                    if self.msg_done and self.body_kind:
                        self._relay(ex, data, p)
                    reason, self.error = self.error or f"bad-response: {exc}", ""
                    ex.upstream_failed(OutcomeKind.BAD_RESPONSE, reason)
            ex.flush()
            return
        if self.body_kind and self.exchange is ex and not self._relay(ex, data, p):
            ex.upstream_failed(OutcomeKind.BAD_RESPONSE, "bad-response: body framing")
            ex.flush()
            return
        if self.msg_done and self.exchange is ex:
            if self.keep_alive and (self.received >= _LARGE or self.face is not None):
                self._choose_reads()  # (a connection not kept is read no more)
            ex.upstream_complete(self.keep_alive)
            return
        if not self.in_body and self.received > self.pool.max_response_head:
            # llhttp buffers a field until it ends: a backend cannot make us hold an endless head
            ex.upstream_failed(OutcomeKind.BAD_RESPONSE, "bad-response: head too large")
        if ex.wbuf:
            ex.flush()

    def _choose_reads(self) -> None:
        """A response was read whole: how to read the next ones (see the module's docstring)."""
        if self.received >= _LARGE:
            self.small_run = 0
            if self.face is None:
                self._read_buffered(True)
            return
        self.small_run += 1
        if self.small_run >= _SMALL_RUN:
            self._read_buffered(False)

    def _read_buffered(self, on: bool) -> None:
        transport = self.transport
        if transport is None or self.closed or (on and not _buffers_reads(self.loop)):
            return
        self.small_run = 0
        self.face = BufferedReads(self) if on else None
        # uvloop restarts its reading with the other kind of callbacks (even while paused)
        transport.set_protocol(self.face or self)  # type: ignore[arg-type]

    def _relay(self, ex: Exchange, data: bytes | memoryview, p: bytes | bytearray) -> bool:
        """Relay the body bytes of ``data`` (a read llhttp has just accepted; ``p``: its bytes,
        compiled a C pointer to them, see _piece), from ``body_at``; False when llhttp and the
        body's own framing disagree on where it ends."""
        at = self.body_at
        n = len(data)
        kind = self.body_kind
        if kind == _BODY_LENGTH:
            take = n - at
            left = self.body_left
            if take > left:
                take = left  # (only with bytes after the response: llhttp refused them)
            if take > 0:
                self.body_left = left = left - take
                if take == n:
                    ex.upstream_body(data)  # a read that is all body: the same object
                else:
                    ex.upstream_body(_piece(data, p, at, at + take))
            return (left == 0) == self.msg_done
        if kind == _BODY_CLOSE:
            if at == 0:
                ex.upstream_body(data)
            elif n > at:
                ex.upstream_body(_piece(data, p, at, n))
            return True
        lines = self.lines
        assert lines is not None
        if type(data) is not bytes:
            data = _bytes_of(p, 0, n)  # a view of a read buffer: ChunkLines reads bytes
        spans: list[tuple[int, int]] = []
        lines.feed(data, at, spans)
        for begin, end in spans:
            ex.upstream_body(_piece(data, p, begin, end))
        return not lines.bad and lines.done == self.msg_done

    def _head_response_done(self, ex: Exchange, data: bytes | memoryview) -> None:
        # llhttp cannot be told that a response answers HEAD: it stopped at the head (see
        # on_headers_complete) and a fresh parser takes over. The connection is reused only
        # when the read ended exactly with the head.
        self.parser = HttpResponseParser(self)
        self.head_stop = False
        keep = self.keep_alive and data[-4:] == b"\r\n\r\n"  # (data: bytes or a view)
        ex.upstream_head()
        if self.exchange is ex:
            ex.upstream_complete(keep)

    # llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.msg_done:
            self.keep_alive = False  # a second response to one request
            raise h.ParserStop
        # _reset(), inlined: this runs for every response (the head: on_headers_complete)
        self.chunked = self.close_delimited = self.in_body = False
        self.body_kind = _BODY_NONE

    def on_headers_complete(self) -> None:
        # llhttp has accepted the whole head: read it from its bytes (no on_status/on_header
        # callbacks, see the module's docstring)
        head = self.head
        head.read_head()
        status = head.status
        self.status = status
        if not 100 <= status <= 599:
            self.error = f"bad-response: status {status}"
            raise h.ParserStop
        if not head.http1:
            self.error = "bad-response: version"
            raise h.ParserStop
        reason = self.reason = head.reason
        # "OK" first: compiled, a C comparison where the set lookup is a Python call
        if reason != b"OK" and reason not in _STANDARD_REASONS and not h.valid_reason(reason):
            self.error = "bad-response: reason phrase"
            raise h.ParserStop
        te = head.te
        if te is not None:
            if te.strip(b" \t").lower() != b"chunked":
                self.error = "bad-response: transfer-encoding"
                raise h.ParserStop
            self.chunked = True
        self.fields = head.fields
        self.content_length = head.content_length
        self.set_cookies = head.set_cookies
        self.upgrade = head.upgrade
        self.keep_alive = self.parser.should_keep_alive()
        if status >= 200:
            # where the body begins in the read being parsed: the head's bytes end with it
            buf = head.buf
            more = head.more
            held = len(buf) if more is None else len(more)
            if self.head_tail and head.start != held:
                # (buffer_updated gave the head the read up to its first blank line: llhttp's
                # head cannot end elsewhere — and if it did, no byte is relayed on a guess)
                self.error = "bad-response: head"
                raise h.ParserStop
            self.body_at = self.read_size - self.head_tail - (held - head.start)
            head.clear()  # the final head: the reads that follow are body
            self.in_body = True
            if self.head_request:
                self.head_stop = True
                raise h.ParserStop
            length = self.content_length
            self.close_delimited = not self.chunked and length is None and status not in (204, 304)
            if status == 204 or status == 304:
                self.body_kind = _BODY_NONE  # (llhttp reads no body after them)
            elif self.chunked:
                self.body_kind = _BODY_CHUNKED
                self.lines = ChunkLines()
            elif length is not None:
                self.body_kind = _BODY_LENGTH
                self.body_left = length if length < _LEFT_MAX else _LEFT_MAX
            else:
                self.body_kind = _BODY_CLOSE
        # 1xx: for 101 HttpParserUpgrade follows, for the others the final response does
        ex = self.exchange
        assert ex is not None
        ex.upstream_head()
        if self.exchange is not ex:
            raise h.ParserStop

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.msg_done = True

    # --- timeouts -----------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _arm_by(self, when: float) -> None:
        """Make sure the timer fires by ``when``; an earlier one is kept (when it fires,
        ``_on_timer`` works out the deadline that applies then)."""
        if self.timer is None or self.timer_at > when:
            self._arm(when)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        ex = self.exchange
        if ex is None or self.closed:
            return
        now = self.loop.time()
        if self.read_paused:
            self.last_read = now  # we stopped reading for a slow client: not the backend's fault
        last_read = self.last_read
        done_at = self.request_done_at
        # the reply clock starts once the request is complete (and restarts with each read)
        due = next_deadline(
            max(last_read, done_at) if done_at else None,
            self.reply_timeout,
            last_read,
            self.socket_timeout,
            self.write_paused_at,
        )
        if due is None:
            return
        best, kind, reason = due
        if now < best:
            self._arm(best)
            return
        ex.upstream_failed(kind, reason)
        ex.flush()


class BufferedReads:
    """What a member connection shows uvloop while its responses are large: a buffered
    protocol (``get_buffer``/``buffer_updated``; see the module's docstring). Every other call
    uvloop makes goes to the connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.conn.read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.conn.buffer_read(nbytes)

    def eof_received(self) -> bool:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


def _piece(
    data: bytes | memoryview, p: bytes | bytearray, begin: int, end: int
) -> bytes | memoryview:
    """The body bytes ``begin:end`` of the read ``data`` (``p``: its bytes): a small piece
    copied (the relay joins it with what goes before it), a large one a ``memoryview`` of the
    read (no copy) — unless it is less than 1/_VIEW_SHARE of the read, which the view would keep
    alive for it: then it is copied as well."""
    size = end - begin
    whole = rb.SIZE if type(data) is memoryview else len(data)  # (a view: of a read buffer)
    if size <= _COPY_MAX or size * _VIEW_SHARE < whole:
        return _bytes_of(p, begin, end)
    if type(data) is memoryview:
        return data[begin:end]  # (a read buffer's view: one view less)
    return memoryview(data)[begin:end]


def _buffers_reads(loop: object) -> bool:
    """uvloop reads into a protocol's buffer for any protocol with ``get_buffer``; asyncio's
    own transports only for ``asyncio.BufferedProtocol`` subclasses, which ``BufferedReads``
    (compiled, an extension type) cannot be."""
    return type(loop).__module__.startswith("uvloop")


def _bytes_of(p: bytes | bytearray, begin: int, end: int) -> bytes:
    """A copy of the bytes ``begin:end`` of ``p`` (a read, or a read buffer)."""
    if _PURE:
        return bytes(p[begin:end])
    # compiled: p is a C pointer and p[a:b] a bytes object made straight from it (data[a:b]
    # would build a slice object and two ints to get there)
    return p[begin:end]  # type: ignore[return-value]


def _head_end(buf: bytearray, p: bytes | bytearray, n: int) -> int:
    """The offset just past the first blank line (CRLF CRLF) in the first ``n`` bytes of
    ``buf`` (``p``: its bytes), 0 when there is none."""
    if _PURE:
        at = buf.find(b"\r\n\r\n", 0, n)
        return at + 4 if at >= 0 else 0
    # compiled: libc's memchr from line end to line end (upstream.pxd); a head's lines are
    # short, and memmem's generic search cost ~5 times as much over a typical head
    at = 0
    while at < n:
        found = _memchr(p + at, 10, n - at)  # type: ignore[name-defined,operator]  # noqa: F821
        if not found:
            return 0
        at = found - p + 1  # past the LF
        if at >= 4 and p[at - 2] == 13 and p[at - 3] == 10 and p[at - 4] == 13:
            return at  # type: ignore[no-any-return]
    return 0
