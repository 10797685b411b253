"""Who a cluster member is: the value the membership table keeps and every message carries.

Its own module so the pure member table (membership.py) does not depend on the wire codec;
the codec reads and writes it (codec.py checks each field on the way in).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: str  # 32 lowercase hex, random per process start
    route: str
    host: str  # where the receiver listens (an IP literal)
    port: int
    start: float  # Unix seconds when the member started
    # Optional on the wire (absent = these defaults, what older members send): where the
    # member's HTTP listener is, its weight in a balancer's lb, and whether it is stopping
    # gracefully (SIGTERM: no new sessions, sticky ones drain). A balancer with a dynamic lb
    # (worker.<lb>.cluster) builds its members from them; replication ignores them.
    http_host: str = ""
    http_port: int = 0  # 0 = no HTTP address advertised
    lbfactor: int = 1
    leaving: bool = False
