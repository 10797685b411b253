"""Traffic counters of the data plane: latencies, status classes, refusals, retries.

Plain numbers, no I/O and no Prometheus objects: the data plane calls ``answered`` once per
request at its end (where the access log is written) and the failure paths call ``retry`` /
``refuse`` / ``reject``; ``balancer/status/traffic_metrics.py`` turns them into Prometheus
families when ``/metrics`` is read.

Shaped for the request path (measured: docs/benchmarks.md, "Metrics on the request path"):
one ``Answers`` per (worker, member) and one observation per request, no per-lb or front-end
copies — the lb's and the front end's figures are sums over these, made at scrape time. A
prometheus-client ``Histogram`` with its lock and label lookup costs several times as much.
Compiled (stats.pxd), ``Answers`` and ``TrafficStats`` are extension types: the exchange
calls ``answered`` at C level at the end of every request (exchange.pxd), and the buckets are
found by a C loop over the bounds (docs/benchmarks.md, issue 12, session 5).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

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
_BOUNDS = LATENCY_BUCKETS  # (compiled: a typed tuple, read as C doubles)
_N_BOUNDS = len(LATENCY_BUCKETS)
_N_BUCKETS = _N_BOUNDS + 1  # (+Inf; the size of Answers' C arrays in stats.pxd)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_N_CLASSES = len(STATUS_CLASSES)
# status // 100 -> index in STATUS_CLASSES (0 and anything past 5xx fold into the ends)
_CLASS_OF = (0, 0, 1, 2, 3, 4, 4, 4, 4, 4)


def status_class(status: int) -> int:
    return _CLASS_OF[min(max(status, 0), 999) // 100]


def cumulative(counts: Iterable[int]) -> list[tuple[str, float]]:
    """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*map(repr, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out


def _bucket(seconds: float) -> int:
    """``bisect_left(LATENCY_BUCKETS, seconds)``: the first bucket whose bound is at or above
    ``seconds`` (``len(LATENCY_BUCKETS)``: +Inf). Most requests stop at the first bounds."""
    i = 0
    while i < _N_BOUNDS:
        bound = _BOUNDS[i]
        if bound >= seconds:
            break
        i += 1
    return i


class Answers:
    """Requests answered for one (worker, member): two latency histograms (bucket counts, the
    last one +Inf, and sums) and the status classes.

    Compiled (stats.pxd), the counts are C arrays of C integers: an observation adds 1 to
    three of them, where a list of Python ints made a new int object (and freed the old) for
    every count past 256. ``first_byte``, ``total`` and ``classes`` read them as lists (a
    copy, made when a document or ``/metrics`` is read) and set them from lists
    (process_totals.py adds the other processes' documents that way)."""

    __slots__ = ("_classes", "_first_byte", "_total", "first_byte_sum", "total_sum")

    def __init__(self) -> None:
        # (compiled, the C arrays are zeros already; these lists are copied into them)
        self._first_byte = _zeros(_N_BUCKETS)
        self._total = _zeros(_N_BUCKETS)
        self.first_byte_sum = 0.0
        self.total_sum = 0.0
        self._classes = _zeros(_N_CLASSES)

    def observe(self, first_byte: float, total: float, status: int) -> None:
        """One answered request: its time to the response head, its whole time, its status."""
        i = _bucket(first_byte)
        self._first_byte[i] += 1
        self.first_byte_sum += first_byte
        i = _bucket(total)
        self._total[i] += 1
        self.total_sum += total
        # _CLASS_OF[status // 100] as C arithmetic: 0 and 1xx -> 0 .. 5xx and past -> 4
        c = status // 100 - 1 if 0 <= status < 1000 else 4
        if c < 0:
            c = 0
        elif c > 4:
            c = 4
        self._classes[c] += 1

    def add(self, other: Answers) -> None:
        for i in range(_N_BUCKETS):
            self._first_byte[i] += other._first_byte[i]
            self._total[i] += other._total[i]
        for i in range(_N_CLASSES):
            self._classes[i] += other._classes[i]
        self.first_byte_sum += other.first_byte_sum
        self.total_sum += other.total_sum

    @property
    def first_byte(self) -> list[int]:
        return list(self._first_byte)

    @first_byte.setter
    def first_byte(self, counts: list[int]) -> None:
        self._first_byte = _counts(counts, _N_BUCKETS)

    @property
    def total(self) -> list[int]:
        return list(self._total)

    @total.setter
    def total(self, counts: list[int]) -> None:
        self._total = _counts(counts, _N_BUCKETS)

    @property
    def classes(self) -> list[int]:
        return list(self._classes)

    @classes.setter
    def classes(self, counts: list[int]) -> None:
        self._classes = _counts(counts, _N_CLASSES)


_COUNT_END = 2**63  # counts are 0 <= c < 2**63 (a C long long in the compiled build)


def _zeros(n: int) -> list[int]:
    return [0] * n


def _counts(counts: list[int], n: int) -> list[int]:
    """``counts`` as the ``n`` counts of an Answers list, or ValueError (a document of another
    process that does not fit: process_totals.parse refuses it whole)."""
    if len(counts) != n:
        raise ValueError(f"expected {n} counts, found {len(counts)}")
    out = [int(c) for c in counts]
    for c in out:
        # the compiled Answers keeps them as C long long: a larger one (only a corrupt
        # document has one) would be an OverflowError there, past parse's ValueError contract
        if not 0 <= c < _COUNT_END:
            raise ValueError(f"a count out of range: {c}")
    return out


class TrafficStats:
    """Everything ``/metrics`` reports about traffic beyond the engines' own counters.

    ``answers[(worker, member)]``: ``member`` is "" when no member answered (every try failed,
    the client left first); ``worker`` is "" for a request routed to no lb (a local answer, a
    status page).
    """

    def __init__(self) -> None:
        self.accepted = 0  # client connections admitted
        self.refused: dict[str, int] = {}  # connections turned away, by reason
        self.rejected: dict[int, int] = {}  # requests refused before routing, by status
        self.answers: dict[tuple[str, str], Answers] = {}
        self.retries: dict[tuple[str, str], int] = {}  # (worker, reason of the failed try)
        # answers[(worker, member)] again, as by_worker[worker][member]: a request finds its
        # Answers by two lookups of strings whose hashes are cached, with no key tuple to
        # build, hash and free (issue 12, session 5). Filled from ``answers`` as requests come;
        # emptied whenever an entry leaves ``answers`` (fold_departed).
        self._by_worker: dict[str, dict[str, Answers]] = {}

    def answered(
        self, worker: str, member: str, status: int, first_byte: float, total: float
    ) -> None:
        members = self._by_worker.get(worker)
        a = members.get(member) if members is not None else None
        if a is None:
            a = self._answers_for(worker, member)
        a.observe(first_byte, total, status)

    def _answers_for(self, worker: str, member: str) -> Answers:
        """The Answers of (worker, member), made on first sight, and indexed."""
        key = (worker, member)
        a = self.answers.get(key)
        if a is None:
            a = self.answers[key] = Answers()
        self._by_worker.setdefault(worker, {})[member] = a
        return a

    def retry(self, worker: str, reason: str) -> None:
        key = (worker, reason)
        self.retries[key] = self.retries.get(key, 0) + 1

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def reject(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1

    def fold_departed(self, members_now: Collection[tuple[str, str]]) -> None:
        """Members no longer configured (a reload removed them, they left a dynamic lb):
        their answers move to their lb's member-less entry, so the lb's and the front end's
        sums keep them while the table stops growing with every member that ever was."""
        for key in [k for k in self.answers if k[1] and k not in members_now]:
            self.answers.setdefault((key[0], ""), Answers()).add(self.answers.pop(key))
        self._by_worker.clear()

    # -- at scrape time ---------------------------------------------------------------------
    def lbs(self) -> dict[str, Answers]:
        """Per lb: the sum over its members (and its member-less answers)."""
        out: dict[str, Answers] = {}
        for (worker, _), answers in self.answers.items():
            if worker:
                out.setdefault(worker, Answers()).add(answers)
        return out

    def members(self) -> dict[tuple[str, str], Answers]:
        return {k: v for k, v in self.answers.items() if k[0] and k[1]}

    def frontend(self) -> list[int]:
        """Every answered request by status class, refusals before routing included."""
        classes = [0] * len(STATUS_CLASSES)
        for answers in self.answers.values():
            for i, n in enumerate(answers.classes):
                classes[i] += n
        for status, n in self.rejected.items():
            classes[status_class(status)] += n
        return classes
