"""The locust users' reply checks and the failover report's arithmetic (quick, no processes).

Run: .venv/bin/python -m pytest bench/failover_checks_test.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from failover_checks import (
    BAD_REPLY,
    DOUBLE_WRITE,
    LOST_WRITE,
    MOVED,
    NO_REPLY,
    OK,
    WRONG_NODE,
    Reply,
    SessionCheck,
    check_fresh,
    cookie_value,
    parse_counter,
    parse_page,
    route_of,
)
from failover_report import (
    breakdown,
    failovers,
    log_time,
    percentile,
    phase_bounds,
    phase_stats,
    read_locust_json,
    settled_at,
    split_moves,
    table,
    worker_events,
)

from worker.demo import render_page
from worker.sessions import SessionStore

A = "A" * 32
B = "B" * 32


def started(node: str = "node1", count: int = 5) -> SessionCheck:
    """A check that has already seen `count` on session A.<node>."""
    check = SessionCheck()
    first = check.observe(Reply(200, node, f"{A}.{node}", 1, f"{A}.{node}"), 0.0, 0.01)
    assert first.kind == OK
    for n in range(2, count + 1):
        assert check.observe(Reply(200, node, f"{A}.{node}", n), n, n + 0.01).kind == OK
    return check


def test_a_reply_from_the_cookies_node_one_higher_is_fine() -> None:
    check = started()
    assert check.observe(Reply(200, "node1", f"{A}.node1", 6), 10.0, 10.02).kind == OK
    assert check.cookie == f"JSESSIONID={A}.node1" and check.count == 6


def test_a_reply_from_another_node_that_moves_the_cookie_there_is_a_move() -> None:
    check = started()
    finding = check.observe(Reply(200, "node3", f"{A}.node3", 6, f"{A}.node3"), 10.0, 10.25)
    assert finding.kind == MOVED and not finding.failed
    assert finding.restick == pytest.approx(0.25)
    assert (finding.from_route, finding.to_route) == ("node1", "node3")
    assert check.cookie == f"JSESSIONID={A}.node3"


def test_re_stick_time_runs_from_the_first_request_that_got_no_reply() -> None:
    check = started()
    assert check.observe(Reply(0), 10.0, 10.5).kind == NO_REPLY
    assert check.observe(Reply(503), 10.5, 10.6).kind == BAD_REPLY
    finding = check.observe(Reply(200, "node2", f"{A}.node2", 7, f"{A}.node2"), 10.6, 11.0)
    assert finding.kind == MOVED and finding.restick == pytest.approx(1.0)


def test_a_reply_from_another_node_that_keeps_the_cookie_is_the_wrong_node() -> None:
    check = started()
    finding = check.observe(Reply(200, "node2", f"{A}.node1", 6), 10.0, 10.1)
    assert finding.kind == WRONG_NODE and finding.failed


def test_a_move_to_a_route_other_than_the_serving_node_is_the_wrong_node() -> None:
    check = started()
    finding = check.observe(Reply(200, "node2", f"{A}.node3", 6, f"{A}.node3"), 10.0, 10.1)
    assert finding.kind == WRONG_NODE


@pytest.mark.parametrize("count", [5, 4, 1])
def test_a_counter_that_stays_or_goes_back_is_a_lost_write(count: int) -> None:
    check = started(count=5)
    finding = check.observe(Reply(200, "node1", f"{A}.node1", count), 10.0, 10.1)
    assert finding.kind == LOST_WRITE and finding.failed
    assert check.count == count  # counting goes on from what the server says


def test_a_session_replaced_by_a_new_one_is_a_lost_write_even_on_a_move() -> None:
    check = started()
    finding = check.observe(Reply(200, "node2", f"{B}.node2", 1, f"{B}.node2"), 10.0, 10.1)
    assert finding.kind == LOST_WRITE and "replaced" in finding.detail
    assert check.cookie == f"JSESSIONID={B}.node2"


def test_a_lost_write_across_a_move_is_still_a_lost_write() -> None:
    check = started()
    finding = check.observe(Reply(200, "node2", f"{A}.node2", 4, f"{A}.node2"), 10.0, 10.1)
    assert finding.kind == LOST_WRITE


def test_a_counter_that_jumps_is_a_write_applied_twice() -> None:
    check = started()
    finding = check.observe(Reply(200, "node1", f"{A}.node1", 7), 10.0, 10.1)
    assert finding.kind == DOUBLE_WRITE and finding.failed


def test_an_unanswered_request_may_have_counted_once_but_not_twice() -> None:
    check = started()
    check.observe(Reply(0), 10.0, 10.1)
    assert check.observe(Reply(200, "node1", f"{A}.node1", 7), 10.1, 10.2).kind == OK
    check.observe(Reply(502), 10.2, 10.3)
    assert check.observe(Reply(200, "node1", f"{A}.node1", 10), 10.3, 10.4).kind == DOUBLE_WRITE


def test_a_reply_naming_another_session_than_the_cookie_is_bad() -> None:
    check = started()
    finding = check.observe(Reply(200, "node1", f"{B}.node1", 6), 10.0, 10.1)
    assert finding.kind == BAD_REPLY


def test_a_fresh_session_must_start_at_one_on_the_serving_nodes_route() -> None:
    assert check_fresh(Reply(200, "node1", f"{A}.node1", 1, f"{A}.node1")).kind == OK
    assert check_fresh(Reply(200, "node2", f"{A}.node1", 1, f"{A}.node1")).kind == WRONG_NODE
    assert check_fresh(Reply(200, "node1", f"{A}.node1", 2, f"{A}.node1")).kind == DOUBLE_WRITE
    assert check_fresh(Reply(200, "node1", f"{A}.node1", 1, None)).kind == BAD_REPLY
    assert check_fresh(Reply(0)).kind == NO_REPLY


def test_the_counter_and_the_page_parse_to_the_same_reply() -> None:
    body = json.dumps({"node": "node2", "session": f"{A}.node2", "count": 3})
    assert parse_counter(200, body.encode(), None) == Reply(200, "node2", f"{A}.node2", 3)
    assert parse_counter(200, b"<html>", None) == Reply(200)
    assert parse_counter(502, body, "x") == Reply(502, set_cookie="x")
    session = SessionStore("node2").create(0.0)
    page = render_page("node2", session, 3).encode()
    assert parse_page(200, page, session.id) == Reply(200, "node2", session.id, 3, session.id)


def test_the_last_set_cookie_of_the_session_cookie_wins() -> None:
    headers = ["other=1; Path=/", f"JSESSIONID={A}.node1; Path=/", f'JSESSIONID="{B}.node2"']
    assert cookie_value(headers) == f"{B}.node2"
    assert cookie_value(["JSESSIONIDX=1"]) is None
    assert route_of(f"{A}.node1") == "node1" and route_of(A) is None


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_each_request_counts_in_the_phase_its_reply_arrived_in() -> None:
    ends = [9.0, 1.0, 10.0, 10.5, 12.0, 20.0, 30.0]
    ms = [5.0, 1.0, 100.0, 200.0, 2.0, 3.0, 4.0]
    ok = [1, 1, 0, 1, 1, 1, 1]
    bounds = phase_bounds(1.0, 10.0, 11.0, 20.0, 30.0)
    stats = {p.name: p for p in phase_stats(ends, ms, ok, bounds)}
    assert [stats[n].requests for n in ("before", "during", "after", "restarted")] == [2, 2, 1, 2]
    assert stats["during"].failures == 1 and stats["during"].p99_ms == 200.0
    assert stats["restarted"].p50_ms == 3.0  # the very last reply is kept
    assert stats["before"].as_dict(10.0)["start"] == -9.0


def test_the_during_phase_ends_at_the_last_event_between_kill_and_restart() -> None:
    events = [{"t": 5.0}, {"t": 12.5}, {"t": 11.0}, {"t": 25.0}]
    assert settled_at(events, 10.0, 20.0) == 12.5
    assert settled_at([], 10.0, 20.0) == 10.0


def test_failover_rows_are_not_counted_as_requests(tmp_path: Path) -> None:
    stats = [
        {"method": "GET", "name": "/app/counter", "num_requests": 100, "num_failures": 2},
        {"method": "GET", "name": "/app", "num_requests": 50, "num_failures": 0},
        {"method": "FAILOVER", "name": "re-stick", "num_requests": 7, "num_failures": 0},
    ]
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    assert read_locust_json(path) == {"requests": 150, "failures": 2, "failover_rows": 7}


def test_the_table_has_a_row_per_mode_and_per_phase() -> None:
    stats = phase_stats([1.0, 2.0], [1.0, 2.0], [1, 1], phase_bounds(0.0, 1.5, 1.5, 1.8, 2.0))
    result = {
        "mode": "sync", "requests": 2, "failures": 0, "lost_writes": 0, "double_writes": 0,
        "wrong_node": 0, "sessions_moved": 0, "restick_max_s": None, "restuck_after_s": 0.0,
        "other_moves": 0, "other_restick_max_s": None, "phases": [p.as_dict() for p in stats],
    }  # fmt: skip
    lines = table([result]).splitlines()
    assert lines[2].split()[:3] == ["sync", "2", "0"]
    assert sum(1 for line in lines if line.startswith("sync ")) == 1 + 4


def test_only_moves_off_the_victim_between_kill_and_restart_decide_when_all_re_stuck() -> None:
    moves = [
        {"t": 5.0, "restick_s": 0.1, "from": "node1", "to": "node2"},  # before the kill: busy
        {"t": 10.2, "restick_s": 0.2, "from": "node2", "to": "node3"},  # off the victim
        {"t": 10.4, "restick_s": 0.3, "from": "node2", "to": "node1"},
        {"t": 15.0, "restick_s": 0.9, "from": "node1", "to": "node3"},  # survivors, busy
        {"t": 21.0, "restick_s": 2.0, "from": "node3", "to": "node2"},  # after the restart
    ]
    split = split_moves(moves, "node2", 10.0, 20.0)
    assert split["off_victim"] == 2 and split["restick_max_s"] == 0.3
    assert split["restuck"] == 10.4
    assert split["other_moves"] == 3 and split["other_restick_max_s"] == 2.0
    assert split["other_pairs"] == {
        "node1->node2 before": 1, "node1->node3 after kill": 1, "node3->node2 restarted": 1,
    }  # fmt: skip


def test_failover_breakdown_joins_moves_with_the_new_nodes_takeover_lines() -> None:
    lines = [
        "2026-12-06 16:20:56,892 pyjk.worker.sessions session takeover id=AB12.node2 "
        "from=node2 to=node1",
        "2026-12-06 16:20:56,950 pyjk.worker.sessions session lookup found ids=1 took_ms=3.5",
        "2026-12-06 16:20:56,951 pyjk.worker.sessions session refresh ids=1 took_ms=1.5",
        "garbage without a time",
    ]
    takeovers, lookups = worker_events(lines)
    at = log_time(lines[0])
    assert at is not None and takeovers == {"AB12": at}
    assert [ms for _, ms in lookups] == [3.5, 1.5]
    kill = at - 0.100
    moves = [
        {"t": at + 0.011, "started": kill - 0.020, "session": "AB12.node1"},  # in flight
        {"t": kill + 0.030, "started": kill + 0.025, "session": "CD34.node3"},  # no log line
    ]
    items = failovers(moves, kill, takeovers)
    assert [f.session for f in items] == ["CD34", "AB12"]  # by write time
    ab = items[1]
    got = (ab.sent_ms, ab.balancer_ms, ab.new_node_ms, ab.request_ms, ab.write_ms)
    assert got == pytest.approx((-20, 100, 11, 111, 111), abs=0.01)
    assert items[0].request_ms == pytest.approx(5, abs=0.01)  # sent 25 ms after the kill
    assert items[0].balancer_ms is None
    text = breakdown(items, [3.5], {"state_transfer": 2})
    assert "median" in text and "refreshes after the kill: 1, max 3.5 ms" in text
    assert "state_transfer" in text
