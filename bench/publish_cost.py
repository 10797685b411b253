"""What publishing and adding up the per-process counters costs (issue 13, --processes N).

Each data-plane process publishes its traffic/TLS counters as a JSON document
(balancer/process_totals.py). Until this change every process re-serialised its document every
50 ms, changed or not (20 per second), and a scrape converted every other process's document
twice (JSON -> counters -> dict -> counters). Now a document is written when it changed, at
most once a second (or when a scrape asks), and a scrape parses each document once per change.

    .venv/bin/python bench/publish_cost.py [--members 10,100,300] [--repeat 200]

Prints, per member count: the document's size, the µs to serialise one, the publishing CPU per
process per second before (20/s) and now (at most 1/s under steady traffic, 0 when idle), and
the µs a 2-process scrape spends adding up (old: convert twice; now: merge parsed documents).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from balancer.dataplane.stats import TrafficStats
from balancer.lb.shm import ProcessRow, Table, table_size
from balancer.process_totals import Totals, _add, _traffic, document

OLD_PER_SECOND = 20  # FOLLOW_INTERVAL 0.05 s
NEW_PER_SECOND = 1  # PUBLISH_EVERY 1 s, only when changed


def stats(members: int) -> TrafficStats:
    s = TrafficStats()
    for m in range(members):
        for status, latency in ((200, 0.004), (200, 0.02), (503, 0.3)):
            s.answered("lb", f"node{m}", status, latency / 2, latency)
    s.accepted = members * 3
    return s


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-three mean µs per call."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e6


def old_all_traffic(docs: list[dict], own: TrafficStats) -> TrafficStats:
    """The scrape before this change: own counters to a dict and back, each other document
    to counters, to a dict, to counters again."""
    total = TrafficStats()
    _add(total, _traffic(own))
    for doc in docs:
        part = TrafficStats()
        _add(part, doc["traffic"])
        _add(total, _traffic(part))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="10,100,300")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(
        f"{'members':>7} {'doc bytes':>9} {'serialise µs':>12} {'publish CPU µs/s old':>20} "
        f"{'new':>6} {'scrape µs old':>13} {'new':>6}"
    )
    for members in (int(n) for n in args.members.split(",")):
        own, other = stats(members), stats(members)
        raw = document(None, own)
        serialise = per_call(lambda own=own: document(None, own), args.repeat)
        docs = [json.loads(document(None, other))]
        old_scrape = per_call(lambda d=docs, o=own: old_all_traffic(d, o), args.repeat)
        table = Table(bytearray(table_size(8)), 8)
        table.format()
        for slot in (0, 1):
            table.write_process(ProcessRow(slot, 100 + slot, 0.0, 0, 0, 1))
        Totals(table, 1, other, lambda: None).publish()
        mine = Totals(table, 0, own, lambda: None)
        new_scrape = per_call(mine.traffic, args.repeat)
        print(
            f"{members:>7} {len(raw):>9} {serialise:>12.1f} {serialise * OLD_PER_SECOND:>20.0f} "
            f"{serialise * NEW_PER_SECOND:>6.0f} {old_scrape:>13.1f} {new_scrape:>6.1f}"
        )


if __name__ == "__main__":
    main()
