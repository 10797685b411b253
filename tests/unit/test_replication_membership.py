"""The member table with an injected clock: joins, suspects, probes, drops, shutdowns."""

from __future__ import annotations

from replication.codec import MemberInfo
from replication.membership import ALIVE, SUSPECT, Joined, Left, Membership, Probe

T0 = 1_000.0
ME = MemberInfo("0" * 32, "node1", "127.0.0.1", 4001, T0)
B = MemberInfo("b" * 32, "node2", "127.0.0.1", 4002, T0 + 1)
C = MemberInfo("c" * 32, "node3", "127.0.0.1", 4003, T0 - 5)


def table() -> Membership:
    return Membership(ME, drop_time=3.0)


def test_an_unknown_member_joins_on_its_first_heartbeat():
    t = table()
    assert t.heard(B, T0, seq=4, digest="d") == [Joined(B)]
    assert t.heard(B, T0 + 0.5) == []
    view = t.get(B.id)
    assert view is not None and view.state == ALIVE and view.seq == 4 and view.digest == "d"


def test_own_heartbeats_are_ignored():
    t = table()
    assert t.heard(ME, T0) == [] and len(t) == 0


def test_members_are_listed_oldest_first():
    t = table()
    t.heard(B, T0)
    t.heard(C, T0)
    assert [m.info.route for m in t.members()] == ["node3", "node2"]


def test_silence_shorter_than_drop_time_changes_nothing():
    t = table()
    t.heard(B, T0)
    assert t.tick(T0 + 3.0) == [] and t.get(B.id).state == ALIVE


def test_silence_past_drop_time_makes_a_suspect_and_asks_for_one_probe():
    t = table()
    t.heard(B, T0)
    assert t.tick(T0 + 3.1) == [Probe(B)]
    assert t.get(B.id).state == SUSPECT
    assert t.tick(T0 + 3.2) == []  # the probe is still running


def test_a_failed_probe_drops_the_member():
    t = table()
    t.heard(B, T0)
    t.tick(T0 + 3.1)
    assert t.probe_result(B.id, False, T0 + 3.2) == [Left(B, "dropped")]
    assert B.id not in t and t.members() == []


def test_a_successful_probe_keeps_a_silent_member_as_a_suspect_and_probes_again_later():
    t = table()
    t.heard(B, T0)
    t.tick(T0 + 3.1)
    assert t.probe_result(B.id, True, T0 + 3.2) == []
    assert t.get(B.id).state == SUSPECT
    assert t.tick(T0 + 5.0) == []
    assert t.tick(T0 + 6.3) == [Probe(B)]


def test_a_heartbeat_clears_silence_suspicion_and_a_late_failed_probe_does_not_drop():
    t = table()
    t.heard(B, T0)
    t.tick(T0 + 3.1)
    t.heard(B, T0 + 3.15)
    assert t.get(B.id).state == ALIVE
    assert t.probe_result(B.id, False, T0 + 3.2) == []
    assert B.id in t


def test_a_shutdown_heartbeat_drops_at_once_and_late_heartbeats_do_not_revive():
    t = table()
    t.heard(B, T0)
    assert t.heard(B, T0 + 0.1, shutdown=True) == [Left(B, "shutdown")]
    assert t.heard(B, T0 + 0.2) == [] and B.id not in t


def test_a_restarted_process_is_a_new_member():
    t = table()
    t.heard(B, T0)
    again = MemberInfo("d" * 32, B.route, B.host, B.port, T0 + 60)
    assert t.heard(again, T0 + 60) == [Joined(again)]
    assert len(t) == 2


def test_a_missed_ack_makes_a_suspect_probed_at_once_until_it_acks_again():
    t = table()
    t.heard(B, T0)
    assert t.ack_missed(B.id, T0 + 1) == [Probe(B)]
    assert t.get(B.id).state == SUSPECT and t.alive() == []
    assert t.ack_missed(B.id, T0 + 1.5) == []
    t.probe_result(B.id, True, T0 + 1.6)
    assert t.get(B.id).state == SUSPECT
    t.ack_seen(B.id)
    assert t.get(B.id).state == ALIVE and t.alive() == [B]


def test_a_missed_ack_member_whose_probe_fails_is_dropped_even_while_heartbeats_flow():
    t = table()
    t.heard(B, T0)
    t.ack_missed(B.id, T0 + 1)
    t.heard(B, T0 + 1.1)
    assert t.probe_result(B.id, False, T0 + 1.2) == [Left(B, "dropped")]


def test_a_dropped_member_that_is_heard_again_rejoins():
    t = table()
    t.heard(B, T0)
    t.tick(T0 + 3.1)
    t.probe_result(B.id, False, T0 + 3.2)
    assert t.heard(B, T0 + 10) == [Joined(B)]
