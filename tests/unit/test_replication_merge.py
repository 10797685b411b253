"""Replica agreement: stamps decide each attribute; merge is a join; delivery order is moot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replication.merge import (
    ZERO,
    Replica,
    SessionMeta,
    filter_remote,
    merge,
    stamp_local,
)
from worker.delta import SessionDelta, SessionState, apply_delta

RP = "0123456789ABCDEF0123456789ABCDEF"
SID = f"{RP}.node1"
A, B = "a" * 32, "b" * 32
NAMES = ["x", "y", "z"]


def replica_from(writes: list[tuple], created: float, last: float) -> Replica:
    """Fold stamped writes (stamp, kind, name, value) into the replica they produce."""
    best: dict[tuple[str, str], tuple] = {}
    for w in writes:
        key = ("attr", w[2]) if w[1] in ("set", "del") else (w[1], "")
        if key not in best or w[0] > best[key][0]:
            best[key] = w
    attributes, attrs, removed = {}, {}, {}
    session_id, id_stamp, mi, mi_stamp = SID, ZERO, 1800.0, ZERO
    for (kind, _), (stamp, wkind, name, value) in best.items():
        if kind == "attr" and wkind == "set":
            attributes[name], attrs[name] = value, stamp
        elif kind == "attr":
            removed[name] = stamp
        elif kind == "id":
            session_id, id_stamp = f"{RP}.{value}", stamp
        else:
            mi, mi_stamp = value, stamp
    state = SessionState(session_id, created, last, mi, attributes)
    return Replica(state, SessionMeta(attrs, removed, id_stamp, mi_stamp))


WRITE = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(NAMES), st.sampled_from(['"v1"', '"v2"', "3"])),
    st.tuples(st.just("del"), st.sampled_from(NAMES), st.none()),
    st.tuples(st.just("id"), st.none(), st.sampled_from(["node1", "node2", "node3"])),
    st.tuples(st.just("mi"), st.none(), st.sampled_from([60.0, 600.0])),
)
LOG = st.lists(st.tuples(st.sampled_from([A, B]), WRITE), min_size=1, max_size=12).map(
    lambda ws: [((i + 1, m), kind, name, value) for i, (m, (kind, name, value)) in enumerate(ws)]
)


@st.composite
def replicas(draw: st.DrawFn, log: list[tuple]) -> Replica:
    subset = [w for w in log if draw(st.booleans())]
    created = draw(st.sampled_from([10.0, 20.0]))
    return replica_from(subset, created, draw(st.sampled_from([30.0, 40.0, 50.0])))


@given(st.data(), LOG)
def test_merge_is_commutative_associative_and_idempotent(data, log):
    a, b, c = (data.draw(replicas(log)) for _ in range(3))
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a


@given(st.data(), LOG)
def test_merging_two_replicas_gives_the_replica_of_all_their_writes(data, log):
    left = [w for w in log if data.draw(st.booleans())]
    right = [w for w in log if data.draw(st.booleans())]
    merged = merge(replica_from(left, 10.0, 30.0), replica_from(right, 20.0, 40.0))
    assert merged == replica_from(left + right, 10.0, 40.0)


def test_a_remote_write_wins_only_where_its_stamp_is_newer():
    meta = SessionMeta({"x": (5, A), "y": (2, A)}, {"z": (9, A)}, (1, A), (1, A))
    delta = SessionDelta(
        SID, 100.0, set_attributes=(("x", "1"), ("y", "2"), ("z", "3")), max_inactive=60.0
    )
    filtered, new_meta, lost = filter_remote(meta, delta, (6, B))
    assert filtered.set_values == {"x": 1, "y": 2} and filtered.max_inactive == 60.0
    assert lost == 1 and new_meta.removed == {"z": (9, A)}
    assert new_meta.attrs == {"x": (6, B), "y": (6, B)} and filtered.at == 100.0


def test_equal_counters_break_ties_on_the_member_id():
    meta = SessionMeta({"x": (5, A)}, {}, (1, A), (1, A))
    delta = SessionDelta(SID, 1.0, set_attributes=(("x", "2"),))
    assert filter_remote(meta, delta, (5, B))[0].set_attributes == (("x", "2"),)
    meta_b = SessionMeta({"x": (5, B)}, {}, (1, A), (1, A))
    assert filter_remote(meta_b, delta, (5, A))[0].set_attributes == ()


def test_a_losing_rename_is_dropped_but_the_access_time_still_moves():
    meta = SessionMeta({}, {}, (7, A), (1, A))
    delta = SessionDelta(SID, 99.0, new_id=f"{RP}.node2")
    filtered, _, lost = filter_remote(meta, delta, (3, B))
    assert filtered.new_id is None and lost == 1 and filtered.at == 99.0


def test_local_stamps_cover_what_the_delta_changed():
    created = SessionDelta(SID, 1.0, created=1.0, max_inactive=60.0, set_attributes=(("x", "1"),))
    meta = stamp_local(None, created, (1, A))
    assert meta.attrs == {"x": (1, A)} and meta.id_stamp == meta.max_inactive_stamp == (1, A)
    meta = stamp_local(meta, SessionDelta(SID, 2.0, removed_attributes=("x",)), (2, A))
    assert meta.attrs == {} and meta.removed == {"x": (2, A)} and meta.version == (2, A)


@given(st.permutations(range(6)), st.permutations(range(6)))
def test_two_replicas_receiving_the_same_writes_in_any_order_end_equal(order1, order2):
    writes = [
        ((1, A), SessionDelta(SID, 1.0, set_attributes=(("x", '"a1"'),))),
        ((2, B), SessionDelta(SID, 2.0, set_attributes=(("x", '"b2"'), ("y", "1")))),
        ((3, A), SessionDelta(SID, 3.0, removed_attributes=("y",))),
        ((3, B), SessionDelta(SID, 3.5, set_attributes=(("y", "2"),))),
        ((4, B), SessionDelta(SID, 4.0, new_id=f"{RP}.node2")),
        ((5, A), SessionDelta(SID, 5.0, max_inactive=42.0)),
    ]
    start = SessionState(SID, 0.0, 0.0, 1800.0, {})
    results = []
    for order in (order1, order2):
        state, meta = start, SessionMeta(id_stamp=(0, ""), max_inactive_stamp=(0, ""))
        for i in order:
            stamp, delta = writes[i]
            filtered, meta = filter_remote(meta, delta, stamp)[:2]
            state = apply_delta(state, filtered)
        results.append((state, meta))
    assert results[0] == results[1]
    state = results[0][0]
    assert state.id.endswith(".node2") and state.max_inactive == 42.0
    assert dict(state.attributes) == {"x": '"b2"', "y": "2"}
