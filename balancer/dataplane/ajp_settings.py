"""What an ``ajp13`` member's configuration means for its connections (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from balancer.ajp import codes

if TYPE_CHECKING:
    from balancer.config.model import MemberConfig


@dataclass(frozen=True, slots=True)
class AjpSettings:
    """What a member's pool needs to speak AJP. Times in seconds; 0 = off."""

    max_packet_size: int = codes.DEFAULT_PACKET_SIZE
    secret: str = ""
    connect_timeout: float = 0.0  # CPing after connecting (ping_mode C)
    prepost_timeout: float = 0.0  # CPing before each request (ping_mode P)


def packet_size(value: int) -> int:
    """mod_jk's rule: rounded up to a multiple of 1024, within 8192..65536."""
    rounded = -(-value // 1024) * 1024
    return min(codes.MAX_PACKET_SIZE, max(codes.MIN_PACKET_SIZE, rounded))


def ajp_settings(cfg: MemberConfig) -> AjpSettings | None:
    """The AJP settings of an ``ajp13`` member; None for any other type."""
    if cfg.type != "ajp13":
        return None
    return AjpSettings(
        max_packet_size=packet_size(cfg.max_packet_size),
        secret=cfg.secret,
        connect_timeout=max(0, cfg.connect_timeout) / 1000,
        prepost_timeout=max(0, cfg.prepost_timeout) / 1000,
    )
