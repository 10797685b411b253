"""The balancer pair's pure parts (balancer/pair.py, balancer/lb/handover.py) and its
heartbeat on the wire: what the active sends, how it is split, what the standby applies, and
who serves when."""

from __future__ import annotations

import argparse
import json
import os
import time

import pytest

from balancer.__main__ import parse_listen
from balancer.config.model import Activation
from balancer.lb.handover import (
    MAX_PARTS,
    PART_BUDGET,
    BadEntry,
    LbStateCopy,
    Part,
    lb_entries,
    member_entry,
    parse_entry,
    parse_part,
    split_state,
)
from balancer.lb.member import State
from balancer.pair import (
    ACTIVE,
    STANDBY,
    ActiveBack,
    PairState,
    PairView,
    PeerHeard,
    StepDown,
    Takeover,
    TwoActives,
)
from balancer.pair_run import standby_argv
from replication import codec
from replication.codec import BalancerBeat, CodecError
from replication.seal import Kind, Opener, Sealer
from tests.unit.test_lb_driver import engine
from tests.unit.test_replication_node import make_node

A, B, C = "a" * 32, "b" * 32, "c" * 32
ENTRY = {"a": "DIS", "s": "ERR", "f": 2, "d": 1, "v": 7, "e1": 4.0, "e2": 1.5, "r": "refused",
         "h": True, "ss": None}  # fmt: skip


# -- the wire -------------------------------------------------------------------------------


def beat(**kw: object) -> BalancerBeat:
    fields = dict(cluster="c", id=A, role="active", start=1_700_000_000.0, host="127.0.0.1",
                  listen=("127.0.0.1:8080", "https://[::1]:8443"), part=2, parts=3,
                  lbs={"lb": {"n1": ENTRY}}, shutdown=False)  # fmt: skip
    fields.update(kw)
    return BalancerBeat(**fields)  # type: ignore[arg-type]


def test_a_balancer_heartbeat_survives_the_wire():
    msg = beat()
    assert codec.decode(codec.encode(msg)) == msg
    assert codec.decode(codec.encode(beat(role="standby", lbs={}, shutdown=True))).shutdown


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "master"),
        ("start", -1),
        ("host", "example.com"),
        ("listen", ["x" * 200]),
        ("listen", ["127.0.0.1:1"] * 17),
        ("part", [0, 1]),
        ("part", [3, 2]),
        ("part", [1, MAX_PARTS + 1]),
        ("lbs", []),
        ("id", "A" * 32),
    ],
)
def test_a_balancer_heartbeats_fields_are_checked(field, value):
    wire = codec.to_wire(beat())
    wire[field] = value
    with pytest.raises(CodecError, match=field):
        codec.from_wire(wire)


def sealed(msg: object, sender: bytes, key: bytes | None = None) -> bytes:
    sealer = Sealer(key, sender, 1, Kind.HEARTBEAT)
    return sealer.seal(codec.encode(msg), time.time())  # type: ignore[arg-type]


def test_a_datagram_opens_as_the_balancers_heartbeat_only_from_its_sender():
    sender = bytes.fromhex(A)
    assert codec.open_datagram(Opener(None), sealed(beat(), sender), time.time()) == beat()
    with pytest.raises(CodecError):  # another sender's id inside
        codec.open_datagram(Opener(None), sealed(beat(id=B), sender), time.time())
    with pytest.raises(CodecError):  # a reader of members' heartbeats only
        codec.open_heartbeat(Opener(None), sealed(beat(), os.urandom(16)), time.time())


def test_a_worker_counts_a_balancers_heartbeat_and_never_makes_it_a_member():
    node, _, _ = make_node()  # insecure: envelopes unsealed, as the datagram below
    node._datagram(sealed(beat(cluster="unit"), bytes.fromhex(A)))
    assert node.counters["balancer_heartbeats_in"] == 1
    assert node.counters["drop_malformed"] == 0 and node.counters["heartbeats_in"] == 0
    assert len(node.membership) == 0  # no replica, cache owner or singleton owner


# -- the lb state out: entries and parts ----------------------------------------------------


