"""What a standby takes of the active's lb state (balancer/lb/handover.py) lands in every field,
on plain members (one process) and on shared records (``--processes N``: the supervisor's
``SharedMember``/``SharedSettings``, read by a data-plane process bound to the same table).

Compiled, ``Member`` and ``LbSettings`` keep their fields in C while a shared member's live in
its record: a handover that wrote a C field of the supervisor's object would leave every
data-plane process on the files' values. These tests read what the handover wrote through a
*process's* engine, so they would see it."""

from __future__ import annotations

import json

import pytest

from balancer.config.model import Activation, LbConfig, Lock, MemberConfig, Method
from balancer.lb import controls
from balancer.lb.engine import LbEngine
from balancer.lb.handover import (
    CARRIED_EDITS,
    BadEntry,
    LbEdits,
    LbStateCopy,
    lb_entries,
    parse_entry,
    parse_part,
    parse_settings,
    split_state,
)
from balancer.lb.member import State
from balancer.lb.shared import SharedMember, SharedSettings, ShmState
from balancer.lb.shm import Table, table_size
from balancer.status.commands import LB_PARAMS
from tests.unit.test_balancer_pair import parsed

MEMBERS = (MemberConfig("n1"), MemberConfig("n2"), MemberConfig("n3"))
LB = LbConfig("lb", balance_workers=("n1", "n2", "n3"))

# every member field the status page edits (controls.MEMBER_EDITS), to a non-file value
MEMBER_EDIT = {
    "activation": Activation.DISABLED,
    "lbfactor": 3,
    "route": "r2x",
    "redirect": "n3",
    "domain": "dom2",
    "distance": 2,
    "retries": 5,
    "retry_interval": 300,
    "recovery_options": 3,
    "busy_limit": 9,
    "reply_timeout": 1234,
}
# every lb setting the status page edits (its LB_PARAMS: no other one is carried), to a
# non-file value
SETTINGS_EDIT = {
    "sticky_session": False,
    "sticky_session_force": True,
    "method": Method.BUSYNESS,
    "lock": Lock.PESSIMISTIC,
    "retries": 4,
    "retry_interval": 250,
    "recover_time": 90,
    "error_escalation_time": 10,
    "max_reply_timeouts": 2,
}


def test_the_edits_above_are_every_edit_the_status_page_can_make():
    assert set(MEMBER_EDIT) == set(controls.MEMBER_EDITS)
    assert set(SETTINGS_EDIT) == {field for field, _ in LB_PARAMS.values()}
    assert set(CARRIED_EDITS) == set(MEMBER_EDIT) - {"activation", "lbfactor", "distance"}


def edited_active(now: float) -> LbEngine:
    active = LbEngine(LB, MEMBERS, 60, 0.0)
    n2 = active.member("n2")
    controls.update_member(active, n2, now, MEMBER_EDIT)
    controls.update_settings(active, SETTINGS_EDIT)
    n2.state, n2.lb_value, n2.health_down = State.ERR, 77, True
    n2.first_error_time, n2.last_error_time, n2.last_error_reason = now - 8, now - 2, "refused"
    n2.slow_start_since = now - 1
    return active


def over_the_wire(active: LbEngine, now: float) -> LbStateCopy:
    parts, capped = split_state(lb_entries({"lb": active}, now))
    assert capped == 0
    copy = LbStateCopy()
    for part in parts:  # as datagrams carry them: JSON text
        copy.take(parsed(json.loads(json.dumps(part))), now=50.0)
    return copy


def standby_engines(kind: str) -> tuple[LbEngine, LbEngine]:
    """(the engine the handover writes, the engine that reads): one plain engine, or the
    supervisor's engine over a shared table and a data-plane process's over the same one."""
    if kind == "plain":
        plain = LbEngine(LB, MEMBERS, 60, 0.0)
        return plain, plain
    table = Table(bytearray(table_size(16)), 16)
    table.format()
    supervisor = LbEngine(LB, MEMBERS, 60, 0.0, ShmState(table, slot=63, owner=True))
    process = LbEngine(LB, MEMBERS, 60, 0.0, ShmState(table, slot=0, owner=False))
    assert isinstance(process.member("n2"), SharedMember)
    assert isinstance(process.settings, SharedSettings)
    return supervisor, process


@pytest.mark.parametrize("kind", ["plain", "shared"])
def test_every_field_of_the_actives_state_reaches_the_standbys_engine(kind: str):
    active = edited_active(now=1000.0)
    written, reader = standby_engines(kind)
    applied = over_the_wire(active, 1000.0).apply({"lb": written})
    assert [a.member for a in applied if a.changed] == ["n2"]

    got, want = reader.member("n2"), active.member("n2")
    for name, value in MEMBER_EDIT.items():
        assert getattr(got, name) == value, name
    assert got.state is State.ERR and got.lb_value == 77 and got.health_down
    assert got.last_error_reason == "refused"
    assert (got.first_error_time, got.last_error_time) == (42.0, 48.0)  # ages from arrival
    assert got.slow_start_since == 49.0
    assert got.lb_mult == want.lb_mult != reader.member("n1").lb_mult  # lbfactor 3
    for name, value in SETTINGS_EDIT.items():
        assert getattr(reader.settings, name) == value, name
    # what the decision code reads through the C accessors: the sticky route's member
    assert reader.route_index("r2x") == 1 and reader.route_index("n2") == -1
    untouched = reader.member("n1")
    assert untouched.route == "n1" and untouched.activation is Activation.ACTIVE


