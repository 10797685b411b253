"""Counters kept per process, added up across processes (balancer/process_totals.py)."""

from __future__ import annotations

import json

import pytest

from balancer.dataplane.stats import TrafficStats
from balancer.dataplane.tls import TlsStats
from balancer.lb.shm import ProcessRow, Table, table_size
from balancer.process_totals import PUBLISH_EVERY, Totals, document, parse


def table() -> Table:
    t = Table(bytearray(table_size(4)), 4)
    t.format()
    for slot in (0, 1, 2):
        t.write_process(ProcessRow(slot, 100 + slot, 0.0, 0, 0, 1))
    return t


def traffic(requests: int, status: int = 200) -> TrafficStats:
    s = TrafficStats()
    for _ in range(requests):
        s.answered("lb", "n1", status, 0.002, 0.004)
    s.accepted = requests
    s.refuse("max_connections")
    s.reject(400)
    s.retry("lb", "connect-refused")
    return s


def totals(t: Table, slot: int, stats: TrafficStats, tls: TlsStats | None = None) -> Totals:
    return Totals(t, slot, stats, lambda: tls)


def test_a_page_sums_the_published_documents_its_own_published_first():
    t = table()
    t.write_blob(1, document(None, traffic(3)))
    t.write_blob(2, document(None, traffic(4, status=503)))
    t.write_blob(0, document(None, traffic(100)))  # its own old document: replaced first
    total = totals(t, 0, traffic(5)).traffic()
    assert total.accepted == 12
    assert total.answers[("lb", "n1")].classes == [0, 8, 0, 0, 4]
    assert sum(total.answers[("lb", "n1")].total) == 12
    assert total.refused == {"max_connections": 3} and total.rejected == {400: 3}
    assert total.retries == {("lb", "connect-refused"): 3}
    assert parse(t.blob(0)).traffic.accepted == 5


def test_totals_never_go_backwards_whichever_process_answers():
    # Two processes whose counters grow; scrapes alternate between them. Summing one's live
    # counters with the other's older document went backwards (26 then 24 in CI).
    t = table()
    t.clear_process(2)
    a_stats, b_stats = TrafficStats(), TrafficStats()
    a, b = totals(t, 0, a_stats), totals(t, 1, b_stats)
    a.publish(), b.publish()
    seen = []
    for i in range(60):
        (a_stats if i % 3 else b_stats).answered("lb", "n1", 200, 0.001, 0.002)
        if i % 7 == 0:
            a.tick(float(i)), b.tick(float(i))  # the follow loops' own publishing
        answering = a if i % 2 else b
        seen.append(sum(answering.traffic().answers[("lb", "n1")].classes))
    assert seen == sorted(seen) and seen[-1] == 60


def test_a_document_is_published_when_changed_at_most_every_period_or_when_asked():
    t = table()
    stats = TrafficStats()
    mine, other = totals(t, 0, stats), totals(t, 1, TrafficStats())
    mine.tick(0.0)
    first = t.blob(0)
    mine.tick(0.05)  # nothing changed
    stats.answered("lb", "n1", 200, 0.001, 0.002)
    mine.tick(0.1)  # changed, but published 0.1 s ago
    assert t.blob(0) == first
    mine.tick(PUBLISH_EVERY + 0.01)
    assert parse(t.blob(0)).traffic.answers[("lb", "n1")].classes[1] == 1
    stats.answered("lb", "n1", 200, 0.001, 0.002)
    other.traffic()  # a scrape in another process asks everyone
    mine.tick(PUBLISH_EVERY + 0.02)
    assert parse(t.blob(0)).traffic.answers[("lb", "n1")].classes[1] == 2
    stats.answered("lb", "n1", 200, 0.001, 0.002)
    mine.tick(PUBLISH_EVERY + 0.03)  # the request was answered: back to the period
    assert parse(t.blob(0)).traffic.answers[("lb", "n1")].classes[1] == 2


