"""Session ticket keys every data-plane process shares, renewed by time only.

A client resumes a TLS session by handing back a ticket the server encrypted with its ticket
key. Each ``ssl.SSLContext`` makes a random key of its own, so with ``--processes N`` a ticket
from one process was a full handshake on another, and every context rebuilt (a reload, even a
URI-map-only one) threw the key away. Here the key of period ``i`` (``ticket_rotation``
seconds of wall-clock time) is derived from a secret the processes share (the supervisor's,
published with each configuration generation; not the CSRF token's, which pages show), so
every process holds the same key at the same time, and a context rebuilt within a period gets
the same key again. The key changes at each period boundary: a ticket resumes for at most one
period (forward secrecy bounded as before).

Python's ``ssl`` has no call for ticket keys; OpenSSL's ``SSL_CTX_set_tlsext_ticket_keys``
(a macro over ``SSL_CTX_ctrl``) is reached through ctypes on the context's ``SSL_CTX`` (the
first field after the object header of CPython's ``PySSLContext``). Each set is read back;
where that does not hold (another Python, another OpenSSL) ``set_ticket_keys`` says False and
the caller keeps per-context keys.
"""

from __future__ import annotations

import ctypes
import hashlib
import ssl
import sys

KEYS_SIZE = 80  # OpenSSL 1.1+: 16-byte key name, 32-byte HMAC key, 32-byte AES key
_SET_KEYS, _GET_KEYS = 59, 58  # SSL_CTRL_SET/GET_TLSEXT_TICKET_KEYS
_LABEL = b"pyjk tls session ticket keys\0"


def ticket_keys(secret: bytes, period: int) -> bytes:
    """The keys of ``period`` (pure): the same secret and period give the same keys."""
    return hashlib.shake_256(_LABEL + secret + period.to_bytes(8, "big")).digest(KEYS_SIZE)


def period_of(wall: float, rotation: float) -> int:
    return int(wall // rotation)


def _ctrl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if sys.implementation.name != "cpython":
        return None
    try:
        fn = ctypes.CDLL(ssl._ssl.__file__).SSL_CTX_ctrl  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    return fn


_CTRL = _ctrl()


def set_ticket_keys(ctx: ssl.SSLContext, keys: bytes) -> bool:
    """Give ``ctx`` these ticket keys; whether it now has them."""
    if _CTRL is None or len(keys) != KEYS_SIZE:
        return False
    handle = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not handle:
        return False
    buf = ctypes.create_string_buffer(keys, KEYS_SIZE)
    back = ctypes.create_string_buffer(KEYS_SIZE)
    if _CTRL(handle, _SET_KEYS, KEYS_SIZE, buf) != 1:
        return False
    return _CTRL(handle, _GET_KEYS, KEYS_SIZE, back) == 1 and back.raw == keys
