"""One lb state for N processes (balancer/lb/shm.py): engines in different "processes" (process
slots over one buffer) make one set of decisions with the unchanged decision code."""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from balancer.config.model import Activation, LbConfig, MemberConfig, Method
from balancer.lb import member
from balancer.lb.decisions import Outcome, OutcomeKind, RequestFacts
from balancer.lb.engine import LbEngine
from balancer.lb.member import FIELDS, State
from balancer.lb.shared import SharedMember, ShmState
from balancer.lb.shm import TEXT_SLOT, ProcessRow, Table, TableFull, fingerprint, table_size
from balancer.lb.sticky import session_id
from tests.unit.test_lb_driver import CLOSED, REFUSED, facts, run

MEMBERS = (
    MemberConfig("n1", lbfactor=1),
    MemberConfig("n2", lbfactor=2),
    MemberConfig("n3", lbfactor=3),
)
LB = LbConfig("lb", balance_workers=("n1", "n2", "n3"))


def table(records: int = 16) -> Table:
    t = Table(bytearray(table_size(records)), records)
    t.format()
    return t


def engines(t: Table, n: int, members=MEMBERS, lb=LB) -> list[LbEngine]:
    """The supervisor's engine (owner: writes starting values), then n process engines."""
    LbEngine(lb, members, 60, 0.0, ShmState(t, slot=63, owner=True))
    return [LbEngine(lb, members, 60, 0.0, ShmState(t, slot=k, owner=False)) for k in range(n)]


def test_weights_hold_across_processes_taking_turns():
    t = table()
    procs = engines(t, 3)
    picks = Counter()
    for i in range(600):
        picks[run(procs[i % 3]).tried[0]] += 1
    assert picks == {"n1": 100, "n2": 200, "n3": 300}


def test_every_round_has_the_single_process_counts():
    # where ties start scanning (next_offset) is per process, as in mod_jk, so the order
    # within a round may differ; the counts of each round of 6 do not
    single = LbEngine(LB, MEMBERS, 60, 0.0)
    alone = [run(single).tried[0] for _ in range(36)]
    procs = engines(table(), 2)
    shared = [run(procs[i % 2]).tried[0] for i in range(36)]
    for r in range(0, 36, 6):
        assert (
            Counter(shared[r : r + 6]) == Counter(alone[r : r + 6]) == {"n1": 1, "n2": 2, "n3": 3}
        )


@pytest.mark.parametrize(
    "method", [Method.REQUEST, Method.SESSIONS, Method.TRAFFIC, Method.BUSYNESS]
)
def test_every_number_a_request_changes_is_in_the_record_as_one_process_counts_it(method):
    # The engine's per-request reads and writes are methods SharedMember overrides (member.py,
    # shared.py): a number one of them left in the process's own object would be missing from
    # what another process reads.
    members = (*MEMBERS[:2], replace(MEMBERS[2], slow_start=30))
    lb = replace(LB, method=method)
    single = LbEngine(lb, members, 60, 0.0)
    a, b = engines(table(), 2, members=members, lb=lb)
    sticky = facts(cookie="JSESSIONID=abc.n2")
    down = {"n1": REFUSED, "n2": REFUSED, "n3": REFUSED}
    cut = Outcome(OutcomeKind.CLIENT_ERROR, request_sent=True, response_started=True)
    for eng in (single, a):
        for k in range(6):
            run(eng, sent=100 + k, received=1000 * k)
        run(eng, sticky, sent=7, received=70)
        assert run(eng, backends=down).client_status == 503  # ERR, forced recovery, ERR
        eng.health_up(eng.member("n3"), 1.0)  # OK, in its slow start
        run(eng, now=1.0, backends={"n1": CLOSED, "n2": cut})
        for _ in range(4):
            run(eng, now=2.0, sent=9, received=90)
            run(eng, sticky, 2.5, sent=3, received=30)
    assert single.member("n3").slow_start_since == 1.0
    for name in ("n1", "n2", "n3"):
        alone, shared = single.member(name), b.member(name)
        for field in FIELDS:
            if field != "config":
                assert getattr(shared, field) == getattr(alone, field), (name, field)


def test_a_settings_edit_in_one_process_applies_to_the_next_request_of_all():
    # the plan reads the method, lb_retries and set_session_cookie through methods that
    # SharedSettings overrides (settings.py, shared.py)
    a, b = engines(table(), 2)
    a.update_settings(set_session_cookie=True, method=Method.TRAFFIC, lb_retries=1)
    result = run(b, sent=10, received=90)
    (forward,) = result.forwards
    assert forward.set_cookie is not None and forward.set_cookie.startswith("JSESSIONID=.")
    chosen = b.member(result.tried[0])
    assert chosen.lb_value == 100 * chosen.lb_mult  # Traffic: bytes, not requests
    assert b.settings.lb_retries == 1


