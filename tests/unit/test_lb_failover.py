"""The attempt loop: member retries, lb rounds, forced recovery, outcomes and final status
(modjk.md §3.6, §9.2-§9.5, §9.10), plus pyjk's stricter replay rules."""

from __future__ import annotations

from balancer.config.model import MemberConfig, RuleExtensions
from balancer.lb.decisions import Outcome, OutcomeKind, refusal_of
from balancer.lb.engine import RECOVERY_REPLAY_UNSAFE
from balancer.lb.member import State
from tests.unit.test_lb_driver import (
    BUSY,
    CLOSED,
    REFUSED,
    TIMEOUT,
    engine,
    facts,
    run,
    states,
)

DOWN = {"n1": REFUSED, "n2": REFUSED}
ON_N1 = "JSESSIONID=abc.n1"


# -- §9.2: retry counts when everything is down ---------------------------------------------


def test_two_refusing_members_cost_eight_connects_and_one_round_wait():
    # mod_jk's counts (§9.2); its member retry_interval sleeps after a refused connect are
    # dropped (a refusal is certain), the Wait between lb rounds stays
    eng = engine("n1", "n2")
    result = run(eng, backends=DOWN)
    assert result.tried == ["n1", "n1", "n2", "n2", "n1", "n1", "n2", "n2"]
    assert result.waits == [0.1]  # the round
    assert result.waited == 0.1
    assert result.client_status == 503
    assert states(eng) == {"n1": State.ERR, "n2": State.ERR}
    assert [m.errors for m in eng.members] == [2, 2]  # once per lb attempt, not per connect
    assert [m.elected for m in eng.members] == [2, 2]


def test_second_request_while_both_are_err_costs_four_connects_and_one_round_wait():
    eng = engine("n1", "n2")
    run(eng, backends=DOWN)
    result = run(eng, now=1.0, backends=DOWN)
    assert result.tried == ["n1", "n1", "n2", "n2"]  # the forced-recovery pass
    assert result.waited == 0.1  # mod_jk: 0.3 (two member retry_intervals and the round)
    assert result.client_status == 503


def test_backend_that_accepts_then_closes_gives_502_then_503():
    eng = engine("n1", "n2")
    first = run(eng, backends={"n1": CLOSED, "n2": CLOSED})
    assert (first.count("n1"), first.count("n2")) == (4, 4)
    assert first.client_status == 502  # the status of the last failed attempt
    second = run(eng, now=1.0, backends={"n1": CLOSED, "n2": CLOSED})
    assert (second.count("n1"), second.count("n2")) == (2, 2)
    assert second.client_status == 503  # the loop ended finding no member


def test_client_status_is_the_last_failed_attempts():
    eng = engine("n1", "n2", retries=1)
    assert run(eng, backends={"n1": REFUSED, "n2": CLOSED}).client_status == 502
    eng = engine("n1", "n2", retries=1)
    assert run(eng, backends={"n1": CLOSED, "n2": REFUSED}).client_status == 503


def test_lb_retries_limits_members_per_round():
    eng = engine("n1", "n2", "n3", "n4", lb_retries=3, retries=1)
    result = run(eng, backends={n: REFUSED for n in ("n1", "n2", "n3", "n4")})
    assert result.tried == ["n1", "n1", "n2", "n2", "n3", "n3"]


def test_member_retries_and_retry_interval_are_per_member():
    eng = engine(MemberConfig("n1", retries=3, retry_interval=250), "n2")
    result = run(eng, backends={"n1": CLOSED})
    assert result.tried == ["n1", "n1", "n1", "n2"]
    assert result.waits == [0.25, 0.25]
    assert result.status == 200


def test_failover_serves_the_first_request_after_a_member_dies_without_a_pause():
    # §9.5: one retry on the dead member, then the next member; mod_jk sleeps retry_interval
    # (100 ms) before that retry, pyjk does not after a refused connect: nothing listens there
    eng = engine("n1", "n2")
    result = run(eng, backends={"n1": REFUSED})
    assert result.tried == ["n1", "n1", "n2"]
    assert result.waited == 0 and result.status == 200


