"""The fields of a member's response head that pyjk reads, scanned from the head's own bytes.

The http member connection (upstream.py) gives llhttp no per-field callback: a Python call and
two bytes objects per field were most of what reading a response cost (issue 12). Once llhttp
has accepted a head whole (strict: CRLF line ends, token names, no control bytes in values,
no obs-fold, Content-Length digits and duplicates, Content-Length with Transfer-Encoding) the
connection hands its bytes to ``ResponseFields.scan``, which looks at one thing per field —
its name — and makes Python objects only for the fields pyjk acts on:

- framing: Content-Length (kept; its value read), Transfer-Encoding (dropped; the relay frames
  the body itself);
- Connection (dropped, and the fields its tokens name), the other hop-by-hop fields (dropped),
  Upgrade (dropped; kept for the 101 head);
- Set-Cookie (kept; the values let the relay see whether the member sets the routing cookie).

Every other field goes to the client as the member wrote it: ``fields`` is the head's field
lines (each ending with CRLF) less the dropped ones, as the slices of the read between them —
one slice for a head with nothing to drop; the relay joins them into the client's head with
its own lines, so they are copied once.

The status line is read here too (status, version, reason phrase): llhttp's getters build a
version string per response, and its status callback a bytes object per read.

Compiled (response_head.pxd) the scan is a C loop over the bytes; ``PYJK_PURE=1`` runs this
same loop in Python (slower, same results: the unit tests run both).
"""

from __future__ import annotations

from collections.abc import Sequence

from balancer.dataplane import head_bytes as hb
from balancer.dataplane import http11 as h

_CR = 13
_LF = 10
_H = 72  # "H" of "HTTP/"
_DIGIT_0 = 48
_DIGIT_1 = 49
_O = 79
_K = 75
_SP = 32
_OK = b"OK"
# the kinds of http11.RESPONSE_HEADERS, as C ints in the compiled build
_CONTENT_LENGTH = h.R_CONTENT_LENGTH
_TRANSFER_ENCODING = h.R_TRANSFER_ENCODING
_CONNECTION = h.R_CONNECTION
_HOP = h.R_HOP
_UPGRADE = h.R_UPGRADE
_SET_COOKIE = h.R_SET_COOKIE


