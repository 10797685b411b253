"""Edge limits of the data plane: sizes, counts and deadlines, with safe defaults.

Every limit is enforced before a byte of the request goes upstream (head limits) or while the
body streams (body limits). Defaults follow the peers named in the security reference
(front-door-security.md): HAProxy's 16 KiB buffer for the head, nginx's 1 MiB body and 60 s
timeouts, Node's whole-header deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

UNDERSCORE_POLICIES = ("reject", "drop", "allow")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one balancer process accepts from clients. ``0`` turns a size/count limit off."""

    # request line + headers, bytes (HAProxy tune.bufsize); over -> 431 (414 for the URI alone)
    max_head_size: int = 16 * 1024
    # header fields per request; over -> 431
    max_headers: int = 100
    # the whole request head must arrive within this many seconds of its first byte (or of the
    # connection, for the first request): slowloris -> 408 and close
    header_timeout: float = 10.0
    # an idle keep-alive connection is closed after this many seconds
    keepalive_timeout: float = 60.0
    # longest gap between two reads of a request body, seconds (nginx client_body_timeout)
    body_timeout: float = 60.0
    # longest time a client may leave our response unread (write buffer full), seconds
    send_timeout: float = 60.0
    # request body, bytes; over -> 413. 0 = unlimited (nginx client_max_body_size default 1 MiB)
    max_body_size: int = 1024 * 1024
    # body accepted by a local handler (status worker POSTs), bytes
    max_local_body_size: int = 64 * 1024
    # open client connections in this process; over -> 503 and close
    max_connections: int = 10000
    # open client connections from one IP address; over -> 503 and close. 0 = unlimited
    max_connections_per_ip: int = 1024
    # requests parsed ahead of the one being answered (pipelining); beyond, the connection is
    # closed after the queued ones are answered (RFC 9112 §9.3.2: clients retry the rest)
    max_pipelined: int = 16
    # header names with "_": "reject" (400, Envoy's edge advice), "drop" (nginx) or "allow"
    underscores_in_headers: str = "reject"
    # request bodies up to this size are kept in memory so a failed try can be replayed on
    # another member; a longer body streams and cannot be replayed once sent
    replay_buffer_size: int = 64 * 1024
    # a backend response head (status line + fields) over this gives 502 (nginx: "upstream
    # sent too big header")
    max_response_head_size: int = 64 * 1024
    # a chunk-size line of a request body (size and extensions), bytes; over -> 400. llhttp
    # reads extensions of any length and pyjk drops them: this bounds what a client can make
    # it read for nothing (HAProxy refuses such lines too)
    max_chunk_line: int = 4096
    # transport write-buffer high-water mark, bytes (both directions): backpressure point
    write_buffer_high: int = 256 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keepalive_timeout", "body_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be > 0 seconds, got {getattr(self, name)!r}")
        for name in (
            "max_head_size",
            "max_headers",
            "max_connections",
            "max_pipelined",
            "max_response_head_size",
            "max_chunk_line",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in (
            "max_body_size",
            "max_local_body_size",
            "max_connections_per_ip",
            "replay_buffer_size",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"Limits.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.write_buffer_high < 1024:
            raise ValueError(
                f"Limits.write_buffer_high must be >= 1024, got {self.write_buffer_high}"
            )
        if self.underscores_in_headers not in UNDERSCORE_POLICIES:
            raise ValueError(
                f"Limits.underscores_in_headers must be one of {UNDERSCORE_POLICIES}, "
                f"got {self.underscores_in_headers!r}"
            )