def test_a_refused_retry_after_a_lost_connection_has_its_pause_then_none():
    # a read failure is not certain (the member may be alive): its retry waits retry_interval;
    # the refusal that follows is certain: the member's next try comes at once
    eng = engine(MemberConfig("n1", retries=3), "n2")
    answers = iter([CLOSED, REFUSED, REFUSED])
    result = run(eng, backends={"n1": lambda fwd: next(answers)})
    assert result.tried == ["n1", "n1", "n1", "n2"]
    assert result.waits == [0.1]
    assert result.status == 200


def test_other_connect_failures_keep_the_retry_interval():
    timeout = Outcome(OutcomeKind.CONNECT_FAILED, reason="connect-timeout")
    eng = engine("n1", "n2")
    result = run(eng, backends={"n1": timeout})
    assert result.tried == ["n1", "n1", "n2"]
    assert result.waits == [0.1]


def test_fail_on_status_retry_keeps_the_retry_interval_after_a_refusal():
    eng = engine(MemberConfig("n1", retries=3, fail_on_status=(503,)), "n2")
    answers = iter([REFUSED, 503, 503])
    result = run(eng, backends={"n1": lambda fwd: next(answers)})
    assert result.tried == ["n1", "n1", "n1", "n2"]
    assert result.waits == [0.1]  # before the third try: the 503 is not a refusal


# -- §9.3: reply timeouts -------------------------------------------------------------------


def test_reply_timeout_is_retried_on_the_same_member_and_counted_every_try():
    eng = engine("n1", "n2", max_reply_timeouts=5)
    result = run(eng, backends={"n1": TIMEOUT})
    assert result.tried == ["n1", "n1", "n2"]
    assert eng.member("n1").reply_timeouts == 2
    assert eng.member("n1").state is State.OK  # within tolerance: only this request avoids it
    assert eng.member("n1").errors == 0


def test_max_reply_timeouts_1_does_not_tolerate_one_slow_request_with_two_member_retries():
    eng = engine("n1", "n2", max_reply_timeouts=1)
    run(eng, backends={"n1": TIMEOUT})
    assert eng.member("n1").state is State.ERR
    assert eng.member("n1").errors == 1


def test_max_reply_timeouts_1_tolerates_one_slow_request_with_one_member_retry():
    eng = engine(MemberConfig("n1", retries=1), "n2", max_reply_timeouts=1)
    run(eng, backends={"n1": TIMEOUT})
    assert eng.member("n1").state is State.OK


def test_reply_timeout_on_every_member_tries_each_four_times():
    # Counts follow the loop: round 1 two tries each, forced recovery (which clears
    # reply_timeouts), two more each. Every member timed out and no round is left: 503, as
    # §9.3 observed (§9.3's try counts, n1 2x and n2 4x, need n1 unusable in the last round).
    eng = engine("n1", "n2")
    result = run(eng, backends={"n1": TIMEOUT, "n2": TIMEOUT})
    assert (result.count("n1"), result.count("n2")) == (4, 4)
    assert result.waited == 0.5
    assert result.client_status == 503
    assert [m.reply_timeouts for m in eng.members] == [2, 2]
    assert [m.errors for m in eng.members] == [2, 2]
    second = run(eng, now=10.0, backends={"n1": TIMEOUT, "n2": TIMEOUT})
    assert second.client_status == 503  # ends on "no member left"


def test_reply_timeout_of_the_rule_overrides_the_members():
    eng = engine(MemberConfig("n1", reply_timeout=3000), "n2")
    assert run(eng).forwards[0].reply_timeout_ms == 3000
    rule = RuleExtensions(reply_timeout=500)
    assert run(eng, facts(rule=rule)).forwards[0].reply_timeout_ms == 500


# -- what may be sent again -----------------------------------------------------------------


def test_post_is_not_replayed_once_the_backend_may_have_it():
    eng = engine("n1", "n2")
    result = run(eng, facts("POST"), backends={"n1": CLOSED})
    assert result.tried == ["n1"]
    assert result.client_status == 502
    assert "POST may have reached the backend" in result.fail.reason
    assert eng.member("n1").state is State.ERR and eng.member("n1").errors == 1


def test_post_is_sent_elsewhere_when_the_connect_failed():
    eng = engine("n1", "n2")
    result = run(eng, facts("POST"), backends={"n1": REFUSED})
    assert result.tried == ["n1", "n1", "n2"] and result.status == 200


