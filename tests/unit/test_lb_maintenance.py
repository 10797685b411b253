"""Maintenance: when it runs, decay, recovery timeline, escalation, idling, forced recovery
(modjk.md §3.8, §9.7), and how state changes are reported."""

from __future__ import annotations

from balancer.config.model import Method
from balancer.lb.engine import StateChange
from balancer.lb.member import State
from tests.unit.test_lb_driver import REFUSED, TIMEOUT, engine, facts, run, states

ON_N1 = "JSESSIONID=abc.n1"


def kill_n1(eng, now):
    """One request that finds n1 refusing; n2 serves it. n1's last error is now (a refused
    connect is tried again without the retry_interval pause)."""
    return run(eng, facts(cookie=ON_N1), now=now, backends={"n1": REFUSED})


# -- when maintenance runs ------------------------------------------------------------------


def test_maintenance_runs_only_once_the_interval_has_passed():
    eng = engine("n1", "n2", maintain=60, now=0.0)
    eng.member("n1").lb_value = 8
    eng.maintain(59.9)
    assert eng.member("n1").lb_value == 8 and eng.last_maintain_time == 0.0
    eng.maintain(60.0)
    assert eng.member("n1").lb_value == 4 and eng.last_maintain_time == 60.0
    eng.maintain(100.0)
    assert eng.member("n1").lb_value == 4


def test_maintain_zero_turns_maintenance_off():
    eng = engine("n1", "n2", maintain=0)
    kill_n1(eng, 0.0)
    eng.maintain(10_000.0)
    assert eng.member("n1").state is State.ERR


def test_decay_exponent_counts_whole_intervals_and_is_capped():
    eng = engine("n1", "n2", maintain=10)
    eng.member("n1").lb_value = 1 << 20
    eng.member("n1").reply_timeouts = 64
    eng.maintain(59.0)  # 5 whole intervals
    assert eng.member("n1").lb_value == 1 << 15
    assert eng.member("n1").reply_timeouts == 2
    # lb_value is a 64-bit word, as mod_jk's (and a shared record's): with the exponent capped
    # at 64, a long quiet spell shifts every bit out, without an error
    eng.member("n1").lb_value = (1 << 63) - 1
    eng.maintain(59.0 + 10 * 10_000)
    assert eng.member("n1").lb_value == 0


# -- recovery -------------------------------------------------------------------------------


def test_err_recovers_at_the_first_maintenance_strictly_after_recover_time():
    # §9.7: recover_time=2, maintain=2 -> ERR/REC about 2.8-3.0 s after the error
    eng = engine("n1", "n2", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)
    assert eng.member("n1").last_error_time == 0.0
    eng.maintain(2.0)
    assert eng.member("n1").state is State.ERR  # 2 s since the last error: not more than 2
    eng.maintain(4.0)
    assert eng.member("n1").state is State.ERR_REC


def test_recover_time_is_strictly_greater():
    eng = engine("n1", "n2", maintain=1, recover_time=2)
    n1 = eng.member("n1")
    n1.state, n1.last_error_time, n1.first_error_time = State.ERR, 3.0, 3.0
    eng.maintain(5.0)
    assert n1.state is State.ERR  # exactly 2 s
    eng.maintain(6.0)
    assert n1.state is State.ERR_REC


def test_recovering_member_gets_the_largest_lb_value_and_no_reply_timeouts():
    eng = engine("n1", "n2", "n3", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)
    eng.member("n2").lb_value, eng.member("n3").lb_value = 12, 40
    eng.member("n1").reply_timeouts = 3
    eng.maintain(4.0)  # decay first, two intervals (>> 2): curmax 10
    n1 = eng.member("n1")
    assert n1.state is State.ERR_REC and n1.lb_value == 10 and n1.reply_timeouts == 0


def test_busyness_keeps_lb_value_on_recovery():
    eng = engine("n1", "n2", maintain=2, recover_time=2, method=Method.BUSYNESS)
    kill_n1(eng, 0.0)
    eng.member("n2").lb_value = 7
    eng.maintain(4.0)
    assert eng.member("n1").state is State.ERR_REC and eng.member("n1").lb_value == 0


def test_failed_probe_restarts_the_recovery_clock_and_counts_an_error():
    eng = engine("n1", "n2", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)
    eng.maintain(4.0)
    assert eng.member("n1").state is State.ERR_REC
    probe = kill_n1(eng, 5.0)
    assert probe.forwards[0].probe and probe.tried == ["n1", "n1", "n2"]
    n1 = eng.member("n1")
    assert n1.state is State.ERR and n1.errors == 2 and n1.last_error_time == 5.0
    eng.maintain(6.0)
    assert n1.state is State.ERR  # 0.9 s since the failed probe
    eng.maintain(8.0)
    assert n1.state is State.ERR_REC


