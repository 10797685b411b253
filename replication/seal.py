"""AES-GCM sealing of every heartbeat and channel frame, with replay protection. Pure: time in.

Tomcat's cluster trusts its network (tomcat-cluster.md §6): anyone who reaches the group or the
receiver port can inject members or messages, and its EncryptInterceptor leaves heartbeats bare.
Here every datagram and every TCP frame is a *sealed envelope*:

    header (55 bytes, authenticated as associated data, big-endian)
      magic b"PJKC" | version 1 | flags (bit 0: sealed) | kind (1 heartbeat, 2 frame)
      | sender id (16) | sender start epoch, ms (8) | stream id (8) | counter (8) | sent at, ms (8)
    body: AES-256-GCM ciphertext + 16-byte tag (or the plain payload with `insecure = true`)

A *stream* is one sender's heartbeats, or one direction of one TCP connection. Each stream has
its own key, HKDF-derived from the cluster key and (sender, epoch, stream), and numbers its
envelopes 1, 2, 3, ...; the counter is the GCM nonce, so nonces never repeat under one key
however many members and connections share the cluster key.

An opener accepts an envelope only if it authenticates, its send time is within
`max_skew` of the receiver's clock (older captures are stale), and its counter was not seen
on that stream (a sliding window of 1024 counters, kept while the stream could still be fresh).
Windows are created and marked only after authentication, so forgeries cannot burn counters
or fill memory. Failures raise SealError with a short `reason` the caller counts.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"PJKC"
VERSION = 1
HEADER = struct.Struct("!4sBBB16sQQQQ")
TAG_BYTES = 16
KEY_BYTES = 32
FLAG_SEALED = 0x01
WINDOW = 1024
_INFO = b"pyjk cluster stream key v1"
_MAX_U64 = (1 << 64) - 1


class Kind(IntEnum):
    HEARTBEAT = 1
    FRAME = 2


class SealError(ValueError):
    """An envelope that must be dropped; `reason` is one of malformed, mode, stale, auth, replay."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Opened:
    kind: Kind
    sender: bytes
    epoch_ms: int
    stream: int
    counter: int
    sent_at: float
    payload: bytes

    @property
    def stream_key(self) -> tuple[bytes, int, int, int]:
        return (self.sender, self.epoch_ms, self.stream, int(self.kind))


def check_key(key: bytes | None) -> None:
    if key is not None and len(key) != KEY_BYTES:
        raise ValueError(f"cluster key: expected {KEY_BYTES} bytes, found {len(key)}")


def _stream_key(key: bytes, sender: bytes, epoch_ms: int, stream: int) -> bytes:
    salt = sender + struct.pack("!QQ", epoch_ms, stream)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_INFO).derive(key)


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + struct.pack("!Q", counter)


class Sealer:
    """Seals one stream's envelopes, numbering them from 1. Not shared between streams."""

    def __init__(
        self,
        key: bytes | None,
        sender: bytes,
        epoch_ms: int,
        kind: Kind,
        stream: int | None = None,
    ) -> None:
        check_key(key)
        if len(sender) != 16:
            raise ValueError("sealer: the sender id must be 16 bytes")
        self.sender, self.epoch_ms, self.kind = sender, epoch_ms, kind
        self.stream = int.from_bytes(os.urandom(8), "big") if stream is None else stream
        self.counter = 0
        self._aead = None
        if key is not None:
            self._aead = AESGCM(_stream_key(key, sender, epoch_ms, self.stream))

    def seal(self, payload: bytes, now: float) -> bytes:
        self.counter += 1
        flags = 0 if self._aead is None else FLAG_SEALED
        header = HEADER.pack(
            MAGIC, VERSION, flags, int(self.kind), self.sender, self.epoch_ms, self.stream,
            self.counter, max(0, int(now * 1000)),
        )  # fmt: skip
        if self._aead is None:
            return header + payload
        return header + self._aead.encrypt(_nonce(self.counter), payload, header)


class ReplayWindow:
    """Counters seen on one stream: the highest, and a bitmap of the WINDOW below it."""

    __slots__ = ("bits", "size", "top")

    def __init__(self, size: int = WINDOW) -> None:
        self.size, self.top, self.bits = size, 0, 0

    def fresh(self, counter: int) -> bool:
        if counter > self.top:
            return True
        behind = self.top - counter
        return behind < self.size and not (self.bits >> behind) & 1

    def mark(self, counter: int) -> None:
        if counter > self.top:
            shift = counter - self.top
            mask = (1 << self.size) - 1
            self.bits = ((self.bits << shift) | 1) & mask if shift < self.size else 1
            self.top = counter
        else:
            self.bits |= 1 << (self.top - counter)