def test_replay_unsafe_bit_lets_a_sent_post_be_replayed():
    eng = engine(MemberConfig("n1", recovery_options=RECOVERY_REPLAY_UNSAFE), "n2")
    result = run(eng, facts("POST"), backends={"n1": CLOSED})
    assert result.tried == ["n1", "n1", "n2"] and result.status == 200


def test_never_retry_after_the_response_started():
    eng = engine("n1", "n2")
    broke = Outcome(OutcomeKind.READ_FAILED, request_sent=True, response_started=True)
    result = run(eng, backends={"n1": broke})
    assert result.tried == ["n1"]
    assert result.plan.done


def test_relay_breaking_after_the_head_is_reported_without_retry():
    eng = engine("n1", "n2")
    plan = eng.plan(facts(), 0.0)
    plan.next(0.0)
    assert plan.response_head(200, 0.0)
    plan.report(Outcome(OutcomeKind.READ_FAILED, request_sent=True, response_started=True), 0.0)
    assert plan.done and eng.busy == 0
    assert eng.member("n1").errors == 1


def test_a_body_that_cannot_be_replayed_is_not_sent_again():
    eng = engine("n1", "n2")
    gone = Outcome(OutcomeKind.SEND_FAILED, request_sent=True, replayable=False)
    result = run(eng, facts("PUT"), backends={"n1": gone})
    assert result.tried == ["n1"] and result.client_status == 502


def test_recovery_options_1_blocks_retries_for_every_method_once_sent():
    eng = engine(MemberConfig("n1", recovery_options=1), "n2")
    result = run(eng, backends={"n1": CLOSED})
    assert result.tried == ["n1"] and result.client_status == 502  # §9.10


def test_recovery_options_16_and_8_always_retry_get_and_head():
    eng = engine(MemberConfig("n1", recovery_options=1 | 16), "n2")
    assert run(eng, backends={"n1": CLOSED}).tried == ["n1", "n1", "n2"]
    head_only = MemberConfig("n1", recovery_options=1 | 8)
    eng = engine(head_only, "n2")
    assert run(eng, facts("HEAD"), backends={"n1": CLOSED}).tried == ["n1", "n1", "n2"]
    eng = engine(head_only, "n2")
    assert run(eng, facts("GET"), backends={"n1": CLOSED}).tried == ["n1"]


# -- other outcomes -------------------------------------------------------------------------


def test_client_error_stops_with_400_and_leaves_the_member_ok():
    eng = engine("n1", "n2")
    aborted = Outcome(OutcomeKind.CLIENT_ERROR, request_sent=True, reason="client-aborted")
    result = run(eng, facts("POST"), backends={"n1": aborted})
    assert result.tried == ["n1"] and result.client_status == 400
    assert eng.member("n1").state is State.OK
    assert eng.member("n1").client_errors == 1 and eng.member("n1").errors == 0


def test_bad_response_keeps_the_member_state_and_fails_over_with_502():
    eng = engine("n1", "n2", retries=1)
    bad = Outcome(OutcomeKind.BAD_RESPONSE, request_sent=True)
    result = run(eng, backends={"n1": bad, "n2": bad})
    assert result.tried == ["n1", "n1", "n2", "n2"]
    assert result.client_status == 502
    assert states(eng) == {"n1": State.OK, "n2": State.OK}
    assert [m.errors for m in eng.members] == [0, 0]


def test_busy_outcome_marks_ok_busy_and_fails_over_without_retrying_the_member():
    eng = engine("n1", "n2")
    result = run(eng, backends={"n1": BUSY})
    assert result.tried == ["n1", "n2"] and result.waited == 0
    assert eng.member("n1").state is State.OK_BUSY
    assert eng.member("n1").errors == 0
    # the next request puts it back to OK when its pool has room
    assert run(eng).tried == ["n1"]


def test_everything_busy_answers_503():
    eng = engine("n1", "n2")
    assert run(eng, backends={"n1": BUSY, "n2": BUSY}).client_status == 503


def test_busy_limit_refuses_a_member_with_that_many_requests_in_flight():
    eng = engine(MemberConfig("n1", busy_limit=1), "n2")
    held = eng.plan(facts(), 0.0)
    assert held.next(0.0).member.name == "n1"
    result = run(eng, facts(cookie=ON_N1))  # n1 is chosen, refuses, the request fails over
    assert result.tried == ["n2"]
    assert eng.member("n1").state is State.OK_BUSY
    assert eng.member("n1").elected == 1  # the refused attempt is not counted
    held.response_head(200, 0.0)
    held.finish(0, 0, 0.0)
    assert run(eng, facts(cookie=ON_N1)).tried == ["n1"]


