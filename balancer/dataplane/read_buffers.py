"""The buffers a member's responses are read into, reused while nothing holds a view of them.

An http member connection is a buffered protocol for uvloop (``get_buffer``/``buffer_updated``
on ``UpstreamConnection``, upstream.py): the kernel copies a read straight into one of these
buffers, and a large body piece goes to the client transport as a ``memoryview`` of it. Before,
uvloop read into its own buffer and copied every read into a new ``bytes`` (a 64 KiB copy, a
``malloc`` and a ``free`` per 64 KiB response; issue 12, session 7).

A buffer must never be read into while anything still holds a view of it: the client
transport keeps what the kernel did not take yet *without a copy* (uvloop's
``UVStream._exec_write``), and a piece waiting in an exchange's write buffer is a view too.
A ``bytearray`` counts the views of it (its exports), so ``take`` hands out the first buffer
of the pool that has none; the views are released when the client's socket took the bytes.
A reader holds at most one pooled buffer: while the buffer of its last pooled read is still
viewed (its client has not taken those bytes yet), ``take`` gives it ``SCRATCH``, which the
connection only ever copies out of (what uvloop's own read did). Without that one client that
stops reading pinned a new buffer with each read until it held the whole pool, and every read
of the process was copied. The pool grows to ``POOLED`` buffers when that many readers hold
one at once; past that, ``take`` gives ``SCRATCH`` too, so memory stays bounded at
``POOLED`` + 1 buffers per process however many connections read.
"""

from __future__ import annotations

# uvloop's own read buffer is 256 KiB: reads as large as before (the same system calls)
SIZE = 256 * 1024
# at most this many view-able buffers per process (4 MiB); reads past them are copied
POOLED = 16
# the buffer of the reads whose bytes are copied out at once: never viewed, so always free
SCRATCH = bytearray(SIZE)
_POOL: list[bytearray] = []
# Run from this .py (PYJK_PURE=1, or not built), ``in_use`` asks Python; compiled, it reads the
# bytearray's export count (read_buffers.pxd)
_PURE = __file__.endswith(".py")


def take(held: bytearray | None) -> bytearray:
    """A buffer to read into for a reader whose last pooled buffer was ``held`` (None: none
    yet): ``SCRATCH`` while ``held`` is still viewed, else the first pooled one nothing holds
    a view of, a new pooled one, or ``SCRATCH`` when ``POOLED`` are all held."""
    if held is not None and in_use(held):
        return SCRATCH
    for buf in _POOL:
        if not in_use(buf):
            return buf
    if len(_POOL) < POOLED:
        buf = bytearray(SIZE)
        _POOL.append(buf)
        return buf
    return SCRATCH


def in_use(buf: bytearray) -> bool:
    """Something still holds a view of ``buf`` (a ``memoryview``, or a buffer a C extension
    took of it): its bytes must stay as they are."""
    if _PURE:
        try:
            buf.append(0)  # a bytearray with views of it cannot change size: BufferError
        except BufferError:
            return True
        buf.pop()
        return False
    return _exports(buf) > 0  # type: ignore[name-defined,no-any-return]  # noqa: F821 (read_buffers.pxd)


def viewable(buf: bytearray) -> bool:
    """``buf`` is a pooled buffer (its pieces may go out as views), not ``SCRATCH``."""
    return buf is not SCRATCH


def pooled() -> int:
    """How many view-able buffers the pool holds now (for the tests)."""
    return len(_POOL)
