"""Per-origin sequencing: in-order delivery, gaps, syncs with buffering, contact and heartbeats."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replication.ordering import Offer, Sequencer

ORIGIN = "origin"


def synced_at(seq: int) -> Sequencer[str]:
    s: Sequencer[str] = Sequencer()
    assert s.contact(ORIGIN, seq) == (None if seq == 0 else 1)
    if seq:
        s.synced(ORIGIN, seq)
    return s


def test_an_origin_that_never_sent_anything_needs_no_sync():
    s: Sequencer[str] = Sequencer()
    assert s.contact(ORIGIN, 0) is None and s.known(ORIGIN) and s.expected(ORIGIN) == 1
    assert s.offer(ORIGIN, 1, "d1") == Offer(deliver=("d1",))


def test_first_contact_with_an_origin_that_sent_deltas_asks_for_everything():
    s: Sequencer[str] = Sequencer()
    assert s.contact(ORIGIN, 5) == 1 and s.syncing(ORIGIN) and not s.known(ORIGIN)


def test_a_delta_before_any_sync_is_buffered_and_starts_one():
    s: Sequencer[str] = Sequencer()
    assert s.offer(ORIGIN, 3, "d3") == Offer(sync_since=1)
    assert s.offer(ORIGIN, 4, "d4") == Offer()  # already syncing
    assert s.synced(ORIGIN, 3) == Offer(deliver=("d4",))  # d3 was in the snapshot


def test_in_order_deltas_are_delivered_and_repeats_are_duplicates():
    s = synced_at(0)
    assert s.offer(ORIGIN, 1, "a").deliver == ("a",)
    assert s.offer(ORIGIN, 2, "b").deliver == ("b",)
    assert s.offer(ORIGIN, 2, "b").duplicate


def test_a_gap_buffers_and_asks_for_what_changed_since_the_first_missing():
    s = synced_at(0)
    s.offer(ORIGIN, 1, "a")
    assert s.offer(ORIGIN, 4, "d") == Offer(sync_since=2)
    assert s.offer(ORIGIN, 5, "e") == Offer()
    assert s.synced(ORIGIN, 4) == Offer(deliver=("e",))
    assert s.offer(ORIGIN, 6, "f").deliver == ("f",)


def test_after_a_snapshot_a_hole_behind_it_starts_another_sync():
    s = synced_at(0)
    s.offer(ORIGIN, 3, "c")  # gap 1..2
    s.offer(ORIGIN, 6, "f")
    offer = s.synced(ORIGIN, 4)  # snapshot covers up to 4; 5 still missing
    assert offer == Offer(sync_since=5) and s.syncing(ORIGIN)
    assert s.synced(ORIGIN, 5) == Offer(deliver=("f",))


def test_a_new_connection_announcing_an_unreceived_seq_means_frames_were_lost():
    s = synced_at(0)
    s.offer(ORIGIN, 1, "a")
    assert s.contact(ORIGIN, 1) is None  # everything sent before it arrived
    assert s.contact(ORIGIN, 3) == 2


def test_heartbeats_start_a_sync_only_after_the_lag_outlasts_the_patience():
    s = synced_at(0)
    s.offer(ORIGIN, 1, "a")
    assert s.advertised(ORIGIN, 1, 10.0, patience=1.0) is None  # seq 1 arrived: not behind
    assert s.advertised(ORIGIN, 2, 10.0, patience=1.0) is None  # maybe still in flight
    assert s.advertised(ORIGIN, 2, 10.5, patience=1.0) is None
    assert s.offer(ORIGIN, 2, "b").deliver == ("b",)
    assert s.advertised(ORIGIN, 2, 10.6, patience=1.0) is None  # caught up: the clock resets
    assert s.advertised(ORIGIN, 3, 11.0, patience=1.0) is None
    assert s.advertised(ORIGIN, 3, 12.1, patience=1.0) == 3


def test_a_steady_stream_of_writes_always_in_flight_is_not_a_gap():
    # every heartbeat advertises a seq not received yet, but each one arrives soon after
    s = synced_at(0)
    s.offer(ORIGIN, 1, "d1")
    for k in range(1, 40):
        assert s.advertised(ORIGIN, k + 1, 10.0 + 0.5 * k, patience=1.0) is None, k
        assert s.offer(ORIGIN, k + 1, f"d{k + 1}").deliver == (f"d{k + 1}",)
    assert not s.syncing(ORIGIN)


def test_an_advertised_seq_that_never_arrives_starts_a_sync_even_while_others_do():
    s = synced_at(0)
    assert s.advertised(ORIGIN, 2, 10.0, patience=1.0) is None  # seq 1 and 2: in flight?
    assert s.offer(ORIGIN, 1, "a").deliver == ("a",)  # 1 came, 2 never does
    assert s.advertised(ORIGIN, 5, 10.5, patience=1.0) is None
    assert s.advertised(ORIGIN, 6, 11.1, patience=1.0) == 2


def test_heartbeat_first_contact_syncs_at_once():
    s: Sequencer[str] = Sequencer()
    assert s.advertised(ORIGIN, 7, 0.0, patience=5.0) == 1


def test_abandoning_a_sync_hands_back_the_buffer_in_order():
    s: Sequencer[str] = Sequencer()
    s.offer(ORIGIN, 5, "e")
    s.offer(ORIGIN, 3, "c")
    assert s.abandon(ORIGIN) == ("c", "e") and not s.syncing(ORIGIN)


def test_buffers_are_bounded():
    s: Sequencer[str] = Sequencer(max_buffer=3)
    for seq in range(10, 16):
        s.offer(ORIGIN, seq, str(seq))
    assert s.dropped == 3
    assert s.synced(ORIGIN, 12) == Offer(deliver=("13", "14", "15"))


@given(st.permutations(range(1, 13)), st.integers(min_value=0, max_value=12))
def test_whatever_the_arrival_order_each_delta_after_the_snapshot_is_delivered_once_in_order(
    order, snapshot
):
    s: Sequencer[int] = Sequencer()
    delivered: list[int] = []
    for seq in order:
        delivered += s.offer(ORIGIN, seq, seq).deliver
    offer = s.synced(ORIGIN, snapshot)
    delivered += offer.deliver
    assert delivered == list(range(snapshot + 1, 13))
