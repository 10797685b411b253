"""How long the chunk-size lines of a chunked request body are (pure, no I/O).

llhttp checks chunk framing but reads a chunk extension (``5;name=value``) of any length and
hands no callback for it through httptools, so a client could make a proxy read megabytes of
framing that carries nothing (issue 11 item 8; HAProxy refuses it). ``ChunkLines`` follows the
same framing over the bytes of one body — size line, data, CRLF — and records the longest
size line; the client connection answers 400 once it exceeds ``Limits.max_chunk_line``.

It only needs to be right for framing llhttp accepts: on anything else it stops (``done``) and
leaves the refusal to llhttp. The last chunk ends it too: trailer fields count against the
head limits like any field.
"""

from __future__ import annotations

_LINE, _DATA, _DATA_END = 0, 1, 2
_SIZE_PREFIX = 20  # bytes of a size line kept to read the size (16 hex digits at most)


def chunk_size(line: bytes) -> int | None:
    """The size of a chunk-size line's prefix (``1a;ext=1\\r`` -> 26), None if malformed."""
    end = len(line)
    for stop in (b";", b"\r", b" ", b"\t"):
        i = line.find(stop)
        if 0 <= i < end:
            end = i
    digits = line[:end]
    if not digits or len(digits) > 16:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


class ChunkLines:
    """The framing of one chunked body, fed in order; ``longest`` is the longest size line so
    far (bytes before its LF), ``body`` the chunk data bytes, ``done`` past the last chunk."""

    __slots__ = ("bad", "body", "done", "left", "line", "line_len", "longest", "state")

    def __init__(self) -> None:
        self.state = _LINE
        self.left = 0  # bytes of chunk data (or of its CRLF) still to come
        self.line = b""  # the start of the size line being read
        self.line_len = 0
        self.longest = 0
        self.body = 0
        self.done = False
        self.bad = False  # a size line llhttp would refuse: followed no further

    def feed(self, data: bytes, start: int = 0) -> None:
        pos, n = start, len(data)
        while pos < n and not self.done:
            state = self.state
            if state != _LINE:
                take = min(self.left, n - pos)
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
            if len(self.line) < _SIZE_PREFIX:
                self.line += data[pos : min(end, pos + _SIZE_PREFIX)]
            self.line_len += end - pos
            if self.line_len > self.longest:
                self.longest = self.line_len
            if lf < 0:
                return
            pos = lf + 1
            size = chunk_size(self.line)
            self.line, self.line_len = b"", 0
            if size is None:
                self.done = self.bad = True  # llhttp refuses it
            elif size == 0:
                self.done = True  # the last chunk
            else:
                self.state, self.left = _DATA, size


def locate_body(data: bytes, body_bytes: int, complete: bool) -> ChunkLines | None:
    """The framing of a chunked body whose head ended somewhere in ``data``: the scan from
    the first end of a head (CRLFCRLF, or the rest of one the previous read began) after
    which the chunk data adds up to ``body_bytes`` — what llhttp delivered for it from this
    read — and ends, or not, as the message did. Pipelined requests ahead of it in the same
    read are why a search is needed at all; None if nothing fits (then it is not followed)."""
    starts = [k for k, rest in ((1, b"\n"), (2, b"\r\n"), (3, b"\n\r\n")) if data.startswith(rest)]
    pos = 0
    while len(starts) < 20:  # a handful of requests ahead of it in one read, at most
        i = data.find(b"\r\n\r\n", pos)
        if i < 0:
            break
        starts.append(i + 4)
        pos = i + 1
    for start in starts:
        lines = ChunkLines()
        lines.feed(data, start)
        if lines.body == body_bytes and not lines.bad and (lines.done or not complete):
            return lines
    return None