def test_an_entry_carries_what_the_status_page_and_the_engine_changed_as_ages():
    eng = engine("n1", "n2")
    n2 = eng.member("n2")
    n2.activation, n2.state, n2.lb_value = Activation.STOPPED, State.ERR, 9
    n2.first_error_time, n2.last_error_time, n2.last_error_reason = 90.0, 99.5, "timeout"
    entry = member_entry(n2, now=100.0)
    assert entry == {"a": "STP", "s": "ERR", "f": 1, "d": 0, "v": 9, "e1": 10.0, "e2": 0.5,
                     "r": "timeout", "h": False, "ss": None}  # fmt: skip
    assert parse_entry(entry).activation is Activation.STOPPED


def many(n: int) -> list[tuple[str, str, dict]]:
    return [("lb", f"member-with-a-long-name-{i:05d}", dict(ENTRY)) for i in range(n)]


def test_a_big_state_is_split_into_parts_that_each_fit_a_datagram():
    entries = many(300)
    parts, capped = split_state(entries)
    assert capped == 0 and len(parts) > 1
    assert sum(len(p["lb"]) for p in parts) == 300
    for part in parts:
        assert len(json.dumps(part, separators=(",", ":"))) <= PART_BUDGET
        msg = beat(part=1, parts=len(parts), lbs=part)
        # sealed: header 55 + tag 16; the rest of the heartbeat is small
        assert len(codec.encode(msg)) + 71 <= PART_BUDGET + 300


def test_past_the_last_part_the_rest_is_capped_and_counted():
    parts, capped = split_state(many(5000))
    assert len(parts) == MAX_PARTS
    carried = sum(len(p["lb"]) for p in parts)
    assert carried + capped == 5000 and capped > 0


def test_no_members_is_one_empty_part():
    assert split_state([]) == ([{}], 0)


@pytest.mark.parametrize(
    "bad",
    [
        {**ENTRY, "a": "ON"},
        {**ENTRY, "s": "FINE"},
        {**ENTRY, "f": 0},
        {**ENTRY, "v": 1.5},
        {**ENTRY, "e1": -1},
        {**ENTRY, "e1": float("inf")},
        {**ENTRY, "r": "x" * 65},
        {**ENTRY, "h": 1},
        {k: v for k, v in ENTRY.items() if k != "ss"},
        [],
    ],
)
def test_a_bad_entry_is_refused(bad):
    part, refused = parse_part({"lb": {"n1": bad, "n2": ENTRY}})
    assert list(part) == [("lb", "n2")]  # the others of its part are still taken
    assert len(refused) == 1 and "member 'n1'" in refused[0]
    with pytest.raises(BadEntry):
        parse_entry(bad)


def parsed(lbs: dict[str, object]) -> Part:
    """A part every entry of which is good."""
    part, refused = parse_part(lbs)
    assert refused == []
    return part


# -- the lb state in ------------------------------------------------------------------------


def test_the_standby_applies_the_actives_state_with_its_ages_counted_from_arrival():
    active = engine("n1", "n2", "n3")
    n2 = active.member("n2")
    n2.activation, n2.state, n2.lbfactor = Activation.DISABLED, State.ERR, 3
    n2.first_error_time, n2.last_error_time = 1000.0 - 8, 1000.0 - 2
    [part], _ = split_state(lb_entries({"lb": active}, now=1000.0))
    copy = LbStateCopy()
    copy.take(parsed(part), now=50.0)  # the standby's clock is its own

    standby = engine("n1", "n2", "n3")
    applied = copy.apply({"lb": standby})
    got = standby.member("n2")
    assert got.activation is Activation.DISABLED and got.state is State.ERR
    assert got.lbfactor == 3 and standby.member("n1").lbfactor == 1
    assert got.first_error_time == 42.0 and got.last_error_time == 48.0
    assert [a.member for a in applied if a.changed] == ["n2"]
    assert str(applied[1]) == "lb=lb member=n2 activation=DIS state=ERR source=active"
    # the multipliers follow the new lbfactor, as a status-page edit would
    assert got.lb_mult != standby.member("n1").lb_mult


def test_entries_of_members_the_standby_lacks_wait_for_them():
    copy = LbStateCopy()
    copy.take(parsed({"lb": {"gone": ENTRY}, "other": {"n1": ENTRY}}), now=0.0)
    assert copy.apply({"lb": engine("n1")}) == []


# -- who serves -----------------------------------------------------------------------------

LISTEN = ("127.0.0.1:8080",)


