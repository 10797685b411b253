"""Who runs each cluster singleton: owners, epochs, leases. Pure: heartbeats in, actions out.

Every member advertises in its heartbeats (`Advert`) the singleton names it runs, the names it
owns now with their epochs, the highest epoch it knows per name, and the claims of others it
hears (relayed, for members that cannot hear the holder themselves). From those adverts and
its own clock, each member decides alone (`Election.decide(now)`) whether to start or stop
each of its singletons. The rules, and why they keep one owner per name:

- **Who should own it**: the rendezvous (highest-random-weight) hash of the name over the
  members that run it and that the member table still holds (suspects included). Every member
  with the same view picks the same one; several names spread over the cluster; a member
  joining or leaving moves only the names it wins or held.
- **Start only when nobody holds it**: a member starts a name only when it is the preferred
  candidate, no member still in its table claims the name (a claim lasts until the claimant
  says it let go, or until the member table drops it: silence past drop_time and a failed
  TCP probe), every member in its table was heard within the lease (a silent one may hold a
  claim not heard of), it has a quorum (below), and `settle` seconds passed since it started,
  since it first heard a member and since it regained a quorum (long enough to have heard the
  heartbeats, and so the claims, of everyone: a healed partition's other side may hold it).
- **Stop before another may start**: an owner keeps a name while it has a quorum: it heard,
  within the last `lease` seconds, more than half of the members it last knew (itself
  included; exactly half counts when the oldest of them is among those heard). `lease` is
  shorter than the drop time, so an owner cut off from the others stops before they can drop
  it and start the name themselves; a member without quorum never starts anything. The set
  "last known" shrinks when a member is certainly gone (it announced its shutdown, or its host
  refused the probe: the process is dead), and on any other drop only while the member has a
  quorum — so the minority side of a partition never talks itself into a majority.
- **Handover**: an owner that is no longer the preferred candidate (a better one joined; not
  for `sticky` names, whose owner keeps them while it lives — failover mode's master), or
  that leaves gracefully (`leave()`), stops the name first; only when its `stop` finished
  (`stopped(name)`) does its advert drop the claim, and only then may the next owner start.
- **Epochs** (fencing tokens): a new owner takes one more than the highest epoch it has heard
  of for that name, from any member. Since a start waits for the previous claim to end (its
  epoch travelling in the same heartbeats), epochs only grow; a service can compare its epoch
  with one stored beside its data and refuse to act on a newer one.

The guarantee: while members hear each other, never two owners of one name at once. Under a
clean partition of a settled cluster the minority stops at `lease` and the majority starts
after the drop time. Members joining one side of a partition, repeated partitions that split
the views of who is "last known", and asymmetric partitions are outside it (no consensus on
membership here); the epoch is the fence for those.

Two members: the older one (earliest start) breaks the tie. When the younger goes silent the
older keeps (or takes) its singletons. When the older goes silent, the younger takes them over
once its probe is refused (the older's process is dead, its host up), but not when the probe
times out: a machine that is down cannot be told from a partition, so the younger waits until
the older is back (as a new member) — a graceful stop of the older hands them over at once.
Three members ride through any single failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .placement import rank

ELECTED = "elected"  # nobody held it before: the first start
FAILOVER = "failover"  # the previous owner was dropped (it died or was cut off)
HANDOVER = "handover"  # stop: a better candidate appeared; start: the owner let go
LEAVING = "leaving"  # this member stops gracefully
LOST_QUORUM = "lost-quorum"  # this member stopped hearing most of the members it knew
CONFLICT = "conflict"  # another member holds it with a higher epoch (never while they hear)


@dataclass(frozen=True, slots=True)
class Advert:
    """What a member says about singletons in each heartbeat."""

    runs: frozenset[str] = frozenset()  # names it can run
    owns: Mapping[str, int] = field(default_factory=dict)  # names it holds now → epoch
    epochs: Mapping[str, int] = field(default_factory=dict)  # highest epoch known per name
    # claims of other members this one hears now: name → (holder id, epoch). Relayed so that
    # a member that cannot hear the holder itself (an asymmetric partition) does not start
    seen: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Start:
    name: str
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    name: str
    epoch: int
    reason: str


Action = Start | Stop


@dataclass(frozen=True, slots=True)
class Ownership:
    """One name as this member sees it (for /cluster-manager)."""

    name: str
    owner: str | None  # member id, None when nobody holds it
    route: str | None
    epoch: int
    since: float | None  # when this member learned of (or took) the current ownership


@dataclass(slots=True)
class _Peer:
    id: str
    route: str
    start: float
    heard: float
    advert: Advert
    owned_since: dict[str, float] = field(default_factory=dict)


def preferred(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a name's singleton belongs on: a key's primary by the same rule."""
    best = rank(name, candidates, 1)
    return best[0] if best else None


