"""The election rules (replication/election.py) on a simulated cluster: heartbeats, drops,
crashes, graceful leaves and partitions, driven step by step with time passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from replication.election import (
    CONFLICT,
    ELECTED,
    FAILOVER,
    HANDOVER,
    LEAVING,
    LOST_QUORUM,
    Advert,
    Election,
    Start,
    Stop,
    preferred,
)

BEAT, DROP, LEASE, SETTLE, STEP = 0.5, 3.0, 2.0, 1.5, 0.1


@dataclass
class SimNode:
    id: str
    election: Election
    up: bool = True
    running: dict[str, int] = field(default_factory=dict)
    stops_due: dict[str, float] = field(default_factory=dict)  # name → when its stop finishes
    heard: dict[str, float] = field(default_factory=dict)  # the member table: id → last heard
    process_dead: bool = False  # its host refuses the probe (vs. a machine down: a timeout)
    leaving: bool = False


class Sim:
    """N members exchanging adverts; the member table drops a peer silent past DROP."""

    def __init__(self, names: tuple[str, ...] = ("counter",), stop_delay: float = 0.3) -> None:
        self.now = 1000.0
        self.names, self.stop_delay = names, stop_delay
        self.nodes: dict[str, SimNode] = {}
        self.cut: set[frozenset[str]] = set()  # pairs that cannot hear each other
        self._side: set[str] = set()  # the side cut off from the rest, while partitioned
        self.starts: list[tuple[float, str, Start]] = []
        self.log: list[tuple[float, str, object]] = []
        self.overlaps: list[tuple[float, str, list[str]]] = []
        self._count = 0

    def add(self, names: tuple[str, ...] | None = None) -> str:
        self._count += 1
        member = f"{self._count:032x}"
        e = Election(member, f"node{self._count}", self.now, names or self.names,
                     lease=LEASE, settle=SETTLE)  # fmt: skip
        self.nodes[member] = SimNode(member, e)
        # a clean partition: a newcomer joins the side that was not cut off
        self.cut |= {frozenset((member, other)) for other in self._side}
        return member

    def hears(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self.cut

    def kill(self, member: str, *, machine: bool = False) -> None:
        """kill -9 (probes refused: certainly dead), or the machine down (probes time out)."""
        node = self.nodes[member]
        node.up, node.running, node.process_dead = False, {}, not machine

    def leave(self, member: str) -> None:
        node = self.nodes[member]
        node.leaving = True
        self._apply(node, node.election.leave())

    def partition(self, side: set[str]) -> None:
        self._side = set(side)
        for a in side:
            for b in self.nodes:
                if b not in side:
                    self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()
        self._side = set()

    def _apply(self, node: SimNode, actions: list[Start | Stop]) -> None:
        started = False
        for action in actions:
            self.log.append((self.now, node.id, action))
            if isinstance(action, Start):
                node.running[action.name] = action.epoch
                self.starts.append((self.now, node.id, action))
                started = True
            else:
                node.stops_due[action.name] = self.now + self.stop_delay
        if started:  # the claim travels at once (SingletonRunner announces it)
            self._beat(node)

    def _beat(self, node: SimNode, shutdown: bool = False) -> None:
        advert = node.election.advert(self.now)
        for other in self.nodes.values():
            if other is node or not other.up or not self.hears(node.id, other.id):
                continue
            if shutdown:
                if other.heard.pop(node.id, None) is not None:
                    other.election.left(node.id, certain=True, now=self.now)
            else:
                other.heard[node.id] = self.now
                e = node.election
                other.election.heard(node.id, e.route, e.start, advert, self.now)
            self._apply(other, other.election.decide(self.now))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + STEP, 6)
            tick = round(self.now / BEAT, 6).is_integer()
            for node in list(self.nodes.values()):
                if not node.up:
                    continue
                for name, due in list(node.stops_due.items()):
                    if self.now >= due:
                        del node.stops_due[name]
                        node.running.pop(name, None)
                        node.election.stopped(name)
                        self._beat(node)  # the release travels at once
                if node.leaving and not node.stops_due:
                    self._beat(node, shutdown=True)
                    node.up = False
                    continue
                if tick:
                    for peer, last in list(node.heard.items()):
                        if self.now - last > DROP:  # silent, and the TCP probe fails
                            del node.heard[peer]
                            # refused only where the probe reaches the dead one's host
                            dead = self.nodes[peer].process_dead and self.hears(node.id, peer)
                            node.election.left(peer, certain=dead, now=self.now)
                    self._apply(node, node.election.decide(self.now))
                    self._beat(node)
            self._check()

    def _check(self) -> None:
        for name in self.names:
            holders = [n.id for n in self.nodes.values() if n.up and name in n.running]
            if len(holders) > 1:
                self.overlaps.append((self.now, name, holders))

    def holders(self, name: str = "counter") -> list[str]:
        return [n.id for n in self.nodes.values() if n.up and name in n.running]

    def epochs(self, name: str = "counter") -> list[int]:
        return [a.epoch for _, _, a in self.starts if a.name == name]


def settled_three() -> tuple[Sim, str]:
    """Three members that agreed on the owner of "counter"; stops take 0.3 s."""
    sim = Sim(stop_delay=0.3)
    for _ in range(3):
        sim.add()
    sim.run(5)
    [owner] = sim.holders()
    return sim, owner


def test_a_lone_member_starts_its_singleton_after_settling():
    sim = Sim()
    a = sim.add()
    sim.run(SETTLE - 0.2)
    assert sim.holders() == []
    sim.run(1.0)
    assert sim.holders() == [a]
    assert sim.starts[0][2] == Start("counter", 1, ELECTED)


def test_three_members_agree_on_the_rendezvous_winner():
    sim = Sim()
    ids = [sim.add() for _ in range(3)]
    sim.run(5)
    assert sim.holders() == [preferred("counter", ids)]
    assert not sim.overlaps


def test_names_spread_over_the_members():
    names = tuple(f"job{i}" for i in range(12))
    sim = Sim(names)
    ids = [sim.add() for _ in range(3)]
    sim.run(5)
    owners = {name: sim.holders(name) for name in names}
    assert all(len(o) == 1 for o in owners.values())
    assert len({o[0] for o in owners.values()}) == 3
    assert all(owners[n] == [preferred(n, ids)] for n in names)


def test_crash_of_the_owner_fails_over_after_the_drop_time_with_a_higher_epoch():
    sim, owner = settled_three()
    sim.kill(owner)
    killed = sim.now
    sim.run(DROP)
    assert sim.holders() == []  # the dead owner's claim holds until it is dropped
    sim.run(BEAT + 0.2)
    [new] = sim.holders()
    at, who, start = sim.starts[-1]
    assert who == new and start == Start("counter", 2, FAILOVER)
    assert DROP < at - killed <= DROP + BEAT + STEP
    assert not sim.overlaps


def test_graceful_leave_hands_over_after_the_old_owners_stop_finished():
    sim, owner = settled_three()
    sim.leave(owner)
    left_at = sim.now
    sim.run(1.0)
    [new] = sim.holders()
    at, who, start = sim.starts[-1]
    assert who == new
    assert new != owner and start == Start("counter", 2, HANDOVER)
    assert at - left_at <= sim.stop_delay + 2 * STEP  # within a second, stop included
    stop = next(a for t, m, a in sim.log if m == owner and isinstance(a, Stop))
    assert stop.reason == LEAVING
    assert not sim.overlaps


def test_a_better_candidate_joining_takes_over_through_a_handover():
    sim = Sim()
    first = sim.add()
    sim.run(3)
    assert sim.holders() == [first]
    while True:  # add members until one outranks the first for "counter"
        other = sim.add()
        sim.run(4)
        if preferred("counter", [first, other]) == other:
            break
    assert sim.holders() == [other]
    assert any(isinstance(a, Stop) and a.reason == HANDOVER for _, m, a in sim.log if m == first)
    assert sim.epochs() == sorted(set(sim.epochs()))
    assert not sim.overlaps


def test_a_cut_off_owner_stops_before_the_majority_starts_and_never_restarts_alone():
    sim, owner = settled_three()
    sim.partition({owner})
    sim.run(10)
    stop = [(t, a) for t, m, a in sim.log if m == owner and isinstance(a, Stop)]
    assert stop and stop[0][1].reason == LOST_QUORUM
    [new] = sim.holders()
    assert new != owner
    assert not sim.overlaps  # the owner's stop ended before the others dropped it
    assert sim.nodes[owner].running == {}
    sim.heal()
    sim.run(5)
    assert len(sim.holders()) == 1 and not sim.overlaps
    assert sim.epochs() == sorted(set(sim.epochs()))


def settled_two() -> tuple[Sim, str, str]:
    sim = Sim()
    older = sim.add()
    sim.run(0.2)
    younger = sim.add()
    sim.run(5)
    return sim, older, younger


def test_two_members_the_older_keeps_running_when_the_younger_dies():
    sim, older, younger = settled_two()
    sim.kill(younger)
    sim.run(DROP + 2)
    assert sim.holders() == [older]


def test_two_members_the_younger_takes_over_when_the_older_process_dies():
    sim, older, younger = settled_two()
    sim.kill(older)  # its host refuses the probe: certainly dead
    sim.run(DROP + 2)
    assert sim.holders() == [younger]


def test_two_members_the_younger_waits_when_the_older_machine_is_down():
    """Documented: a machine that stopped answering cannot be told from a partition."""
    sim, older, younger = settled_two()
    sim.kill(older, machine=True)
    sim.run(DROP + 5)
    assert sim.holders() == []
    back = sim.add()  # the older one restarted: a new member the younger counts
    sim.run(5)
    assert len(sim.holders()) == 1 and sim.holders()[0] in (younger, back)


def test_the_last_member_takes_over_after_a_crash_then_a_graceful_leave():
    """Seen with real processes: the owner (oldest) is killed, the second member stops
    gracefully before the third dropped the first; the third must not wait forever."""
    first, second, me = "1" * 32, "2" * 32, "3" * 32
    e = Election(me, "node3", 10.0, ["counter"], lease=LEASE, settle=0.0)
    e.heard(first, "node1", 1.0, Advert(frozenset({"counter"}), {"counter": 1}), 11.0)
    e.heard(second, "node2", 2.0, Advert(frozenset({"counter"})), 11.0)
    assert e.decide(11.0) == []
    e.heard(second, "node2", 2.0, Advert(frozenset(), {}, {"counter": 1}), 13.0)
    e.left(second, certain=True, now=13.0)  # its shutdown announcement
    assert e.decide(13.1) == []  # one of two heard, and the oldest is not: no quorum
    e.left(first, certain=True, now=14.0)  # dropped: the probe was refused
    assert e.decide(14.1) == [Start("counter", 2, FAILOVER)]


def test_two_members_graceful_leave_of_the_older_hands_over():
    sim, older, younger = settled_two()
    if sim.holders() != [older]:
        sim.leave(younger)
        sim.run(1)
        assert sim.holders() == [older]
        return
    sim.leave(older)
    sim.run(1)
    assert sim.holders() == [younger]


def test_a_member_that_hears_a_higher_epoch_holder_stops():
    e = Election("a" * 32, "node1", 0.0, ["counter"], lease=LEASE, settle=0.0)
    assert e.decide(1.0) == [Start("counter", 1, ELECTED)]
    e.heard("b" * 32, "node2", 0.0, Advert(frozenset({"counter"}), {"counter": 5}), 1.1)
    assert e.decide(1.2) == [Stop("counter", 1, CONFLICT)]
    assert e.advert(1.3).owns == {"counter": 1}  # still claimed until the stop finished
    e.stopped("counter")
    assert e.advert(1.3).owns == {}
    assert e.advert(1.3).epochs == {"counter": 5}


def test_ownerships_name_the_holder_epoch_and_since():
    e = Election("a" * 32, "node1", 0.0, ["counter"], lease=LEASE, settle=10.0)
    e.heard("b" * 32, "node2", 0.0, Advert(frozenset({"counter"}), {"counter": 3}), 4.0)
    [o] = e.ownerships()
    assert (o.owner, o.route, o.epoch, o.since) == ("b" * 32, "node2", 3, 4.0)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "kill", "machine-down", "leave", "run"]), st.integers(0, 9),
              st.floats(0.1, 6.0)),
    min_size=1, max_size=14,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(ops)
def test_never_two_owners_and_epochs_only_grow_while_members_hear_each_other(steps):
    sim = Sim(("counter", "report"))
    sim.add()
    for op, pick, seconds in steps:
        alive = [m for m, n in sim.nodes.items() if n.up and not n.leaving]
        if op == "add" and len(alive) < 6:
            sim.add()
            # epochs live in the members' memory: the newcomer hears them before anyone dies
            seconds = max(seconds, 2 * BEAT)
        # someone stays up: epochs live in the members' memory (a whole-cluster restart
        # starts again at 1, as documented)
        elif op in ("kill", "machine-down") and len(alive) > 1:
            sim.kill(alive[pick % len(alive)], machine=op == "machine-down")
        elif op == "leave" and len(alive) > 1:
            sim.leave(alive[pick % len(alive)])
        sim.run(seconds)
    sim.run(DROP + 2)
    assert not sim.overlaps
    for name in sim.names:
        epochs = sim.epochs(name)
        assert epochs == sorted(set(epochs))


def test_a_member_whose_data_is_incomplete_starts_nothing_but_still_stops():
    e = Election("a" * 32, "node1", 0.0, ["counter"], lease=LEASE, settle=0.0)
    assert e.decide(1.0, may_start=False) == []
    assert e.decide(1.1) == [Start("counter", 1, ELECTED)]
    e.heard("b" * 32, "node2", 0.0, Advert(frozenset({"counter"}), {"counter": 5}), 1.2)
    assert e.decide(1.3, may_start=False) == [Stop("counter", 1, CONFLICT)]


def test_a_sticky_name_stays_with_its_owner_when_a_preferred_member_joins():
    first, other = "a" * 32, "b" * 32
    if preferred("counter", [first, other]) == first:
        first, other = other, first  # the joiner must be the preferred one
    e = Election(first, "node1", 0.0, ["counter"], lease=LEASE, settle=0.0, sticky=["counter"])
    assert e.decide(1.0) == [Start("counter", 1, ELECTED)]
    e.heard(other, "node2", 0.5, Advert(frozenset({"counter"}), {}, {}), 1.1)
    assert e.decide(1.2) == []
    plain = Election(first, "node1", 0.0, ["counter"], lease=LEASE, settle=0.0)
    plain.decide(1.0)
    plain.heard(other, "node2", 0.5, Advert(frozenset({"counter"}), {}, {}), 1.1)
    assert plain.decide(1.2) == [Stop("counter", 1, HANDOVER)]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 62),
    st.floats(0.1, 8.0),
    st.one_of(st.none(), st.tuples(st.integers(0, 9), st.floats(0.0, 8.0))),
    st.floats(0.0, 3.0),
)
def test_a_partition_never_runs_a_name_twice_at_once(size, bits, cut_for, kill, settle_for):
    """From a settled cluster, one clean partition (every member hears exactly its side),
    possibly with a crash while it lasts, then the heal: the cut-off owner stops within the
    lease, the others start only after the drop time (stops take 0.3 s here, inside the
    budget drop_time - lease - one heartbeat). Repeated partitions and members joining one
    side while it lasts are outside the guarantee (docs/cluster.md)."""
    sim = Sim(("counter", "report"), stop_delay=0.3)
    for _ in range(size):
        sim.add()
    sim.run(SETTLE + 2 * BEAT + settle_for)
    members = list(sim.nodes)
    sim.partition({m for i, m in enumerate(members) if (bits >> i) & 1})
    if kill is None:
        sim.run(cut_for)
    else:
        pick, after = kill
        sim.run(after)
        sim.kill(members[pick % len(members)])
        sim.run(cut_for)
    sim.heal()
    sim.run(DROP + 3)
    assert not sim.overlaps
    for name in sim.names:
        assert len(sim.holders(name)) <= 1
