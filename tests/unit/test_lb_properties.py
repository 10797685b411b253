"""Laws of the attempt loop under arbitrary backend behaviour (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.config.model import Activation, MemberConfig, Method
from balancer.lb.decisions import Outcome, OutcomeKind
from tests.unit.test_lb_driver import engine, facts, run

ANSWERS = st.one_of(
    st.sampled_from([200, 404, 500, 503]),
    st.builds(
        Outcome,
        kind=st.sampled_from(list(OutcomeKind)),
        request_sent=st.booleans(),
        replayable=st.booleans(),
        response_started=st.just(False),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=4),
    member_retries=st.integers(min_value=1, max_value=3),
    lb_retries=st.integers(min_value=1, max_value=3),
    rounds=st.integers(min_value=1, max_value=3),
    method=st.sampled_from(list(Method)),
    requests=st.integers(min_value=1, max_value=6),
)
def test_every_request_ends_within_its_retry_budget_and_leaves_nothing_in_flight(
    data, n, member_retries, lb_retries, rounds, method, requests
):
    members = [
        MemberConfig(
            f"n{i}",
            retries=member_retries,
            fail_on_status=(503, -404),
            activation=data.draw(st.sampled_from(list(Activation))),
            lbfactor=data.draw(st.integers(min_value=1, max_value=4)),
        )
        for i in range(n)
    ]
    eng = engine(*members, method=method, lb_retries=lb_retries, retries=rounds, maintain=1)
    now = 0.0
    for _ in range(requests):
        answers = data.draw(st.lists(ANSWERS, min_size=1, max_size=40))
        script = iter(answers)
        method_name = data.draw(st.sampled_from(["GET", "POST"]))
        cookie = data.draw(st.sampled_from([None, "JSESSIONID=a.n0", "JSESSIONID=a.n9"]))
        result = run(
            eng,
            facts(method_name, cookie=cookie),
            now=now,
            backends={m.name: (lambda _f, s=script: next(s, 200)) for m in members},
        )
        budget = rounds * min(n, lb_retries) * member_retries
        assert len(result.forwards) <= budget
        assert result.waited <= budget * 0.1 + rounds * 0.1 + 1e-9
        assert eng.busy == 0 and all(m.busy == 0 for m in eng.members)
        assert all(m.lb_value >= 0 for m in eng.members)
        assert result.client_status in {200, 404, 500, 400, 502, 503, 504}
        now = result.end + 0.5
        eng.maintain(now)