class Election:
    def __init__(
        self,
        me: str,
        route: str,
        start: float,
        names: Iterable[str],
        *,
        lease: float,
        settle: float,
        sticky: Iterable[str] = (),
    ) -> None:
        self.me, self.route, self.start = me, route, start
        self.names = frozenset(names)
        self.sticky = frozenset(sticky)  # names whose owner keeps them when a better one joins
        self.lease, self.settle = lease, settle
        self._peers: dict[str, _Peer] = {}
        self._known: set[str] = {me}  # the members "last known" for the quorum rule
        self._starts: dict[str, float] = {me: start}  # of the known ones, for the tie-break
        self._owned: dict[str, tuple[int, float]] = {}  # name → (epoch, since)
        self._stopping: dict[str, int] = {}  # stop issued, not finished: still claimed
        self._epochs: dict[str, int] = {}
        self._orphaned: set[str] = set()  # names whose holder was removed still holding them
        self._leaving = False
        # no start before this: a member just (re)heard may hold claims not yet heard from the
        # others (e.g. the side of a healed partition that ran the name meanwhile)
        self._hold_until = start + settle
        self._had_quorum = True

    # -- input ----------------------------------------------------------------------------------
    def heard(
        self, member: str, route: str, start: float, advert: Advert | None, now: float
    ) -> None:
        """A heartbeat of `member` (the member table holds it) carrying `advert` (None: a
        message without one, e.g. a TCP Hello: the last advert stands)."""
        if member == self.me:
            return
        peer = self._peers.get(member)
        if peer is None:
            peer = self._peers[member] = _Peer(member, route, start, now, Advert())
            self._hold_until = max(self._hold_until, now + self.settle)
        if advert is None:
            advert = peer.advert
        self._orphaned -= set(advert.owns)  # someone holds it again
        for name in advert.owns:
            if name not in peer.advert.owns or peer.advert.owns[name] != advert.owns[name]:
                peer.owned_since[name] = now
        for name in list(peer.owned_since):
            if name not in advert.owns:
                del peer.owned_since[name]
        peer.heard, peer.advert, peer.route = now, advert, route
        self._known.add(member)
        self._starts[member] = start
        for name, epoch in (*advert.epochs.items(), *advert.owns.items()):
            if epoch > self._epochs.get(name, 0):
                self._epochs[name] = epoch

    def left(self, member: str, *, certain: bool, now: float) -> None:
        """The member table removed `member`. `certain`: it is gone for sure — it announced
        its shutdown, or the probe that dropped it was refused by its host (nothing listens
        there: the process is dead), or another member answered at its address. Otherwise
        (a probe that timed out) it may be alive behind a partition."""
        peer = self._peers.pop(member, None)
        if peer is None:
            return
        self._orphaned |= set(peer.advert.owns)  # it never said it let go
        if certain or self._quorum(now):
            self._known.discard(member)
            self._starts.pop(member, None)

    def stopped(self, name: str) -> None:
        """The service's stop finished: the claim ends with the next advert."""
        self._stopping.pop(name, None)

    def leave(self) -> list[Stop]:
        """Graceful shutdown: stop everything held; the adverts then run nothing."""
        self._leaving = True
        return [self._stop(name, LEAVING) for name in list(self._owned)]

    # -- the decision -------------------------------------------------------------------------
    def decide(self, now: float, *, may_start: bool = True) -> list[Action]:
        """Starts and stops due now. `may_start=False` (e.g. while this member's copy of the
        cluster's data is incomplete) still stops what must stop, and starts nothing."""
        quorum = self._quorum(now)
        if quorum and not self._had_quorum:
            self._hold_until = max(self._hold_until, now + self.settle)
        self._had_quorum = quorum
        if quorum:  # members the table dropped while we had quorum are gone for good
            self._known = {self.me, *self._peers}
            self._starts = {m: self._starts[m] for m in self._known}
        actions: list[Action] = []
        for name in sorted(self.names):
            if name in self._owned:
                reason = self._why_stop(name, quorum)
                if reason is not None:
                    actions.append(self._stop(name, reason))
            elif may_start and name not in self._stopping and self._may_start(name, now, quorum):
                reason = self._start_reason(name)
                epoch = self._epochs.get(name, 0) + 1
                self._epochs[name] = epoch
                self._owned[name] = (epoch, now)
                actions.append(Start(name, epoch, reason))
        return actions

    def _why_stop(self, name: str, quorum: bool) -> str | None:
        epoch = self._owned[name][0]
        if self._leaving:
            return LEAVING
        if not quorum:
            return LOST_QUORUM
        for peer in self._peers.values():
            theirs = peer.advert.owns.get(name)
            if theirs is not None and (theirs, peer.id) > (epoch, self.me):
                return CONFLICT
        if name not in self.sticky and self._candidate(name) != self.me:
            return HANDOVER
        return None

    def _may_start(self, name: str, now: float, quorum: bool) -> bool:
        if self._leaving or not quorum or now < self._hold_until:
            return False
        if any(name in p.advert.owns for p in self._peers.values()):
            return False
        # a peer silent for longer than the lease may hold a claim we have not heard of (e.g.
        # behind a partition): wait until it is heard again or dropped
        if any(now - p.heard > self.lease for p in self._peers.values()):
            return False
        for peer in self._peers.values():  # a claim relayed for a holder we do not hear
            holder = peer.advert.seen.get(name)
            if holder is not None and holder[0] != self.me and not self._fresh(holder[0], now):
                return False
        return self._candidate(name) == self.me

    def _candidate(self, name: str) -> str | None:
        runners = [p.id for p in self._peers.values() if name in p.advert.runs]
        if not self._leaving and name in self.names:
            runners.append(self.me)
        return preferred(name, runners)

    def _start_reason(self, name: str) -> str:
        if name in self._orphaned:
            self._orphaned.discard(name)
            return FAILOVER
        return HANDOVER if self._epochs.get(name, 0) > 0 else ELECTED

    def _stop(self, name: str, reason: str) -> Stop:
        epoch, _ = self._owned.pop(name)
        self._stopping[name] = epoch
        return Stop(name, epoch, reason)

    def _quorum(self, now: float) -> bool:
        heard = {self.me} | {p.id for p in self._peers.values() if now - p.heard <= self.lease}
        known = self._known
        count = len(heard & known)
        if 2 * count > len(known):
            return True
        if 2 * count < len(known):
            return False
        return self._oldest(known) in heard

    def _oldest(self, members: Iterable[str]) -> str:
        return min(members, key=lambda m: (self._starts.get(m, float("inf")), m))

    # -- output ---------------------------------------------------------------------------------
    def advert(self, now: float) -> Advert:
        owns = {name: epoch for name, (epoch, _) in self._owned.items()}
        owns.update(self._stopping)
        runs = frozenset() if self._leaving else self.names
        seen = {}
        for peer in self._peers.values():
            if now - peer.heard <= self.lease:
                for name, epoch in peer.advert.owns.items():
                    seen[name] = (peer.id, epoch)
        return Advert(runs, owns, dict(self._epochs), seen)

    def _fresh(self, member: str, now: float) -> bool:
        peer = self._peers.get(member)
        return peer is not None and now - peer.heard <= self.lease

    def owns(self, name: str) -> int | None:
        held = self._owned.get(name)
        return None if held is None else held[0]

    def has_quorum(self, now: float) -> bool:
        return self._quorum(now)

    def ownerships(self) -> list[Ownership]:
        names = set(self.names) | set(self._epochs)
        for peer in self._peers.values():
            names |= peer.advert.runs
        out = []
        for name in sorted(names):
            if name in self._owned:
                epoch, since = self._owned[name]
                out.append(Ownership(name, self.me, self.route, epoch, since))
                continue
            holder = next((p for p in self._peers.values() if name in p.advert.owns), None)
            if holder is None:
                out.append(Ownership(name, None, None, self._epochs.get(name, 0), None))
            else:
                out.append(
                    Ownership(
                        name,
                        holder.id,
                        holder.route,
                        holder.advert.owns[name],
                        holder.owned_since.get(name),
                    )
                )
        return out