def test_a_session_settings_edit_in_one_process_applies_to_the_session_lookup_of_all():
    # sticky_session, session_cookie and session_path: read through methods SharedSettings
    # overrides too (compiled, LbSettings' own C fields would keep the values it started with)
    a, b = engines(table(), 2)
    f = RequestFacts("GET", b"/app;sid=P.n2", cookies=(b"MYCOOKIE=C.n3; JSESSIONID=J.n1",))
    assert session_id(f, b.settings) == "J.n1"
    a.update_settings(session_cookie="MYCOOKIE")
    assert session_id(f, b.settings) == "C.n3"
    a.update_settings(session_path=";sid")
    assert session_id(f, b.settings) == "P.n2"
    a.update_settings(sticky_session=False)
    assert session_id(f, b.settings) is None


def test_member_fields_are_the_class_s_fields_in_order():
    # FIELDS is written out (an extension type keeps no annotations): it must be the class's
    tree = ast.parse(Path(member.__file__.rsplit(".", 2)[0] + ".py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Member"]
    declared = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]  # type: ignore[union-attr]
    assert tuple(declared) == FIELDS


def test_a_member_in_error_in_one_process_is_in_error_for_all():
    a, b = engines(table(), 2)
    result = run(a, backends={"n1": REFUSED})
    assert result.status == 200
    assert b.member("n1").state is State.ERR
    assert "n1" not in [run(b).tried[0] for _ in range(12)]


def test_a_status_page_edit_in_one_process_applies_to_all():
    a, b = engines(table(), 2)
    a.update_member("n3", 0.0, activation=Activation.DISABLED, route="third")
    assert b.member("n3").activation is Activation.DISABLED
    assert b.member("n3").route == "third"
    assert "n3" not in {run(b).tried[0] for _ in range(12)}
    a.update_settings(sticky_session=False)
    assert b.settings.sticky_session is False


def test_busy_is_counted_per_process_and_a_reaped_process_leaves_no_busy_member():
    t = table()
    a, b = engines(t, 2)
    a.open_forward(a.member("n1"))
    a.open_forward(a.member("n1"))
    b.open_forward(b.member("n1"))
    assert b.member("n1").busy == 3
    b.close_forward(b.member("n1"), 0, 0)
    assert a.member("n1").busy == 2
    t.clear_process(0)  # process 0 died with two requests in flight
    assert b.member("n1").busy == 0
    assert b.member("n1").max_busy == 3


def test_a_reload_by_the_owner_keeps_unchanged_members_and_resets_changed_ones():
    t = table()
    (a,) = engines(t, 1)
    for _ in range(6):
        run(a)
    changed = (MEMBERS[0], MEMBERS[1], MemberConfig("n3", lbfactor=1))
    owner = ShmState(t, slot=63, owner=True)
    LbEngine(LB, changed, 60, 1.0, owner)
    assert a.member("n1").elected == 1 and a.member("n2").elected == 2
    assert a.member("n3").elected == 0 and a.member("n3").lbfactor == 1


def test_a_process_that_read_a_file_the_supervisor_did_not_serves_with_its_own_numbers():
    t = table()
    engines(t, 1)
    other = (MemberConfig("n1", port=9999), *MEMBERS[1:])
    e = LbEngine(LB, other, 60, 0.0, ShmState(t, slot=0, owner=False))
    assert not isinstance(e.member("n1"), SharedMember)
    assert isinstance(e.member("n2"), SharedMember)


def test_a_full_table_is_a_clear_error():
    t = table(records=2)
    with pytest.raises(TableFull, match="no free record for lb/n2"):
        engines(t, 1)


def test_process_rows_have_one_writer_each_and_go_when_reaped():
    t = table()
    t.write_process(ProcessRow(0, 100, 1.5, 3, 40, 1))
    t.write_process(ProcessRow(1, 101, 2.5, 1, 7, 1))
    assert [(r.pid, r.requests) for r in t.processes()] == [(100, 40), (101, 7)]
    t.clear_process(0)
    assert [r.pid for r in t.processes()] == [101]


