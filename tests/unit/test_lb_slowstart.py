"""Slow start: a member that comes back gets a share of new requests that grows linearly from
10 % to 100 % of its weight over ``slow_start`` seconds; nothing changes when it is 0."""

from __future__ import annotations

import pytest

from balancer.config.model import Activation, MemberConfig, Method
from balancer.lb import slowstart
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from tests.unit.test_lb_driver import REFUSED, engine, facts, run

RAMP = 100  # s


def ramped(*names: str, ramp: int = RAMP, **lb: object) -> LbEngine:
    return engine(*(MemberConfig(n, slow_start=ramp) for n in names), maintain=1, **lb)


def back_at(eng: LbEngine, name: str, now: float) -> None:
    m = eng.member(name)
    eng.health_down(m, now)
    eng.health_up(m, now)


def share_of(eng: LbEngine, name: str, now: float, requests: int = 3000) -> float:
    served = sum(run(eng, facts(), now=now).tried == [name] for _ in range(requests))
    return served / requests


# -- the ramp -------------------------------------------------------------------------------


@pytest.mark.parametrize(("elapsed", "weight"), [(0, 0.1), (5, 0.1), (10, 0.1), (50, 0.5)])
def test_a_returning_members_weight_ramps_linearly_from_a_tenth(elapsed, weight):
    eng = ramped("n1", "n2")
    back_at(eng, "n2", 1000.0)
    assert slowstart.share(eng.member("n2"), 1000.0 + elapsed) == pytest.approx(weight)
    expected = weight / (1 + weight)  # n1 counts 1 per request, n2 1/weight
    assert share_of(eng, "n2", 1000.0 + elapsed) == pytest.approx(expected, abs=0.01)


def test_after_the_ramp_the_member_has_its_full_share_again():
    eng = ramped("n1", "n2")
    back_at(eng, "n2", 0.0)
    assert share_of(eng, "n2", float(RAMP)) == pytest.approx(0.5, abs=0.001)
    assert eng.member("n2").slow_start_since is None


def test_the_ramp_respects_lbfactors():
    eng = engine(
        MemberConfig("n1", lbfactor=1, slow_start=RAMP),
        MemberConfig("n2", lbfactor=3, slow_start=RAMP),
        maintain=1,
    )
    back_at(eng, "n2", 0.0)
    # n2 at half of weight 3 is 1.5 against n1's 1
    assert share_of(eng, "n2", RAMP / 2) == pytest.approx(1.5 / 2.5, abs=0.01)


def test_fractions_are_carried_so_the_average_is_exact():
    eng = ramped("n1")
    m = eng.member("n1")
    m.slow_start_since = 0.0
    total = sum(slowstart.scaled(m, 1, 30.0) for _ in range(300))  # share 0.3: 10/3 each
    assert total == 1000


def test_the_ramp_grows_as_time_passes_for_one_engine():
    eng = ramped("n1", "n2")
    back_at(eng, "n2", 0.0)
    shares = [share_of(eng, "n2", float(t), requests=1000) for t in (10, 40, 70, 100)]
    assert shares == sorted(shares)
    assert shares[0] < 0.12 and shares[-1] > 0.45


# -- off by default -------------------------------------------------------------------------


def test_without_slow_start_a_returning_member_gets_its_share_at_once():
    eng = engine("n1", "n2", maintain=1)
    back_at(eng, "n2", 0.0)
    assert eng.member("n2").slow_start_since is None
    assert share_of(eng, "n2", 0.0, requests=1000) == pytest.approx(0.5, abs=0.001)


def test_slow_start_leaves_members_that_never_went_away_alone():
    eng = ramped("n1", "n2")
    assert share_of(eng, "n2", 0.0, requests=1000) == pytest.approx(0.5, abs=0.001)
    assert all(m.slow_start_since is None for m in eng.members)


# -- what starts a ramp ---------------------------------------------------------------------


def test_a_request_that_succeeds_on_a_recovering_member_starts_its_ramp():
    eng = ramped("n1", "n2", recover_time=1)
    run(eng, facts(cookie="JSESSIONID=x.n2"), now=0.0, backends={"n2": REFUSED})
    eng.maintain(1.0)
    eng.maintain(2.0)
    assert eng.member("n2").state is State.ERR_REC
    run(eng, facts(cookie="JSESSIONID=x.n2"), now=2.5)  # the probe request succeeds
    assert eng.member("n2").state is State.OK
    assert eng.member("n2").slow_start_since == 2.5


def test_forced_recovery_that_succeeds_starts_a_ramp():
    eng = ramped("n1", "n2")
    run(eng, facts(), now=0.0, backends={"n1": REFUSED, "n2": REFUSED})
    run(eng, facts(), now=1.0)
    assert {m.slow_start_since for m in eng.members if m.state is State.OK} == {1.0}


def test_activation_back_to_active_starts_a_ramp():
    eng = ramped("n1", "n2")
    eng.update_member("n2", 5.0, activation=Activation.DISABLED)
    assert eng.member("n2").slow_start_since is None
    eng.update_member("n2", 7.0, activation=Activation.ACTIVE)
    assert eng.member("n2").slow_start_since == 7.0
    assert share_of(eng, "n2", 7.0 + RAMP / 2) == pytest.approx(1 / 3, abs=0.01)


def test_going_idle_is_not_coming_back():
    eng = ramped("n1", "n2")
    run(eng, facts(), now=0.0)
    eng.maintain(1.0)
    eng.maintain(2.0)
    assert eng.member("n1").state is State.OK_IDLE
    run(eng, facts(), now=3.0)
    assert all(m.slow_start_since is None for m in eng.members)


# -- methods --------------------------------------------------------------------------------


def test_traffic_counts_a_ramping_members_bytes_more():
    eng = ramped("n1", "n2", method=Method.TRAFFIC)
    back_at(eng, "n2", 0.0)
    n2 = eng.member("n2")
    before = n2.lb_value
    run(eng, facts(cookie="JSESSIONID=x.n2"), now=50.0, sent=100, received=300)
    assert n2.lb_value - before == 800  # 400 bytes at half weight


def test_busyness_is_not_ramped_and_returns_to_zero():
    eng = ramped("n1", "n2", method=Method.BUSYNESS)
    back_at(eng, "n2", 0.0)
    plan = eng.plan(facts(cookie="JSESSIONID=x.n2"), 1.0)
    plan.next(1.0)
    assert eng.member("n2").lb_value == 1
    plan.response_head(200, 1.0)
    plan.finish(0, 0, 1.0)
    assert eng.member("n2").lb_value == 0


def test_sessions_method_ramps_only_new_sessions():
    eng = ramped("n1", "n2", method=Method.SESSIONS)
    back_at(eng, "n2", 0.0)
    n2 = eng.member("n2")
    before = n2.lb_value
    run(eng, facts(cookie="JSESSIONID=x.n2"), now=10.0)
    assert n2.lb_value == before
    eng.member("n1").lb_value = 10**6  # make n2 the pick for the next new session
    run(eng, facts(), now=10.0)
    assert n2.lb_value - before == 10  # one new session at a tenth of the weight
