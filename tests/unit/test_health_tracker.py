"""The health tracker: rise/fall over consecutive probe results, on a fake clock."""

from __future__ import annotations

from balancer.health import HealthTracker
from balancer.lb.engine import HEALTH_FAILED, HEALTH_PASSED, LbEngine
from balancer.lb.member import State
from tests.unit.test_lb_driver import REFUSED, engine, facts, run

ON_N1 = "JSESSIONID=abc.n1"


def probed(rise: int = 2, fall: int = 3) -> tuple[LbEngine, HealthTracker]:
    eng = engine("n1", "n2", maintain=1, recover_time=2)
    return eng, HealthTracker(rise=rise, fall=fall)


def fail(eng: LbEngine, tracker: HealthTracker, now: float, times: int = 1) -> None:
    for i in range(times):
        tracker.record(eng, eng.member("n1"), False, "connect-refused", now + i)


def pass_(eng: LbEngine, tracker: HealthTracker, now: float, times: int = 1) -> None:
    for i in range(times):
        tracker.record(eng, eng.member("n1"), True, "status 200", now + i)


# -- fall -----------------------------------------------------------------------------------


def test_fewer_than_fall_failures_leave_the_member_in():
    eng, tracker = probed(fall=3)
    fail(eng, tracker, 0.0, times=2)
    n1 = eng.member("n1")
    assert n1.state is State.OK_IDLE
    assert n1.errors == 0 and n1.last_error_time is None
    assert eng.drain_changes() == []


def test_fall_consecutive_failures_take_the_member_out():
    eng, tracker = probed(fall=3)
    fail(eng, tracker, 10.0, times=3)
    n1 = eng.member("n1")
    assert n1.state is State.ERR and n1.health_down and n1.errors == 1
    assert n1.last_error_time == 12.0
    assert n1.last_error_reason == f"{HEALTH_FAILED}: connect-refused"
    assert [(c.new, c.reason, c.at) for c in eng.drain_changes()] == [
        (State.ERR, HEALTH_FAILED, 12.0)
    ]


def test_a_pass_between_failures_restarts_the_fall_count():
    eng, tracker = probed(fall=3)
    fail(eng, tracker, 0.0, times=2)
    pass_(eng, tracker, 2.0)
    fail(eng, tracker, 3.0, times=2)
    assert eng.member("n1").state is State.OK_IDLE
    fail(eng, tracker, 5.0)
    assert eng.member("n1").state is State.ERR


def test_every_failed_probe_while_down_refreshes_the_last_error_time():
    eng, tracker = probed(fall=2)
    fail(eng, tracker, 0.0, times=2)
    fail(eng, tracker, 5.0, times=3)
    n1 = eng.member("n1")
    assert n1.errors == 1 and n1.first_error_time == 1.0 and n1.last_error_time == 7.0


def test_failed_probes_keep_maintenance_from_marking_the_member_for_recovery():
    # recover_time=2, maintain=1: a member failed by a request would be ERR/REC after ~3 s.
    eng, tracker = probed(fall=2)
    fail(eng, tracker, 0.0, times=2)
    for t in range(2, 30):
        eng.maintain(float(t))
        fail(eng, tracker, t + 0.5)
        assert eng.member("n1").state is State.ERR
    assert eng.member("n1").last_error_time == 29.5
    assert run(eng, facts(), now=30.0).tried == ["n2"]


# -- rise -----------------------------------------------------------------------------------


def test_fewer_than_rise_passes_keep_a_down_member_out():
    eng, tracker = probed(rise=3, fall=1)
    fail(eng, tracker, 0.0)
    pass_(eng, tracker, 1.0, times=2)
    assert eng.member("n1").state is State.ERR


def test_rise_consecutive_passes_bring_a_down_member_back():
    eng, tracker = probed(rise=3, fall=1)
    fail(eng, tracker, 0.0)
    eng.drain_changes()
    pass_(eng, tracker, 1.0, times=3)
    n1 = eng.member("n1")
    assert n1.state is State.OK and not n1.health_down and n1.last_error_time is None
    assert [(c.old, c.new, c.reason, c.at) for c in eng.drain_changes()] == [
        (State.ERR, State.OK, HEALTH_PASSED, 3.0)
    ]


def test_a_failure_between_passes_restarts_the_rise_count():
    eng, tracker = probed(rise=2, fall=1)
    fail(eng, tracker, 0.0)
    pass_(eng, tracker, 1.0)
    fail(eng, tracker, 2.0)
    pass_(eng, tracker, 3.0)
    assert eng.member("n1").state is State.ERR
    pass_(eng, tracker, 4.0)
    assert eng.member("n1").state is State.OK


def test_rise_passes_after_a_request_failure_bring_the_member_back():
    eng, tracker = probed(rise=2, fall=2)
    pass_(eng, tracker, 0.0, times=5)
    run(eng, facts(cookie=ON_N1), now=10.0, backends={"n1": REFUSED})
    assert eng.member("n1").state is State.ERR
    pass_(eng, tracker, 11.0)  # the passes before the failure do not count
    assert eng.member("n1").state is State.ERR
    pass_(eng, tracker, 12.0)
    assert eng.member("n1").state is State.OK
    assert [c.reason for c in eng.drain_changes()][-1] == HEALTH_PASSED


def test_passes_do_not_touch_a_member_that_serves():
    eng, tracker = probed(rise=1, fall=1)
    pass_(eng, tracker, 0.0, times=3)
    assert eng.member("n1").state is State.OK_IDLE
    assert eng.drain_changes() == []


def test_the_tracker_keeps_what_the_status_page_shows():
    eng, tracker = probed(rise=2, fall=2)
    fail(eng, tracker, 0.0)
    pass_(eng, tracker, 1.0)
    assert (tracker.probes, tracker.passes, tracker.fails) == (2, 1, 0)
    assert tracker.last_probe_at == 1.0 and tracker.last_detail == "status 200"
