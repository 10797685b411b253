"""Distributed mode's session entries (replication/session_entry.py): the text a session and
its exactly-once records travel as, its route read from the head, forged texts refused."""

from __future__ import annotations

import pytest

from replication.ledger import RecordedResponse
from replication.session_entry import (
    MAX_RECORDS,
    EntryFormatError,
    SessionEntry,
    decode_entry,
    decode_loose,
    encode_entry,
    encode_loose,
    kept_records,
    loose_key,
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