def test_a_standby_waits_while_the_active_is_heard_and_takes_over_after_drop_time():
    pair = PairState(A, standby=True, drop_time=3.0, now=0.0)
    [heard] = pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 0.2)
    assert isinstance(heard, PeerHeard) and heard.peer.role == ACTIVE  # logged once
    for t in (0.5, 1.0, 3.5):
        assert pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, t) == []
        assert pair.tick(t + 0.4) == []
    assert pair.tick(6.4) == []  # 2.9 s of silence
    [event] = pair.tick(6.6)
    assert isinstance(event, Takeover) and event.reason == "active-silent"
    assert event.peer is not None and event.peer.host == "10.0.0.1"
    assert event.silent == pytest.approx(3.1)
    assert pair.tick(7.0) == []  # decided once
    pair.serving()
    assert pair.role == ACTIVE and pair.takeovers == 1


def test_the_actives_shutdown_heartbeat_hands_over_at_once():
    pair = PairState(A, standby=True, drop_time=3.0, now=0.0)
    pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 1.0)
    [event] = pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 1.2, shutdown=True)
    assert isinstance(event, Takeover) and event.reason == "active-shutdown"
    assert pair.view(1.3).peers == ()  # off the page


def test_a_standby_that_never_hears_an_active_serves_after_drop_time():
    pair = PairState(A, standby=True, drop_time=3.0, now=10.0)
    pair.heard(C, STANDBY, "10.0.0.3", LISTEN, 11.0)  # another standby does not count
    assert pair.tick(12.9) == []
    [event] = pair.tick(13.1)
    assert isinstance(event, Takeover) and event.reason == "no-active"


def test_an_active_heard_again_while_the_ports_are_held_keeps_the_standby_waiting():
    pair = PairState(A, standby=True, drop_time=1.0, now=0.0)
    pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 0.5)
    assert isinstance(pair.tick(1.6)[0], Takeover)
    [event] = pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 1.7)
    assert isinstance(event, ActiveBack) and not pair.taking_over
    assert pair.role == STANDBY


def test_two_actives_are_counted_once_per_episode_and_shown():
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0, started=100.0)  # the first
    _, event = pair.heard(B, ACTIVE, "10.0.0.2", LISTEN, 0.1, started=200.0)
    assert isinstance(event, TwoActives) and event.peer.host == "10.0.0.2"
    assert pair.heard(B, ACTIVE, "10.0.0.2", LISTEN, 0.2, started=200.0) == []
    assert pair.view(0.3).other_active and pair.two_actives == 1
    pair.tick(1.5)  # silent past drop_time: the episode ends
    assert not pair.view(1.5).other_active
    assert isinstance(pair.heard(B, ACTIVE, "10.0.0.2", LISTEN, 2.0, started=200.0)[-1], TwoActives)
    assert pair.two_actives == 2


def test_the_view_travels_as_json_between_the_supervisor_and_its_processes():
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0)
    pair.heard(B, STANDBY, "10.0.0.2", LISTEN, 0.1)
    view = pair.view(0.35)
    again = PairView.from_json(json.loads(json.dumps(view.to_json())))
    assert again == view and again.peers[0].heard_ago == 0.25


def test_a_part_just_received_is_applied_alone():
    copy = LbStateCopy()
    copy.take(parsed({"lb": {"n1": ENTRY, "n2": ENTRY}}), now=0.0)
    standby = engine("n1", "n2")
    standby.member("n1").activation = Activation.STOPPED  # changed since: not re-applied
    [applied] = copy.apply({"lb": standby}, only=[("lb", "n2")])
    assert applied.member == "n2" and standby.member("n1").activation is Activation.STOPPED


def test_a_restarted_standby_with_a_new_id_replaces_its_older_entry():
    # kill -9 and a restart: a new random id from the same host; before, two peers of one
    # machine, so /metrics had two samples with the same {role,host}
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0)
    pair.heard(B, STANDBY, "10.0.0.2", LISTEN, 0.1)
    pair.heard(C, STANDBY, "10.0.0.2", LISTEN, 0.5)
    assert [p.id for p in pair.view(0.6).peers] == [C]
    pair.heard(B, STANDBY, "10.0.0.3", LISTEN, 0.7)  # another host is another peer
    assert len(pair.view(0.8).peers) == 2


