"""Distributed mode's session entries (replication/session_entry.py): the text a session and
its exactly-once records travel as, its route read from the head, forged texts refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.ledger import RecordedResponse
from replication.session_entry import (
    MAX_RECORDS,
    EntryFormatError,
    Merged,
    SessionEntry,
    decode_entry,
    decode_loose,
    encode_entry,
    encode_loose,
    kept_records,
    loose_key,
    merge_entries,
    route_of,
)
from worker.delta import SessionState

SID = "0123456789ABCDEF0123456789ABCDEF.node2"
RECORD = RecordedResponse(200, (("Content-Type", "application/json"),), b'{"count":3}', 50.0)


def entry(state: bool = True) -> SessionEntry:
    s = SessionState(SID, 1.0, 2.0, 1800.0, {"count": "3", "cart": '["a","b"]'})
    return SessionEntry(SID, s if state else None, {"rid-1": RECORD})


def test_an_entry_round_trips_with_its_records():
    text = encode_entry(entry())
    back = decode_entry(text, 16384)
    assert back == entry()
    assert decode_entry(encode_entry(entry(False)), 16384).state is None


def test_the_route_is_read_from_the_head_of_the_text():
    assert route_of(encode_entry(entry())) == "node2"
    assert route_of('{"s":null,"i":"' + SID + '","r":{}}') is None  # not our layout
    assert route_of("1") is None


@pytest.mark.parametrize(
    "text",
    [
        '{"i":"' + SID + '","s":null}',  # no records
        '{"i":"nope","s":null,"r":{}}',
        '{"i":"' + SID + '","s":{"v":1},"r":{}}',
        '{"i":"' + SID + '","s":null,"r":{"x":{"status":999,"headers":[],"body":"","at":1}}}',
    ],
)
def test_a_malformed_entry_is_refused(text: str):
    with pytest.raises(EntryFormatError):
        decode_entry(text, 16384)


def test_an_entry_whose_state_names_another_session_is_refused():
    other = SessionState("F" * 32 + ".node2", 1.0, 2.0, 1800.0, {})
    text = encode_entry(SessionEntry(SID, other, {}))
    with pytest.raises(EntryFormatError, match="differs"):
        decode_entry(text, 16384)


def test_only_young_records_are_kept_and_at_most_the_newest_few():
    records = {f"r{i}": RecordedResponse(200, (), b"", float(i)) for i in range(20)}
    kept = kept_records(records, now=20.0, ttl=15.0)
    assert len(kept) == MAX_RECORDS
    assert set(kept) == {f"r{i}" for i in range(20 - MAX_RECORDS, 20)}
    assert kept_records(records, now=100.0, ttl=15.0) == {}


def test_a_creating_requests_record_is_kept_under_its_request_id_without_a_route():
    text = encode_loose("rid-7", RECORD)
    assert route_of(text) is None  # placed by the hash alone: any member finds its owners
    assert decode_loose(text, "rid-7", 16384) == RECORD
    assert loose_key("rid-7") == "rid/rid-7"
    with pytest.raises(EntryFormatError):
        decode_loose(text, "rid-8", 16384)  # a record filed under another id is refused


# -- merge_entries: what the member storing a put keeps ---------------------------------------
TTL = 300.0


def rec(at: float) -> RecordedResponse:
    return RecordedResponse(200, (), f"at {at}".encode(), at)


def live(accessed: float, records: dict[str, RecordedResponse], **attrs: str) -> str:
    state = SessionState(SID, 1.0, accessed, 1800.0, attrs)
    return encode_entry(SessionEntry(SID, state, records))


def ended(records: dict[str, RecordedResponse], session_id: str = SID) -> str:
    return encode_entry(SessionEntry(session_id, None, records))


def merged(stored: str, incoming: str, now: float = 100.0) -> SessionEntry:
    result = merge_entries(stored, incoming, now, TTL, 16384)
    assert result.problem is None
    back = decode_entry(result.text, 16384)
    assert result.entry == back  # the kept entry (its expiry is decided by it) is the text's
    return back


def test_a_late_put_of_an_older_commit_keeps_the_newer_state_and_both_records():
    a = live(10.0, {"A": rec(10.0)}, x="1")  # request A's text
    b = live(11.0, {"B": rec(11.0)}, x="1", y="2")  # B committed after A, on A's state
    for first, second in ((a, b), (b, a)):  # either order of the puts: the same entry
        entry = merged(first, second)
        assert entry.state is not None and dict(entry.state.attributes) == {"x": "1", "y": "2"}
        assert set(entry.records) == {"A", "B"}


def test_the_newer_state_wins_and_a_tie_is_settled_by_the_states_not_by_arrival():
    old = live(10.0, {}, x="1")
    assert merged(old, live(12.0, {}, x="3")).state.attributes == {"x": "3"}  # type: ignore[union-attr]
    assert merged(live(12.0, {}, x="3"), old).state.attributes == {"x": "3"}  # type: ignore[union-attr]
    # two commits with one last access (lines of commits that never saw each other): the
    # same winner whichever lands first — on the old code the incoming one won, so the two
    # orders disagreed
    tied = live(10.0, {}, x="2")
    assert merged(old, tied) == merged(tied, old)


def test_of_two_ended_entries_under_two_routes_either_order_keeps_the_same_id():
    moved = SID.split(".")[0] + ".node5"
    a, b = ended({"A": rec(10.0)}), ended({"B": rec(11.0)}, moved)
    assert merged(a, b) == merged(b, a)
    assert merged(a, b).session_id == max(SID, moved)


def test_an_ended_session_stays_ended_whatever_arrives_later():
    gone = ended({"logout": rec(12.0)})
    late = live(11.0, {"A": rec(11.0)}, x="1")  # a write committed before the logout
    newer = live(13.0, {"C": rec(13.0)}, x="9")  # even a later last access: ids are not reused
    for stored, incoming in ((gone, late), (late, gone), (gone, newer)):
        entry = merged(stored, incoming)
        assert entry.state is None and entry.session_id == SID
    assert set(merged(gone, late).records) == {"logout", "A"}


def test_the_ended_entrys_id_is_kept_when_a_live_one_came_under_another_route():
    # a takeover renamed the session (same random part, new route) before it ended
    moved = SID.split(".")[0] + ".node5"
    gone = ended({}, moved)
    entry = merged(gone, live(20.0, {}, x="1"))
    assert entry.state is None and entry.session_id == moved


def test_a_takeover_under_a_new_route_wins_by_its_later_access():
    moved = SID.split(".")[0] + ".node5"
    newer = encode_entry(SessionEntry(moved, SessionState(moved, 1.0, 30.0, 1800.0, {}), {}))
    entry = merged(live(20.0, {"A": rec(20.0)}), newer)
    assert entry.session_id == moved and entry.state is not None and entry.state.id == moved
    assert set(entry.records) == {"A"}
    assert route_of(encode_entry(entry)) == "node5"  # the pin follows the winning state


def test_merged_records_are_pruned_by_age_and_count():
    stored = live(50.0, {"old": rec(1.0), "A": rec(50.0), "B": rec(60.0)})
    entry = merged(stored, live(70.0, {"C": rec(70.0)}), now=302.0)  # "old" is past the ttl
    assert set(entry.records) == {"B", "C"}  # and at most MAX_RECORDS, the newest
    assert MAX_RECORDS == 2
    result = merge_entries(stored, live(70.0, {"C": rec(70.0)}), 302.0, TTL, 16384)
    assert set(result.dropped) == {"A"}  # young, left out: the member keeps it aside
    assert merged(stored, live(70.0, {}), now=1000.0).records == {}


def test_a_late_put_keeps_its_own_record_even_when_newer_ones_landed_first():
    # the copy the primary sends for this write must carry its record to every owner, or
    # a backup would never see it (the owners keep what falls out of the entry aside)
    stored = live(60.0, {"B": rec(50.0), "C": rec(60.0)})
    result = merge_entries(stored, live(40.0, {"A": rec(40.0)}), 100.0, TTL, 16384)
    assert result.entry is not None and set(result.entry.records) == {"A", "B", "C"}
    assert result.dropped == {}
    later = merge_entries(result.text, live(70.0, {"D": rec(70.0)}), 100.0, TTL, 16384)
    assert later.entry is not None and set(later.entry.records) == {"C", "D"}
    assert set(later.dropped) == {"A", "B"}


def test_a_shared_request_id_keeps_the_incoming_record():
    first, again = rec(10.0), RecordedResponse(201, (), b"again", 11.0)
    entry = merged(live(10.0, {"A": first}), live(11.0, {"A": again}))
    assert entry.records == {"A": again}


def test_an_incoming_text_that_needs_nothing_of_the_stored_one_is_kept_as_it_came():
    incoming = live(12.0, {"A": rec(10.0)}, x="2")
    result = merge_entries(live(10.0, {"A": rec(10.0)}), incoming, 100.0, TTL, 16384)
    assert result.text == incoming and result.problem is None
    assert result.entry == decode_entry(incoming, 16384)


def test_the_kept_entry_is_the_stored_one_when_a_late_put_brings_an_older_state():
    # its state, not the put's, decides how long the entry lives (dist_sessions._merge)
    newer = encode_entry(SessionEntry(SID, SessionState(SID, 1.0, 20.0, -1.0, {}), {}))
    result = merge_entries(newer, live(10.0, {}), 100.0, TTL, 16384)
    assert result.entry is not None and result.entry.state is not None
    assert result.entry.state.max_inactive == -1.0


@pytest.mark.parametrize("stored", ["{not json", '{"i":"' + SID + '","s":{"v":1},"r":{}}', "7"])
def test_an_unreadable_stored_entry_loses_to_the_incoming_one_and_is_reported(stored: str):
    incoming = live(10.0, {"A": rec(10.0)}, x="1")
    result = merge_entries(stored, incoming, 100.0, TTL, 16384)
    assert result.text == incoming and result.entry == decode_entry(incoming, 16384)
    assert result.problem is not None and "stored entry unreadable" in result.problem


def test_a_creating_requests_record_is_stored_as_it_comes():
    record = encode_loose("rid-7", RECORD)
    result = merge_entries(encode_loose("rid-7", rec(1.0)), record, 100.0, TTL, 16384)
    assert result == Merged(record, None)  # no entry: the put's own ttl stands


MOVED = SID.split(".")[0] + ".node5"  # the same session after a takeover renamed it
PUTS = st.lists(
    # few access times, so ties are common: lines of commits that never saw each other
    st.tuples(st.integers(0, 4), st.booleans(), st.integers(0, MAX_RECORDS), st.booleans()),
    min_size=1,
    max_size=6,
)


@given(PUTS, st.randoms())
def test_puts_merged_in_any_order_settle_on_the_same_entry(puts: list, rnd: object) -> None:
    # each put: (last access, ended?, how many records it brings, under the moved id?);
    # records are named by the put, so any two puts' records differ, as two requests' ids do
    texts = []
    for k, (at, gone, count, moved) in enumerate(puts):
        sid = MOVED if moved else SID
        recs = {f"{k}-{i}": rec(float(at) + i / 10) for i in range(count)}
        state = SessionState(sid, 1.0, float(at), 1800.0, {"n": str(k)})
        texts.append(encode_entry(SessionEntry(sid, None if gone else state, recs)))

    def fold(order: list[str]) -> tuple[SessionEntry, dict[str, RecordedResponse]]:
        text, dropped = order[0], {}
        for incoming in order[1:]:
            result = merge_entries(text, incoming, 60.0, TTL, 16384)
            assert result.problem is None
            text = result.text
            dropped.update(result.dropped)
        return decode_entry(text, 16384), dropped

    shuffled = list(texts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    (got, dropped), (want, _) = fold(shuffled), fold(texts)
    assert (got.session_id, got.state) == (want.session_id, want.state)
    if any(gone for _, gone, _, _ in puts):
        assert got.state is None  # ended stays ended
    else:
        assert got.state is not None and got.state.last_accessed == max(p[0] for p in puts)
    every = {rid: r for t in texts for rid, r in decode_entry(t, 16384).records.items()}
    newest = kept_records(every, 60.0, TTL)  # the newest of all, whatever order
    last_own = decode_entry(shuffled[-1], 16384).records  # and the last put's own
    assert got.records == {**newest, **last_own}
    # nothing young is lost: what the entry no longer carries was handed out to keep aside
    assert {**got.records, **dropped} == kept_records(every, 60.0, TTL, None)
