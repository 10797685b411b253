"""Sealed envelopes: authentication, freshness, the per-stream replay window, unsealed mode."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.seal import HEADER, Kind, Opener, ReplayWindow, Sealer, SealError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SENDER = bytes.fromhex("00112233445566778899aabbccddeeff")
NOW = 1_700_000_000.0


def sealer(key: bytes | None = KEY, kind: Kind = Kind.FRAME, stream: int | None = None) -> Sealer:
    return Sealer(key, SENDER, 1_700_000_000_000, kind, stream)


def reason(opener: Opener, blob: bytes, now: float = NOW) -> str:
    with pytest.raises(SealError) as info:
        opener.open(blob, now)
    return info.value.reason


def test_a_sealed_envelope_opens_with_the_same_key_and_says_who_sent_it():
    s = sealer()
    opened = Opener(KEY).open(s.seal(b"hello", NOW), NOW)
    assert opened.payload == b"hello" and opened.sender == SENDER and opened.kind is Kind.FRAME
    assert opened.counter == 1 and opened.stream == s.stream


def test_the_payload_is_encrypted_not_just_signed():
    assert b"secret-session-value" not in sealer().seal(b"secret-session-value", NOW)


def test_a_wrong_key_fails_authentication():
    assert reason(Opener(OTHER_KEY), sealer().seal(b"x", NOW)) == "auth"


@pytest.mark.parametrize("offset", [0, 10, 30, HEADER.size - 1, HEADER.size, -1])
def test_any_flipped_bit_in_header_or_body_is_refused(offset):
    blob = bytearray(sealer().seal(b"payload", NOW))
    blob[offset] ^= 0x01
    assert reason(Opener(KEY), bytes(blob)) in {"auth", "malformed", "stale", "mode"}


def test_the_same_envelope_twice_is_a_replay():
    opener, blob = Opener(KEY), sealer().seal(b"x", NOW)
    opener.open(blob, NOW)
    assert reason(opener, blob) == "replay"


def test_out_of_order_within_the_window_is_accepted_once():
    s, opener = sealer(), Opener(KEY, window=8)
    blobs = [s.seal(bytes([i]), NOW) for i in range(6)]
    for i in (5, 2, 4, 0, 1, 3):
        assert opener.open(blobs[i], NOW).payload == bytes([i])
    assert reason(opener, blobs[2]) == "replay"


def test_a_counter_older_than_the_window_is_refused():
    s, opener = sealer(), Opener(KEY, window=8)
    old = s.seal(b"old", NOW)
    blobs = [s.seal(b"n", NOW) for _ in range(9)]
    opener.open(blobs[-1], NOW)
    assert reason(opener, old) == "replay"


def test_streams_have_separate_windows():
    a, b, opener = sealer(), sealer(), Opener(KEY)
    assert a.stream != b.stream
    opener.open(a.seal(b"a1", NOW), NOW)
    assert opener.open(b.seal(b"b1", NOW), NOW).counter == 1


def test_envelopes_outside_the_clock_skew_are_stale():
    blob = sealer().seal(b"x", NOW)
    assert reason(Opener(KEY, max_skew=30), blob, NOW + 31) == "stale"
    assert reason(Opener(KEY, max_skew=30), blob, NOW - 31) == "stale"
    assert Opener(KEY, max_skew=30).open(blob, NOW + 29).payload == b"x"


def test_a_replay_after_the_window_was_pruned_is_stale_instead():
    opener, blob = Opener(KEY, max_skew=30), sealer().seal(b"x", NOW)
    opener.open(blob, NOW)
    opener.open(sealer().seal(b"y", NOW + 100), NOW + 100)  # prunes the silent stream
    assert reason(opener, blob, NOW + 100) == "stale"


def test_sealed_and_unsealed_nodes_refuse_each_other():
    assert reason(Opener(None), sealer(KEY).seal(b"x", NOW)) == "mode"
    assert reason(Opener(KEY), sealer(None).seal(b"x", NOW)) == "mode"


def test_insecure_mode_still_rejects_replays():
    opener, blob = Opener(None), sealer(None).seal(b"plain", NOW)
    assert opener.open(blob, NOW).payload == b"plain"
    assert reason(opener, blob) == "replay"


@pytest.mark.parametrize(
    "blob", [b"", b"PJKC", os.urandom(40), b"GET / HTTP/1.1\r\n\r\n" + bytes(60)]
)
def test_garbage_is_malformed(blob):
    assert reason(Opener(KEY), blob) == "malformed"


def test_a_body_shorter_than_the_tag_is_malformed():
    blob = sealer().seal(b"", NOW)
    assert reason(Opener(KEY), blob[: HEADER.size + 5]) == "malformed"


def test_a_forgery_does_not_burn_the_counter_of_the_real_sender():
    s, opener = sealer(), Opener(KEY)
    real = s.seal(b"real", NOW)
    forged = bytearray(real)
    forged[-1] ^= 0xFF
    assert reason(opener, bytes(forged)) == "auth"
    assert opener.open(real, NOW).payload == b"real"


def test_heartbeat_and_frame_kinds_are_told_apart():
    opened = Opener(KEY).open(sealer(kind=Kind.HEARTBEAT).seal(b"hb", NOW), NOW)
    assert opened.kind is Kind.HEARTBEAT


def test_keys_must_be_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        Opener(b"short")


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=60))
def test_replay_window_accepts_each_counter_at_most_once(counters):
    window, accepted = ReplayWindow(64), set()
    for c in counters:
        if window.fresh(c):
            assert c not in accepted
            window.mark(c)
            accepted.add(c)
        else:
            assert c in accepted or c <= window.top - 64
