"""pyjk's per-member routing counters for the status page: sticky hits, sticky misses and
failovers (balancer.lb.member / balancer.lb.plan)."""

from __future__ import annotations

from balancer.config.model import Activation, MemberConfig
from tests.unit.test_lb_driver import REFUSED, engine, facts, run


def counters(eng, name):
    m = eng.member(name)
    return m.sticky_hits, m.sticky_misses, m.failovers


def test_a_request_routed_by_its_session_is_a_sticky_hit():
    eng = engine("n1", "n2")
    for _ in range(3):
        run(eng, facts(cookie="JSESSIONID=abc.n2"))
    assert counters(eng, "n2") == (3, 0, 0)
    assert counters(eng, "n1") == (0, 0, 0)


def test_requests_without_a_session_are_neither_hits_nor_misses():
    eng = engine("n1", "n2")
    for _ in range(4):
        run(eng)
    assert counters(eng, "n1") == (0, 0, 0)
    assert counters(eng, "n2") == (0, 0, 0)


def test_a_single_member_lb_counts_hits_only_for_its_own_route():
    eng = engine("n1")
    run(eng)
    run(eng, facts(cookie="JSESSIONID=abc.n1"))
    assert counters(eng, "n1") == (1, 0, 0)


def test_a_session_of_a_stopped_member_is_a_sticky_miss_of_that_member():
    eng = engine(MemberConfig("n1", activation=Activation.STOPPED), "n2")
    result = run(eng, facts(cookie="JSESSIONID=abc.n1"))
    assert result.tried == ["n2"]
    assert counters(eng, "n1") == (0, 1, 0)
    assert counters(eng, "n2") == (0, 0, 0)


def test_a_session_refused_under_force_is_still_a_miss():
    eng = engine(MemberConfig("n1", activation=Activation.STOPPED), "n2", sticky_session_force=True)
    result = run(eng, facts(cookie="JSESSIONID=abc.n1"))
    assert result.fail is not None
    assert counters(eng, "n1") == (0, 1, 0)


def test_a_failed_member_counts_one_failover_per_request_that_moved_on():
    eng = engine("n1", "n2")
    result = run(eng, facts(cookie="JSESSIONID=abc.n1"), backends={"n1": REFUSED})
    assert result.tried == ["n1", "n1", "n2"]  # member retries stay on n1
    assert result.client_status == 200
    # the first lb attempt was sticky; moving on is a failover, not a miss
    assert counters(eng, "n1") == (1, 0, 1)
    assert counters(eng, "n2") == (0, 0, 0)
    # next request: n1 is ERR, so the route is missed
    run(eng, facts(cookie="JSESSIONID=abc.n1"))
    assert counters(eng, "n1") == (1, 1, 1)


def test_a_request_that_fails_everywhere_counts_each_member_it_left():
    eng = engine("n1", "n2", retries=1)
    result = run(eng, backends={"n1": REFUSED, "n2": REFUSED})
    assert result.fail is not None
    first, second = result.tried[0], result.tried[-1]
    assert first != second
    assert eng.member(first).failovers == 1
    assert eng.member(second).failovers == 0


def test_reset_clears_the_routing_counters():
    eng = engine("n1", "n2")
    run(eng, facts(cookie="JSESSIONID=abc.n1"), backends={"n1": REFUSED})
    eng.reset(10.0)
    assert counters(eng, "n1") == (0, 0, 0)