def test_processes_read_the_configuration_text_of_the_newest_generation():
    t = table()
    assert t.publish("worker.list=a\n", "/a=a\n") == 1
    assert t.publish("worker.list=b\n", "") == 2
    assert t.texts() == (2, "worker.list=b\n", "", "")
    # overwrites generation 1's slot; with what the supervisor decided besides the files
    assert t.publish("worker.list=c ü\n", "/c=c\n", '{"dynamic": {}}') == 3
    assert t.texts() == (3, "worker.list=c ü\n", "/c=c\n", '{"dynamic": {}}')


def test_a_configuration_text_too_large_for_its_slot_is_refused():
    with pytest.raises(TableFull, match="configuration text"):
        table().publish("x" * TEXT_SLOT, "")


def test_a_process_document_is_read_whole_and_outlives_its_process():
    t = table()
    t.write_blob(3, b'{"handshakes": 2}')
    t.write_blob(3, b'{"handshakes": 5}')
    assert t.blob(3) == b'{"handshakes": 5}'
    assert t.blob(4) == b"" and not t.has_blob(4)
    t.clear_process(3)  # what it counted still counts; its successor goes on from it
    assert t.blob(3) == b'{"handshakes": 5}' and t.has_blob(3)
    assert t.blob(4) == b""


def killed_mid_write(t: Table, slot: int, data: bytes) -> None:
    """What a writer killed inside ``write_blob`` leaves: the copy it was writing half done."""
    spare = t._copy(slot, 1 - t.words[t._blob(slot) // 8])
    t.words[spare // 8] |= 1  # the seqlock's odd count
    t.words[spare // 8 + 1] = len(data)
    t.view[spare + 16 : spare + 16 + len(data) // 2] = data[: len(data) // 2]


def test_a_writer_killed_mid_write_leaves_the_previous_document_whole():
    # before: one copy, so the document read as b"" and the successor started from 0
    t = table()
    t.write_blob(3, b'{"handshakes": 5}')
    killed_mid_write(t, 3, b'{"handshakes": 6, "more": "xxxxxxxx"}')
    assert t.blob(3) == b'{"handshakes": 5}' and t.has_blob(3)
    t.write_blob(3, b'{"handshakes": 7}')  # the successor writes over the half-written copy
    assert t.blob(3) == b'{"handshakes": 7}'
    t.write_blob(3, b'{"handshakes": 8}')
    assert t.blob(3) == b'{"handshakes": 8}'


def test_the_lbs_forwards_in_flight_are_those_of_every_process():
    a, b = engines(table(), 2)
    a.open_forward(a.member("n1"))
    b.open_forward(b.member("n2"))
    assert a.busy == b.busy == 2
    b.close_forward(b.member("n2"), 0, 0)
    assert a.busy == 1 and a.max_busy == 1 and b.max_busy == 2


def test_a_one_shot_id_is_consumed_once_by_any_process():
    t = table()
    assert t.consume(42) and not t.consume(42)
    for token in range(100, 100 + 64):  # 64 newer ones push it out of the ring
        assert t.consume(token)
    assert t.consume(42)


def test_a_dynamic_member_has_one_shared_record_whatever_time_each_process_saw_it_join():
    # every process (and the supervisor) admits a cluster member with its own clock; the
    # record they share is found by the config's fingerprint, which must not depend on that
    seen_by_one = MemberConfig("w1", port=8101, origin="cluster", joined_at=1796577134.125)
    seen_by_other = replace(seen_by_one, joined_at=1796577134.375)
    assert fingerprint(seen_by_one) == fingerprint(seen_by_other)
    assert fingerprint(seen_by_one) != fingerprint(replace(seen_by_one, port=8102))


def supervisor_reload(t: Table, members) -> LbEngine:
    """The owner builds the next generation's engine, frees what it dropped, publishes."""
    engine = LbEngine(LB, members, 60, 0.0, ShmState(t, slot=63, owner=True))
    keep = {("lb", m.name) for m in members} | {("lb", "")}
    t.release_except(keep, t.generation + 1)
    t.publish("", "")
    return engine


def test_a_freed_record_is_not_reused_while_a_process_may_still_write_it():
    t = table(records=4)  # the lb's settings and three members: full
    supervisor_reload(t, MEMBERS)  # generation 1
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 1))
    t.write_process(ProcessRow(1, 101, 0.0, 0, 0, 1))
    (lagging,) = engines(t, 1)
    old_n3 = lagging.member("n3")
    supervisor_reload(t, MEMBERS[:2])  # generation 2 drops n3
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 2))  # process 1 still serves generation 1
    with pytest.raises(TableFull):  # n3's record is not free yet: process 1 may write it
        supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4", lbfactor=4)))
    old_n3.elected += 1  # process 1 still counts on it: it corrupts no other member
    t.write_process(ProcessRow(1, 101, 0.0, 0, 0, 2))  # now every process passed it
    engine = supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4", lbfactor=4)))
    assert engine.member("n4").lbfactor == 4 and engine.member("n4").elected == 0


def test_a_failed_process_s_row_holds_the_record_until_it_is_reaped():
    t = table(records=4)
    supervisor_reload(t, MEMBERS)
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 1))
    supervisor_reload(t, MEMBERS[:2])  # process 0's reload failed: it stays on 1
    with pytest.raises(TableFull):
        supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4")))
    t.clear_process(0)  # reaped (its replacement starts on the newest generation)
    assert supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4"))).member("n4").elected == 0


