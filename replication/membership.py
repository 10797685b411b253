"""Who is in the cluster: the member table. Pure: heartbeats and probe results in, events out.

Semantics follow Tomcat's McastService + TcpFailureDetector (tomcat-cluster.md §1.3, §1.6):

- A heartbeat (multicast, or a Hello over TCP for static members) from an unknown member adds
  it at once (`Joined`); heartbeats are authenticated (seal.py), so no probe is needed to trust
  a join. Our own heartbeats and those of already departed members are ignored.
- A member silent for `drop_time` becomes a *suspect* and `tick()` asks for a TCP probe of its
  receiver (`Probe`). A failed probe drops it (`Left(reason="dropped")`); a successful one keeps
  it as a suspect, probed again every `drop_time`, until it is heard again.
- A member that missed an ack (sync replication) is a suspect too, probed the same way, until
  it acks again; the sender stops waiting for its acks meanwhile.
- A heartbeat with the shutdown flag removes the member at once, without a probe
  (`Left(reason="shutdown")`); its id is remembered so late datagrams cannot bring it back.

Member ids are random per process start, so a restarted process is a new member.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .member_info import MemberInfo

ALIVE = "alive"
SUSPECT = "suspect"
DEPARTED_MEMORY = 1024


@dataclass(frozen=True, slots=True)
class Joined:
    member: MemberInfo


@dataclass(frozen=True, slots=True)
class Left:
    member: MemberInfo
    reason: str  # "shutdown" or "dropped"


@dataclass(frozen=True, slots=True)
class Probe:
    member: MemberInfo


Event = Joined | Left | Probe


@dataclass(slots=True)
class MemberView:
    """One member as the table knows it (a snapshot; changing it changes nothing)."""

    info: MemberInfo
    state: str
    joined: float
    last_heard: float
    seq: int
    digest: str


@dataclass(slots=True)
class _Entry:
    info: MemberInfo
    joined: float
    last_heard: float
    seq: int = 0
    digest: str = ""
    silent: bool = False
    missed_ack: bool = False
    probing: bool = False
    next_probe: float = 0.0

    @property
    def state(self) -> str:
        return SUSPECT if self.silent or self.missed_ack else ALIVE


class Membership:
    def __init__(self, me: MemberInfo, *, drop_time: float = 3.0) -> None:
        self.me = me
        self.drop_time = drop_time
        self._members: dict[str, _Entry] = {}
        self._departed: OrderedDict[str, None] = OrderedDict()

    # -- input ---------------------------------------------------------------------------------
    def heard(
        self,
        info: MemberInfo,
        now: float,
        *,
        seq: int = 0,
        digest: str = "",
        shutdown: bool = False,
    ) -> list[Event]:
        """A heartbeat (or Hello) from `info`."""
        if info.id == self.me.id or info.id in self._departed:
            return []
        entry = self._members.get(info.id)
        if shutdown:
            self._remember_departed(info.id)
            if entry is None:
                return []
            del self._members[info.id]
            return [Left(entry.info, "shutdown")]
        if entry is None:
            self._members[info.id] = _Entry(info, now, now, seq, digest)
            return [Joined(info)]
        entry.info, entry.last_heard, entry.silent = info, now, False
        entry.seq, entry.digest = max(entry.seq, seq), digest or entry.digest
        return []

    def tick(self, now: float) -> list[Event]:
        """Mark members silent past drop_time as suspects; ask for the probes that are due."""
        probes: list[Event] = []
        for entry in self._members.values():
            if now - entry.last_heard > self.drop_time:
                entry.silent = True
            if entry.state == SUSPECT and not entry.probing and now >= entry.next_probe:
                entry.probing = True
                probes.append(Probe(entry.info))
        return probes

    def probe_result(self, member_id: str, ok: bool, now: float) -> list[Event]:
        entry = self._members.get(member_id)
        if entry is None:
            return []
        entry.probing = False
        if ok:
            entry.next_probe = now + self.drop_time
            return []
        if not entry.silent and not entry.missed_ack:  # heard again while the probe ran
            return []
        del self._members[member_id]
        return [Left(entry.info, "dropped")]

    def ack_missed(self, member_id: str, now: float) -> list[Event]:
        entry = self._members.get(member_id)
        if entry is None or entry.missed_ack:
            return []
        entry.missed_ack = True
        if entry.probing:
            return []
        entry.probing = True
        return [Probe(entry.info)]

    def ack_seen(self, member_id: str) -> None:
        entry = self._members.get(member_id)
        if entry is not None:
            entry.missed_ack = False

    # -- output --------------------------------------------------------------------------------
    def get(self, member_id: str) -> MemberView | None:
        entry = self._members.get(member_id)
        return None if entry is None else self._view(entry)

    def members(self) -> list[MemberView]:
        """Every member but this one, oldest first (Tomcat's order; the oldest is members[0])."""
        entries = sorted(self._members.values(), key=lambda e: (e.info.start, e.info.id))
        return [self._view(e) for e in entries]

    def alive(self) -> list[MemberInfo]:
        """Members not under suspicion: those a sync sender waits for."""
        return [e.info for e in self._members.values() if e.state == ALIVE]

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def _view(self, e: _Entry) -> MemberView:
        return MemberView(e.info, e.state, e.joined, e.last_heard, e.seq, e.digest)

    def _remember_departed(self, member_id: str) -> None:
        self._departed[member_id] = None
        while len(self._departed) > DEPARTED_MEMORY:
            self._departed.popitem(last=False)