def test_successful_probe_makes_the_member_ok():
    eng = engine("n1", "n2", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)
    eng.maintain(4.0)
    result = run(eng, facts(cookie=ON_N1), now=5.0)
    assert result.tried == ["n1"] and result.forwards[0].probe
    assert eng.member("n1").state is State.OK


def test_when_every_member_is_err_maintenance_forces_recovery():
    eng = engine("n1", "n2", maintain=2, recover_time=60)
    run(eng, backends={"n1": REFUSED, "n2": REFUSED})
    eng.drain_changes()
    changes = eng.maintain(2.0)
    assert states(eng) == {"n1": State.ERR_FRC, "n2": State.ERR_FRC}
    assert [(c.member, c.new, c.reason) for c in changes] == [
        ("n1", State.ERR_FRC, "forced-recovery"),
        ("n2", State.ERR_FRC, "forced-recovery"),
    ]


def test_forced_recovery_in_a_request_clears_reply_timeouts():
    eng = engine("n1", "n2")
    run(eng, backends={"n1": TIMEOUT, "n2": TIMEOUT})
    for m in eng.members:
        m.reply_timeouts = 5
    plan = eng.plan(facts(), 1.0)
    plan.next(1.0)
    assert [m.reply_timeouts for m in eng.members] == [0, 0]


# -- escalation and idling ------------------------------------------------------------------


def test_maintenance_escalates_a_local_error_older_than_escalation_time():
    eng = engine("n1", "n2", maintain=10, recover_time=60, error_escalation_time=30)
    held = eng.plan(facts(), 0.0)
    held.next(0.0)  # n1 busy: its next error stays local
    kill_n1(eng, 0.0)
    assert eng.member("n1").state is State.OK
    eng.maintain(20.0)
    assert eng.member("n1").state is State.OK
    changes = eng.maintain(30.1)
    assert eng.member("n1").state is State.ERR
    assert [(c.member, c.new, c.reason) for c in changes] == [
        ("n1", State.ERR, "local-error-escalated")
    ]


def test_ok_member_not_chosen_since_the_last_run_becomes_idle():
    eng = engine("n1", "n2", maintain=10)
    run(eng)
    run(eng)
    eng.maintain(10.0)
    assert states(eng) == {"n1": State.OK, "n2": State.OK}  # both chosen since the start
    run(eng, now=15.0)  # n1 again
    eng.maintain(20.0)
    assert states(eng) == {"n1": State.OK, "n2": State.OK_IDLE}
    eng.maintain(30.0)
    assert states(eng) == {"n1": State.OK_IDLE, "n2": State.OK_IDLE}


# -- reporting ------------------------------------------------------------------------------


def test_request_state_changes_are_queued_for_drain_and_read_like_a_log_line():
    eng = engine("n1", "n2")
    kill_n1(eng, 3.0)
    changes = eng.drain_changes()
    assert changes == [StateChange("lb", "n1", State.OK_IDLE, State.ERR, "connect-refused", 3.0)]
    assert str(changes[0]) == "lb=lb member=n1 state=ERR reason=connect-refused from=OK/IDLE"
    assert eng.drain_changes() == []


def test_maintenance_changes_are_returned_not_queued():
    eng = engine("n1", "n2", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)
    eng.drain_changes()
    changes = eng.maintain(4.0)
    assert [(c.member, c.old, c.new) for c in changes] == [("n1", State.ERR, State.ERR_REC)]
    assert eng.drain_changes() == []


def test_idle_and_ok_flips_are_not_reported():
    eng = engine("n1", "n2", maintain=1)
    run(eng)
    eng.maintain(1.0)
    eng.maintain(2.0)
    assert eng.drain_changes() == []


def test_time_to_recovery_matches_the_run_that_recovers():
    eng = engine("n1", "n2", maintain=2, recover_time=2)
    kill_n1(eng, 0.0)  # last error 0.1: due after 2.1, runs at 2, 4, ...
    assert eng.seconds_to_maintenance(1.0) == 1.0
    assert eng.seconds_to_recover("n1", 1.0) == 3.0
    assert eng.seconds_to_recover("n2", 1.0) is None
    eng.maintain(2.0)
    assert eng.member("n1").state is State.ERR
    eng.maintain(4.0)
    assert eng.member("n1").state is State.ERR_REC


def test_time_to_recovery_respects_strictness():
    eng = engine("n1", "n2", maintain=1, recover_time=2)
    n1 = eng.member("n1")
    n1.state, n1.last_error_time = State.ERR, 3.0
    eng.last_maintain_time = 3.0
    assert eng.seconds_to_recover("n1", 3.0) == 3.0  # 5.0 is exactly 2 s: not yet; 6.0
    assert engine("a", "b", maintain=0).seconds_to_maintenance(0.0) is None