def test_fail_on_status_hard_retries_the_member_then_marks_it_err():
    eng = engine(MemberConfig("n1", fail_on_status=(503,)), "n2")
    result = run(eng, now=5.0, backends={"n1": 503})
    assert result.tried == ["n1", "n1", "n2"]
    assert result.waited == 0.1 and result.status == 200  # §9.5: ~105 ms
    n1 = eng.member("n1")
    assert n1.state is State.ERR and n1.errors == 1
    assert n1.first_error_time == n1.last_error_time == 5.1
    assert n1.last_error_reason == "fail-on-status-503"


def test_fail_on_status_soft_keeps_the_member_ok():
    eng = engine(MemberConfig("n1", fail_on_status=(-404,)), "n2")
    result = run(eng, backends={"n1": 404})
    assert result.tried == ["n1", "n1", "n2"] and result.status == 200
    assert eng.member("n1").state is State.OK and eng.member("n1").errors == 0


def test_status_not_listed_is_relayed_even_500():
    eng = engine(MemberConfig("n1", fail_on_status=(503,)), "n2")
    assert run(eng, backends={"n1": 500}).status == 500
    assert eng.member("n1").state is State.OK


def test_rule_fail_on_status_replaces_the_members():
    eng = engine(MemberConfig("n1", fail_on_status=(503,)), "n2")
    rule = RuleExtensions(fail_on_status=(-500,))
    assert run(eng, facts(rule=rule), backends={"n1": 503}).status == 503
    result = run(eng, facts(rule=rule), backends={"n2": 500, "n1": 500})
    assert result.client_status == 503 and result.fail is not None


def test_fail_on_status_on_a_post_is_not_resent():
    eng = engine(MemberConfig("n1", fail_on_status=(503,)), "n2")
    result = run(eng, facts("POST"), backends={"n1": 503})
    assert result.tried == ["n1"] and result.client_status == 503


# -- errors: local vs global ----------------------------------------------------------------


def test_error_with_other_requests_in_flight_stays_local_until_escalation_time():
    eng = engine("n1", "n2", error_escalation_time=30)
    held = eng.plan(facts(), 0.0)
    held.next(0.0)  # n1 has a request in flight
    result = run(eng, facts(cookie=ON_N1), now=1.0, backends={"n1": REFUSED})
    assert result.tried == ["n1", "n1", "n2"]
    n1 = eng.member("n1")
    assert n1.state is State.OK and n1.errors == 1
    # classified after the member's last try, as mod_jk does after its member loop
    assert n1.first_error_time == n1.last_error_time == 1.0
    run(eng, facts(cookie=ON_N1), now=20.0, backends={"n1": CLOSED})
    assert n1.state is State.OK and n1.first_error_time == 1.0 and n1.last_error_time == 20.1
    run(eng, facts(cookie=ON_N1), now=40.0, backends={"n1": REFUSED})  # first error >= 30 s old
    assert n1.state is State.ERR and n1.errors == 3


def test_escalation_time_zero_makes_every_error_global():
    eng = engine("n1", "n2", error_escalation_time=0)
    held = eng.plan(facts(), 0.0)
    held.next(0.0)
    run(eng, facts(cookie=ON_N1), backends={"n1": REFUSED})
    assert eng.member("n1").state is State.ERR


def test_success_clears_error_times():
    eng = engine("n1", "n2", error_escalation_time=30)
    held = eng.plan(facts(), 0.0)
    held.next(0.0)
    run(eng, facts(cookie=ON_N1), backends={"n1": REFUSED})
    assert eng.member("n1").first_error_time is not None
    held.response_head(200, 0.0)
    held.finish(0, 0, 0.0)
    assert eng.member("n1").first_error_time is None


def test_recovering_member_is_probed_by_one_request():
    eng = engine("n1", "n2")
    eng.member("n1").state = State.ERR_REC
    plan = eng.plan(facts(), 0.0)
    step = plan.next(0.0)
    assert step.member.name == "n1" and step.probe
    assert eng.member("n1").state is State.ERR_PRB
    other = run(eng, now=0.0)
    assert other.tried == ["n2"]  # a probing member takes nothing else
    plan.response_head(200, 0.0)
    plan.finish(0, 0, 0.0)
    assert eng.member("n1").state is State.OK


