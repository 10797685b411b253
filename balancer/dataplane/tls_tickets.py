"""Session ticket keys every data-plane process shares, on a one-way ratchet.

A client resumes a TLS session by handing back a ticket the server encrypted with its ticket
key. Each ``ssl.SSLContext`` makes a random key of its own, so with ``--processes N`` a ticket
from one process was a full handshake on another, and every context rebuilt (a reload, even a
URI-map-only one) threw the key away. Here every process holds the same keys at the same time:

- Time is cut in periods of ``ticket_rotation`` seconds (wall clock, the same instant in every
  process). Period ``p`` has a secret ``s_p``; its keys derive from it alone. At each boundary
  ``s_{p+1} = H(s_p)`` and ``s_p`` is overwritten (``TicketRatchet.advance``): the code never
  holds an older secret, and a secret stolen in period ``p`` gives no key of an earlier period
  (H is one-way). Forward secrecy is bounded by two periods: the current key, and the previous
  one kept for decrypting only (as nginx does with several ``ssl_session_ticket_key`` files),
  so the tickets issued just before a boundary still resume once and get a new ticket
  (OpenSSL's "renew"), instead of all dying at the same instant.
- With ``--processes N`` the supervisor owns the ratchet and republishes ``(p, s_p)`` every
  period; a process started later reads it and ratchets forward to the current period.

Python's ``ssl`` has no call for ticket keys. OpenSSL's ticket key callback
(``SSL_CTX_set_tlsext_ticket_key_cb``, a macro over ``SSL_CTX_callback_ctrl``) is reached
through ctypes on the context's ``SSL_CTX`` (the first field after the object header of
CPython's ``PySSLContext``): it names the key of a new ticket, and finds the key of a ticket
handed back among the current and previous ones. Where that does not hold (another Python,
another OpenSSL) ``install`` says False and the caller keeps per-context keys.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import ssl
import sys
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pyjk.balancer")

SECRET_SIZE = 32
KEYS_SIZE = 80  # a 16-byte key name, a 32-byte HMAC key, a 32-byte AES key (OpenSSL's layout)
_LABEL = b"pyjk tls session ticket keys\0"
_STEP = b"pyjk tls session ticket ratchet\0"
_SET_KEY_CB = 72  # SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB


def ticket_keys(secret: bytes) -> bytes:
    """The keys of the period whose secret is ``secret`` (pure)."""
    return hashlib.shake_256(_LABEL + secret).digest(KEYS_SIZE)


def next_secret(secret: bytes) -> bytes:
    """``s_{p+1}`` from ``s_p`` (one-way: ``s_p`` cannot be found from it)."""
    return hashlib.sha256(_STEP + secret).digest()


def period_of(wall: float, rotation: float) -> int:
    return int(wall // rotation)


@dataclass(frozen=True, slots=True)
class KeySet:
    """One period's keys, split as OpenSSL uses them."""

    name: bytes
    hmac: bytes
    aes: bytes

    @classmethod
    def of(cls, keys: bytes) -> KeySet:
        return cls(keys[:16], keys[16:48], keys[48:80])


class TicketRatchet:
    """The current period's secret, its keys and the previous period's keys (pure; the
    period comes in as an argument)."""

    def __init__(self, period: int, secret: bytes) -> None:
        if len(secret) != SECRET_SIZE:
            raise ValueError(f"a ticket secret has {SECRET_SIZE} bytes, got {len(secret)}")
        self.period = period
        self._secret = secret
        self.current = KeySet.of(ticket_keys(secret))
        self.previous: KeySet | None = None  # decrypting only

    @property
    def secret(self) -> bytes:
        """``s_p`` of the current period: what the supervisor publishes."""
        return self._secret

    def advance(self, period: int) -> bool:
        """Ratchet forward to ``period``; an earlier one is refused (its secret is gone).
        Whether the keys changed."""
        if period <= self.period:
            return False
        while self.period < period:
            self.previous = self.current  # in the end: the keys of period - 1
            self._secret = next_secret(self._secret)  # s_p is overwritten, never kept
            self.period += 1
            self.current = KeySet.of(ticket_keys(self._secret))
        return True

    def find(self, name: bytes) -> tuple[KeySet, bool] | None:
        """The keys a ticket named ``name`` was sealed with, and whether it should be
        renewed (sealed with the previous keys); None: unknown, a full handshake."""
        if name == self.current.name:
            return self.current, False
        if self.previous is not None and name == self.previous.name:
            return self.previous, True
        return None


