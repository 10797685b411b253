"""The wire form of deltas and states: round trips, and strict refusal of anything else."""

from __future__ import annotations

import json

import pytest

from worker.delta import SessionDelta, SessionState, WireFormatError

SID = "0123456789ABCDEF0123456789ABCDEF.node1"
NEW = "0123456789ABCDEF0123456789ABCDEF.node2"

FULL = SessionDelta(
    session_id=SID,
    at=1.5,
    created=1.0,
    max_inactive=1800.0,
    new_id=NEW,
    set_attributes=(("cart", '{"items":[1,2.5,"x",null,true]}'), ("n", "3")),
    removed_attributes=("old",),
)


@pytest.mark.parametrize(
    "delta",
    [
        FULL,
        SessionDelta(SID, 2.0),
        SessionDelta(SID, 2.0, invalidated=True),
        SessionDelta(SID, 2.0, max_inactive=-1.0),
    ],
)
def test_delta_survives_to_wire_json_and_back(delta):
    text = json.dumps(delta.to_wire())
    assert SessionDelta.from_wire(json.loads(text)) == delta


def test_wire_form_is_plain_readable_json():
    assert FULL.to_wire() == {
        "v": 1,
        "id": SID,
        "at": 1.5,
        "created": 1.0,
        "max_inactive": 1800.0,
        "new_id": NEW,
        "set": {"cart": {"items": [1, 2.5, "x", None, True]}, "n": 3},
        "remove": ["old"],
    }


def test_state_survives_to_wire_and_back():
    state = SessionState(SID, 1.0, 2.0, 60.0, {"a": "[1]", "b": '{"c":"d"}'})
    assert SessionState.from_wire(json.loads(json.dumps(state.to_wire()))) == state


def good() -> dict:
    return FULL.to_wire()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda w: w.pop("at"), "at"),
        (lambda w: w.update(extra=1), "extra"),
        (lambda w: w.update(v=2), "v"),
        (lambda w: w.update(v=True), "v"),
        (lambda w: w.update(at="1.5"), "at"),
        (lambda w: w.update(at=True), "at"),
        (lambda w: w.update(at=float("inf")), "at"),
        (lambda w: w.update(id="not-an-id"), "id"),
        (lambda w: w.update(id="0123456789ABCDEF0123456789ABCDEF"), "id"),
        (lambda w: w.update(new_id=None), "new_id"),
        (lambda w: w.update(set=[["a", 1]]), "set"),
        (lambda w: w.update(set={"a": {1, 2}}), "set"),
        (lambda w: w.update(set={"a": float("nan")}), "set"),
        (lambda w: w.update(set={"": 1}), "set"),
        (lambda w: w.update(remove="old"), "remove"),
        (lambda w: w.update(remove=["x", "x"]), "remove"),
        (lambda w: w.update(remove=[1]), "remove"),
        (lambda w: w.update(invalidate=False), "invalidate"),
        (lambda w: w.update(invalidate="yes"), "invalidate"),
    ],
)
def test_malformed_delta_wire_dicts_are_refused_naming_the_field(mutate, field):
    wire = good()
    mutate(wire)
    with pytest.raises(WireFormatError) as info:
        SessionDelta.from_wire(wire)
    assert info.value.field == field


@pytest.mark.parametrize("wire", [None, [], "x", 1])
def test_a_delta_must_be_a_dict(wire):
    with pytest.raises(WireFormatError, match="expected a dict"):
        SessionDelta.from_wire(wire)


def test_rename_to_another_random_part_is_refused():
    wire = good()
    wire["new_id"] = "F" * 32 + ".node2"
    with pytest.raises(WireFormatError, match="random part"):
        SessionDelta.from_wire(wire)


def test_a_creating_delta_without_its_interval_is_refused():
    wire = good()
    del wire["max_inactive"]
    with pytest.raises(WireFormatError, match="max_inactive"):
        SessionDelta.from_wire(wire)


def test_an_attribute_both_set_and_removed_is_refused():
    wire = good()
    wire["remove"] = ["n"]
    with pytest.raises(WireFormatError, match="only once"):
        SessionDelta.from_wire(wire)


def test_malformed_state_is_refused():
    wire = SessionState(SID, 1.0, 2.0, 60.0, {"a": "1"}).to_wire()
    wire["attributes"] = {"a": (1,)}
    with pytest.raises(WireFormatError, match="attributes"):
        SessionState.from_wire(wire)