class ResponseFields:
    """The bytes of a response head as they arrive, and what ``scan`` read of the last head;
    one per connection, reused for every response.

    The connection gives ``add`` every read until llhttp has accepted the final head (usually
    one read holds it whole, and it is kept without a copy), calls ``read_head`` from llhttp's
    headers-complete callback, and ``clear`` before the next request.
    """

    __slots__ = (
        "buf",
        "conn_tokens",
        "content_length",
        "fields",
        "http1",
        "more",
        "reason",
        "set_cookies",
        "start",
        "status",
        "te",
        "upgrade",
    )

    def __init__(self) -> None:
        self.buf = b""  # the first read of the head
        self.more: bytearray | None = None  # the reads so far, once a head spans several
        self.start = 0  # where the next head begins in them (after a 1xx)
        self.status = 0
        self.http1 = False  # HTTP/1.0 or HTTP/1.1
        self.reason = b""
        self.fields: list[bytes] = []
        self.content_length: int | None = None
        self.te: bytes | None = None
        self.conn_tokens: list[bytes] | None = None
        self.upgrade: bytes | None = None
        self.set_cookies: list[bytes] | None = None

    def add(self, data: bytes) -> None:
        """A read that holds (a part of) a head llhttp is still reading."""
        if not self.buf:
            self.buf = data
            return
        if self.more is None:
            self.more = bytearray(self.buf)
        self.more += data  # bounded: the connection fails a head over max_response_head_size

    def read_head(self) -> None:
        """llhttp has just accepted a head (it checked all of it): read its fields."""
        buf = self.buf if self.more is None else bytes(self.more)
        self.start = self.scan(buf, self.start)

    def clear(self) -> None:
        """Forget the bytes of the last head (its fields stay readable)."""
        self.buf = b""
        self.more = None
        self.start = 0

    def scan(self, buf: bytes, start: int) -> int:
        """Read the head that begins at ``start`` of ``buf`` — one llhttp has accepted, so
        every line ends with CRLF and every field line has a colon — and return the offset
        just past its blank line (where a following response begins, after a 1xx)."""
        # compiled: a C pointer to the bytes (response_head.pxd), and p[a:b] a bytes object made
        # straight from them (buf[a:b] would build a slice object and two ints to get there)
        p = buf
        n = len(buf)
        self.content_length = self.te = self.conn_tokens = self.upgrade = None
        self.set_cookies = None
        i = start
        while i < n and (p[i] == _CR or p[i] == _LF):
            i += 1  # llhttp skips empty lines before a status line
        # the status line, "HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason] CRLF as llhttp checked
        # it (the relay writes its own); llhttp's getters would build a version string
        self.http1 = (
            i + 12 <= n
            and p[i] == _H
            and p[i + 5] == _DIGIT_1
            and (p[i + 7] == _DIGIT_0 or p[i + 7] == _DIGIT_1)
        )
        if i + 12 <= n:
            self.status = (p[i + 9] - 48) * 100 + (p[i + 10] - 48) * 10 + (p[i + 11] - 48)
        i += 12
        if i < n and p[i] == _SP:
            i += 1
        reason = i
        i = hb.find(buf, p, _CR, i, n)
        if i - reason == 2 and p[reason] == _O and p[reason + 1] == _K:
            self.reason = _OK  # the usual one: no new object
        else:
            self.reason = p[reason:i]
        i += 2
        keep_from = i
        kept = []
        while i < n and p[i] != _CR:
            line = i
            colon, value, value_end = hb.field_line(buf, p, i, n)
            name_len = colon - line
            i = value_end + 2
            kind = _kind(p, line, name_len)
            if kind == 0:
                continue
            if kind == _CONTENT_LENGTH:
                length = hb.number(p, value, value_end)
                self.content_length = length if length >= 0 else int(p[value:value_end])
                continue
            if kind == _SET_COOKIE:
                if self.set_cookies is None:
                    self.set_cookies = []
                self.set_cookies.append(p[value:value_end])
                continue
            if kind == _TRANSFER_ENCODING:
                # several fields are one list (RFC 9110 §5.3): "gzip" then "chunked" must not
                # pass as chunked and lose the gzip coding on the way to the client
                te = p[value:value_end]
                self.te = te if self.te is None else self.te + b", " + te
            elif kind == _CONNECTION:
                size = value_end - value
                # "keep-alive" and "close" name no field (llhttp reads them itself): no object
                if not (
                    (size == 10 and hb.named(p, value, b"keep-alive"))
                    or (size == 5 and hb.named(p, value, b"close"))
                ):
                    self._connection(p[value:value_end])
            elif kind == _UPGRADE:
                self.upgrade = p[value:value_end]
            # a field the client does not get: relay the bytes around it
            if line > keep_from:
                kept.append(p[keep_from:line])
            keep_from = i
        if i > keep_from:
            kept.append(p[keep_from:i])
        self.fields = kept
        if self.conn_tokens:
            named = h.named_fields(self.conn_tokens)
            if named:
                self.fields = [strip_fields(b"".join(kept), named)]
        return i + 2

    def _connection(self, value: bytes) -> None:
        tokens = h.connection_tokens(value)
        self.conn_tokens = tokens if self.conn_tokens is None else self.conn_tokens + tokens


def _kind(p: bytes, at: int, n: int) -> int:
    """The RESPONSE_HEADERS kind of the field name of ``n`` bytes at ``at``, 0 for the others
    (by its length first: most names are not compared at all)."""
    if n == 10:
        if hb.named(p, at, b"connection"):
            return _CONNECTION
        if hb.named(p, at, b"set-cookie"):
            return _SET_COOKIE
        if hb.named(p, at, b"keep-alive"):
            return _HOP
    elif n == 14 and hb.named(p, at, b"content-length"):
        return _CONTENT_LENGTH
    elif n == 17 and hb.named(p, at, b"transfer-encoding"):
        return _TRANSFER_ENCODING
    elif n == 7:
        if hb.named(p, at, b"upgrade"):
            return _UPGRADE
        if hb.named(p, at, b"trailer"):
            return _HOP
    elif (
        (n == 2 and hb.named(p, at, b"te"))
        or (n == 16 and hb.named(p, at, b"proxy-connection"))
        or (n == 18 and hb.named(p, at, b"proxy-authenticate"))
    ):
        return _HOP
    return 0


def strip_fields(fields: bytes, named: set[bytes]) -> bytes:
    """The field lines of ``fields`` less those whose lower-cased name is in ``named`` (the
    fields a Connection header lists: rare, so plain Python)."""
    lines = fields.split(b"\r\n")
    return b"".join(
        line + b"\r\n" for line in lines if line and line.split(b":", 1)[0].lower() not in named
    )


def field_list(fields: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """``fields`` (the pieces of ``ResponseFields.fields``) as (name, value) pairs, for the rare
    readers of a relayed head (a 503's refusal field)."""
    pairs = []
    for line in b"".join(fields).split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            pairs.append((name, value.lstrip(b" \t")))
    return pairs


def has_field(fields: Sequence[bytes], name: bytes) -> bool:
    """``fields`` (the pieces of ``ResponseFields.fields``) hold a field of the lower-case
    ``name`` (no value holds CR or LF, so a match after a line start is a name)."""
    low = b"".join(fields).lower()
    return low.startswith(name + b":") or (b"\n" + name + b":") in low
