"""The Redis store's schema (replication/redis_codec.py): what a delta writes, and the strict
check of what is read back. Pure: the write script's effect on a hash is modelled here the way
the script applies it (sets, then deletes); the real script runs in tests/integration."""

from __future__ import annotations

import pytest

from replication.ledger import RecordedResponse
from replication.redis_codec import (
    Keys,
    StoreFormatError,
    Write,
    loose_record_write,
    record_from,
    record_text_of,
    state_from,
    write_of,
)
from worker.delta import SessionDelta

RP = "0123456789ABCDEF0123456789ABCDEF"
SID = f"{RP}.node1"
KEYS = Keys("pyjk")
T0 = 1_700_000_000.0


def applied(hash_: dict[bytes, bytes], write: Write) -> dict[bytes, bytes]:
    """The write script's effect on a hash (mode, record, ttl, n, pairs..., d, fields...)."""
    args = [a.encode() if isinstance(a, str) else a for a in write.args]
    if args[0] == b"d":
        return {}
    if args[0] == b"u" and not hash_:
        return {}
    out = dict(hash_)
    n = int(args[3])
    for i in range(n):
        out[args[4 + 2 * i]] = args[5 + 2 * i]
    d = int(args[4 + 2 * n])
    for name in args[5 + 2 * n : 5 + 2 * n + d]:
        out.pop(name, None)
    return out


def test_a_session_is_one_hash_in_one_slot_with_the_records_of_its_writes():
    assert KEYS.session(RP) == f"pyjk:{{{RP}}}"
    assert KEYS.record(RP, "req-1") == f"pyjk:{{{RP}}}:r:req-1"  # same hash tag, same slot
    assert KEYS.loose_record("req-1") == "pyjk:r:req-1"


def test_a_creating_delta_then_an_update_read_back_give_the_session():
    create = SessionDelta(SID, T0, created=T0, max_inactive=1800.0,
                          set_attributes=(("cart", '["apple"]'), ("n", "1")))  # fmt: skip
    h = applied({}, write_of(KEYS, create))
    update = SessionDelta(SID, T0 + 5, new_id=f"{RP}.node2", set_attributes=(("n", "2"),),
                          removed_attributes=("cart",))  # fmt: skip
    h = applied(h, write_of(KEYS, update))
    state = state_from(KEYS.session(RP), RP, h, T0 + 6)
    assert state.id == f"{RP}.node2"  # the takeover's route rewrite is stored
    assert dict(state.attributes) == {"n": "2"}
    assert (state.created, state.max_inactive, state.last_accessed) == (T0, 1800.0, T0 + 6)


def test_an_update_writes_only_what_changed_and_never_revives_a_gone_session():
    update = SessionDelta(SID, T0, set_attributes=(("n", "2"),))
    w = write_of(KEYS, update)
    assert w.args[0] == "u" and b"a:n" in w.args and b"m:id" not in w.args
    assert applied({}, w) == {}  # the script writes nothing when the key is gone
    assert write_of(KEYS, SessionDelta(SID, T0, invalidated=True)).args[0] == "d"


def test_the_last_write_carries_the_requests_record_with_its_ttl():
    record = RecordedResponse(200, (("Content-Type", "application/json"),), b'{"n":2}', T0)
    w = write_of(KEYS, SessionDelta(SID, T0, set_attributes=(("n", "2"),)),
                 request_id="req-1", record=record, record_ttl=300.0)  # fmt: skip
    assert w.keys == (KEYS.session(RP), KEYS.record(RP, "req-1"))
    assert w.args[1] == record_text_of(record) and w.args[2] == "300000"
    assert record_from("k", w.args[1].encode(), 1024) == record
    loose = loose_record_write(KEYS, "req-1", record, 300.0)
    assert not loose.script and loose.keys == ("pyjk:r:req-1",)


GOOD = {b"m:id": SID.encode(), b"m:created": b"1.0", b"m:max_inactive": b"60.0",
        b"a:n": b"1"}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (b"a:n", b'{"__class__": ', "not an attribute's JSON"),
        (b"a:n", b"NaN", "not an attribute's JSON"),
        (b"a:n", b"1.50", "not canonical"),
        (b"a:n", b"\xff", "not an attribute's JSON"),
        (b"x:pickle", b"cos\nsystem", "unknown field"),
        (b"m:id", b"OTHER.node1", "not a session id of this key"),
        (b"m:created", b"inf", "not a finite number"),
        (b"m:max_inactive", b"soon", "not a finite number"),
    ],
)
def test_a_malformed_hash_is_refused_naming_the_key_and_field(field, value, says):
    with pytest.raises(StoreFormatError, match=says) as err:
        state_from("pyjk:{X}", RP, {**GOOD, field: value}, T0)
    assert "pyjk:{X}" in str(err.value)


def test_a_hash_without_its_metadata_is_refused():
    with pytest.raises(StoreFormatError, match="m:created"):
        state_from("k", RP, {b"m:id": SID.encode(), b"m:max_inactive": b"1"}, T0)


def test_a_malformed_record_is_refused():
    for raw in (b"not json", b'{"status": 999, "headers": [], "body": "", "at": 1}'):
        with pytest.raises(StoreFormatError, match="recorded response"):
            record_from("k", raw, 1024)
