"""A data-plane stand-in for the lb engine tests, and the tests of the plan's contract.

``run`` drives one ``RequestPlan`` the way the data plane does, with a fake clock that moves by
every ``Wait`` and backends described per member: an int is the response status, an
``Outcome`` is a failure to report, a callable decides per Forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from balancer.config.model import LbConfig, MemberConfig
from balancer.lb.decisions import Fail, Forward, Outcome, OutcomeKind, RequestFacts, Wait
from balancer.lb.engine import LbEngine
from balancer.lb.member import State
from balancer.lb.plan import RequestPlan

Behaviour = int | Outcome | Callable[[Forward], "int | Outcome"]

REFUSED = Outcome(OutcomeKind.CONNECT_FAILED, reason="connect-refused")
CLOSED = Outcome(OutcomeKind.READ_FAILED, request_sent=True, reason="connection-closed")
TIMEOUT = Outcome(OutcomeKind.REPLY_TIMEOUT, request_sent=True, reason="reply-timeout")
BUSY = Outcome(OutcomeKind.BUSY, reason="pool-exhausted")
GET = RequestFacts("GET", b"/app/x")


def engine(*members: MemberConfig | str, maintain: int = 60, now: float = 0.0, **lb: object):
    configs = [MemberConfig(m) if isinstance(m, str) else m for m in members]
    config = LbConfig("lb", balance_workers=tuple(c.name for c in configs), **lb)  # type: ignore[arg-type]
    return LbEngine(config, configs, maintain, now)


def facts(method: str = "GET", uri: str = "/app/x", cookie: str | None = None, **kw: object):
    cookies = () if cookie is None else (cookie.encode("latin-1"),)
    return RequestFacts(method, uri.encode("latin-1"), cookies=cookies, **kw)  # type: ignore[arg-type]


@dataclass
class Run:
    plan: RequestPlan
    start: float
    end: float = 0.0
    forwards: list[Forward] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    fail: Fail | None = None
    status: int | None = None  # the relayed response's status, when one was relayed

    @property
    def tried(self) -> list[str]:
        return [f.member.name for f in self.forwards]

    @property
    def waited(self) -> float:
        return round(sum(self.waits), 6)

    @property
    def client_status(self) -> int:
        return self.fail.status if self.fail is not None else self.status  # type: ignore[return-value]

    def count(self, name: str) -> int:
        return self.tried.count(name)


def run(
    eng: LbEngine,
    request: RequestFacts = GET,
    now: float = 0.0,
    backends: Mapping[str, Behaviour] | None = None,
    *,
    sent: int = 0,
    received: int = 0,
    max_steps: int = 500,
) -> Run:
    """One request through the plan; unknown members answer 200."""
    backends = backends or {}
    plan = eng.plan(request, now)
    result = Run(plan, start=now)
    for _ in range(max_steps):
        step = plan.next(now)
        if isinstance(step, Wait):
            result.waits.append(step.seconds)
            now += step.seconds
        elif isinstance(step, Fail):
            result.fail = step
            break
        else:
            assert isinstance(step, Forward)
            result.forwards.append(step)
            behaviour = backends.get(step.member.name, 200)
            answer = behaviour(step) if callable(behaviour) else behaviour
            if isinstance(answer, Outcome):
                plan.report(answer, now)
            elif plan.response_head(answer, now):
                plan.finish(sent, received, now)
                result.status = answer
                break
    else:
        raise AssertionError("the plan did not end")
    result.end = now
    return result


def states(eng: LbEngine) -> dict[str, State]:
    return {m.name: m.state for m in eng.members}


# -- the plan's contract --------------------------------------------------------------------


def test_next_refuses_while_a_forward_is_open():
    eng = engine("n1", "n2")
    plan = eng.plan(GET, 0.0)
    assert isinstance(plan.next(0.0), Forward)
    with pytest.raises(RuntimeError, match="still open"):
        plan.next(0.0)


def test_next_refuses_after_the_response_was_relayed():
    eng = engine("n1", "n2")
    plan = eng.plan(GET, 0.0)
    plan.next(0.0)
    assert plan.response_head(200, 0.0) is True
    plan.finish(10, 20, 0.0)
    assert plan.done and plan.status == 200
    with pytest.raises(RuntimeError, match="answered"):
        plan.next(0.0)


def test_closing_without_an_open_forward_is_an_error():
    plan = engine("n1", "n2").plan(GET, 0.0)
    with pytest.raises(RuntimeError):
        plan.report(REFUSED, 0.0)
    with pytest.raises(RuntimeError):
        plan.response_head(200, 0.0)


def test_fail_is_repeated_once_the_plan_gave_up():
    eng = engine("n1", "n2")
    result = run(eng, backends={"n1": REFUSED, "n2": REFUSED})
    assert result.fail is not None
    assert result.plan.next(result.end) == result.fail
    assert result.plan.done


def test_busy_counters_return_to_zero_whatever_the_outcome():
    eng = engine("n1", "n2", "n3")
    run(eng, backends={"n1": REFUSED, "n2": TIMEOUT, "n3": 200})
    run(eng, backends={"n1": BUSY, "n2": CLOSED, "n3": 503})
    assert eng.busy == 0
    assert all(m.busy == 0 for m in eng.members)
    assert eng.max_busy == 1


def test_busy_counts_forwards_in_flight_across_requests():
    eng = engine("n1", "n2")
    first = eng.plan(GET, 0.0)
    second = eng.plan(GET, 0.0)
    a, b = first.next(0.0), second.next(0.0)
    assert isinstance(a, Forward) and isinstance(b, Forward)
    assert eng.busy == 2 and eng.max_busy == 2
    assert {a.member.name, b.member.name} == {"n1", "n2"}
    first.report(REFUSED, 0.0)
    assert eng.busy == 1
