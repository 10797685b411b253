"""Totals of N data-plane processes for the counters each process keeps in its own memory.

The lb engines' numbers are shared records (balancer/lb/shm.py). Two sets of counters are
not: the TLS listener's (``TlsStats``: failures by reason, ciphers — keys not known in advance)
and the data plane's traffic counters (``TrafficStats``: latency histograms per member, status
classes, refusals, retries). Each process publishes its own as a JSON document (never pickle)
in its slot of the shared table every ``FOLLOW_INTERVAL``; the process answering a status page
or ``/metrics`` adds its live counters to the others' documents, so every page shows totals
that are at most that old. A document that cannot be read (its writer died mid-write, a
cut-off) adds nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric

from balancer.dataplane.stats import Answers, TrafficStats
from balancer.dataplane.tls import TlsStats
from balancer.lb.shm import Table
from balancer.status.traffic_metrics import TrafficCollector

_TLS_COUNTS = ("failures", "protocols", "ciphers")


def document(tls: TlsStats | None, traffic: TrafficStats) -> bytes:
    """One process's counters."""
    doc: dict[str, Any] = {"traffic": _traffic(traffic)}
    if tls is not None:
        doc["tls"] = {
            "handshakes": tls.handshakes,
            "failures": dict(tls.failures),
            "protocols": dict(tls.protocols),
            "ciphers": dict(tls.ciphers),
            "sni_default": tls.sni_default,
        }
    return json.dumps(doc, separators=(",", ":")).encode()


def _traffic(s: TrafficStats) -> dict[str, Any]:
    return {
        "accepted": s.accepted,
        "refused": s.refused,
        "rejected": {str(k): v for k, v in s.rejected.items()},
        "answers": [
            [w, m, a.first_byte, a.first_byte_sum, a.total, a.total_sum, a.classes]
            for (w, m), a in s.answers.items()
        ],
        "retries": [[w, r, n] for (w, r), n in s.retries.items()],
    }


def _others(table: Table, own_slot: int) -> Iterator[dict[str, Any]]:
    for row in table.processes():
        if row.slot == own_slot:
            continue
        try:
            doc = json.loads(table.blob(row.slot) or b"{}")
        except ValueError:
            continue  # a document cut short: the next refresh is whole
        if isinstance(doc, dict):
            yield doc


def all_tls_stats(table: Table, own_slot: int, own: TlsStats) -> TlsStats:
    """This process's live TLS counters plus the others'. Reloads are not added: every
    process reloads the same certificates."""
    total = TlsStats(
        own.handshakes,
        Counter(own.failures),
        Counter(own.protocols),
        Counter(own.ciphers),
        own.sni_default,
        own.reloads,
        own.reload_failures,
    )
    for doc in _others(table, own_slot):
        tls: Any = doc.get("tls")
        try:  # all of a document or none of it
            handshakes, sni_default = int(tls["handshakes"]), int(tls["sni_default"])
            counts = [Counter({k: int(v) for k, v in tls[key].items()}) for key in _TLS_COUNTS]
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        total.handshakes += handshakes
        total.sni_default += sni_default
        for mine, theirs in zip(
            (total.failures, total.protocols, total.ciphers), counts, strict=True
        ):
            mine.update(theirs)
    return total


def all_traffic(table: Table, own_slot: int, own: TrafficStats) -> TrafficStats:
    """This process's live traffic counters plus the others'."""
    total = TrafficStats()
    _add(total, _traffic(own))
    for doc in _others(table, own_slot):
        part = TrafficStats()
        try:
            _add(part, doc["traffic"])
        except (KeyError, TypeError, ValueError):
            continue  # all of a document or none of it
        _add(total, _traffic(part))
    return total


def _add(total: TrafficStats, doc: dict[str, Any]) -> None:
    total.accepted += int(doc["accepted"])
    for reason, n in doc["refused"].items():
        total.refused[reason] = total.refused.get(reason, 0) + int(n)
    for status, n in doc["rejected"].items():
        total.rejected[int(status)] = total.rejected.get(int(status), 0) + int(n)
    for worker, member, first_byte, fb_sum, whole, whole_sum, classes in doc["answers"]:
        part = Answers()
        part.first_byte, part.first_byte_sum = list(first_byte), float(fb_sum)
        part.total, part.total_sum = list(whole), float(whole_sum)
        part.classes = list(classes)
        total.answers.setdefault((worker, member), Answers()).add(part)
    for worker, reason, n in doc["retries"]:
        total.retries[(worker, reason)] = total.retries.get((worker, reason), 0) + int(n)


class AllProcessesTraffic(TrafficCollector):
    """The traffic families of every process: ``totals()`` is read at each scrape."""

    def __init__(
        self,
        base: TrafficCollector,
        totals: Callable[[], TrafficStats],
        open_connections: Callable[[], int],
    ) -> None:
        super().__init__(base.stats, open_connections, base.members_now)
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        self.stats = self.totals()
        yield from super().collect()