def test_a_released_record_is_no_longer_found_by_the_processes():
    t = table()
    supervisor_reload(t, MEMBERS)
    supervisor_reload(t, MEMBERS[:2])
    assert t.find("lb", "n3") == -1 and t.find("lb", "n2") >= 0


def test_a_route_another_process_read_before_an_edit_is_read_again_after_it():
    # each process keeps its decoded strings until the record's text version moves
    a, b = engines(table(), 2)
    assert b.member("n2").route == "n2"
    assert b.route_index("n2") == 1
    a.update_member("n2", 0.0, route="second")
    assert b.member("n2").route == "second"
    assert b.route_index("second") == 1 and b.route_index("n2") == -1
    a.member("n2").last_error_reason = "connect-refused"
    assert b.member("n2").last_error_reason == "connect-refused"
    assert b.member("n2").route == "second"


def test_a_sticky_request_in_another_process_follows_a_route_edit_at_once():
    # the plan compares route bytes cached on the member (read_route_bytes): made again when
    # the shared record's route changes, whichever process edited it
    a, b = engines(table(), 2)
    sticky = facts(cookie="JSESSIONID=abc.n2")
    assert (run(b, sticky).tried, run(b, sticky).forwards[0].sticky) == (["n2"], True)
    a.update_member("n2", 0.0, route="second")
    assert not run(b, sticky).forwards[0].sticky
    followed = run(b, facts(cookie="JSESSIONID=abc.second")).forwards[0]
    assert (followed.member.name, followed.sticky) == ("n2", True)


def test_shared_numbers_keep_none_and_large_values():
    a, b = engines(table(), 2)
    m = a.member("n1")
    m.first_error_time = 12.5
    assert b.member("n1").first_error_time == 12.5
    m.first_error_time = None
    assert b.member("n1").first_error_time is None
    m.bytes_read = 2**62
    assert b.member("n1").bytes_read == 2**62
    m.chosen_since_maintenance = True
    assert b.member("n1").chosen_since_maintenance is True


def test_a_freed_record_is_not_reused_while_an_exchange_in_flight_still_writes_it():
    # reproduced before: process 0 passed generation 2, but a request planned with its
    # generation-1 engine was still in flight; n4 took n3's record and the old n3 object's
    # error report turned n4 into ERR
    t = table(records=4)
    supervisor_reload(t, MEMBERS)  # generation 1
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 1))
    (lagging,) = engines(t, 1)
    old_n3 = lagging.member("n3")
    supervisor_reload(t, MEMBERS[:2])  # generation 2 drops n3
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 2, holds=1))  # serves 2, a G1 request runs
    with pytest.raises(TableFull):
        supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4", lbfactor=4)))
    old_n3.state = State.ERR  # the request in flight fails: it writes n3's record only
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 2))  # it ended
    engine = supervisor_reload(t, (*MEMBERS[:2], MemberConfig("n4", lbfactor=4)))
    assert engine.member("n4").state is not State.ERR


def test_never_used_records_go_first_then_the_longest_freed():
    t = table(records=8)  # lb settings + 3 members: 4 never used left
    supervisor_reload(t, MEMBERS)
    n3 = t.find("lb", "n3")
    supervisor_reload(t, MEMBERS[:2])  # n3 freed by generation 2
    n2 = t.find("lb", "n2")
    supervisor_reload(t, MEMBERS[:1])  # n2 freed by generation 3
    assert t.allocate("lb", "a") not in (n3, n2)  # never-used records first
    for name in "bcd":
        t.allocate("lb", name)
    assert t.allocate("lb", "e") == n3  # then the record freed longest ago
    assert t.allocate("lb", "f") == n2