class Opener:
    """Opens envelopes from any member of the cluster; keeps the replay windows."""

    def __init__(
        self,
        key: bytes | None,
        *,
        max_skew: float = 30.0,
        window: int = WINDOW,
        max_streams: int = 4096,
    ) -> None:
        check_key(key)
        self.key, self.max_skew, self.window = key, max_skew, window
        self.max_streams = max_streams
        self._aeads: OrderedDict[tuple[bytes, int, int], AESGCM] = OrderedDict()
        # stream -> (window, last time it carried an accepted envelope)
        self._windows: OrderedDict[tuple[bytes, int, int, int], tuple[ReplayWindow, float]] = (
            OrderedDict()
        )

    def open(self, blob: bytes, now: float) -> Opened:
        if len(blob) < HEADER.size:
            raise SealError("malformed", f"{len(blob)} bytes is shorter than the header")
        magic, version, flags, kind, sender, epoch_ms, stream, counter, sent_ms = (
            HEADER.unpack_from(blob)
        )
        if magic != MAGIC or version != VERSION or kind not in (1, 2) or flags & ~FLAG_SEALED:
            raise SealError("malformed", "not a pyjk cluster envelope of a known version")
        if counter == 0 or counter == _MAX_U64:
            raise SealError("malformed", f"counter {counter} out of range")
        sealed = bool(flags & FLAG_SEALED)
        if sealed != (self.key is not None):
            expected = "sealed" if self.key is not None else "unsealed (insecure)"
            raise SealError("mode", f"expected {expected} envelopes")
        sent_at = sent_ms / 1000.0
        if abs(now - sent_at) > self.max_skew:
            raise SealError("stale", f"sent {now - sent_at:+.1f}s from now, beyond the skew")
        stream_key = (sender, epoch_ms, stream, kind)
        entry = self._windows.get(stream_key)
        if entry is not None and not entry[0].fresh(counter):
            raise SealError("replay", f"counter {counter} already seen or too old")
        header, body = blob[: HEADER.size], blob[HEADER.size :]
        if sealed:
            if len(body) < TAG_BYTES:
                raise SealError("malformed", "body shorter than the authentication tag")
            try:
                payload = self._aead(sender, epoch_ms, stream).decrypt(
                    _nonce(counter), body, header
                )
            except InvalidTag:
                raise SealError("auth", "authentication failed (wrong key or altered)") from None
        else:
            payload = body
        self._accept(stream_key, counter, now, entry)
        return Opened(Kind(kind), sender, epoch_ms, stream, counter, sent_at, payload)

    def _aead(self, sender: bytes, epoch_ms: int, stream: int) -> AESGCM:
        assert self.key is not None
        ident = (sender, epoch_ms, stream)
        aead = self._aeads.get(ident)
        if aead is None:
            aead = self._aeads[ident] = AESGCM(_stream_key(self.key, sender, epoch_ms, stream))
            if len(self._aeads) > self.max_streams:
                self._aeads.popitem(last=False)
        else:
            self._aeads.move_to_end(ident)
        return aead

    def _accept(
        self,
        stream_key: tuple[bytes, int, int, int],
        counter: int,
        now: float,
        entry: tuple[ReplayWindow, float] | None,
    ) -> None:
        if entry is None:
            self._prune(now)
            window = ReplayWindow(self.window)
        else:
            window = entry[0]
        window.mark(counter)
        self._windows[stream_key] = (window, now)
        self._windows.move_to_end(stream_key)

    def _prune(self, now: float) -> None:
        # A stream silent for 2 x max_skew can only send stale envelopes now: its window can go.
        # Past max_streams the oldest goes anyway (bounded memory beats a perfect record).
        while self._windows:
            oldest_key, (_, seen) = next(iter(self._windows.items()))
            if now - seen > 2 * self.max_skew or len(self._windows) >= self.max_streams:
                del self._windows[oldest_key]
            else:
                break

    @property
    def streams(self) -> int:
        return len(self._windows)