def test_tls_counters_add_up_but_reloads_do_not():
    t = table()
    other = TlsStats()
    other.handshake_done("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    other.failed("timeout")
    other.reloads = 2
    t.write_blob(1, document(other, TrafficStats()))
    own = TlsStats()
    own.failed("timeout")
    own.reloads = 2
    total = totals(t, 0, TrafficStats(), own).tls(own)
    assert total.handshakes == 1 and total.failures == {"timeout": 2}
    assert total.protocols == {"TLSv1.3": 1} and total.reloads == 2


def test_a_document_that_cannot_be_read_counts_as_the_last_good_one():
    t = table()
    mine = totals(t, 0, traffic(1))
    t.write_blob(1, document(None, traffic(3)))
    t.write_blob(2, b'{"traffic": {"accepted": 1}}')  # fields missing: never good
    assert mine.traffic().accepted == 4
    t.write_blob(1, b'{"traffic": {"accepted": "x"')  # cut short
    assert mine.traffic().accepted == 4
    assert mine.tls(TlsStats()).handshakes == 0


def test_a_document_whose_counts_do_not_fit_is_refused_whole():
    # (a longer bucket list was an IndexError out of parse, past its ValueError contract)
    doc = json.loads(document(None, traffic(2)))
    doc["traffic"]["answers"][0][2].append(0)  # one first-byte bucket too many
    with pytest.raises(ValueError, match="cannot be read"):
        parse(json.dumps(doc).encode())
    doc["traffic"]["answers"][0][2][-2:] = []  # and one too few
    with pytest.raises(ValueError, match="cannot be read"):
        parse(json.dumps(doc).encode())


@pytest.mark.parametrize("count", [2**63, 2**64, -1])
def test_a_document_with_a_count_out_of_range_is_refused_whole(count):
    # (compiled, where the counts are C long long, 2**63 was an OverflowError out of parse,
    # past its ValueError contract; pure mode took it)
    doc = json.loads(document(None, traffic(2)))
    doc["traffic"]["answers"][0][2][0] = count
    with pytest.raises(ValueError, match="cannot be read"):
        parse(json.dumps(doc).encode())


def test_the_largest_count_that_fits_is_read():
    doc = json.loads(document(None, traffic(2)))
    doc["traffic"]["answers"][0][2][0] = 2**63 - 1
    (answers,) = parse(json.dumps(doc).encode()).traffic.answers.values()
    assert answers.first_byte[0] == 2**63 - 1


def test_a_document_is_parsed_once_per_change(monkeypatch):
    t = table()
    mine = totals(t, 0, traffic(1))
    t.write_blob(1, document(None, traffic(3)))
    calls = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda raw: calls.append(raw) or real(raw))
    mine.traffic()
    mine.traffic()
    assert len([c for c in calls if b'"accepted":3' in c]) == 1


def test_a_replaced_process_s_counts_stay_and_its_successor_goes_on_from_them():
    t = table()
    t.clear_process(2)
    first = totals(t, 0, traffic(5))
    first.publish()
    other = totals(t, 1, traffic(3))
    assert other.traffic().accepted == 8
    t.clear_process(0)  # killed: its row goes, its published document stays
    assert other.traffic().accepted == 8
    own = TrafficStats()
    successor = totals(t, 0, own)
    successor.inherit()  # at its start, before it publishes
    own.accepted += 2
    assert other.traffic().accepted == 8  # not published yet: the predecessor's 5 count
    successor.publish()
    assert other.traffic().accepted == 10


def test_a_departed_members_counter_does_not_go_backwards_while_a_process_still_has_it():
    # process 0 loads generation 2 (n1 removed), process 1 still serves generation 1: a
    # scrape answered by process 1 still shows n1. Folding at process 0's reload moved its
    # share into the lb's entry: n1 went from 8 to 5 on that scrape.
    from balancer.dataplane_process import DeferredFold

    t = table()
    t.clear_process(2)
    a_stats, b_stats = traffic(3), traffic(5)
    a, b = totals(t, 0, a_stats), totals(t, 1, b_stats)
    a.publish()
    assert b.traffic().answers[("lb", "n1")].classes[1] == 8
    fold = DeferredFold()
    fold.departed(2)  # process 0's reload dropped n1
    t.write_process(ProcessRow(0, 100, 0.0, 0, 0, 2))
    if fold.due(t.processes()):
        a_stats.fold_departed(set())
    a.publish()
    assert b.traffic().answers[("lb", "n1")].classes[1] == 8  # not yet folded: still 8
    t.write_process(ProcessRow(1, 101, 0.0, 0, 0, 2))  # every process passed it
    assert fold.due(t.processes()) and not fold.due(t.processes())
    a_stats.fold_departed(set())
    a.publish()
    total = b.traffic()
    assert total.answers[("lb", "")].classes[1] == 3  # the lb's sums keep it
    assert sum(a.classes[1] for a in total.answers.values()) == 8


def test_a_successor_goes_on_from_the_last_whole_document_of_a_predecessor_killed_mid_write():
    from tests.unit.test_lb_shared import killed_mid_write

    t = table()
    first = totals(t, 0, traffic(5))
    first.publish()
    killed_mid_write(t, 0, document(None, traffic(9)))  # kill -9 inside write_blob
    successor_stats = TrafficStats()
    totals(t, 0, successor_stats).inherit()
    assert successor_stats.accepted == 5
