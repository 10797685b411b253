"""Totals of N data-plane processes for the counters each process keeps in its own memory.

The lb engines' numbers are shared records (balancer/lb/shm.py). Two sets of counters are
not: the TLS listener's (``TlsStats``: failures by reason, ciphers — keys not known in advance)
and the data plane's traffic counters (``TrafficStats``: latency histograms per member, status
classes, refusals, retries). Each process publishes its own as a JSON document (never pickle)
in its slot of the shared table: when they changed, at most every ``PUBLISH_EVERY`` s, and at
once when a scrape asks (``Table.ask``).

A page or a scrape sums the *published* documents only, the answering process publishing its
own first. So two scrapes in a row never go backwards, whichever process answers each: every
document the second one reads is at least as new as what the first read (summing one
process's live counters with the others' older documents did go backwards: 26 then 24). A
slot's document outlives its process: a process that died still counts with what it
published, and the next process of that slot starts its counters from it. A document that
cannot be read (a cut-off) counts as the last good one read from that slot; each document is
parsed once, when its bytes change. A writer killed mid-write leaves its previous document
whole (the slot is double-buffered: balancer/lb/shm.py), so a successor goes on from it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

from balancer.dataplane.stats import Answers, TrafficStats
from balancer.dataplane.tls import TlsStats
from balancer.lb.shm import MAX_PROCESSES, Table, TableFull
from balancer.status.traffic_metrics import TrafficCollector

PUBLISH_EVERY = 1.0  # s: the longest a changed document waits unless a scrape asks


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


def activity(tls: TlsStats | None, traffic: TrafficStats) -> tuple[int, ...]:
    """A cheap mark that moves whenever a document would change (it is compared, not shown)."""
    answers = sum(sum(a.classes) for a in traffic.answers.values())
    mark = (
        traffic.accepted,
        answers,
        sum(traffic.refused.values()),
        sum(traffic.rejected.values()),
        sum(traffic.retries.values()),
    )
    if tls is None:
        return mark
    return (*mark, tls.handshakes, sum(tls.failures.values()), tls.sni_default)


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


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One process's document, read whole: its traffic, and its TLS counters if any."""

    raw: bytes
    traffic: TrafficStats
    tls: TlsStats | None


def parse(raw: bytes) -> _Parsed:
    """A document, all of it or ValueError."""
    try:
        doc = json.loads(raw)
        traffic = TrafficStats()
        _add(traffic, doc["traffic"])
        tls = _tls(doc["tls"]) if "tls" in doc else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"a process document that cannot be read: {exc!r}") from exc
    return _Parsed(raw, traffic, tls)


def _tls(doc: Any) -> TlsStats:
    def counts(key: str) -> Counter[str]:
        return Counter({str(k): int(v) for k, v in doc[key].items()})

    return TlsStats(
        handshakes=int(doc["handshakes"]),
        failures=counts("failures"),
        protocols=counts("protocols"),
        ciphers=counts("ciphers"),
        sni_default=int(doc["sni_default"]),
    )


def _add(total: TrafficStats, doc: dict[str, Any]) -> None:
    total.accepted += int(doc["accepted"])
    for reason, n in doc["refused"].items():
        total.refused[reason] = total.refused.get(reason, 0) + int(n)
    for status, n in doc["rejected"].items():
        total.rejected[int(status)] = total.rejected.get(int(status), 0) + int(n)
    for worker, member, first_byte, fb_sum, whole, whole_sum, classes in doc["answers"]:
        part = Answers()
        part.first_byte, part.first_byte_sum = [int(n) for n in first_byte], float(fb_sum)
        part.total, part.total_sum = [int(n) for n in whole], float(whole_sum)
        part.classes = [int(n) for n in classes]
        total.answers.setdefault((worker, member), Answers()).add(part)
    for worker, reason, n in doc["retries"]:
        total.retries[(worker, reason)] = total.retries.get((worker, reason), 0) + int(n)


def _merge(total: TrafficStats, part: TrafficStats) -> None:
    total.accepted += part.accepted
    for reason, n in part.refused.items():
        total.refused[reason] = total.refused.get(reason, 0) + n
    for status, n in part.rejected.items():
        total.rejected[status] = total.rejected.get(status, 0) + n
    for key, answers in part.answers.items():
        total.answers.setdefault(key, Answers()).add(answers)
    for key, n in part.retries.items():
        total.retries[key] = total.retries.get(key, 0) + n


class Totals:
    """One data-plane process's side: publishing its document, adding up everyone's."""

    def __init__(
        self,
        table: Table,
        slot: int,
        traffic: TrafficStats,
        tls: Callable[[], TlsStats | None],
    ) -> None:
        self.table, self.slot = table, slot
        self.slots = range(MAX_PROCESSES)  # the data-plane processes' (not the supervisor's)
        self.own_traffic, self.own_tls = traffic, tls
        self._last: dict[int, _Parsed] = {}  # slot → its last good document
        self._published_at = float("-inf")
        self._published_mark: tuple[int, ...] | None = None
        self._answered = table.asked  # the scrape requests already answered
        self.too_big = False

    def publish(self) -> None:
        """Write this process's document now (one writer per slot)."""
        tls = self.own_tls()
        self._published_mark = activity(tls, self.own_traffic)
        try:
            self.table.write_blob(self.slot, document(tls, self.own_traffic))
        except TableFull:  # hundreds of members: totals of the others only
            self.too_big = True

    def tick(self, now: float) -> None:
        """The follow loop's turn: publish if a scrape asked, or if the counters changed and
        the last publication is ``PUBLISH_EVERY`` old."""
        asked = self.table.asked
        if asked != self._answered:
            self._answered = asked
        elif (
            now - self._published_at < PUBLISH_EVERY
            or activity(self.own_tls(), self.own_traffic) == self._published_mark
        ):
            return
        self._published_at = now
        self.publish()

    def inherit(self) -> None:
        """A process starting in a slot goes on from the counters its predecessor published
        (before it publishes anything): the totals do not drop when a process is replaced."""
        raw = self.table.blob(self.slot) if self.table.has_blob(self.slot) else b""
        try:
            before = parse(raw)
        except ValueError:
            return  # none, or its writer died mid-write
        _merge(self.own_traffic, before.traffic)
        tls = self.own_tls()
        if tls is not None and before.tls is not None:
            tls.add(before.tls)

    def _documents(self) -> Iterator[_Parsed]:
        """Publish ours, ask the others for theirs (for the next read), read every slot's."""
        self.publish()
        self.table.ask()
        for slot in self.slots:
            if not self.table.has_blob(slot):
                continue
            raw = self.table.blob(slot)
            last = self._last.get(slot)
            if last is None or raw != last.raw:
                with contextlib.suppress(ValueError):  # mid-write or cut short: the last good
                    self._last[slot] = last = parse(raw)  # one counts
            if last is not None:
                yield last

    def traffic(self) -> TrafficStats:
        total = TrafficStats()
        for doc in self._documents():
            _merge(total, doc.traffic)
        return total

    def tls(self, own: TlsStats) -> TlsStats:
        """The TLS counters of every process. Reloads are this process's: every process
        reloads the same certificates."""
        total = TlsStats(reloads=own.reloads, reload_failures=own.reload_failures)
        for doc in self._documents():
            if doc.tls is not None:
                total.add(doc.tls)
        return total


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