def test_peers_present_count_those_heard_within_drop_time_and_reach_zero():
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0)
    pair.heard(B, STANDBY, "10.0.0.2", LISTEN, 0.1)
    assert pair.view(0.5).present(STANDBY) == 1 and pair.view(0.5).present(ACTIVE) == 0
    assert pair.view(1.5).present(STANDBY) == 0  # silent: still listed, no longer present
    pair.tick(20.0)  # 10 x drop_time: off the page, and still 0
    view = pair.view(20.0)
    assert view.peers == () and view.present(STANDBY) == 0


@pytest.mark.parametrize(
    "given",
    [
        "my_host.internal:80",
        "[fe80::1%eth0]:80",
        "https://[::1]:8443",
        "0.0.0.0:8080",
        ("h" * 60 + ".") * 3 + "example:443",  # a long name (193 characters)
    ],
)
def test_every_listen_the_command_line_takes_reaches_the_peer(given):
    # before: these made every heartbeat unreadable to the peer (a silent split brain)
    listen = str(parse_listen(given))
    msg = beat(listen=(listen, "127.0.0.1:8080"))
    assert codec.decode(codec.encode(msg)).listen == (listen, "127.0.0.1:8080")


@pytest.mark.parametrize("bad", ["bad host:80", "a/b:80", "host\n:80", "[::1]x:80"])
def test_a_listen_the_peer_could_not_read_is_refused_at_start(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="host must be"):
        parse_listen(bad)


def test_at_a_takeover_only_entries_the_active_still_sent_within_drop_time_apply():
    # before: the copy kept every entry ever received, so a member the active had removed
    # (or a disabled state of an older active) was applied at the takeover
    stopped = {**ENTRY, "a": "STP"}
    copy = LbStateCopy(window=3.0)
    copy.take(parsed({"lb": {"n1": ENTRY, "n2": stopped}}), now=0.0)
    for t in (1.0, 2.0, 3.5):  # the active sends n1 only from now on
        copy.take(parsed({"lb": {"n1": ENTRY}}), now=t)
    standby = engine("n1", "n2")
    assert [a.member for a in copy.apply({"lb": standby})] == ["n1"]
    assert standby.member("n2").activation is Activation.ACTIVE
    assert set(copy.entries) == {("lb", "n1")}  # forgotten, not kept for ever


def test_the_standby_knows_when_its_takeover_falls_due():
    pair = PairState("me", standby=True, drop_time=3.0, now=0.0)
    assert pair.due_in(1.0) == 2.0  # never heard an active: drop_time after its start
    pair.heard("a", ACTIVE, "10.0.0.1", (), 2.0)
    assert pair.due_in(2.5) == 2.5  # the active's silence reaches drop_time at 5.0
    assert pair.tick(4.99) == []
    assert isinstance(pair.tick(5.0 + 1e-6)[0], Takeover)
    assert pair.due_in(5.1) is None  # decided: nothing more pending
    assert PairState("me", standby=False, drop_time=3.0, now=0.0).due_in(1.0) is None


def test_of_two_actives_the_later_started_steps_down_and_the_other_keeps_serving():
    first = PairState(A, standby=False, drop_time=1.0, now=0.0, started=100.0)
    later = PairState(B, standby=False, drop_time=1.0, now=0.0, started=200.0)
    events = later.heard(A, ACTIVE, "10.0.0.1", LISTEN, 0.1, started=100.0)
    [down] = [e for e in events if isinstance(e, StepDown)]
    assert any(isinstance(e, TwoActives) for e in events)  # counted as well
    assert (down.started, down.peer_started, down.peer.host) == (200.0, 100.0, "10.0.0.1")
    assert later.stepping_down and later.step_downs == 1 and later.view(0.2).step_downs == 1
    assert later.heard(A, ACTIVE, "10.0.0.1", LISTEN, 0.2, started=100.0) == []  # decided once
    events = first.heard(B, ACTIVE, "10.0.0.2", LISTEN, 0.1, started=200.0)
    assert not any(isinstance(e, StepDown) for e in events) and not first.stepping_down
    assert first.two_actives == 1


