"""Traffic counters of the data plane: latencies, status classes, refusals, retries.

Plain numbers, no I/O and no Prometheus objects: the data plane calls ``answered`` once per
request at its end (where the access log is written) and the failure paths call ``retry`` /
``refused``; ``balancer/status/traffic_metrics.py`` turns them into Prometheus families when
``/metrics`` is read. A histogram here is a list of bucket counts plus a sum — one bisect and
two additions per observation, cheaper than a prometheus-client ``Histogram`` with its lock and
label lookup, and it costs nothing between scrapes.
"""

from __future__ import annotations

from bisect import bisect_left

# seconds; Prometheus' default buckets widened to the proxy's range (1 ms .. a long download)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Latency:
    """One histogram: ``counts[i]`` observations in bucket i (the last one is +Inf)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


class Answers:
    """Requests answered for one lb or one member: two latencies and status classes."""

    __slots__ = ("classes", "first_byte", "total")

    def __init__(self) -> None:
        self.first_byte = Latency()
        self.total = Latency()
        self.classes = [0] * len(STATUS_CLASSES)

    def observe(self, status: int, first_byte: float, total: float) -> None:
        self.first_byte.observe(first_byte)
        self.total.observe(total)
        self.classes[min(max(status // 100, 1), 5) - 1] += 1


class TrafficStats:
    """Everything ``/metrics`` reports about traffic beyond the engines' own counters.

    ``lbs[worker]`` and ``members[(worker, member)]`` hold the answered requests; a request
    routed to no worker (a local answer, a status page) counts in ``frontend`` only.
    """

    def __init__(self) -> None:
        self.accepted = 0  # client connections admitted
        self.refused: dict[str, int] = {}  # connections turned away, by reason
        self.rejected: dict[int, int] = {}  # requests refused before routing, by status
        self.frontend = [0] * len(STATUS_CLASSES)  # every answered request, by class
        self.lbs: dict[str, Answers] = {}
        self.members: dict[tuple[str, str], Answers] = {}
        self.retries: dict[tuple[str, str], int] = {}  # (worker, reason of the failed try)

    def answered(
        self, worker: str, member: str, status: int, first_byte: float, total: float
    ) -> None:
        self.frontend[min(max(status // 100, 1), 5) - 1] += 1
        if not worker:
            return
        lb = self.lbs.get(worker)
        if lb is None:
            lb = self.lbs[worker] = Answers()
        lb.observe(status, first_byte, total)
        if member:
            key = (worker, member)
            answers = self.members.get(key)
            if answers is None:
                answers = self.members[key] = Answers()
            answers.observe(status, first_byte, total)

    def retry(self, worker: str, reason: str) -> None:
        key = (worker, reason)
        self.retries[key] = self.retries.get(key, 0) + 1

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def reject(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        self.frontend[min(max(status // 100, 1), 5) - 1] += 1
