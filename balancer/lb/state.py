"""Where an engine keeps its numbers: the one small state interface (DESIGN.md, Wave 2).

The engine builds its members and its settings through an ``LbState``. ``LOCAL`` gives plain
objects (one process); ``balancer.lb.shm.ShmState`` gives the same classes bound to records
every data-plane process shares. The decision code reads and writes fields either way.
"""

from __future__ import annotations

from typing import Protocol

from balancer.config.model import LbConfig, MemberConfig
from balancer.lb.member import Member
from balancer.lb.settings import LbSettings


class LbState(Protocol):
    def member(self, lb: str, config: MemberConfig, now: float) -> Member: ...

    def settings(self, config: LbConfig) -> LbSettings: ...


class LocalState:
    """One process: plain objects."""

    def member(self, lb: str, config: MemberConfig, now: float) -> Member:
        return Member.from_config(config, now)

    def settings(self, config: LbConfig) -> LbSettings:
        return LbSettings.from_config(config)


LOCAL = LocalState()
