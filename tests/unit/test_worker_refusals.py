"""RefusalLog: a burst of "cluster full" refusals becomes one line per interval."""

from __future__ import annotations

from worker.refusals import RefusalLog


def test_the_first_refusal_is_reported_at_once():
    log = RefusalLog(interval=10)
    assert log.note(100.0) == 1


def test_refusals_within_the_interval_are_counted_then_reported_together():
    log = RefusalLog(interval=10)
    log.note(100.0)
    assert [log.note(100.0 + i / 10) for i in range(1, 40)] == [None] * 39
    assert log.note(110.0) == 40
    assert log.total == 41 and log.pending == 0


def test_a_periodic_flush_reports_the_rest_of_a_burst_and_nothing_when_quiet():
    log = RefusalLog(interval=10)
    log.note(0.0)
    log.note(1.0)
    log.note(2.0)
    assert log.due(5.0) is None  # too soon
    assert log.due(10.0) == 2
    assert log.due(30.0) is None  # nothing pending
