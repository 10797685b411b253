"""The plan's first choice takes a shortcut in the common cases (RequestPlan._quick_choice);
it must decide exactly as the full pass (Chooser.choose) does, counters included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.config.model import Activation, MemberConfig, Method, RuleExtensions
from balancer.lb.choice import best_by_value, takes_requests
from balancer.lb.decisions import Forward
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from balancer.lb.plan import RequestPlan
from tests.unit.test_lb_driver import engine, facts

ROUTES = ["n0", "n1", "n2", "n3", "dc1", "dc1.x", "gone"]


class _FullPass(RequestPlan):
    """A plan that never takes the shortcut."""

    def _quick_choice(self) -> int:
        return -1


def _twin_engines(data: st.DataObject, n: int, method: Method, force: bool) -> list[LbEngine]:
    members = [
        MemberConfig(
            f"n{i}",
            route=data.draw(st.sampled_from([f"n{i}", f"dc1.n{i}"]), label=f"route{i}"),
            redirect=data.draw(st.sampled_from(["", "n0", "n1"]), label=f"redirect{i}"),
            distance=data.draw(st.integers(0, 1), label=f"distance{i}"),
            lbfactor=data.draw(st.integers(1, 3), label=f"lbfactor{i}"),
        )
        for i in range(n)
    ]
    states = [data.draw(st.sampled_from(list(State)), label=f"state{i}") for i in range(n)]
    activations = [
        data.draw(st.sampled_from(list(Activation)), label=f"activation{i}") for i in range(n)
    ]
    values = [data.draw(st.integers(0, 5), label=f"lb_value{i}") for i in range(n)]
    offset = data.draw(st.integers(0, n), label="next_offset")
    twins = []
    for _ in range(2):
        eng = engine(*members, method=method, sticky_session_force=force)
        for m, state, activation, value in zip(
            eng.members, states, activations, values, strict=True
        ):
            m.state, m.activation, m.lb_value = state, activation, value
        eng.next_offset = offset
        twins.append(eng)
    return twins


def _observed(eng: LbEngine, step: object) -> tuple[object, ...]:
    forward = (
        (step.member.name, step.sticky, step.set_cookie, step.probe, step.activation)
        if isinstance(step, Forward)
        else repr(step)
    )
    counters = [
        (m.state, m.elected, m.sessions, m.lb_value, m.sticky_hits, m.sticky_misses, m.busy)
        for m in eng.members
    ]
    return forward, counters, eng.next_offset


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=4),
    method=st.sampled_from(list(Method)),
    force=st.booleans(),
    session=st.one_of(
        st.none(),
        st.builds(lambda r: f"ABC.{r}", st.sampled_from(ROUTES)),
        st.just("NODOT"),
        st.builds(lambda a, b: f"A.{a};B.{b}", st.sampled_from(ROUTES), st.sampled_from(ROUTES)),
    ),
    override=st.booleans(),
    stateless=st.booleans(),
    set_cookie=st.booleans(),
)
def test_the_first_choice_is_the_full_passes_choice(
    data, n, method, force, session, override, stateless, set_cookie
):
    quick, full = _twin_engines(data, n, method, force)
    rule = RuleExtensions(
        stateless=stateless,
        set_session_cookie=set_cookie,
        activation={"n0": Activation.DISABLED} if override else {},
    )
    request = facts(cookie=None if session is None else f"JSESSIONID={session}", rule=rule)

    quick_step = RequestPlan(quick, request, 1.0).next(1.0)
    full_step = _FullPass(full, request, 1.0).next(1.0)

    assert _observed(quick, quick_step) == _observed(full, full_step)


def test_a_renamed_route_is_found_under_its_new_name_only():
    eng = engine("n1", "n2", "n3")
    assert eng.route_index("n2") == 1
    eng.member("n2").route = "x2"  # a runtime edit (update_member checks it is unused)
    assert eng.route_index("n2") == -1
    assert eng.route_index("x2") == 1


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("activation", list(Activation))
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("cookie", [None, "JSESSIONID=A.n1", "JSESSIONID=A.dc1.n9"])
def test_every_state_and_activation_of_the_routed_member(state, activation, force, cookie):
    twins = []
    for _ in range(2):
        eng = engine(
            MemberConfig("n0", lbfactor=2),
            MemberConfig("n1", route="n1", redirect="n2"),
            MemberConfig("n2", route="dc1.n2"),
            sticky_session_force=force,
        )
        eng.members[1].state, eng.members[1].activation = state, activation
        eng.members[0].lb_value = 3
        twins.append(eng)
    quick, full = twins
    request = facts(cookie=cookie)
    quick_step = RequestPlan(quick, request, 1.0).next(1.0)
    full_step = _FullPass(full, request, 1.0).next(1.0)
    assert _observed(quick, quick_step) == _observed(full, full_step)


@pytest.mark.parametrize("state", list(State))
def test_takes_requests_is_the_states_own_flag(state):
    assert takes_requests(state) is state.takes_requests
    # the plan's quick sticky check reads it for state.sticky_ok (plan.py): the same four
    assert state.sticky_ok is state.takes_requests


def _reference_best_by_value(members, states, rule, stateless, rotation):
    """find_best_byvalue as the plan computed it before session 4 (issue 12): the best member
    read back for every comparison, next_offset moved on every improvement."""
    n = len(members)
    offset = rotation.next_offset % n if n else 0
    best = best_i = None
    for j in range(offset, offset + n):
        i = j % n
        if not states[i].takes_requests or members[i].effective_activation(rule) is not (
            Activation.ACTIVE
        ):
            continue
        m = members[i]
        if best is None or (
            m.distance < best.distance
            if m.distance != best.distance
            else not stateless and m.lb_value < best.lb_value
        ):
            best, best_i = m, i
            rotation.next_offset = (i + 1) % n
    return -1 if best_i is None else best_i


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=5), stateless=st.booleans())
def test_best_by_value_matches_mod_jks_scan(data, n, stateless):
    twins = []
    draws = [
        (
            data.draw(st.sampled_from(list(State)), label=f"state{i}"),
            data.draw(st.sampled_from(list(Activation)), label=f"activation{i}"),
            data.draw(st.integers(0, 2), label=f"distance{i}"),
            data.draw(st.integers(0, 3), label=f"lb_value{i}"),
        )
        for i in range(n)
    ]
    offset = data.draw(st.integers(0, 2 * n), label="next_offset")
    override = data.draw(st.booleans(), label="override")
    rule = RuleExtensions(
        stateless=stateless, activation={"n0": Activation.ACTIVE} if override else {}
    )
    for _ in range(2):
        eng = engine(*[MemberConfig(f"n{i}") for i in range(n)])
        for m, (state, activation, distance, value) in zip(eng.members, draws, strict=True):
            m.state, m.activation, m.distance, m.lb_value = state, activation, distance, value
        eng.next_offset = offset
        twins.append(eng)
    mine, ref = twins
    states = [m.state for m in mine.members]
    got = best_by_value(mine.members, states, rule, stateless, mine)
    want = _reference_best_by_value(ref.members, states, rule, stateless, ref)
    assert (got, mine.next_offset) == (want, ref.next_offset)