def test_two_actives_started_at_once_step_down_by_the_larger_id():
    low, high = sorted(["a" * 32, "b" * 32])
    assert not any(
        isinstance(e, StepDown)
        for e in PairState(low, standby=False, drop_time=1.0, now=0.0, started=5.0).heard(
            high, ACTIVE, "h", LISTEN, 0.1, started=5.0
        )
    )
    assert any(
        isinstance(e, StepDown)
        for e in PairState(high, standby=False, drop_time=1.0, now=0.0, started=5.0).heard(
            low, ACTIVE, "h", LISTEN, 0.1, started=5.0
        )
    )


def test_a_standby_never_steps_down_and_the_count_survives_the_json_view():
    pair = PairState(A, standby=True, drop_time=1.0, now=0.0, started=900.0, step_downs=2)
    assert not any(
        isinstance(e, StepDown) for e in pair.heard(B, ACTIVE, "h", LISTEN, 0.1, started=1.0)
    )
    view = pair.view(0.2)
    assert PairView.from_json(json.loads(json.dumps(view.to_json()))).step_downs == 2


def test_a_balancer_that_stepped_down_restarts_with_its_flags_as_a_standby():
    argv = ["--workers", "w", "--listen", "127.0.0.1:80", "--cluster", "c.toml"]
    assert standby_argv(argv, 1) == [*argv, "--standby", "--step-downs", "1"]
    again = standby_argv([*argv, "--standby", "--step-downs", "1"], 2)
    assert again == [*argv, "--standby", "--step-downs", "2"]
    assert standby_argv([*argv, "--step-downs=4"], 5) == [*argv, "--standby", "--step-downs", "5"]


def test_a_balancer_that_left_decides_nothing_from_the_beats_it_still_hears():
    # before: SIGTERM of an active started after its standby: the standby took over on the
    # shutdown beat and beat as active; the stopping one, still draining, heard an older
    # active, stepped down and, after the drain, restarted as a standby instead of exiting
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0, started=200.0, listen=LISTEN)
    pair.leave()
    assert pair.heard(B, ACTIVE, "10.0.0.2", LISTEN, 0.1, started=100.0) == []
    assert not pair.stepping_down and pair.step_downs == 0 and pair.two_actives == 0
    assert pair.tick(5.0) == [] and pair.due_in(5.0) is None


def test_a_stepping_down_active_is_a_standby_that_takes_over_if_the_active_falls_silent():
    # before: during its drain it sent nothing and decided nothing, then restarted as a
    # fresh standby waiting drop_time: no balancer at all if the active died meanwhile
    pair = PairState(B, standby=False, drop_time=1.0, now=0.0, started=200.0, listen=LISTEN)
    events = pair.heard(A, ACTIVE, "10.0.0.1", LISTEN, 0.1, started=100.0)
    assert any(isinstance(e, StepDown) for e in events)
    assert pair.role == STANDBY and not pair.view(0.2).other_active
    assert pair.heard(A, ACTIVE, "10.0.0.1", LISTEN, 0.5, started=100.0) == []
    assert pair.tick(1.4) == []
    [event] = pair.tick(1.6)
    assert isinstance(event, Takeover) and event.reason == "active-silent"
    # restarted with --peer-silent: it takes over at its first tick, not drop_time later
    again = PairState(B, standby=True, drop_time=1.0, now=50.0, peer_silent=True, frequency=0.2)
    [event] = again.tick(50.4)
    assert isinstance(event, Takeover) and event.reason == "no-active"


def test_the_active_that_stays_sees_the_episode_end_when_the_other_steps_down():
    pair = PairState(A, standby=False, drop_time=1.0, now=0.0, started=100.0, listen=LISTEN)
    pair.heard(B, ACTIVE, "10.0.0.2", LISTEN, 0.1, started=200.0)
    assert pair.view(0.2).other_active
    pair.heard(B, STANDBY, "10.0.0.2", LISTEN, 0.3)  # it stepped down: beats as a standby
    assert not pair.view(0.4).other_active