# -- set_session_cookie ---------------------------------------------------------------------


def test_routing_cookie_has_mod_jks_exact_format_on_new_sessions():
    eng = engine("n1", "n2", set_session_cookie=True)
    assert run(eng).forwards[0].set_cookie == "JSESSIONID=.n1;PATH=/;HttpOnly"
    assert run(eng, facts(secure=True)).forwards[0].set_cookie == (
        "JSESSIONID=.n2;PATH=/;HttpOnly;Secure"
    )


def test_routing_cookie_omits_path_when_empty_and_uses_the_lbs_name_even_under_a_rule():
    eng = engine("n1", "n2", set_session_cookie=True, session_cookie_path="")
    rule = RuleExtensions(session_cookie="APPSESSION")
    assert run(eng, facts(rule=rule)).forwards[0].set_cookie == "JSESSIONID=.n1;HttpOnly"


def test_routing_cookie_is_not_sent_on_a_sticky_hit():
    eng = engine("n1", "n2", set_session_cookie=True)
    assert run(eng, facts(cookie="JSESSIONID=a.n2")).forwards[0].set_cookie is None


def test_routing_cookie_is_sent_on_reroute_and_failover():
    eng = engine("n1", "n2", set_session_cookie=True)
    result = run(eng, facts(cookie="JSESSIONID=a.n2"), backends={"n2": REFUSED})
    assert [f.set_cookie for f in result.forwards] == [None, None, "JSESSIONID=.n1;PATH=/;HttpOnly"]
    rerouted = run(eng, facts(cookie="JSESSIONID=a.n2"))  # n2 is ERR now
    assert rerouted.forwards[0].set_cookie == "JSESSIONID=.n1;PATH=/;HttpOnly"


def test_rule_can_turn_the_routing_cookie_on():
    eng = engine("n1", "n2")
    assert run(eng).forwards[0].set_cookie is None
    rule = RuleExtensions(set_session_cookie=True)
    assert run(eng, facts(rule=rule)).forwards[0].set_cookie == "JSESSIONID=.n2;PATH=/;HttpOnly"


def test_zero_retry_intervals_produce_no_waits():
    eng = engine(MemberConfig("n1", retry_interval=0), MemberConfig("n2", retry_interval=0))
    eng.update_settings(retry_interval=0)
    result = run(eng, backends=DOWN)
    assert len(result.forwards) == 8 and result.waits == []


def test_reply_timeout_on_a_request_that_may_not_be_resent_answers_504():
    eng = engine("n1", "n2")
    result = run(eng, facts("POST"), backends={"n1": TIMEOUT, "n2": TIMEOUT})
    assert result.tried == ["n1"]
    assert result.client_status == 504


# -- a cluster-wide refusal (pyjk workers at max_active_sessions) ----------------------------


def test_a_cluster_full_503_goes_to_the_client_at_once_even_with_fail_on_status():
    for codes in ((-503,), (503,)):
        eng = engine(
            MemberConfig("n1", fail_on_status=codes), MemberConfig("n2", fail_on_status=codes)
        )
        plan = eng.plan(facts(), 0.0)
        step = plan.next(0.0)
        assert plan.response_head(503, 0.0, refusal="sessions-full") is True  # relay it
        plan.finish(0, 100, 0.0)
        assert plan.status == 503 and plan.forwards == 1
        assert step.member.state is State.OK and step.member.errors == 0


def test_a_plain_503_under_fail_on_status_still_tries_the_other_member():
    eng = engine(
        MemberConfig("n1", fail_on_status=(-503,)), MemberConfig("n2", fail_on_status=(-503,))
    )
    plan = eng.plan(facts(), 0.0)
    plan.next(0.0)
    assert plan.response_head(503, 0.0) is False  # discarded: the next try comes


def test_the_refusal_header_is_found_in_any_case_and_only_by_its_name():
    assert refusal_of([(b"X-Pyjk-Refusal", b" sessions-full ")]) == "sessions-full"
    assert refusal_of([(b"x-pyjk-refusal", b"sessions-full")]) == "sessions-full"
    assert refusal_of([(b"Retry-After", b"10"), (b"X-Pyjk-Refusals", b"x")]) is None
