"""The cluster wire schema: every message round-trips, anything off-schema is a CodecError."""

from __future__ import annotations

import contextlib
import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balancer.config import model as config_model
from pyjk.lbfactor import MAX_LBFACTOR
from replication import codec
from replication.codec import (
    Ack,
    CodecError,
    DeltaMsg,
    Heartbeat,
    Hello,
    MemberInfo,
    Pull,
    StateChunk,
    Touch,
)
from replication.election import Advert
from replication.ledger import RecordedResponse
from replication.merge import Replica, SessionMeta
from worker.delta import SessionDelta, SessionState

RP = "0123456789ABCDEF0123456789ABCDEF"
SID = f"{RP}.node1"
M1 = "a" * 32
MEMBER = MemberInfo(M1, "node1", "127.0.0.1", 4000, 1_700_000_000.5)
STATE = SessionState(SID, 1.0, 2.0, 1800.0, {"cart": '["apple"]', "n": "3"})
META = SessionMeta({"cart": (3, M1), "n": (4, M1)}, {"gone": (2, M1)}, (1, M1), (1, M1))
RECORD = RecordedResponse(200, (("Content-Type", "text/plain"),), b"ok\x00\xff", 5.0)

MESSAGES = [
    Heartbeat("pyjk-demo", MEMBER, 7, "0123456789abcdef", False),
    Heartbeat("c", MEMBER, 0, "0" * 16, True),
    Hello("pyjk-demo", MEMBER, 3, None, False, False),
    Hello("pyjk-demo", MEMBER, 3, "b" * 32, True, True),
    DeltaMsg(1, 9, SessionDelta(SID, 3.0, created=1.0, max_inactive=60.0), (5, M1), (0, "")),
    DeltaMsg(
        2,
        10,
        SessionDelta(SID, 3.0, set_attributes=(("n", "4"),)),
        (6, M1),
        (5, M1),
        "req-1",
        RECORD,
    ),
    DeltaMsg(3, 11, SessionDelta(SID, 3.0, invalidated=True), (7, M1), (6, M1)),
    Ack(5),
    Pull(1),
    Pull(2, since=40),
    Pull(3, ids=(RP,)),
    Pull(4, digest=((RP, "00ff00ff00ff00ff"),), dead=((RP, (9, M1)),)),
    StateChunk(1, True, 12, (Replica(STATE, META),), ((RP, (9, M1)),), (("req-1", RECORD),)),
    StateChunk(1, False, 0),
    Touch(((RP, 12.5),)),
    Pull(5, ids=(RP,), have=((RP, (9, M1)),)),
    StateChunk(2, True, 3, (), (), (("req-2", RECORD.attached(RP, (6, M1))),)),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_the_wire(msg):
    assert codec.decode(codec.encode(msg)) == msg


def test_the_wire_is_plain_ascii_json():
    data = codec.encode(MESSAGES[5])
    assert json.loads(data)["t"] == "delta" and data.isascii()


def wire(msg) -> dict:
    return json.loads(codec.encode(msg))


def refused(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    with pytest.raises(CodecError) as info:
        codec.decode(raw)
    return str(info.value)


def test_pickle_is_not_a_message():
    assert "not JSON" in refused(pickle.dumps({"t": "ack", "n": 1}))


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xfe", b"[1,2]", b'{"t":"ack","n":NaN}', b'{"t":"nope"}', b"null"]
)
def test_non_messages_are_refused(raw):
    refused(raw)


def test_an_unknown_or_missing_field_is_named():
    w = wire(Ack(1))
    assert "check ['extra']" in refused({**w, "extra": 1})
    del w["n"]
    assert "check ['n']" in refused(w)


@pytest.mark.parametrize(
    "path, value",
    [
        (("n",), 0),
        (("n",), True),
        (("n",), 2**63),
        (("seq",), -1),
        (("stamp",), [1]),
        (("stamp",), [0, M1]),
        (("stamp",), [3, ""]),
        (("stamp",), [3, "A" * 32]),
        (("delta", "id"), "not-a-session-id"),
        (("delta", "set"), {"x": float("inf")}),
        (("delta", "unknown"), 1),
    ],
)
def test_delta_fields_are_checked(path, value):
    w = wire(MESSAGES[4])
    target = w
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    refused(w) if value != float("inf") else refused(json.dumps(w).encode())


@pytest.mark.parametrize(
    "field, value",
    [
        ("host", "example.com"),
        ("port", 0),
        ("port", 70000),
        ("route", "bad route"),
        ("id", "short"),
        ("start", -1),
    ],
)
def test_member_info_is_checked(field, value):
    w = wire(MESSAGES[0])
    w["member"][field] = value
    assert field in refused(w)


def test_cluster_names_and_digests_are_checked():
    w = wire(MESSAGES[0])
    assert "cluster" in refused({**w, "cluster": "x" * 65})
    assert "digest" in refused({**w, "digest": "xyz"})


def test_state_meta_must_cover_exactly_the_attributes():
    w = wire(MESSAGES[12])
    del w["sessions"][0]["meta"]["attrs"]["n"]
    assert "cover exactly" in refused(w)


def test_recorded_responses_only_carry_allowed_headers():
    w = wire(MESSAGES[5])
    w["resp"]["headers"] = [["X-Evil", "1"]]
    assert "not allowed" in refused(w)
    w["resp"]["headers"] = [["Set-Cookie", "a=b\r\nInjected: 1"]]
    assert "not allowed" in refused(w)


def test_a_record_keeps_the_write_it_is_attached_to_across_the_wire():
    ((_, record),) = codec.decode(codec.encode(MESSAGES[-1])).responses
    assert (record.session, record.stamp) == (RP, (6, M1))
    ((_, bare),) = codec.decode(codec.encode(MESSAGES[12])).responses
    assert (bare.session, bare.stamp) == (None, None)
    assert codec.decode(codec.encode(MESSAGES[-2])).have == ((RP, (9, M1)),)
    assert "have" not in wire(MESSAGES[10])  # left out when empty, as before


@pytest.mark.parametrize(
    "item",
    [["req-2", {}, RP], ["req-2", None, RP, [6, M1]], ["req-2", "RESP", "0123", [6, M1]],
     ["req-2", "RESP", RP, [0, ""]], ["req-2", "RESP", RP, [6]]],
)  # fmt: skip
def test_attached_records_are_checked(item):
    w = wire(MESSAGES[-1])
    w["responses"] = [[x if x != "RESP" else w["responses"][0][1] for x in item]]
    refused(w)


def test_pull_lists_are_checked():
    w = wire(MESSAGES[11])
    w["digest"] = [["0123", "00"]]
    refused(w)
    w = wire(MESSAGES[10])
    w["ids"] = "all"
    refused(w)
    w = wire(MESSAGES[-2])
    w["have"] = [[RP, [1]]]
    refused(w)


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_only_ever_raises_codec_error(data):
    with contextlib.suppress(CodecError):
        codec.decode(data)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


@given(st.sampled_from(MESSAGES), st.data())
def test_replacing_any_nested_part_never_crashes_the_decoder(msg, data):
    w = wire(msg)
    path = data.draw(st.sampled_from([p for p in paths(w) if p]))
    target = w
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSONISH)
    with contextlib.suppress(CodecError):
        codec.from_wire(w)