@pytest.mark.parametrize(
    ("mine", "theirs", "host", "two", "steps_down"),
    [
        (("127.0.0.1:8080",), ("127.0.0.1:9090",), "10.0.0.1", False, False),
        # partial overlap: stepping down would leave 8080 unserved (before: it stepped down)
        (("127.0.0.1:8080", "127.0.0.1:8443"), ("10.0.0.1:8443",), "10.0.0.1", True, False),
        (("0.0.0.0:8080",), ("10.0.0.2:8080",), "10.0.0.1", True, True),
        (("https://[::1]:8443",), ("https://[::1]:8443", "[::1]:80"), "10.0.0.1", True, True),
        (("https://[::1]:8443",), ("https://[::1]:8080",), "10.0.0.1", False, False),
        # one host: other addresses are other sockets (before: the later one stepped down)
        (("127.0.0.1:8080",), ("127.0.0.2:8080",), "10.0.0.9", False, False),
        (("127.0.0.1:8080",), ("[::1]:8080",), "10.0.0.9", False, False),
        (("127.0.0.1:8080",), ("0.0.0.0:8080",), "10.0.0.9", True, True),
        (("0.0.0.0:8080",), ("127.0.0.1:8080",), "10.0.0.9", True, False),
        (("127.0.0.1:8080",), ("127.0.0.1:8080",), "10.0.0.9", True, True),
        # two hosts: by port alone (each names its own address)
        (("127.0.0.1:8080",), ("127.0.0.2:8080",), "10.0.0.1", True, True),
    ],
)
def test_two_actives_step_down_only_when_the_other_serves_all_of_its_sockets(
    mine, theirs, host, two, steps_down
):
    # this balancer's heartbeats say host 10.0.0.9: a peer saying so too is on its machine
    pair = PairState(B, standby=False, drop_time=1.0, now=0.0, started=200.0, listen=mine,
                     host="10.0.0.9")  # fmt: skip
    events = pair.heard(A, ACTIVE, host, theirs, 0.1, started=100.0)
    assert any(isinstance(e, TwoActives) for e in events) is two
    assert any(isinstance(e, StepDown) for e in events) is steps_down
    assert pair.role == (STANDBY if steps_down else ACTIVE)
    assert pair.stepped_for == (A if steps_down else None)


def test_a_standby_takes_over_when_its_active_dies_whatever_an_active_of_other_ports_does():
    # before: any live active kept the standby waiting: A :8080 killed, C :9090 alive ->
    # :8080 unserved for good (and the shutdown beat of A decided nothing either)
    p, q = ("127.0.0.1:8080",), ("127.0.0.1:9090",)
    for shutdown in (False, True):
        pair = PairState(B, standby=True, drop_time=1.0, now=0.0, listen=p, host="10.0.0.9")
        pair.heard(A, ACTIVE, "10.0.0.9", p, 0.1)
        pair.heard(C, ACTIVE, "10.0.0.9", q, 0.1)
        if shutdown:
            [event] = pair.heard(A, ACTIVE, "10.0.0.9", p, 0.5, shutdown=True)
            assert isinstance(event, Takeover) and event.reason == "active-shutdown"
            continue
        for t in (0.6, 1.0, 1.4, 1.8):
            assert pair.heard(C, ACTIVE, "10.0.0.9", q, t) == []
        assert pair.due_in(1.8) == pytest.approx(0.0, abs=0.01)
        [event] = pair.tick(1.9)
        assert isinstance(event, Takeover) and event.peer is not None and event.peer.id == A
        # C's beats while it waits for the ports: not its active coming back
        assert pair.heard(C, ACTIVE, "10.0.0.9", q, 2.0) == [] and pair.taking_over


def test_a_stepping_down_active_cuts_its_drain_whatever_an_active_of_other_ports_does():
    p, q = ("127.0.0.1:8080",), ("127.0.0.1:9090",)
    pair = PairState(B, standby=False, drop_time=1.0, now=0.0, started=200.0, listen=p)
    assert any(isinstance(e, StepDown) for e in pair.heard(A, ACTIVE, "h", p, 0.1, started=1))
    pair.heard(C, ACTIVE, "h", q, 0.1, started=1.0)
    pair.heard(C, ACTIVE, "h", q, 1.0, started=1.0)
    [event] = pair.tick(1.2)
    assert isinstance(event, Takeover) and event.reason == "active-silent"