# -- OpenSSL through ctypes -------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,  # SSL *
    ctypes.c_void_p,  # unsigned char key_name[16]
    ctypes.c_void_p,  # unsigned char iv[16]
    ctypes.c_void_p,  # EVP_CIPHER_CTX *
    ctypes.c_void_p,  # HMAC_CTX *
    ctypes.c_int,  # 1: a new ticket, 0: one handed back
)


class _OpenSsl:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.ctrl = lib.SSL_CTX_callback_ctrl
        self.ctrl.restype = ctypes.c_long
        self.ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.rand = lib.RAND_bytes
        self.rand.restype = ctypes.c_int
        self.rand.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.aes = lib.EVP_aes_256_cbc
        self.aes.restype = ctypes.c_void_p
        self.sha256 = lib.EVP_sha256
        self.sha256.restype = ctypes.c_void_p
        for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 5
        self.encrypt_init = lib.EVP_EncryptInit_ex
        self.decrypt_init = lib.EVP_DecryptInit_ex
        self.hmac_init = lib.HMAC_Init_ex
        self.hmac_init.restype = ctypes.c_int
        self.hmac_init.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]


def _openssl() -> _OpenSsl | None:
    if sys.implementation.name != "cpython":
        return None
    try:
        return _OpenSsl(ctypes.CDLL(ssl._ssl.__file__))  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None


_LIB = _openssl()


class TicketKeys:
    """The OpenSSL callback of one ratchet, installed on every context of a process."""

    def __init__(self, ratchet: TicketRatchet) -> None:
        self.ratchet = ratchet
        self._callback: Any = _CALLBACK(self._seal_or_open)  # kept: OpenSSL calls it

    def install(self, ctx: ssl.SSLContext) -> bool:
        """Whether ``ctx`` now takes its ticket keys from the ratchet."""
        if _LIB is None:
            return False
        handle = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if not handle:
            return False
        fn = ctypes.cast(self._callback, ctypes.c_void_p)
        return bool(_LIB.ctrl(handle, _SET_KEY_CB, fn) == 1)

    def _seal_or_open(
        self, _ssl: int | None, name: int, iv: int, cipher: int, hmac: int, enc: int
    ) -> int:
        # an exception must not cross into OpenSSL: -1 fails this handshake only
        try:
            assert _LIB is not None
            if enc:
                keys = self.ratchet.current
                ctypes.memmove(name, keys.name, 16)
                if _LIB.rand(iv, 16) != 1:
                    return -1
                init = _LIB.encrypt_init
            else:
                found = self.ratchet.find(ctypes.string_at(name, 16))
                if found is None:
                    return 0  # unknown key (expired): a full handshake, a new ticket
                keys, _ = found  # the previous period's keys too: renewed below
                init = _LIB.decrypt_init
            if _LIB.hmac_init(hmac, keys.hmac, len(keys.hmac), _LIB.sha256(), None) != 1:
                return -1
            if init(cipher, _LIB.aes(), None, keys.aes, iv) != 1:
                return -1
            # opened: always "renew" (2), so every resumption gets a fresh ticket under the
            # current keys, as OpenSSL's own keys give in TLS 1.3. With 1 it sent no new
            # ticket and a client with Nagle on waited for a delayed ACK: 40 ms per resumed
            # connection, measured (2.2 ms with OpenSSL's keys and with this)
            return 1 if enc else 2
        except Exception:
            log.exception("tls session ticket callback failed")
            return -1
