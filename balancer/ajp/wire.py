"""AJP/1.3 wire primitives: integers, strings, packets, and a stream splitter. No I/O.

Types on the wire (protocol reference, "Data types"): a byte; a boolean is a byte (0/1); an
integer is 2 bytes big-endian; a string is a 2-byte length, that many bytes and a NUL that the
length does not count, or the length 0xFFFF alone for a null string. A packet is a 2-byte magic
(0x12 0x34 towards the container, "AB" from it), a 2-byte payload length and the payload.
"""

from __future__ import annotations

from balancer.ajp.codes import (
    FROM_CONTAINER_MAGIC,
    NULL_STRING_LENGTH,
    PACKET_HEADER_SIZE,
    TO_CONTAINER_MAGIC,
)
from balancer.ajp.errors import AjpError

# --- encoding ---------------------------------------------------------------------------------


def u16(n: int) -> bytes:
    if not 0 <= n <= 0xFFFF:
        raise AjpError(f"integer {n} does not fit 2 bytes")
    return n.to_bytes(2, "big")


def string(value: bytes | None) -> bytes:
    """A length-prefixed, NUL-terminated string; ``None`` is the null string."""
    if value is None:
        return b"\xff\xff"
    n = len(value)
    if n >= NULL_STRING_LENGTH:
        raise AjpError(f"string of {n} bytes is too long for AJP (at most 65534)")
    return n.to_bytes(2, "big") + value + b"\x00"


def to_container(payload: bytes) -> bytes:
    """A packet from the web server to the container."""
    return TO_CONTAINER_MAGIC + u16(len(payload)) + payload


def from_container(payload: bytes) -> bytes:
    """A packet from the container to the web server."""
    return FROM_CONTAINER_MAGIC + u16(len(payload)) + payload


# --- decoding ---------------------------------------------------------------------------------


class Reader:
    """A cursor over one payload; every read is bounds-checked (AjpError past the end)."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.what = what  # the message being read, for error messages

    def _need(self, n: int, field: str) -> int:
        pos = self.pos
        if pos + n > len(self.data):
            raise AjpError(
                f"{self.what}: {field} runs past the end of the packet "
                f"(needs {n} bytes at offset {pos}, payload is {len(self.data)})"
            )
        self.pos = pos + n
        return pos

    def byte(self, field: str) -> int:
        return self.data[self._need(1, field)]

    def boolean(self, field: str) -> bool:
        value = self.byte(field)
        if value > 1:
            raise AjpError(f"{self.what}: {field} is {value}, expected a boolean 0 or 1")
        return value == 1

    def u16(self, field: str) -> int:
        pos = self._need(2, field)
        return (self.data[pos] << 8) | self.data[pos + 1]

    def peek_byte(self, field: str) -> int:
        if self.pos >= len(self.data):
            raise AjpError(f"{self.what}: {field} missing at the end of the packet")
        return self.data[self.pos]

    def raw(self, n: int, field: str) -> bytes:
        pos = self._need(n, field)
        return self.data[pos : pos + n]

    def string(self, field: str) -> bytes | None:
        n = self.u16(field)
        if n == NULL_STRING_LENGTH:
            return None
        pos = self._need(n + 1, field)
        if self.data[pos + n] != 0:
            raise AjpError(f"{self.what}: {field} is not NUL-terminated (offset {pos + n})")
        return self.data[pos : pos + n]

    def text(self, field: str) -> bytes:
        """A string that may not be null."""
        value = self.string(field)
        if value is None:
            raise AjpError(f"{self.what}: {field} is a null string")
        return value

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def end(self) -> None:
        if self.pos != len(self.data):
            raise AjpError(
                f"{self.what}: {len(self.data) - self.pos} unexpected bytes after the message "
                f"(offset {self.pos})"
            )


class Deframer:
    """Splits a byte stream into packet payloads, checking the magic and the size.

    ``max_packet_size`` bounds the whole packet (header included), as mod_jk's directive
    does; a longer announced length fails at once, before its bytes are buffered.
    """

    __slots__ = ("buf", "magic", "max_payload")

    def __init__(self, magic: bytes, max_packet_size: int) -> None:
        self.magic = magic
        self.max_payload = max_packet_size - PACKET_HEADER_SIZE
        self.buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole packet."""
        return len(self.buf)

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by ``data`` (possibly none); AjpError on a bad header."""
        buf = self.buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        out: list[bytes] = []
        pos = 0
        end = len(view)
        magic = self.magic
        while end - pos >= PACKET_HEADER_SIZE:
            if view[pos : pos + 2] != magic:
                raise AjpError(
                    f"packet does not start with {magic!r}: {bytes(view[pos : pos + 4])!r}"
                )
            n = (view[pos + 2] << 8) | view[pos + 3]
            if n > self.max_payload:
                raise AjpError(
                    f"packet of {n + PACKET_HEADER_SIZE} bytes exceeds max_packet_size "
                    f"{self.max_payload + PACKET_HEADER_SIZE}"
                )
            start = pos + PACKET_HEADER_SIZE
            if end - start < n:
                break
            out.append(bytes(view[start : start + n]))
            pos = start + n
        if buf:
            del buf[:pos]
        elif pos < end:
            self.buf = bytearray(view[pos:])
        return out

    def reset(self) -> None:
        self.buf = bytearray()


def to_container_deframer(max_packet_size: int) -> Deframer:
    return Deframer(TO_CONTAINER_MAGIC, max_packet_size)


def from_container_deframer(max_packet_size: int) -> Deframer:
    return Deframer(FROM_CONTAINER_MAGIC, max_packet_size)