def test_two_actives_of_one_host_on_other_ports_keep_their_entries():
    # before: one entry per (host, role): each beat of one pushed the other out, a new
    # PeerHeard (and, for an active, a TwoActives episode and an ERROR line) every beat
    pair = PairState(B, standby=False, drop_time=1.0, now=0.0, listen=("0.0.0.0:80",))
    p, q = ("10.0.0.1:80",), ("10.0.0.1:81",)
    assert pair.heard(A, ACTIVE, "10.0.0.1", p, 0.0, started=500.0)
    assert pair.heard(C, ACTIVE, "10.0.0.1", q, 0.0, started=500.0)
    for t in (0.5, 1.0, 1.5):
        assert pair.heard(A, ACTIVE, "10.0.0.1", p, t, started=500.0) == []
        assert pair.heard(C, ACTIVE, "10.0.0.1", q, t, started=500.0) == []
    assert pair.two_actives == 1 and len(pair.view(1.5).peers) == 2
    # a restart (a new id, the same host, role and listens) still replaces its entry
    pair.heard("d" * 32, ACTIVE, "10.0.0.1", p, 2.0, started=500.0)
    assert sorted(x.id for x in pair.view(2.0).peers) == sorted([C, "d" * 32])


def test_a_restart_after_the_drain_cut_hears_two_beat_intervals_before_taking_over():
    # before: started = now - drop_time: it took over at its first tick, before reading any
    # heartbeat (old news: an active that came back meanwhile was fought over the ports)
    again = PairState(B, standby=True, drop_time=3.0, now=50.0, peer_silent=True, frequency=0.5)
    assert again.tick(50.0) == [] and again.due_in(50.0) == pytest.approx(1.0)
    assert again.heard(A, ACTIVE, "h", (), 50.5) == [PeerHeard(again.view(50.5).peers[0])]
    assert again.tick(51.1) == []  # the active is back: it stays standby
    [event] = again.tick(53.6)
    assert isinstance(event, Takeover) and event.reason == "active-silent"
    fresh = PairState(B, standby=True, drop_time=3.0, now=50.0, peer_silent=True, frequency=0.5)
    [event] = fresh.tick(51.0)
    assert isinstance(event, Takeover) and event.reason == "no-active"


def test_a_restart_after_the_actives_silence_takes_over_at_once():
    argv = ["--listen", "127.0.0.1:80", "--cluster", "c.toml"]
    assert standby_argv(argv, 1, peer_silent=True)[-1] == "--peer-silent"
    assert "--peer-silent" not in standby_argv([*argv, "--peer-silent"], 2)


def test_the_peers_remembered_are_bounded_the_longest_silent_making_room():
    # before: every host heard was kept for 10 x drop_time, and the view (in the
    # supervisor's shared document, beside the serve flag) could grow past its size
    from balancer.pair import MAX_PEERS

    pair = PairState(A, standby=True, drop_time=100.0, now=0.0)
    pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 0.0)
    for i in range(3 * MAX_PEERS):
        pair.heard(f"{i:032x}", STANDBY, f"10.1.0.{i}", LISTEN, 1.0 + i / 100)
        pair.heard(B, ACTIVE, "10.0.0.1", LISTEN, 1.0 + i / 100)  # the active beats on
    peers = pair.view(2.0).peers
    assert len(peers) == MAX_PEERS and B in {p.id for p in peers}
    assert pair.tick(2.0) == []  # the active is still heard: no takeover


def test_a_part_overtaken_on_the_way_does_not_overwrite_the_newer_one():
    # before: parts carried no order: a reordered older datagram undid a newer edit
    stream = ("sender", 1, 0)
    copy = LbStateCopy()
    disabled, active = {**ENTRY, "a": "DIS"}, {**ENTRY, "a": "ACT"}
    copy.take(parsed({"lb": {"n1": disabled}}), now=1.0, sent=(stream, 8))
    copy.take(parsed({"lb": {"n1": active}}), now=1.1, sent=(stream, 7))  # the older one
    assert copy.entries[("lb", "n1")][0].activation is Activation.DISABLED
    copy.take(parsed({"lb": {"n1": active}}), now=1.2, sent=(("restarted", 2, 0), 1))
    assert copy.entries[("lb", "n1")][0].activation is Activation.ACTIVE  # another sender


def test_listens_not_known_are_taken_to_overlap_but_never_to_cover():
    from balancer.pair import covers, overlaps

    assert overlaps(None, ("a:1",)) and overlaps((), ("a:1",)) and overlaps(("a:1",), ())
    assert not covers(("a:1",), ()) and covers(None, ())