def test_a_heartbeat_without_the_http_fields_reads_as_before():
    """Members that advertise nothing (older ones) send the five fields; they keep meaning."""
    wire = codec.to_wire(Heartbeat("c", MEMBER, 1, "0" * 16))
    assert set(wire["member"]) == {"id", "route", "host", "port", "start"}
    hb = codec.from_wire(wire)
    assert isinstance(hb, Heartbeat)
    assert (hb.member.http_port, hb.member.lbfactor, hb.member.leaving) == (0, 1, False)


@pytest.mark.parametrize(
    "extra",
    [
        {"http": ["127.0.0.1", 8101]},  # lbfactor travels with it
        {"lbfactor": 2},
        {"http": ["localhost", 8101], "lbfactor": 1},
        {"http": ["127.0.0.1", 0], "lbfactor": 1},
        {"http": ["127.0.0.1", 70000], "lbfactor": 1},
        {"http": ["127.0.0.1"], "lbfactor": 1},
        {"http": ["127.0.0.1", 8101], "lbfactor": 0},
        {"http": ["127.0.0.1", 8101], "lbfactor": 100_001},
        {"leaving": 1},
    ],
)
def test_advertised_http_fields_are_checked(extra):
    wire = codec.to_wire(Heartbeat("c", MEMBER, 1, "0" * 16))
    wire["member"].update(extra)
    with pytest.raises(CodecError):
        codec.from_wire(wire)


