"""A request body's packets over AJP (pure): unasked first packet, as asked after, the end."""

from __future__ import annotations

import pytest

from balancer.ajp import decode_body_packet, to_container_deframer
from balancer.config.model import MemberConfig
from balancer.dataplane.ajp_body import RequestBody
from balancer.dataplane.ajp_settings import ajp_settings, packet_size

END = b"\x12\x34\x00\x00"


def data_of(packets: list[bytes]) -> list[bytes]:
    payloads = to_container_deframer(65536).feed(b"".join(packets))
    return [decode_body_packet(p) for p in payloads]


def test_a_known_length_sends_its_first_packet_unasked() -> None:
    body = RequestBody(10, b"abcdefghijklmno", complete=True)
    body.announce(15)
    assert data_of(body.packets()) == [b"abcdefghij"]  # at most max_chunk
    assert not body.waiting
    body.ask(100)
    assert data_of(body.packets()) == [b"klmno"]
    body.ask(100)  # after the announced length: the empty packet
    assert body.packets() == [END]


def test_no_length_sends_nothing_unasked_and_ends_with_the_empty_packet() -> None:
    body = RequestBody(10, b"xy")
    body.announce(None)
    assert body.packets() == []
    body.ask(1)
    assert data_of(body.packets()) == [b"x"]  # never more than asked
    body.ask(100)
    assert data_of(body.packets()) == [b"y"]
    body.ask(100)
    assert body.packets() == [] and body.waiting  # the client has not finished
    body.finish()
    assert body.packets() == [END] and not body.waiting


def test_a_request_without_a_body_answers_a_body_request_with_the_end() -> None:
    body = RequestBody(8186, complete=True)
    body.announce(None)
    body.ask(8186)
    assert body.packets() == [END]


def test_an_owed_packet_waits_for_the_clients_bytes() -> None:
    body = RequestBody(10)
    body.announce(6)
    assert body.packets() == [] and body.waiting
    body.add(b"abc")
    assert data_of(body.packets()) == [b"abc"]
    body.ask(10)
    body.add(b"def")
    assert data_of(body.packets()) == [b"def"]
    assert len(body) == 0


def test_bytes_past_the_announced_length_are_never_sent() -> None:
    body = RequestBody(10, b"abcdefgh", complete=True)
    body.announce(4)
    assert data_of(body.packets()) == [b"abcd"]
    body.ask(10)
    assert body.packets() == [END]


def test_several_owed_packets_are_answered_in_one_go() -> None:
    body = RequestBody(4)
    body.announce(None)
    for _ in range(3):
        body.ask(4)
    body.add(b"0123456789")
    assert data_of(body.packets()) == [b"0123", b"4567", b"89"]


@pytest.mark.parametrize(
    ("given", "used"), [(1, 8192), (8192, 8192), (8193, 9216), (20000, 20480), (99999, 65536)]
)
def test_max_packet_size_is_rounded_up_to_1024_within_8192_and_65536(given, used) -> None:
    assert packet_size(given) == used


def test_settings_exist_for_ajp13_members_only() -> None:
    cfg = MemberConfig(name="a", type="ajp13", secret="s", prepost_timeout=300)
    settings = ajp_settings(cfg)
    assert settings is not None and settings.secret == "s" and settings.prepost_timeout == 0.3
    assert ajp_settings(MemberConfig(name="b", type="http")) is None
