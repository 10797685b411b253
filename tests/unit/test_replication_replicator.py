"""The replicator without sockets: pure nodes handing messages to each other by hand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from replication.codec import DeltaMsg, Pull, StateChunk
from replication.ledger import Ledger, RecordedResponse
from replication.replicator import Received, Replicator
from worker.delta import SessionDelta
from worker.sessions import SessionStore

T0 = 1_700_000_000.0


class Node:
    def __init__(self, route: str, member_id: str, **store_args: Any) -> None:
        self.store = SessionStore(route, replica_grace=float("inf"), **store_args)
        self.rep = Replicator(self.store, member_id, ledger=Ledger())
        self.id = member_id

    def write(self, now: float, session_id: str | None = None, **changes: Any) -> DeltaMsg:
        """One local request: create (no id) or open a session, set/remove/rename, commit."""
        view = self.store.create(now) if session_id is None else self.store.begin(session_id, now)
        assert view is not None
        for name, value in changes.items():
            if name == "_invalidate":
                view.invalidate()
            elif name == "_route":
                view.change_route(value)
            elif value is None:
                del view[name]
            else:
                view[name] = value
        delta = self.store.commit(view, now)
        assert delta is not None
        return self.rep.local(delta, now)

    def value(self, session_id: str, name: str) -> Any:
        view = self.store.begin(session_id, T0 + 1)
        if view is None:
            return "<no session>"
        try:
            return view.get(name, "<absent>")
        finally:
            self.store.abort(view)


def a_b() -> tuple[Node, Node]:
    a, b = Node("node1", "a" * 32), Node("node2", "b" * 32)
    b.rep.order.contact(a.id, 0)  # B met A before A wrote anything
    a.rep.order.contact(b.id, 0)
    return a, b


def pull(origin: Node, to: Node, p: Pull, now: float = T0) -> StateChunk:
    answer = origin.rep.answer(p, now)
    chunk = StateChunk(1, True, answer.seq, answer.sessions, answer.dead, answer.responses)
    to.rep.merge_chunk(chunk, now)
    return chunk


def sync(origin: Node, to: Node, received: Received) -> Received:
    assert received.sync_since is not None
    since = received.sync_since
    chunk = pull(origin, to, Pull(1, since=None if since <= 1 else since))
    return to.rep.synced(origin.id, chunk.seq, T0)


def test_a_created_session_reaches_the_replica_with_its_attributes():
    a, b = a_b()
    msg = a.write(T0, cart=["apple"])
    sid = msg.delta.session_id
    assert b.rep.receive(a.id, msg, T0).status == "applied"
    assert b.value(sid, "cart") == ["apple"]
    assert b.rep.replica(sid.split(".")[0]) == a.rep.replica(sid.split(".")[0])


def test_later_writes_and_removals_follow_in_order_and_repeats_are_ignored():
    a, b = a_b()
    m1 = a.write(T0, n=1)
    sid = m1.delta.session_id
    m2 = a.write(T0 + 1, sid, n=2, extra="e")
    m3 = a.write(T0 + 2, sid, extra=None)
    for m in (m1, m2, m3):
        b.rep.receive(a.id, m, T0 + 3)
    assert b.rep.receive(a.id, m2, T0 + 3).status == "duplicate"
    assert (b.value(sid, "n"), b.value(sid, "extra")) == (2, "<absent>")


def test_a_gap_is_buffered_then_recovered_from_the_origin_since_the_first_missing():
    a, b = a_b()
    m1 = a.write(T0, n=1)
    sid = m1.delta.session_id
    b.rep.receive(a.id, m1, T0)
    lost = a.write(T0 + 1, sid, n=2)
    other = a.write(T0 + 1, color="red")  # another session, also lost
    m4 = a.write(T0 + 2, sid, n=3)
    received = b.rep.receive(a.id, m4, T0 + 2)
    assert received == Received("buffered", sync_since=lost.seq)
    assert b.value(sid, "n") == 1  # nothing applied out of order
    assert sync(a, b, received).sync_since is None
    assert b.value(sid, "n") == 3 and b.value(other.delta.session_id, "color") == "red"
    assert b.rep.order.expected(a.id) == m4.seq + 1
    assert b.rep.counters["gaps"] == 1


def test_a_joiner_gets_every_session_even_those_of_a_member_that_died():
    a, b = a_b()
    orphan = a.write(T0, owner="a")
    b.rep.receive(a.id, orphan, T0)
    mine = b.write(T0, owner="b")
    joiner = Node("node3", "c" * 32)
    received = joiner.rep.receive(b.id, b.write(T0 + 1, mine.delta.session_id, x=1), T0 + 1)
    assert received.status == "buffered" and received.sync_since == 1  # first contact: all
    sync(b, joiner, received)  # only B is alive; A's session comes from B's copy
    assert joiner.value(orphan.delta.session_id, "owner") == "a"
    assert joiner.value(mine.delta.session_id, "x") == 1


def test_a_delta_for_an_unknown_session_asks_its_origin_for_the_session_once():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.order.contact(a.id, create.seq)  # B synced past the creation but never got it
    b.rep.order.synced(a.id, create.seq)
    update = a.write(T0 + 1, sid, n=2)
    received = b.rep.receive(a.id, update, T0 + 1)
    rp = sid.split(".")[0]
    assert received.want == (rp,)
    assert b.rep.receive(a.id, a.write(T0 + 2, sid, n=3), T0 + 2).want == ()
    pull(a, b, Pull(1, ids=received.want))
    assert b.value(sid, "n") == 3


def test_invalidation_wins_over_late_and_concurrent_writes():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    late_write = b.write(T0 + 1, sid, n=99)
    kill = a.write(T0 + 1, sid, _invalidate=True)
    b.rep.receive(a.id, kill, T0 + 2)
    a.rep.receive(b.id, late_write, T0 + 2)
    assert a.value(sid, "n") == b.value(sid, "n") == "<no session>"
    assert a.rep.counters["deltas_after_invalidate"] == 1
    # and a stale snapshot cannot bring it back
    pull(a, b, Pull(1))
    assert b.value(sid, "n") == "<no session>"


def test_a_takeover_rename_re_keys_the_session_on_every_replica():
    a, b = a_b()
    create = a.write(T0, n=1)
    old = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    rename = b.write(T0 + 1, old, _route="node2")  # B took it over
    a.rep.receive(b.id, rename, T0 + 1)
    rp = old.split(".")[0]
    assert a.store.get_state(rp).id == b.store.get_state(rp).id == f"{rp}.node2"


def test_concurrent_writes_to_one_attribute_converge_and_are_counted():
    a, b = a_b()
    create = a.write(T0, n=0)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    from_a = a.write(T0 + 1, sid, n="A", only_a=1)
    from_b = b.write(T0 + 1, sid, n="B", only_b=1)
    a.rep.receive(b.id, from_b, T0 + 2)
    b.rep.receive(a.id, from_a, T0 + 2)
    assert a.value(sid, "n") == b.value(sid, "n") == "B"  # equal counters: higher id wins
    assert (a.value(sid, "only_a"), a.value(sid, "only_b")) == (1, 1)
    assert (b.value(sid, "only_a"), b.value(sid, "only_b")) == (1, 1)
    assert a.rep.counters["concurrent_writes"] == b.rep.counters["concurrent_writes"] == 1
    assert b.rep.counters["writes_overridden"] == 1


def test_a_response_recorded_with_a_delta_is_on_the_replica():
    a, b = a_b()
    record = RecordedResponse(200, (("Content-Type", "application/json"),), b'{"n":1}', T0)
    msg = replace(a.write(T0, n=1), request_id="rid-1", response=record)
    b.rep.receive(a.id, msg, T0)
    assert b.rep.ledger.get("rid-1", T0 + 1) == record


def test_touches_carry_read_only_accesses_and_are_not_echoed():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    assert a.rep.touches() == []  # the delta already told the access time
    view = a.store.begin(sid, T0 + 50)
    a.store.commit(view, T0 + 50)  # read only
    items = a.rep.touches()
    assert items == [(sid.split(".")[0], T0 + 50)] and a.rep.touches() == []
    b.rep.receive_touch(tuple(items))
    assert b.store.get_state(sid).last_accessed == T0 + 50
    assert b.rep.touches() == []


def test_replicas_expire_only_when_the_owner_is_gone_or_after_twice_the_limit():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    limit = create.delta.max_inactive
    assert b.rep.expire_replicas(T0 + limit + 100, {"node1", "node2"}, slack=5) == []
    assert b.rep.expire_replicas(T0 + limit + 4, {"node2"}, slack=5) == []
    assert b.rep.expire_replicas(T0 + limit + 6, {"node2"}, slack=5) == [sid]
    c = Node("node3", "c" * 32)
    c.rep.order.contact(a.id, 0)
    c.rep.receive(a.id, create, T0)
    assert c.rep.expire_replicas(T0 + 2 * limit + 6, {"node1", "node3"}, slack=5) == [sid]


def test_sessions_the_store_expired_by_itself_are_reported_for_announcement():
    a, _ = a_b()
    sid = a.write(T0, n=1).delta.session_id
    limit = a.store.max_inactive_interval
    assert a.store.begin(sid, T0 + limit + 1) is None  # expired on access
    assert a.rep.reconcile(T0 + limit + 1) == [sid]
    assert a.rep.reconcile(T0 + limit + 2) == []


def test_anti_entropy_sends_what_differs_and_asks_back_for_what_the_asker_has_newer():
    a, b = a_b()
    shared = a.write(T0, n=1)
    b.rep.receive(a.id, shared, T0)
    only_a = a.write(T0, where="a")  # B never hears of it (no gap noticed yet)
    only_b = b.write(T0, where="b")
    answer = a.rep.answer(Pull(1, digest=tuple(b.rep.digest())), T0)
    rps = {r.state.random_part for r in answer.sessions}
    assert rps == {only_a.delta.session_id.split(".")[0]}
    assert answer.want == (only_b.delta.session_id.split(".")[0],)
    assert b.rep.digest_hash() != a.rep.digest_hash()
    b.rep.merge_chunk(StateChunk(1, True, answer.seq, answer.sessions, answer.dead), T0)
    pull(b, a, Pull(1, ids=answer.want))
    assert a.rep.digest_hash() == b.rep.digest_hash()


def test_a_since_pull_the_log_no_longer_covers_answers_everything():
    a = Node("node1", "a" * 32)
    a.rep._log = type(a.rep._log)(maxlen=2)
    sids = [a.write(T0, i=i).delta.session_id for i in range(4)]
    assert len(a.rep.answer(Pull(1, since=4), T0).sessions) == 1
    assert len(a.rep.answer(Pull(1, since=1), T0).sessions) == len(sids)


def test_an_invalidation_in_a_snapshot_removes_the_replica():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    a.write(T0 + 1, sid, _invalidate=True)  # B misses it
    pull(a, b, Pull(1, ids=(sid.split(".")[0],)))
    assert b.value(sid, "n") == "<no session>"


def test_the_sweep_invalidation_of_a_replica_session_arrives_as_a_delta():
    a, b = a_b()
    create = a.write(T0, n=1)
    sid = create.delta.session_id
    b.rep.receive(a.id, create, T0)
    expired = SessionDelta(sid, T0 + 5000, invalidated=True)
    a.store.apply(expired)
    b.rep.receive(a.id, a.rep.local(expired, T0 + 5000), T0 + 5000)
    assert b.value(sid, "n") == "<no session>" and b.rep.replica(sid.split(".")[0]) is None
