"""How long the chunk-size lines of a chunked body are, and where its data is (pure, no I/O).

llhttp checks chunk framing but reads a chunk extension (``5;name=value``) of any length and
hands no callback for it through httptools, so a client could make a proxy read megabytes of
framing that carries nothing (issue 11 item 8; HAProxy refuses it). ``ChunkLines`` follows the
same framing over the bytes of one body — size line, data, CRLF — and records the longest
size line; the client connection answers 400 once it exceeds ``Limits.max_chunk_line``.

It reads every size line llhttp accepts (any number of leading zeros included); on a line it
cannot read it stops (``done`` and ``bad``) and the client connection refuses the request with
400 — fail-closed, because its positions are load-bearing: after the last chunk it follows the
trailer section to its blank line (trailer fields count against the head limits like any
field: ``fields``, ``size``, from the head's counts), and ``end`` is where the message ended in
the last read — the client connection reads the next pipelined head from there (llhttp gives no
positions), and a message whose end it does not know is never read past.

The http member connection (upstream.py) follows a chunked response with it too: llhttp checks
the framing but is given no body callback, and the chunk data is relayed from the offsets
``feed`` reports (``spans``); where the two disagree the response is refused.
"""

from __future__ import annotations

_LINE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3
_SIZE_PREFIX = 20  # bytes of a size line kept to read the size (16 hex digits at most)
_HEX = b"0123456789abcdefABCDEF"


def chunk_size(line: bytes, zeros: bool = False) -> int | None:
    """The size of a chunk-size line's prefix (``1a;ext=1\\r`` -> 26), None if malformed.
    ``zeros``: leading zeros were taken off the line (``ChunkLines`` keeps the digits after
    them), so no digits left means 0."""
    end = len(line)
    for stop in (b";", b"\r", b" ", b"\t"):
        i = line.find(stop)
        if 0 <= i < end:
            end = i
    digits = line[:end]
    if not digits:
        return 0 if zeros else None
    if len(digits) > 16 or digits.strip(_HEX):
        return None  # only hex digits: int(x, 16) also takes a sign, "_" and whitespace
    try:
        return int(digits, 16)
    except ValueError:
        return None


class ChunkLines:
    """The framing of one chunked body, fed in order; ``longest`` is the longest size line so
    far (bytes before its LF), ``body`` the chunk data bytes, ``done`` past the blank line that
    ends the trailer section (``end``: its offset in the last data fed), ``fields`` and ``size``
    the head's field count and size (given) plus the trailer fields' (each line with its CRLF:
    ``name: value`` counts as the head's fields do, len(name) + len(value) + 4)."""

    __slots__ = (
        "bad",
        "body",
        "done",
        "end",
        "fields",
        "left",
        "line",
        "line_len",
        "longest",
        "size",
        "state",
        "zeros",
    )

    def __init__(self, fields: int = 0, size: int = 0) -> None:
        self.state = _LINE
        self.left = 0  # bytes of chunk data (or of its CRLF) still to come
        self.line = b""  # the start of the size line being read
        self.line_len = 0
        self.zeros = False  # leading zeros were taken off the size line being read
        self.longest = 0
        self.body = 0
        self.done = False
        self.bad = False  # a size line llhttp would refuse: followed no further
        self.end = -1
        self.fields = fields
        self.size = size

    def feed(self, data: bytes, start: int = 0, spans: list[tuple[int, int]] | None = None) -> None:
        """Follow ``data`` from ``start``; ``spans`` (when given) gets the (begin, end) offsets
        of the chunk data in it (a member's chunked response is relayed from them: upstream.py).
        """
        pos, n = start, len(data)
        while pos < n and not self.done:
            state = self.state
            if state in (_DATA, _DATA_END):
                take = min(self.left, n - pos)
                if spans is not None and state == _DATA and take:
                    spans.append((pos, pos + take))
                pos += take
                self.left -= take
                if state == _DATA:
                    self.body += take
                if self.left == 0:
                    if state == _DATA:
                        self.state, self.left = _DATA_END, 2
                    else:
                        self.state = _LINE
                continue
            lf = data.find(b"\n", pos)
            end = n if lf < 0 else lf
            if state == _TRAILER:
                self.line_len += end - pos
                if lf < 0:
                    return
                pos = lf + 1
                if self.line_len <= 1:  # CRLF alone (llhttp refuses a bare LF): the end
                    self.done = True
                    self.end = pos
                else:
                    self.fields += 1
                    self.size += self.line_len + 1  # with its LF
                self.line_len = 0
                continue
            if not self.line:
                # leading zeros, any number (llhttp reads them all): the digits after them
                piece = data[pos:end].lstrip(b"0")
                if end - pos > len(piece):
                    self.zeros = True
                self.line = piece[:_SIZE_PREFIX]
            elif len(self.line) < _SIZE_PREFIX:
                self.line += data[pos : min(end, pos + _SIZE_PREFIX - len(self.line))]
            self.line_len += end - pos
            if self.line_len > self.longest:
                self.longest = self.line_len
            if lf < 0:
                return
            pos = lf + 1
            size = chunk_size(self.line, self.zeros)
            self.line, self.line_len, self.zeros = b"", 0, False
            if size is None or size < 0:  # (never negative: the position only moves on)
                self.done = self.bad = True  # llhttp refuses it
            elif size == 0:
                self.state = _TRAILER  # the last chunk: trailer fields, then a blank line
            else:
                self.state, self.left = _DATA, size

    def over(self, max_fields: int, max_size: int) -> bool:
        """The head and its trailer fields so far are over the head limits."""
        partial = self.line_len if self.state == _TRAILER else 0  # a trailer line not ended
        return self.fields > max_fields or self.size + partial > max_size
