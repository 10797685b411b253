"""next_deadline: which upstream deadline (reply, socket read, socket send) comes due first."""

from __future__ import annotations

from balancer.dataplane.deadlines import next_deadline
from balancer.lb.decisions import OutcomeKind


def test_no_timeouts_configured_means_no_deadline() -> None:
    assert next_deadline(100.0, 0.0, 100.0, 0.0, 0.0) is None


def test_reply_clock_not_started_and_no_socket_timeout_means_no_deadline() -> None:
    assert next_deadline(None, 5.0, 100.0, 0.0, 0.0) is None


def test_reply_timeout_counts_from_the_given_start() -> None:
    assert next_deadline(103.0, 5.0, 100.0, 0.0, 0.0) == (
        108.0,
        OutcomeKind.REPLY_TIMEOUT,
        "reply-timeout",
    )


def test_reply_timeout_is_ignored_until_its_clock_starts() -> None:
    assert next_deadline(None, 5.0, 100.0, 30.0, 0.0) == (
        130.0,
        OutcomeKind.READ_FAILED,
        "socket-timeout",
    )


def test_socket_timeout_alone_counts_from_the_last_read() -> None:
    assert next_deadline(None, 0.0, 42.0, 10.0, 0.0) == (
        52.0,
        OutcomeKind.READ_FAILED,
        "socket-timeout",
    )


def test_earlier_socket_timeout_beats_later_reply_timeout() -> None:
    due = next_deadline(100.0, 20.0, 100.0, 10.0, 0.0)
    assert due == (110.0, OutcomeKind.READ_FAILED, "socket-timeout")


def test_earlier_reply_timeout_beats_later_socket_timeout() -> None:
    due = next_deadline(100.0, 5.0, 100.0, 10.0, 0.0)
    assert due == (105.0, OutcomeKind.REPLY_TIMEOUT, "reply-timeout")


def test_on_a_tie_the_reply_timeout_wins() -> None:
    due = next_deadline(100.0, 10.0, 100.0, 10.0, 0.0)
    assert due == (110.0, OutcomeKind.REPLY_TIMEOUT, "reply-timeout")


def test_a_write_held_back_longer_than_the_socket_timeout_is_a_send_failure() -> None:
    due = next_deadline(100.0, 60.0, 100.0, 10.0, 95.0)
    assert due == (105.0, OutcomeKind.SEND_FAILED, "send-timeout")


def test_a_send_deadline_later_than_the_read_deadline_does_not_apply() -> None:
    due = next_deadline(None, 0.0, 100.0, 10.0, 101.0)
    assert due == (110.0, OutcomeKind.READ_FAILED, "socket-timeout")


def test_on_a_tie_the_read_wins_over_the_send() -> None:
    due = next_deadline(None, 0.0, 100.0, 10.0, 100.0)
    assert due == (110.0, OutcomeKind.READ_FAILED, "socket-timeout")


def test_a_paused_write_without_a_socket_timeout_sets_no_deadline() -> None:
    assert next_deadline(None, 0.0, 100.0, 0.0, 50.0) is None
    assert next_deadline(100.0, 5.0, 100.0, 0.0, 50.0) == (
        105.0,
        OutcomeKind.REPLY_TIMEOUT,
        "reply-timeout",
    )
