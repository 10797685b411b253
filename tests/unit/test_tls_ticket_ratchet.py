"""The TLS session ticket ratchet (balancer/dataplane/tls_tickets.py): a later period's
secret gives no earlier key, and the code never keeps an older secret."""

from __future__ import annotations

import pytest

from balancer.dataplane.tls_tickets import (
    KeySet,
    TicketRatchet,
    next_secret,
    ticket_keys,
)
from balancer.dataplane_process import read_tickets, tickets_part

S0 = bytes(range(32))


def held(ratchet: TicketRatchet) -> list[object]:
    """Everything the ratchet holds, key sets opened into their bytes."""
    out: list[object] = []
    for value in vars(ratchet).values():
        out.append(value)
        if isinstance(value, KeySet):
            out += [value.name, value.hmac, value.aes]
    return out


def test_each_boundary_hashes_the_secret_forward_and_forgets_the_old_one():
    ratchet = TicketRatchet(100, S0)
    assert ratchet.advance(101)
    assert ratchet.period == 101
    assert ratchet.secret == next_secret(S0)
    assert S0 not in held(ratchet)
    # the previous period's keys stay for opening its tickets, not its secret
    assert ratchet.previous == KeySet.of(ticket_keys(S0))
    assert ratchet.advance(103)
    s1, s2 = next_secret(S0), next_secret(next_secret(S0))
    things = held(ratchet)
    for old in (S0, s1, s2):
        assert old not in things
    old_keys = KeySet.of(ticket_keys(S0))
    assert old_keys.aes not in things and old_keys.hmac not in things
    assert ratchet.previous == KeySet.of(ticket_keys(s2))


def test_a_later_secret_never_goes_back():
    later = TicketRatchet(101, next_secret(S0))
    assert not later.advance(100)
    assert later.period == 101
    # nothing it can reach is period 100's keys: it only moves forward
    old = KeySet.of(ticket_keys(S0))
    for period in range(102, 110):
        later.advance(period)
        assert old not in (later.current, later.previous)


def test_tickets_open_with_the_current_keys_and_the_previous_ones_renew():
    ratchet = TicketRatchet(7, S0)
    first = ratchet.current
    assert ratchet.find(first.name) == (first, False)
    ratchet.advance(8)
    assert ratchet.find(first.name) == (first, True)  # opened once more, then a new ticket
    ratchet.advance(9)
    assert ratchet.find(first.name) is None  # two boundaries: a full handshake


def test_a_secret_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        TicketRatchet(1, b"short")


def test_the_published_part_reads_back_and_garbage_reads_as_none():
    import json

    blob = json.dumps(tickets_part(42, S0)).encode()
    assert read_tickets(blob) == (42, S0)
    assert read_tickets(b"") is None
    assert read_tickets(b'{"tickets": {"period": "x", "secret": "AA=="}}') is None
    assert read_tickets(b"not json") is None
