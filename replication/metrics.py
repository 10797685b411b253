"""Replication's families on a clustered worker's ``/metrics`` (what ``/cluster-manager``
shows as JSON): members by state, frames and bytes per peer and direction, acks missed, syncs
(state transfer, gap recovery: the resyncs), how long the start-up state transfer took,
exactly-once replays, frames dropped by reason, and every other event counter of the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .node import ClusterNode

__all__ = ["ReplicationCollector"]

# node counters with a family of their own; the rest go to pyjk_replication_events_total
_NAMED = frozenset(
    {"frames_in", "frames_out", "bytes_in", "bytes_out", "acks_missed", "replays_answered",
     "syncs_started", "syncs_done", "syncs_failed"}
)  # fmt: skip


class ReplicationCollector(Collector):
    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        counters: Counter[str] = node.counters
        members = GaugeMetricFamily(
            "pyjk_replication_members", "other cluster members by state", labels=["state"]
        )
        states = Counter(m.state for m in node.membership.members())
        for state, n in sorted(states.items()):
            members.add_metric([state], n)
        yield members
        yield GaugeMetricFamily(
            "pyjk_replication_ready",
            "1 when this node holds every session it should",
            1.0 if node.readiness.ready else 0.0,
        )
        frames = CounterMetricFamily(
            "pyjk_replication_frames",
            "sealed TCP frames exchanged with each peer",
            labels=["peer", "direction"],
        )
        octets = CounterMetricFamily(
            "pyjk_replication_bytes",
            "bytes of sealed TCP frames exchanged with each peer",
            labels=["peer", "direction"],
        )
        for peer, c in sorted(node.channel.per_peer.items()):
            for direction in ("in", "out"):
                frames.add_metric([peer, direction], c[f"frames_{direction}"])
                octets.add_metric([peer, direction], c[f"bytes_{direction}"])
        yield frames
        yield octets
        yield CounterMetricFamily(
            "pyjk_replication_acks_missed",
            "sync-mode acks that did not come within ack_timeout (the member became a suspect)",
            counters["acks_missed"],
        )
        syncs = CounterMetricFamily(
            "pyjk_replication_syncs",
            "snapshot pulls from a member (state transfer at start, resync after a gap)",
            labels=["result"],
        )
        for result in ("started", "done", "failed"):
            syncs.add_metric([result], counters[f"syncs_{result}"])
        yield syncs
        took = node.state_transfer_seconds
        if took is not None:
            yield GaugeMetricFamily(
                "pyjk_replication_state_transfer_seconds",
                "how long the start-up state transfer took (until ready, or timed out)",
                took,
            )
        if node.dist is not None:
            held = GaugeMetricFamily(
                "pyjk_replication_sessions",
                "distributed mode: sessions held here, as their primary (owned) or a backup",
                labels=["role"],
            )
            store = node.dist.describe()
            for role in ("owned", "backup"):
                held.add_metric([role], store[role])
            yield held
        yield CounterMetricFamily(
            "pyjk_replication_replays_answered",
            "retried requests answered from the exactly-once ledger instead of run again",
            counters["replays_answered"],
        )
        events = CounterMetricFamily(
            "pyjk_replication_events",
            "the node's other counters as /cluster-manager lists them (drops, deltas, ...)",
            labels=["event"],
        )
        for name, n in sorted(counters.items()):
            if name not in _NAMED:
                events.add_metric([name], n)
        yield events
