"""lb_value and lb_mult are 64-bit C integers (member.pxd), in the single-process build too:
no weight, edit, join or transfer may overflow them, and an lb_value saturates instead of
wrapping. Plain and shared members, compiled and pure, give the same numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from balancer.cluster_members import member_config
from balancer.config.model import MAX_LBFACTOR, LbConfig, MemberConfig, Method
from balancer.lb import controls
from balancer.lb.engine import LbEngine
from balancer.lb.errors import InvalidSetting
from balancer.lb.member import LB_VALUE_MAX, MAX_LB_MULT, lb_multipliers
from tests.unit.test_config_reader import BASE, only_error
from tests.unit.test_lb_driver import run
from tests.unit.test_lb_shared import engines, table
from tests.unit.test_status_kit import Kit, text

# twelve coprime weights: LCM / 97 is about 2**67, past the 64-bit field
PRIMES = (97, 89, 83, 79, 73, 71, 67, 61, 59, 53, 47, 43)
COPRIME = tuple(MemberConfig(f"m{i}", lbfactor=f) for i, f in enumerate(PRIMES))
COPRIME_LB = LbConfig("lb", balance_workers=tuple(m.name for m in COPRIME))
PAIR = (MemberConfig("a", lbfactor=1), MemberConfig("b", lbfactor=2))
TRAFFIC = LbConfig("lb", balance_workers=("a", "b"), method=Method.TRAFFIC)


def plain_and_shared(lb: LbConfig, members=PAIR) -> list[LbEngine]:
    """One engine with plain members, one whose members are records of a shared table."""
    return [LbEngine(lb, members, 60, 0.0), engines(table(), 1, members=members, lb=lb)[0]]


# -- lb_mult --------------------------------------------------------------------------------


def test_multipliers_are_mod_jk_s_lcm_over_the_factor_while_they_fit():
    assert lb_multipliers([1, 2, 3]) == [6, 3, 2]
    assert lb_multipliers([100, 99, 98, 97]) == [
        (100 * 99 * 49 * 97) // f for f in (100, 99, 98, 97)
    ]
    assert lb_multipliers([]) == []


def test_weights_too_coprime_for_exact_multipliers_get_close_ones_that_fit():
    mults = lb_multipliers(list(PRIMES))
    assert max(mults) == MAX_LB_MULT  # the smallest factor's
    for f, mult in zip(PRIMES, mults, strict=True):
        assert abs(mult * f / (MAX_LB_MULT * 43) - 1) < 1.2e-5
    extreme = lb_multipliers([1, MAX_LBFACTOR, MAX_LBFACTOR - 1])
    assert extreme[0] == MAX_LB_MULT and all(m >= 1 for m in extreme)


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_an_lb_of_many_coprime_weights_starts_and_shares_by_weight(shared):
    # before: OverflowError while building the engine (the process did not start)
    eng = plain_and_shared(COPRIME_LB, COPRIME)[shared]
    assert all(1 <= m.lb_mult <= MAX_LB_MULT for m in eng.members)
    picks = {m.name: 0 for m in COPRIME}
    for _ in range(2 * sum(PRIMES)):
        picks[run(eng).tried[0]] += 1
    # the multipliers are close, not exact: a tie at a round's end may go either way
    assert all(abs(picks[m.name] - 2 * m.lbfactor) <= 1 for m in COPRIME), picks


def test_a_dynamic_member_with_a_coprime_weight_joins():
    # dynamic members take their lbfactor from the heartbeat (at most MAX_LBFACTOR there);
    # a document the supervisor wrote is read back through member_config, which clamps it
    joined = [member_config(None, f"r{f}", "127.0.0.1", 8000 + f, f, 0.0) for f in PRIMES]
    eng = LbEngine(replace(COPRIME_LB, balance_workers=()), joined, 60, 0.0)
    assert all(1 <= m.lb_mult <= MAX_LB_MULT for m in eng.members)
    assert member_config(None, "big", "h", 1, 10**19, 0.0).lbfactor == MAX_LBFACTOR


# -- lbfactor: config, status edits -----------------------------------------------------------


def test_an_lbfactor_above_the_bound_is_a_config_error_naming_file_line_and_directive():
    problem = only_error(BASE + "worker.n1.lbfactor=100001\n")
    assert "w.properties:8" in problem and "worker.n1.lbfactor" in problem
    assert "between 1 and 100000" in problem


@pytest.mark.parametrize(
    "changes",
    [{"lbfactor": 10**19}, {"lbfactor": MAX_LBFACTOR + 1}, {"distance": 10**19}],
)
def test_a_status_edit_too_large_is_an_invalid_setting_and_changes_nothing(changes):
    # before: OverflowError, from setting the C field
    eng = LbEngine(TRAFFIC, PAIR, 60, 0.0)
    a = eng.members[0]
    with pytest.raises(InvalidSetting, match=r"lbfactor|distance"):
        controls.update_member(eng, a, 0.0, changes)
    assert (a.lbfactor, a.distance, a.lb_mult) == (1, 0, 2)


def test_a_status_edit_to_the_largest_lbfactor_is_applied():
    eng = LbEngine(TRAFFIC, PAIR, 60, 0.0)
    controls.update_member(eng, eng.members[0], 0.0, {"lbfactor": MAX_LBFACTOR})
    assert [m.lb_mult for m in eng.members] == [1, MAX_LBFACTOR // 2]


# -- lb_value ---------------------------------------------------------------------------------


def saturations(lb: LbConfig, start: int, mult: int, sent: int) -> list[int]:
    """The first member's lb_value after one Forward of ``sent`` bytes, plain and shared."""
    out = []
    for eng in plain_and_shared(lb):
        a = eng.members[0]
        a.lb_mult = mult
        a.lb_value = start
        eng.open_forward(a)
        eng.close_forward(a, sent, 0, 0.0)
        out.append(a.lb_value)
    return out


