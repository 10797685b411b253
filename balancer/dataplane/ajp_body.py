"""A request body's way over AJP, as a plain object: what the client sent that the container has
not asked for yet, and which body packets to send now. No I/O.

The container reads a body packet by packet. When the forward request announced a length
above 0, the first packet goes without being asked for (mod_jk sends it; Tomcat expects it).
Every further packet answers a GET_BODY_CHUNK n with at most n bytes, never more than
max_packet_size - 6. A body request after the end of the body — or for a body whose length
was never announced and that the client has finished — gets the empty packet that ends it.
Nothing is ever sent unasked beyond that first packet, so the stream stays in step whether or
not the application reads the body.
"""

from __future__ import annotations

from collections import deque

from balancer.ajp.request import END_OF_BODY_PACKET, body_packet


class RequestBody:
    __slots__ = ("complete", "held", "left", "max_chunk", "owed")

    def __init__(self, max_chunk: int, held: bytes = b"", complete: bool = False) -> None:
        self.max_chunk = max_chunk
        self.held = bytearray(held)  # from the client, not sent yet
        self.complete = complete  # the client's body has ended
        self.left: int | None = None  # bytes of the announced length not sent yet
        self.owed: deque[int] = deque()  # packets the container waits for (their most bytes)

    def __len__(self) -> int:
        return len(self.held)

    def announce(self, length: int | None) -> None:
        """The forward request went out with this Content-Length (None: none or unknown)."""
        self.left = length
        if length:
            self.owed.append(self.max_chunk)  # the first packet goes unasked

    def add(self, data: bytes) -> None:
        """More of the client's body."""
        self.held += data

    def finish(self) -> None:
        """The client's body is complete."""
        self.complete = True

    def ask(self, size: int) -> None:
        """The container asked for a packet of at most ``size`` bytes (GET_BODY_CHUNK)."""
        self.owed.append(min(size, self.max_chunk))

    @property
    def waiting(self) -> bool:
        """The container waits for body bytes the client has not sent yet."""
        return bool(self.owed)

    def packets(self) -> list[bytes]:
        """The packets to send now: as many owed ones as the held bytes can answer."""
        held = self.held
        owed = self.owed
        out: list[bytes] = []
        while owed:
            left = self.left
            if held and (left is None or left > 0):
                n = min(owed[0], len(held))
                if left is not None:
                    n = min(n, left)
                    self.left = left - n
                out.append(body_packet(bytes(held[:n])))
                del held[:n]
            elif self.complete or left == 0:
                out.append(END_OF_BODY_PACKET)  # nothing (more) to send: the body ends
            else:
                break  # the client has not sent it yet
            owed.popleft()
        return out
