"""TrafficStats: what the data plane counts per request, and how it reaches Prometheus."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from balancer.dataplane.stats import LATENCY_BUCKETS, Answers, TrafficStats, cumulative
from balancer.status.traffic_metrics import TrafficCollector


def test_a_latency_lands_in_the_first_bucket_at_or_above_it():
    stats = TrafficStats()
    for seconds in (0.0005, 0.001, 0.02, 100.0):
        stats.answered("lb", "n1", 200, seconds, seconds)
    answers = stats.answers[("lb", "n1")]
    buckets = dict(cumulative(answers.total))
    assert buckets["0.001"] == 2  # le is inclusive
    assert buckets["0.025"] == 3
    assert buckets[repr(LATENCY_BUCKETS[-1])] == 3
    assert buckets["+Inf"] == 4
    assert answers.total_sum == 0.0005 + 0.001 + 0.02 + 100.0
    assert dict(cumulative(answers.first_byte)) == buckets


def test_an_answer_counts_for_its_lb_its_member_and_the_front_end():
    stats = TrafficStats()
    stats.answered("lb", "n1", 200, 0.01, 0.02)
    stats.answered("lb", "", 503, 0.0, 0.5)  # no member could answer
    stats.answered("", "", 404, 0.0, 0.0)  # a local answer
    stats.answered("lb", "n2", 499, 0.1, 0.1)  # the client left
    stats.reject(431)
    lbs = stats.lbs()
    assert list(lbs) == ["lb"]
    assert lbs["lb"].classes == [0, 1, 0, 1, 1]
    assert lbs["lb"].total_sum == 0.02 + 0.5 + 0.1
    assert sum(lbs["lb"].total) == 3
    assert stats.members()[("lb", "n1")].classes == [0, 1, 0, 0, 0]
    assert sorted(stats.members()) == [("lb", "n1"), ("lb", "n2")]
    assert stats.frontend() == [0, 1, 0, 3, 1]


def test_the_collector_writes_histograms_prometheus_can_read():
    stats = TrafficStats()
    stats.answered("lb", "n1", 200, 0.003, 0.004)
    stats.retry("lb", "connect-failed")
    stats.reject(431)
    stats.refuse("max_connections")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrafficCollector(stats, lambda: 7))
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    m = (("member", "n1"), ("worker", "lb"))
    assert samples[("pyjk_member_first_byte_seconds_bucket", (("le", "0.005"), *m))] == 1
    assert samples[("pyjk_member_first_byte_seconds_bucket", (("le", "0.0025"), *m))] == 0
    assert samples[("pyjk_member_request_duration_seconds_count", m)] == 1
    key = (("reason", "connect-failed"), ("worker", "lb"))
    assert samples[("pyjk_lb_retries_total", key)] == 1
    assert samples[("pyjk_frontend_requests_rejected_total", (("code", "431"),))] == 1
    assert samples[("pyjk_frontend_connections_refused_total", (("reason", "max_connections"),))]
    assert samples[("pyjk_frontend_connections_open", ())] == 7


def test_a_member_that_left_loses_its_series_but_its_lb_keeps_the_count():
    stats = TrafficStats()
    stats.answered("lb", "n1", 200, 0.003, 0.004)
    stats.answered("lb", "n2", 200, 0.003, 0.004)
    stats.answered("lb", "", 503, 0.001, 0.001)  # no member answered: the lb's alone
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrafficCollector(stats, lambda: 0, lambda: {("lb", "n1")}))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    counts = {
        (s.name, s.labels.get("member")): s.value
        for f in families
        for s in f.samples
        if s.name.endswith("request_duration_seconds_count")
    }
    assert ("pyjk_member_request_duration_seconds_count", "n1") in counts
    assert ("pyjk_member_request_duration_seconds_count", "n2") not in counts  # n2 was removed
    assert counts[("pyjk_lb_request_duration_seconds_count", None)] == 3  # the lb's sum: all


def test_each_latency_lands_where_bisect_puts_it_bounds_included():
    # the compiled build finds the bucket with its own loop (stats.pxd): it must agree with
    # bisect_left everywhere, at each bound (le is inclusive), between them and past the last
    from bisect import bisect_left

    values = [0.0, 1e-9, 0.00099, 60.0000001, 1e9]
    for bound in LATENCY_BUCKETS:
        values += [bound, bound * 0.999999, bound * 1.000001]
    for seconds in values:
        a = Answers()
        a.observe(seconds, seconds, 200)
        expected = bisect_left(LATENCY_BUCKETS, seconds)
        assert a.first_byte.index(1) == expected, seconds
        assert a.total.index(1) == expected, seconds


def test_a_status_counts_in_its_class_and_odd_ones_at_the_ends():
    a = Answers()
    for status in (0, 101, 200, 204, 302, 404, 499, 503, 599, 999, 1000, -1):
        a.observe(0.0, 0.0, status)
    assert a.classes == [2, 2, 1, 2, 5]


def test_a_member_that_comes_back_after_it_was_folded_counts_afresh():
    # answered() finds a member's Answers through an index; folding a departed member away
    # must not leave the index pointing at the Answers that left the table
    stats = TrafficStats()
    stats.answered("lb", "n1", 200, 0.001, 0.001)
    stats.fold_departed(set())
    assert ("lb", "n1") not in stats.answers
    stats.answered("lb", "n1", 503, 0.001, 0.001)
    assert stats.answers[("lb", "n1")].classes == [0, 0, 0, 0, 1]
    assert stats.answers[("lb", "")].classes == [0, 1, 0, 0, 0]
    assert stats.frontend() == [0, 1, 0, 0, 1]


def test_the_compiled_counts_have_room_for_every_bucket_and_class():
    # stats.pxd gives Answers' counts as C arrays of fixed sizes: they must be the .py's
    import re
    from pathlib import Path

    from balancer.dataplane import stats

    pxd = (Path(stats.__file__).with_suffix("").with_suffix(".pxd")).read_text()
    sizes = {name: int(n) for name, n in re.findall(r"long long (_\w+)\[(\d+)\]", pxd)}
    n_buckets = len(LATENCY_BUCKETS) + 1
    assert sizes == {"_first_byte": n_buckets, "_total": n_buckets, "_classes": 5}
    assert len(stats.STATUS_CLASSES) == 5


def test_counts_stay_exact_as_they_grow_and_add_up():
    a, b = Answers(), Answers()
    for i in range(3000):
        a.observe(0.0005, 0.02, 200 if i % 3 else 503)
    b.observe(100.0, 100.0, 404)
    b.add(a)
    assert a.classes == [0, 2000, 0, 0, 1000]
    assert b.classes == [0, 2000, 0, 1, 1000]
    assert b.first_byte[0] == 3000 and b.first_byte[-1] == 1
    assert sum(b.total) == 3001
    a.classes[1] = 0  # a copy: the counts are not changed through it
    assert a.classes[1] == 2000


def test_counts_are_set_from_lists_of_their_own_length_only():
    a = Answers()
    a.first_byte = [1] * (len(LATENCY_BUCKETS) + 1)
    a.classes = [0, 5, 0, 0, 0]
    assert sum(a.first_byte) == len(LATENCY_BUCKETS) + 1 and a.classes[1] == 5
    with pytest.raises(ValueError, match="expected 5 counts, found 6"):
        a.classes = [0] * 6
    with pytest.raises(ValueError):
        a.total = [0] * len(LATENCY_BUCKETS)
