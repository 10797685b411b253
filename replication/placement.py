"""Which members hold each key: rendezvous hashing over the live members. Pure, no clock.

A distributed cache keeps each key on `owners` members; sessions in distributed mode keep each
session on the member whose route it carries plus `owners - 1` backups. Both ask this module.

**Rendezvous (highest-random-weight) hashing, not a ring.** Each (key, member) pair gets a
weight (`score`, a keyed BLAKE2b of both); a key's owners are the members with the highest
weights, the primary first. Why this rather than a ring with virtual nodes:

- *Minimal movement is exact, not statistical.* A member that joins takes a key only where
  it outranks one of the key's owners; a member that leaves gives up only the keys it held,
  and every other owner of those keys stays. A ring gets there only approximately, and its
  balance depends on the number of virtual nodes (a tuning knob that must agree everywhere).
- *`owners` distinct members come for free*: the top-k of one ranking are distinct. A ring
  must walk past virtual nodes of members already chosen.
- *Nothing to build or keep in step*: the placement is a function of (key, member set);
  two members with the same view agree without exchanging a ring.
- The cost, O(members) hashes per key, is small at the cluster sizes pyjk targets (tens of
  members) and is paid per rebalance and per request key, not per byte.

The election of cluster singletons (election.py) uses the same weights, so one name's
singleton and one key's primary are chosen by the same rule.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def score(name: str, member_id: str) -> int:
    """Rendezvous weight of `member_id` for `name` (the highest weight wins)."""
    digest = hashlib.blake2b(f"{name}\x00{member_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(key: str, members: Iterable[str], count: int) -> tuple[str, ...]:
    """The `count` members with the highest weight for `key`, the highest first (ties, which
    need a 64-bit collision, go to the greater id so every member breaks them alike)."""
    if count <= 0:
        return ()
    best = heapq.nlargest(count, set(members), key=lambda m: (score(key, m), m))
    return tuple(best)


@dataclass(frozen=True, slots=True)
class Placement:
    """The owners of every key for one view of the live members.

    `owners` is the wanted number of copies; with fewer live members every member holds
    every key. `pinned` maps a key to the member that must be its primary when that member
    is live (a session's route owner); its backups are then the best of the others.
    """

    members: frozenset[str]
    owners: int = 2

    def __post_init__(self) -> None:
        if self.owners < 1:
            raise ValueError(f"owners must be >= 1, found {self.owners}")

    @classmethod
    def of(cls, members: Iterable[str], owners: int = 2) -> Placement:
        return cls(frozenset(members), owners)

    @property
    def copies(self) -> int:
        """How many copies each key has in this view: `owners`, or every member if fewer."""
        return min(self.owners, len(self.members))

    def owners_of(self, key: str, pinned: str | None = None) -> tuple[str, ...]:
        """The members that hold `key`, the primary first. `pinned`: a member that must be the
        primary when live (sessions: the node whose route the id carries)."""
        if pinned is not None and pinned in self.members:
            others = self.members - {pinned}
            return (pinned, *rank(key, others, self.copies - 1))
        return rank(key, self.members, self.copies)

    def primary(self, key: str, pinned: str | None = None) -> str | None:
        owners = self.owners_of(key, pinned)
        return owners[0] if owners else None

    def holds(self, member: str, key: str, pinned: str | None = None) -> bool:
        return member in self.owners_of(key, pinned)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One key that must be copied to members that did not hold it (`to`), from a member that
    did (`source`, the best-ranked surviving old owner, so all members pick the same one)."""

    key: str
    source: str
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rebalance:
    """What a change of view means for the keys: which to copy where, which copies to drop,
    and which keys lost every copy (more than `owners - 1` holders left at once)."""

    transfers: tuple[Transfer, ...] = ()
    drops: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # member → keys
    lost: tuple[str, ...] = ()

    def sends(self, member: str) -> tuple[Transfer, ...]:
        """The transfers `member` must perform (it is their source)."""
        return tuple(t for t in self.transfers if t.source == member)

    @property
    def moved(self) -> int:
        """Copies that travel: one per (key, new holder)."""
        return sum(len(t.to) for t in self.transfers)


def rebalance(
    old: Placement,
    new: Placement,
    keys: Iterable[str],
    pinned: Mapping[str, str] | None = None,
) -> Rebalance:
    """Plan the move from `old` to `new` for `keys` (every member computes the same plan from
    the same views). Only keys whose owner set changes appear; a copy is dropped only by a
    member that holds it in `old`, is live in `new` and is no owner there. A key whose old
    owners all left is `lost` — nothing can be copied, the caller reports it."""
    pins = pinned or {}
    transfers: list[Transfer] = []
    drops: dict[str, list[str]] = {}
    lost: list[str] = []
    for key in keys:
        pin = pins.get(key)
        before = old.owners_of(key, pin)
        after = new.owners_of(key, pin)
        if before == after:
            continue
        survivors = [m for m in before if m in new.members]
        if not survivors:
            lost.append(key)
            continue
        missing = tuple(m for m in after if m not in before)
        if missing:
            transfers.append(Transfer(key, survivors[0], missing))
        for member in survivors:
            if member not in after:
                drops.setdefault(member, []).append(key)
    return Rebalance(tuple(transfers), {m: tuple(ks) for m, ks in drops.items()}, tuple(lost))


@dataclass(slots=True)
class RateLimit:
    """A token bucket in bytes: rebalance traffic stays under `rate` bytes per second with
    bursts up to `burst` bytes, so a join never floods the channel that carries live writes.
    Pure: the caller passes `now` and sleeps for what `delay` says."""

    rate: float
    burst: float
    _tokens: float = field(init=False, default=0.0)
    _at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst > 0):
            raise ValueError("rate and burst must be > 0")
        self._tokens = self.burst

    def delay(self, size: int, now: float) -> float:
        """Seconds to wait before sending `size` bytes (0: send now). The bytes are taken at
        once, so a caller that waits the delay and sends keeps the rate; a message larger
        than the burst waits until the bucket refilled its size."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
