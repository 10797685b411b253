"""The data plane's traffic counters (``balancer.dataplane.stats``) as Prometheus families.

Rendered with the status worker's snapshot on ``/metrics``: latency histograms per lb and per
member (time to the response head, and total), answers by status class, front-end connections
(open, accepted, refused by reason), requests refused before routing by status, and retries by
the reason the try before failed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from balancer.dataplane.stats import STATUS_CLASSES, Answers, TrafficStats, cumulative

__all__ = ["TrafficCollector"]


class TrafficCollector(Collector):
    """``open_connections()`` gives the client connections open now; ``members_now()``, when
    given, the (worker, member) pairs configured now: a member that left (a reload, a dynamic
    member removed) loses its series, while the lb's sums keep what it answered (counters of an
    lb never go back)."""

    def __init__(
        self,
        stats: TrafficStats,
        open_connections: Callable[[], int],
        members_now: Callable[[], Collection[tuple[str, str]]] | None = None,
    ) -> None:
        self.stats = stats
        self.open_connections = open_connections
        self.members_now = members_now

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily(
            "pyjk_frontend_connections_open", "client connections open", self.open_connections()
        )
        yield CounterMetricFamily(
            "pyjk_frontend_connections_accepted", "client connections admitted", s.accepted
        )
        refused = CounterMetricFamily(
            "pyjk_frontend_connections_refused",
            "client connections turned away (503), by the limit that refused them",
            labels=["reason"],
        )
        for reason in ("max_connections", "max_connections_per_ip"):
            refused.add_metric([reason], s.refused.get(reason, 0))
        yield refused
        rejected = CounterMetricFamily(
            "pyjk_frontend_requests_rejected",
            "requests refused before routing (malformed 400, 408 too slow, 413, 414, 431 ...)",
            labels=["code"],
        )
        for status, n in sorted(s.rejected.items()):
            rejected.add_metric([str(status)], n)
        yield rejected
        frontend = CounterMetricFamily(
            "pyjk_frontend_responses", "every answered request, by status class", labels=["code"]
        )
        for name, n in zip(STATUS_CLASSES, s.frontend(), strict=True):
            frontend.add_metric([name], n)
        yield frontend

        yield from _answers("pyjk_lb", ["worker"], [((k,), v) for k, v in s.lbs().items()])
        members: Iterable[tuple[tuple[str, str], Answers]] = s.members().items()
        if self.members_now is not None:
            now = self.members_now()
            members = [(key, a) for key, a in members if not key[1] or key in now]
        yield from _answers("pyjk_member", ["worker", "member"], members)

        retries = CounterMetricFamily(
            "pyjk_lb_retries",
            "tries after a failed one (another member, or the same one again), by the failure",
            labels=["worker", "reason"],
        )
        for (worker, reason), n in sorted(s.retries.items()):
            retries.add_metric([worker, reason], n)
        yield retries


def _answers(
    prefix: str,
    labels: list[str],
    items: Iterable[tuple[tuple[str, ...], Answers]],
) -> Iterator[Metric]:
    first = HistogramMetricFamily(
        f"{prefix}_first_byte_seconds",
        "time from the request head to the response head going to the client",
        labels=labels,
    )
    total = HistogramMetricFamily(
        f"{prefix}_request_duration_seconds",
        "time from the request head to the end of the answer",
        labels=labels,
    )
    classes = CounterMetricFamily(
        f"{prefix}_responses", "answered requests by status class", labels=[*labels, "code"]
    )
    for key, answers in sorted(items, key=lambda item: item[0]):
        values = list(key)
        first.add_metric(values, cumulative(answers.first_byte), answers.first_byte_sum)
        total.add_metric(values, cumulative(answers.total), answers.total_sum)
        for name, n in zip(STATUS_CLASSES, answers.classes, strict=True):
            classes.add_metric([*values, name], n)
    yield first
    yield total
    yield classes