# members advertising an HTTP address, a weight and a graceful stop (dynamic lbs)
ADVERTISING = [
    Hello("c", MEMBER, 0, None, False, False, True),  # a balancer's probe (observer)
    Heartbeat("c", MemberInfo(M1, "w1", "127.0.0.1", 4000, 1.5, "127.0.0.1", 8101, 3), 0, "0" * 16),
    Heartbeat("c", MemberInfo(M1, "w1", "::1", 4000, 1.5, "::1", 8101, 1, True), 0, "0" * 16),
]


@pytest.mark.parametrize("msg", ADVERTISING)
def test_advertised_http_address_weight_and_leaving_survive_the_wire(msg):
    assert codec.decode(codec.encode(msg)) == msg


def test_an_observer_flag_must_be_a_boolean_and_is_left_out_when_false():
    assert "observer" not in codec.to_wire(Hello("c", MEMBER, 0))
    wire = codec.to_wire(Hello("c", MEMBER, 0, observer=True))
    assert wire["observer"] is True
    wire["observer"] = "yes"
    with pytest.raises(CodecError):
        codec.from_wire(wire)


ELECTION_BEATS = [
    Heartbeat(
        "c",
        MEMBER,
        0,
        "0" * 16,
        False,
        Advert(
            frozenset({"counter", "r.1"}),
            {"counter": 7},
            {"counter": 7, "x": 2},
            {"x": ("b" * 32, 2)},
        ),
    ),
    Heartbeat("c", MEMBER, 0, "0" * 16, False, Advert()),
    Hello(
        "c", MEMBER, 3, None, False, False, election=Advert(frozenset({"counter"}), {"counter": 2})
    ),
]


@pytest.mark.parametrize("msg", ELECTION_BEATS)
def test_election_adverts_survive_the_wire(msg):
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize(
    "svc",
    [
        None,
        [],
        {"runs": [], "owns": {}, "epochs": {}},
        {"runs": [], "owns": {}, "epochs": {}, "seen": {"x": ["b" * 32]}},
        {"runs": [], "owns": {}, "epochs": {}, "seen": {"x": ["nothex", 1]}},
        {"runs": [], "owns": {}, "epochs": {}, "seen": {"x": ["b" * 32, 0]}},
        {"runs": ["bad name"], "owns": {}, "epochs": {}, "seen": {}},
        {"runs": ["x" * 65], "owns": {}, "epochs": {}, "seen": {}},
        {"runs": [], "owns": {"counter": 0}, "epochs": {}, "seen": {}},
        {"runs": [], "owns": {"counter": True}, "epochs": {}, "seen": {}},
        {"runs": [], "owns": {}, "epochs": {"counter": 1.5}, "seen": {}},
        {"runs": [], "owns": {}, "epochs": {"": 1}, "seen": {}},
        {"runs": [f"n{i}" for i in range(257)], "owns": {}, "epochs": {}, "seen": {}},
        {"runs": [], "owns": {}, "epochs": {}, "seen": {}, "extra": 1},
    ],
)
def test_election_adverts_in_heartbeats_are_checked(svc):
    wire = codec.to_wire(Heartbeat("c", MEMBER, 0, "0" * 16, False, Advert()))
    wire["svc"] = svc
    with pytest.raises(CodecError, match=r"hb\.svc"):
        codec.from_wire(wire)


def test_a_heartbeat_without_election_state_has_no_svc_field():
    assert "svc" not in codec.to_wire(Heartbeat("c", MEMBER, 0, "0" * 16))


def test_the_heartbeats_lbfactor_bound_is_the_balancers():
    """One constant (pyjk/lbfactor.py): a weight a worker may advertise is one the balancer's
    configuration and status page accept, and no larger."""
    assert MAX_LBFACTOR == config_model.MAX_LBFACTOR
    wire = codec.to_wire(Heartbeat("c", MEMBER, 1, "0" * 16))
    wire["member"].update({"http": ["127.0.0.1", 8101], "lbfactor": MAX_LBFACTOR})
    hb = codec.from_wire(wire)
    assert isinstance(hb, Heartbeat) and hb.member.lbfactor == MAX_LBFACTOR
    wire["member"]["lbfactor"] = MAX_LBFACTOR + 1
    with pytest.raises(CodecError, match=f"1..{MAX_LBFACTOR}"):
        codec.from_wire(wire)
