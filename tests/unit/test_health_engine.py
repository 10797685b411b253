"""The engine's health-driven states: ``health_down``/``health_up`` and how maintenance,
forced recovery, requests and reloads treat a member the health check took out."""

from __future__ import annotations

import pytest

from balancer.config.model import MemberConfig, Method
from balancer.lb.engine import HEALTH_FAILED, HEALTH_PASSED, LbEngine
from balancer.lb.member import State
from tests.unit.test_lb_driver import REFUSED, engine, facts, run

ON_N1 = "JSESSIONID=abc.n1"


def two(**lb: object) -> LbEngine:
    return engine("n1", "n2", maintain=1, recover_time=2, **lb)


def test_health_down_takes_the_member_out_and_reports_it():
    eng = two()
    n1 = eng.member("n1")
    eng.health_down(n1, 12.0, "status 503")
    assert n1.state is State.ERR and n1.health_down
    assert n1.errors == 1
    assert n1.first_error_time == n1.last_error_time == 12.0
    assert n1.last_error_reason == f"{HEALTH_FAILED}: status 503"
    [change] = eng.drain_changes()
    assert (change.member, change.old, change.new, change.reason, change.at) == (
        "n1",
        State.OK_IDLE,
        State.ERR,
        HEALTH_FAILED,
        12.0,
    )
    assert "reason=health-check-failed" in str(change)


def test_health_down_again_only_moves_the_last_error_time():
    eng = two()
    n1 = eng.member("n1")
    eng.health_down(n1, 1.0)
    eng.drain_changes()
    for t in (2.0, 3.0, 4.0):
        eng.health_down(n1, t)
    assert n1.state is State.ERR and n1.errors == 1
    assert n1.first_error_time == 1.0 and n1.last_error_time == 4.0
    assert eng.drain_changes() == []


def test_health_down_takes_a_member_forced_back_by_a_request_failure_out_again():
    eng = two()
    n1 = eng.member("n1")
    n1.state = State.ERR  # failed by a request, not by the check: forced recovery may use it
    eng.force_recovery(None, 2.0)
    assert n1.state is State.ERR_FRC
    eng.health_down(n1, 3.0)
    assert n1.state is State.ERR and n1.health_down


def test_forced_recovery_never_forces_a_member_the_health_check_holds_down():
    eng = two()
    eng.health_down(eng.member("n1"), 1.0)
    eng.member("n2").state = State.ERR
    assert eng.force_recovery(None, 2.0) == 1
    assert eng.member("n1").state is State.ERR
    assert eng.member("n2").state is State.ERR_FRC


def test_maintenance_leaves_a_health_down_member_in_err():
    # recover_time=2, maintain=1: a request-failed member is ERR/REC after 2 s; this one is
    # not, even with no refresh for far longer (probes may be rarer than recover_time).
    eng = two()
    eng.health_down(eng.member("n1"), 1.0)
    for t in range(2, 40):
        eng.maintain(float(t))
    assert eng.member("n1").state is State.ERR
    assert eng.seconds_to_recover("n1", 40.0) is None
    assert run(eng, facts(), now=40.0).tried == ["n2"]


def test_the_same_member_failed_by_a_request_recovers_through_maintenance():
    eng = two()
    run(eng, facts(cookie=ON_N1), now=0.0, backends={"n1": REFUSED})
    for t in range(1, 5):
        eng.maintain(float(t))
    assert eng.member("n1").state is State.ERR_REC


def test_when_the_check_holds_every_member_down_requests_get_503_not_a_dead_member():
    # a worker still answering 503 on /-/ready (restarting, taking its state over) must get
    # no traffic even when nothing else is left (found by bench/failover_bench.py)
    eng = two()
    eng.health_down(eng.member("n1"), 0.0)
    eng.health_down(eng.member("n2"), 0.0)
    result = run(eng, facts(), now=1.0)
    assert result.client_status == 503
    assert result.tried == []
    for t in range(2, 40):
        eng.maintain(float(t))  # maintenance's forced recovery does not force them either
    assert {m.state for m in eng.members} == {State.ERR}


def test_a_health_down_member_that_serves_a_request_is_no_longer_health_down():
    eng = two()
    eng.health_down(eng.member("n1"), 0.0)
    eng.recover("n1", 1.0)  # the status worker's command: the next request probes it
    run(eng, facts(cookie=ON_N1), now=2.0)
    n1 = eng.member("n1")
    assert n1.state is State.OK and not n1.health_down


def test_reset_clears_health_down():
    eng = two()
    eng.health_down(eng.member("n1"), 0.0)
    eng.reset(1.0, "n1")
    assert eng.member("n1").state is State.OK_IDLE and not eng.member("n1").health_down


def test_health_up_brings_the_member_back_like_recovery():
    eng = two()
    n1 = eng.member("n1")
    eng.health_down(n1, 0.0)
    eng.member("n2").lb_value = 17
    n1.reply_timeouts = 4
    eng.drain_changes()
    assert eng.health_up(n1, 3.0) is True
    assert n1.state is State.OK and not n1.health_down
    assert n1.first_error_time is None and n1.last_error_time is None
    assert n1.lb_value == 17 and n1.reply_timeouts == 0
    [change] = eng.drain_changes()
    assert (change.old, change.new, change.reason, change.at) == (
        State.ERR,
        State.OK,
        HEALTH_PASSED,
        3.0,
    )


def test_health_up_keeps_a_busyness_lb_value():
    eng = two(method=Method.BUSYNESS)
    n1 = eng.member("n1")
    eng.health_down(n1, 0.0)
    n1.lb_value, eng.member("n2").lb_value = 2, 9
    eng.health_up(n1, 1.0)
    assert n1.lb_value == 2


@pytest.mark.parametrize("state", [State.ERR, State.ERR_REC, State.ERR_FRC, State.ERR_PRB])
def test_health_up_brings_back_any_error_state_whoever_set_it(state):
    eng = two()
    n1 = eng.member("n1")
    n1.state, n1.first_error_time, n1.last_error_time = state, 0.0, 0.0
    assert eng.health_up(n1, 5.0) is True
    assert n1.state is State.OK and n1.last_error_time is None


@pytest.mark.parametrize("state", [State.OK, State.OK_IDLE, State.OK_BUSY])
def test_health_up_leaves_a_serving_member_alone(state):
    eng = two()
    n1 = eng.member("n1")
    n1.state, n1.first_error_time, n1.last_error_time = state, 3.0, 3.0  # a local error
    assert eng.health_up(n1, 5.0) is False
    assert n1.state is state and n1.last_error_time == 3.0
    assert eng.drain_changes() == []


def test_a_reload_carries_health_down_with_an_unchanged_member_only():
    eng = two()
    eng.health_down(eng.member("n1"), 0.0)
    configs = [m.config for m in eng.members]
    kept = LbEngine.from_previous(eng, eng.config, configs, 1, 1.0)
    assert kept.member("n1") is eng.member("n1") and kept.member("n1").health_down
    changed = [MemberConfig("n1", port=9000), configs[1]]
    fresh = LbEngine.from_previous(eng, eng.config, changed, 1, 1.0)
    assert fresh.member("n1").state is State.OK_IDLE and not fresh.member("n1").health_down