@pytest.mark.parametrize("kind", ["plain", "shared"])
def test_an_edit_undone_on_the_active_is_undone_on_the_standby(kind: str):
    written, reader = standby_engines(kind)
    over_the_wire(edited_active(now=1000.0), 1000.0).apply({"lb": written})
    fresh = LbEngine(LB, MEMBERS, 60, 0.0)  # the files' values again on the active
    [part], _ = split_state(lb_entries({"lb": fresh}, 1000.0))
    assert part["lb"][""] == {} and "x" not in part["lb"]["n2"]  # nothing edited: not sent
    copy = LbStateCopy()
    copy.take(parsed(part), now=60.0)
    copy.apply({"lb": written})
    n2 = reader.member("n2")
    assert (n2.route, n2.domain, n2.redirect, n2.retries) == (
        "n2",
        "",
        "",
        fresh.member("n2").retries,
    )
    assert (
        reader.settings.method is Method.REQUEST and reader.settings.session_cookie == "JSESSIONID"
    )


ENTRY = {"a": "ACT", "s": "OK", "f": 1, "d": 0, "v": 0, "e1": None, "e2": None, "r": "",
         "h": False, "ss": None}  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"n1": {**ENTRY, "x": {"route": "bad route"}}},
        {"n1": {**ENTRY, "x": {"route": "a:b"}}},  # the page's names have no ":"
        {"n1": {**ENTRY, "x": {"retries": 0}}},
        {"n1": {**ENTRY, "x": {"reply_timeout": 2**62}}},  # the page stops at 2^31-1
        {"n1": {**ENTRY, "x": {"retries": "3"}}},
        {"n1": {**ENTRY, "x": {"route": ["n1"]}}},
        {"n1": {**ENTRY, "d": 2**31}},  # the page's distance stops at 2^31-1
        {"n1": {**ENTRY, "a": ["ACT"]}},  # before: TypeError (unhashable), a traceback
        {"n1": {**ENTRY, "s": {}}},
        {"": {"method": "Fastest"}},
        {"": {"method": ["Request"]}},  # before: TypeError
        {"": {"retries": "3"}},
        {"": {"retry_interval": 2**62}},
        {"": {"sticky_session": 1}},
        {"": []},
    ],
)
def test_a_bad_edit_in_the_actives_state_is_refused_alone(bad):
    part, refused = parse_part({"lb": {**bad, "n3": ENTRY}})
    assert list(part) == [("lb", "n3")] and len(refused) == 1
    with pytest.raises(BadEntry):
        parse_entry(bad["n1"]) if "n1" in bad else parse_settings(bad[""])


def test_only_the_settings_the_status_page_edits_travel():
    # before: every LbSettings field was taken, so a forged (or any) beat could set the
    # routing cookie's name to a header injection (CRLF) the standby then sent after the
    # takeover; the status page edits none of these
    forged = {"set_session_cookie": True, "lb_retries": 2**62,
              "session_cookie": "JSESSIONID=.n1\r\nX-Injected: 1",
              "session_cookie_path": "/\r\nSet-Cookie: admin=1", "session_path": ";x"}  # fmt: skip
    part, refused = parse_part({"lb": {"": {**forged, "retries": 4}}})
    assert refused == [] and part[("lb", "")] == LbEdits((("retries", 4),))
    standby = LbEngine(LB, MEMBERS, 60, 0.0)
    copy = LbStateCopy()
    copy.take(part, now=0.0)
    copy.apply({"lb": standby})
    assert standby.settings.session_cookie == "JSESSIONID" and standby.settings.retries == 4
    assert not standby.settings.set_session_cookie
    active = LbEngine(LB, MEMBERS, 60, 0.0)
    controls.update_settings(active, {"session_cookie": "SID"})  # not the page's: not sent
    assert lb_entries({"lb": active}, 0.0)[0] == ("lb", "", {})


def test_keys_a_newer_active_adds_are_ignored():
    part, refused = parse_part(
        {"lb": {"": {"retries": 4, "future": 1}, "n1": {**ENTRY, "new": 1, "x": {"later": 2}}}}
    )
    assert refused == [] and set(part) == {("lb", ""), ("lb", "n1")}


def test_two_members_given_one_route_are_both_refused():
    part, refused = parse_part({"lb": {"n1": {**ENTRY, "x": {"route": "r"}},
                                       "n2": {**ENTRY, "x": {"route": "r"}},
                                       "n3": ENTRY}})  # fmt: skip
    assert list(part) == [("lb", "n3")] and len(refused) == 2
    # across two parts: the second clashes with what the first gave, or with a files' route
    copy = LbStateCopy()
    copy.take(parsed({"lb": {"n1": {**ENTRY, "x": {"route": "n3"}}}}), now=0.0)
    standby = LbEngine(LB, MEMBERS, 60, 0.0)
    assert copy.apply({"lb": standby}) == []
    assert [m.route for m in standby.members] == ["n1", "n2", "n3"]


def test_the_copy_carried_over_a_restart_reads_back_with_its_ages_gone_on():
    # a balancer that stepped down restarts (exec) and may take over before it hears the
    # active again: it hands its copy to its next image in the active's own format
    copy = over_the_wire(edited_active(now=1000.0), 1000.0)  # arrived at 50.0
    part, refused = parse_part(json.loads(json.dumps(copy.to_wire(now=53.0))))
    assert refused == [] and set(part) == set(copy.entries)
    again = LbStateCopy()
    again.take(part, now=7.0)  # the next image's clock
    written, reader = standby_engines("plain")
    again.apply({"lb": written})
    got = reader.member("n2")
    for name, value in MEMBER_EDIT.items():
        assert getattr(got, name) == value, name
    for name, value in SETTINGS_EDIT.items():
        assert getattr(reader.settings, name) == value, name
    assert (got.first_error_time, got.last_error_time) == (7.0 - 11.0, 7.0 - 5.0)  # 3 s on
