"""Counters kept per process, added up across processes (balancer/process_totals.py)."""

from __future__ import annotations

from balancer.dataplane.stats import TrafficStats
from balancer.dataplane.tls import TlsStats
from balancer.lb.shm import ProcessRow, Table, table_size
from balancer.process_totals import all_tls_stats, all_traffic, document


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


def test_a_page_shows_its_own_live_counters_plus_the_others_documents():
    t = table()
    t.write_blob(1, document(None, traffic(3)))
    t.write_blob(2, document(None, traffic(4, status=503)))
    t.write_blob(0, document(None, traffic(100)))  # its own document is stale: not read
    total = all_traffic(t, 0, traffic(5))
    assert total.accepted == 12
    assert total.answers[("lb", "n1")].classes == [0, 8, 0, 0, 4]
    assert sum(total.answers[("lb", "n1")].total) == 12
    assert total.refused == {"max_connections": 3} and total.rejected == {400: 3}
    assert total.retries == {("lb", "connect-refused"): 3}


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
    total = all_tls_stats(t, 0, own)
    assert total.handshakes == 1 and total.failures == {"timeout": 2}
    assert total.protocols == {"TLSv1.3": 1} and total.reloads == 2


def test_a_document_that_cannot_be_read_adds_nothing():
    t = table()
    t.write_blob(1, b'{"traffic": {"accepted": "x"')
    t.write_blob(2, b'{"traffic": {"accepted": 1}}')  # fields missing
    assert all_traffic(t, 0, traffic(1)).accepted == 1
    assert all_tls_stats(t, 0, TlsStats()).handshakes == 0
