"""Runtime edits, reset, recover, rating and config reload (modjk.md §5.1, §5.4, §9.8)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from balancer.config.model import Activation, LbConfig, MemberConfig, Method
from balancer.lb import settings
from balancer.lb.engine import LbEngine
from balancer.lb.errors import InvalidSetting, RecoverRefused, UnknownMember
from balancer.lb.member import State
from balancer.lb.rating import matches, rate
from balancer.lb.settings import _RULES, FIELDS, LbSettings
from tests.unit.test_lb_driver import REFUSED, engine, facts, run, states


def lb_values(eng):
    return [m.lb_value for m in eng.members]


# -- member edits ---------------------------------------------------------------------------


def test_activation_change_resets_every_lb_value():
    eng = engine("n1", "n2", "n3")
    for m, v in zip(eng.members, (4, 5, 6), strict=True):
        m.lb_value = v
    eng.update_member("n2", 0.0, activation=Activation.DISABLED)
    assert lb_values(eng) == [0, 0, 0]
    assert eng.member("n2").activation is Activation.DISABLED


def test_activation_change_keeps_busyness_values():
    eng = engine("n1", "n2", method=Method.BUSYNESS)
    eng.member("n1").lb_value = 3
    eng.update_member("n1", 0.0, activation=Activation.STOPPED)
    assert lb_values(eng) == [3, 0]


def test_lbfactor_change_recomputes_multipliers_and_keeps_values():
    eng = engine("n1", "n2")
    eng.member("n1").lb_value = 7
    eng.update_member("n2", 0.0, lbfactor=3)
    assert [m.lb_mult for m in eng.members] == [3, 1]
    assert lb_values(eng) == [7, 0]


def test_route_change_rederives_an_empty_domain_and_routes_sessions():
    eng = engine("n1", "n2")
    eng.update_member("n2", 0.0, route="dc1.n2")
    assert eng.member("n2").domain == "dc1"
    assert run(eng, facts(cookie="JSESSIONID=x.dc1.n2")).tried == ["n2"]
    eng.update_member("n2", 0.0, route="dc2.n2")
    assert eng.member("n2").domain == "dc1"  # only an empty domain is derived


def test_redirect_domain_distance_and_member_options_are_editable():
    eng = engine("n1", "n2")
    eng.update_member(
        "n1", 0.0, redirect="n2", domain="d", distance=2, retries=1, busy_limit=5, reply_timeout=9
    )
    n1 = eng.member("n1")
    assert (n1.redirect, n1.domain, n1.distance) == ("n2", "d", 2)
    assert (n1.retries, n1.busy_limit, n1.reply_timeout) == (1, 5, 9)
    assert run(eng, backends={"n2": REFUSED}).tried[:2] == ["n2", "n2"]  # distance applies


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lbfactor": 0}, "lbfactor expects an integer >= 1"),
        ({"distance": -1}, "distance expects an integer >= 0"),
        ({"retries": True}, "retries expects an integer"),
        ({"activation": "DIS"}, "activation expects a Activation"),
        ({"route": "n2"}, "route expects a route unused (n2 has it)"),
        ({"route": "a;b"}, "route expects 1-63 of"),
        ({"redirect": "x y"}, "redirect expects 1-63 of"),
        ({"colour": 1}, "colour expects one of"),
    ],
)
def test_invalid_member_edits_are_refused_and_change_nothing(changes, message):
    eng = engine("n1", "n2")
    n1 = eng.member("n1")
    before = (n1.lbfactor, n1.route, n1.distance, n1.busy_limit)
    with pytest.raises(InvalidSetting, match="lb 'lb' member 'n1'") as err:
        eng.update_member("n1", 0.0, **{"busy_limit": 3, **changes})
    assert message in str(err.value)
    assert (n1.lbfactor, n1.route, n1.distance, n1.busy_limit) == before


def test_unknown_member_is_named():
    eng = engine("n1", "n2")
    with pytest.raises(UnknownMember, match="lb 'lb' has no member 'n9'"):
        eng.update_member("n9", 0.0, distance=1)


# -- lb edits -------------------------------------------------------------------------------


def test_settings_table_covers_every_setting_in_declaration_order():
    # FIELDS (the table's names) stands for dataclasses.fields: LbSettings compiles to an
    # extension type, which keeps no annotations
    tree = ast.parse(Path(settings.__file__.rsplit(".", 2)[0] + ".py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LbSettings"]
    declared = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]  # type: ignore[union-attr]
    assert FIELDS == tuple(_RULES) == tuple(declared)
    defaults = LbSettings()
    assert [getattr(defaults, name) for name in FIELDS]  # every field has a starting value


def test_lb_settings_apply_to_the_next_request():
    eng = engine("n1", "n2")
    eng.update_settings(retries=1, lb_retries=1)
    assert run(eng, backends={"n1": REFUSED}).tried == ["n1", "n1"]
    eng.update_settings(sticky_session_force=True)
    assert run(eng, facts(cookie="JSESSIONID=x.n9")).client_status == 503
    eng.update_settings(sticky_session=False)
    assert run(eng, facts(cookie="JSESSIONID=x.n9")).status == 200


def test_invalid_lb_edits_are_refused():
    eng = engine("n1", "n2")
    with pytest.raises(InvalidSetting, match="lb 'lb': recover_time expects an integer >= 1"):
        eng.update_settings(recover_time=0)
    with pytest.raises(InvalidSetting, match="method expects a Method"):
        eng.update_settings(method="R")
    with pytest.raises(InvalidSetting, match="session_cookie expects a non-empty name"):
        eng.update_settings(session_cookie="")
    assert eng.settings.recover_time == 60


def test_method_change_restarts_load_values():
    eng = engine("n1", "n2", method=Method.TRAFFIC)
    eng.member("n1").lb_value = 10_000
    eng.update_settings(method=Method.REQUEST)
    assert lb_values(eng) == [0, 0]
    plan = eng.plan(facts(), 0.0)
    plan.next(0.0)  # one request in flight on n1
    eng.update_settings(method=Method.BUSYNESS)
    assert lb_values(eng) == [1, 0]


# -- reset and recover ----------------------------------------------------------------------


def test_reset_clears_statistics_and_keeps_activation():
    eng = engine("n1", MemberConfig("n2", activation=Activation.DISABLED))
    run(eng, backends={"n1": REFUSED}, sent=5, received=9)
    run(eng, facts(cookie="JSESSIONID=x.n2"), now=1.0)
    eng.reset(50.0)
    for m in eng.members:
        assert m.state is State.OK_IDLE
        assert (m.errors, m.sessions, m.lb_value, m.elected, m.client_errors) == (0, 0, 0, 0, 0)
        assert (m.reply_timeouts, m.bytes_read, m.bytes_transferred, m.max_busy) == (0, 0, 0, 0)
        assert m.first_error_time is None and m.last_reset == 50.0
    assert eng.member("n2").activation is Activation.DISABLED
    assert eng.max_busy == 0 and eng.last_reset == 50.0


def test_reset_of_one_member_leaves_the_others():
    eng = engine("n1", "n2")
    run(eng, backends={"n1": REFUSED})
    eng.reset(9.0, member="n1")
    assert eng.member("n1").errors == 0 and eng.member("n1").state is State.OK_IDLE
    assert eng.member("n2").elected == 1
    assert eng.last_reset == 0.0


def test_recover_marks_an_err_member_for_recovery_with_the_largest_value():
    eng = engine("n1", "n2", "n3")
    run(eng, facts(cookie="JSESSIONID=a.n1"), backends={"n1": REFUSED})
    eng.member("n3").lb_value = 9
    eng.member("n1").reply_timeouts = 4
    eng.recover("n1", 1.0)
    n1 = eng.member("n1")
    assert n1.state is State.ERR_REC and n1.lb_value == 9 and n1.reply_timeouts == 0
    assert eng.drain_changes()[-1].reason == "recover-command"


def test_recover_refuses_a_member_that_is_not_err():
    eng = engine("n1", "n2")
    with pytest.raises(RecoverRefused, match="'n2': recover needs state ERR, found OK/IDLE"):
        eng.recover("n2", 0.0)


# -- rating ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "state", "expected"),
    [
        (Activation.ACTIVE, State.OK, "good"),
        (Activation.ACTIVE, State.OK_IDLE, "good"),
        (Activation.ACTIVE, State.OK_BUSY, "good"),
        (Activation.ACTIVE, State.ERR_PRB, "good"),
        (Activation.ACTIVE, State.ERR, "bad"),
        (Activation.DISABLED, State.OK, "degraded"),
        (Activation.DISABLED, State.ERR, "bad"),
        (Activation.STOPPED, State.OK, "bad"),
    ],
)
def test_default_rating(activation, state, expected):
    member = engine("n1", "n2").member("n1")
    member.activation, member.state = activation, state
    assert rate(member) == expected


def test_rating_rules_combine_letters_and_ignore_unknown_ones():
    assert matches("D.O", Activation.DISABLED, State.OK)
    assert matches("n", Activation.ACTIVE, State.OK_IDLE)
    assert not matches("d.e", Activation.DISABLED, State.OK)
    assert not matches("x", Activation.ACTIVE, State.OK)
    assert not matches("a.o.x", Activation.ACTIVE, State.OK)
    member = engine("n1", "n2").member("n1")
    member.activation = Activation.DISABLED
    assert rate(member, good=("d",), bad=()) == "good"


# -- reload ---------------------------------------------------------------------------------


def test_reload_keeps_unchanged_members_and_starts_changed_ones_fresh():
    old = engine("n1", "n2", "n3")
    run(old, backends={"n1": REFUSED})
    old.update_member("n2", 0.0, activation=Activation.DISABLED)
    kept_n1, kept_n2 = old.member("n1"), old.member("n2")
    config = LbConfig("lb", balance_workers=("n1", "n2", "n3", "n4"), retries=1)
    members = [
        MemberConfig("n1"),
        MemberConfig("n2"),
        MemberConfig("n3", port=9009),
        MemberConfig("n4", lbfactor=2),
    ]
    new = LbEngine.from_previous(old, config, members, 60, 10.0)
    assert new.member("n1") is kept_n1 and new.member("n1").state is State.ERR
    assert new.member("n2") is kept_n2 and new.member("n2").activation is Activation.DISABLED
    assert new.member("n3").state is State.OK_IDLE and new.member("n3").config.port == 9009
    assert [m.lb_mult for m in new.members] == [2, 2, 2, 1]
    assert new.settings.retries == 1
    assert new.last_reset == old.last_reset


def test_reload_does_not_carry_a_runtime_route_that_now_clashes():
    old = engine("n1", "n2")
    old.update_member("n1", 0.0, route="n3")
    config = LbConfig("lb", balance_workers=("n1", "n2", "n3"))
    new = LbEngine.from_previous(
        old, config, [MemberConfig("n1"), MemberConfig("n2"), MemberConfig("n3")], 60, 1.0
    )
    assert [m.route for m in new.members] == ["n1", "n2", "n3"]


def test_engine_refuses_duplicate_routes_and_empty_member_lists():
    from balancer.lb.errors import LbError

    with pytest.raises(LbError, match="share a route: x"):
        engine(MemberConfig("n1", route="x"), MemberConfig("n2", route="x"))
    with pytest.raises(LbError, match="has no members"):
        LbEngine(LbConfig("lb"), [], 60, 0.0)


def test_states_helper_is_consistent():
    assert states(engine("a", "b")) == {"a": State.OK_IDLE, "b": State.OK_IDLE}


def test_setting_the_same_activation_again_changes_nothing():
    eng = engine("n1", "n2")
    eng.member("n1").lb_value = 4
    eng.update_member("n1", 0.0, activation=Activation.ACTIVE)
    assert lb_values(eng) == [4, 0]
