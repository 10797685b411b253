"""The byte-level steps both head scanners take: a request's (request_head.py) and a member's
response's (response_head.py). Each scans a head llhttp has accepted whole, so every line ends
with CRLF and every field line has a colon; these functions find a byte, split a field line
into name and value, compare a field name in any case and read a Content-Length. And one
step of writing a head: ``join`` its parts (http_request.py), and a request id's value
(``hex_id``, proxy_core.py).

Compiled (head_bytes.pxd) they are C functions over a C pointer into the head's bytes (``p``),
which the scanners call as C functions: their ``.pxd`` files cimport this module under the
name their ``.py`` files import it by (``hb``), so ``hb.find(...)`` is a C call there and a
Python call when this ``.py`` runs (``PYJK_PURE=1``: slower, same results — the unit tests run
both). A ``from ... import find`` would not do: Cython refuses a Python import of a name the
``.pxd`` cimports as a C function taking a pointer.
"""

from __future__ import annotations

_CR = 13
_SP = 32
_HTAB = 9
_COLON = 58
_LONG_NUMBER = 18  # more digits than a C long long surely holds: Python's int() reads them
# Run from this .py (PYJK_PURE=1, or not built), a loop per byte in Python would cost ~100k
# instructions per head: ``find`` uses ``bytes.find`` there. Compiled, ``__file__`` is the
# extension's and ``find`` is libc's ``memchr``.
_PURE = __file__.endswith(".py")


def find(buf: bytes, p: bytes, c: int, i: int, n: int) -> int:
    """The offset of the first byte ``c`` at or after ``i`` in ``buf`` (``p``: its bytes), or
    ``n`` when there is none before it."""
    if _PURE:
        j = buf.find(c, i, n)
        return n if j < 0 else j
    if i >= n:
        return n
    # compiled: libc's memchr (head_bytes.pxd), which reads the bytes a word at a time — a
    # third of the instructions of a loop per byte over a typical head (issue 12, session 5)
    at = _memchr(p + i, c, n - i)  # type: ignore[name-defined,operator]  # noqa: F821 (declared by head_bytes.pxd)
    return at - p if at else n


def field_line(buf: bytes, p: bytes, i: int, n: int) -> tuple[int, int, int]:
    """The field line at ``i`` of ``buf`` (``p``: its bytes): the offsets of its colon, of its
    value (the leading OWS skipped; llhttp keeps the trailing one in a value, and so do the
    scanners) and of the CR that ends it; the next line begins 2 bytes after that.

    One call per field line: compiled, a call from another module is not inlined, and three
    (a find, the OWS, a find) cost ~260 instructions more per keep-alive request than one
    (docs/benchmarks.md, issue 12, session 5).
    """
    colon = find(buf, p, _COLON, i, n)
    # a line with no colon (one llhttp never accepted as a field, e.g. what follows an
    # HTTP/0.9 line it ended at a bare LF): an empty value at ``n``, never a value that ends
    # before it begins (compiled, slicing that raised SystemError)
    value = colon + 1 if colon < n else n
    while value < n and (p[value] == _SP or p[value] == _HTAB):
        value += 1
    return colon, value, find(buf, p, _CR, value, n)


def named(p: bytes, at: int, name: bytes) -> bool:
    """The bytes at ``at`` spell the lower-case ``name`` in any case. ``| 0x20`` lower-cases a
    letter and leaves "-" alone; no other byte of a token turns into a letter or "-"."""
    q = name
    # a loop, not all(genexpr): compiled, a C loop over two C pointers
    for k in range(len(name)):  # noqa: SIM110
        if (p[at + k] | 0x20) != q[k]:
            return False
    return True


def number(p: bytes, at: int, end: int) -> int:
    """The decimal number at ``at`` (llhttp checked the digits; trailing OWS ends it), or -1
    when it is too long to add up here."""
    value = 0
    i = at
    while i < end and 48 <= p[i] <= 57:
        if i - at >= _LONG_NUMBER:
            return -1
        value = value * 10 + (p[i] - 48)
        i += 1
    return value


def join(parts: list[bytes]) -> bytes:
    """``b"".join(parts)`` for the parts of a head the balancer writes (each a ``bytes``).

    Compiled, one allocation and a ``memcpy`` per part (head_bytes.pxd): ``bytes.join`` asks
    every part for a buffer and, above 10 parts, allocates an array for them — a sticky
    request's Cookie line took its member head over that (~900 instructions; issue 12,
    session 6). Run from this .py, ``bytes.join`` itself.
    """
    if _PURE:
        return b"".join(parts)
    size = 0
    for part in parts:
        size += len(part)
    out = _new_bytes(size)  # type: ignore[name-defined]  # noqa: F821 (declared by head_bytes.pxd)
    at = out  # compiled: a C pointer into the new bytes, filled before anyone else sees them
    for part in parts:
        size = len(part)
        _memcpy(at, part, size)  # type: ignore[name-defined]  # noqa: F821 (head_bytes.pxd)
        at += size
    return out  # type: ignore[no-any-return]


def hex_id(prefix: bytes, n: int) -> bytes:
    """``prefix`` and ``n`` (> 0) in lower-case hex: a request id (proxy_core.py).

    Compiled, the digits are written into the new bytes (head_bytes.pxd): formatting a C
    integer by an f-string, encoding it and concatenating cost ~600 instructions a request.
    """
    if _PURE:
        return prefix + b"%x" % n
    digits = 1
    m = n >> 4
    while m:
        digits += 1
        m >>= 4
    size = len(prefix)
    out = _new_bytes(size + digits)  # type: ignore[name-defined]  # noqa: F821 (head_bytes.pxd)
    at = out  # compiled: a C pointer into the new bytes, filled before anyone else sees them
    _memcpy(at, prefix, size)  # type: ignore[name-defined]  # noqa: F821 (head_bytes.pxd)
    i = size + digits
    while i > size:
        i -= 1
        d = n & 15
        at[i] = d + 48 if d < 10 else d + 87  # "0"-"9", "a"-"f"
        n >>= 4
    return out  # type: ignore[no-any-return]