def test_a_traffic_load_past_64_bits_saturates_the_lb_value():
    # before: OverflowError in the data path (8 MiB x 2**40 > 2**63)
    assert saturations(TRAFFIC, 0, 1 << 40, 8 << 20) == [LB_VALUE_MAX] * 2


def test_an_lb_value_near_the_top_saturates_rather_than_wrapping_negative():
    # before: the compiled build wrapped to a negative value (that member then won every
    # choice) and the pure one went past the field's range
    assert saturations(TRAFFIC, LB_VALUE_MAX - 10, 1, 100) == [LB_VALUE_MAX] * 2
    assert saturations(TRAFFIC, LB_VALUE_MAX - 100, 1, 100) == [LB_VALUE_MAX] * 2
    assert saturations(TRAFFIC, LB_VALUE_MAX - 101, 1, 100) == [LB_VALUE_MAX - 1] * 2


@pytest.mark.parametrize("method", [Method.REQUEST, Method.SESSIONS, Method.BUSYNESS])
def test_a_request_counted_at_the_top_keeps_the_lb_value_at_the_top(method):
    lb = replace(TRAFFIC, method=method)
    values = []
    for eng in plain_and_shared(lb):
        a = eng.members[0]
        a.lb_value = LB_VALUE_MAX - 1
        eng.count_choice(a, has_session=False, stateless=False, now=0.0)
        values.append(a.lb_value)
    assert values == [LB_VALUE_MAX] * 2


def test_the_status_page_refuses_an_lbfactor_above_the_bound_before_changing_anything():
    # before: accepted up to 2**31-1
    kit = Kit()
    resp = kit.post({"cmd": "update", "w": "lb", "mime": "txt", "sw": "n1", "vwf": 100001})
    assert resp.status == 400 and "100000" in text(resp)
    assert kit.lb.member("n1").lbfactor == 1
