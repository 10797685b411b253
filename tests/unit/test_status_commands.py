"""update, reset and recover through the status worker, as mod_jk applies them (§5.1, §3.9)."""

from __future__ import annotations

import pytest

from balancer.config.model import Activation, Lock, Method
from balancer.lb.member import State
from tests.unit.test_lb_driver import GET, REFUSED
from tests.unit.test_status_kit import Kit, text


def update(kit: Kit, **params: object):
    return kit.post({"cmd": "update", "w": "lb", "mime": "txt", **params})


def lb_values(kit: Kit) -> list[int]:
    return [m.lb_value for m in kit.lb.members]


def load(kit: Kit, requests: int = 6) -> None:
    for _ in range(requests):
        kit.drive()


# -- lb settings ------------------------------------------------------------------------------


def test_lb_settings_change_by_their_mod_jk_parameter_names():
    kit = Kit()
    resp = update(
        kit, vlr=3, vlri=250, vlt=90, vlee=45, vlx=4, vls="off", vlf="on", vlm="B", vll="P"
    )
    assert resp.status == 200
    s = kit.lb.settings
    assert (s.retries, s.retry_interval, s.recover_time) == (3, 250, 90)
    assert (s.error_escalation_time, s.max_reply_timeouts) == (45, 4)
    assert (s.sticky_session, s.sticky_session_force) == (False, True)
    assert (s.method, s.lock) == (Method.BUSYNESS, Lock.PESSIMISTIC)


@pytest.mark.parametrize(
    ("code", "method"),
    [
        ("R", Method.REQUEST),
        ("t", Method.TRAFFIC),
        ("2", Method.BUSYNESS),
        ("Sessions", Method.SESSIONS),
        ("4", Method.NEXT),
    ],
)
def test_methods_are_read_from_their_first_character_or_number(code, method):
    kit = Kit()
    update(kit, vlm=code)
    assert kit.lb.settings.method is method


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("vlr", "0"),
        ("vlt", "0"),
        ("vlri", "-1"),
        ("vlr", "two"),
        ("vlm", "x"),
        ("vls", "maybe"),
        ("vlr", "99999999999"),
    ],
)
def test_a_bad_lb_value_is_refused_and_changes_nothing(param, value):
    kit = Kit()
    resp = update(kit, vlx=7, **{param: value})
    assert resp.status == 400
    assert f"Invalid value for {param}" in text(resp)
    assert kit.lb.settings.max_reply_timeouts == 0


def test_unchanged_values_change_nothing():
    kit = Kit()
    resp = update(kit, vlr=2, vls="on", vlm="R")
    assert resp.status == 200
    assert kit.lb.settings.retries == 2


# -- member settings --------------------------------------------------------------------------


def test_an_activation_change_resets_every_lb_value():
    kit = Kit()
    load(kit)
    assert any(lb_values(kit))
    update(kit, sw="n2", vwa="d")
    assert kit.lb.member("n2").activation is Activation.DISABLED
    assert lb_values(kit) == [0, 0, 0]


def test_an_activation_change_keeps_busyness_lb_values():
    kit = Kit()
    update(kit, vlm="B")
    plan = kit.lb.plan(GET, kit.now)
    plan.next(kit.now)  # one request in flight keeps a Busyness value
    before = lb_values(kit)
    assert any(before)
    update(kit, sw="n2", vwa="s")
    assert lb_values(kit) == before


def test_an_lbfactor_change_recomputes_multipliers_and_keeps_values():
    kit = Kit()
    load(kit)
    before = lb_values(kit)
    update(kit, sw="n1", vwf=3)
    assert [m.lbfactor for m in kit.lb.members] == [3, 1, 2]
    assert [m.lb_mult for m in kit.lb.members] == [2, 6, 3]
    assert lb_values(kit) == before


def test_a_route_change_derives_an_empty_domain():
    kit = Kit()
    update(kit, sw="n1", vwn="dc1.n1")
    m = kit.lb.member("n1")
    assert (m.route, m.domain) == ("dc1.n1", "dc1")


def test_a_route_change_keeps_a_domain_that_is_set():
    kit = Kit()
    update(kit, sw="n1", vwc="east")
    update(kit, sw="n1", vwn="dc1.n1")
    assert kit.lb.member("n1").domain == "east"


def test_redirect_and_domain_can_be_cleared():
    kit = Kit()
    update(kit, sw="n1", vwr="n2", vwc="east", vwd=2)
    m = kit.lb.member("n1")
    assert (m.redirect, m.domain, m.distance) == ("n2", "east", 2)
    update(kit, sw="n1", vwr="", vwc="")
    assert (m.redirect, m.domain) == ("", "")


@pytest.mark.parametrize(
    "value", ["<script>", "a b", 'n"1', "n1\r\nSet-Cookie: x=1", "x" * 64, "n1;", "é"]
)
@pytest.mark.parametrize("param", ["vwn", "vwr", "vwc"])
def test_route_redirect_and_domain_must_be_names(param, value):
    kit = Kit()
    resp = update(kit, sw="n1", vwf=5, **{param: value})
    assert resp.status == 400
    assert kit.lb.member("n1").lbfactor == 1  # nothing of the request was applied
    assert kit.lb.member("n1").route == "n1"


def test_a_route_already_used_is_refused():
    kit = Kit()
    resp = update(kit, sw="n1", vwn="n2")
    assert resp.status == 400
    assert kit.lb.member("n1").route == "n1"


def test_endpoint_settings_the_engine_can_change_are_updated():
    kit = Kit()
    update(kit, sw="n2", var=3, vari=50, varo=17, vart=1500, vabl=8)
    m = kit.lb.member("n2")
    assert (m.retries, m.retry_interval, m.recovery_options) == (3, 50, 17)
    assert (m.reply_timeout, m.busy_limit) == (1500, 8)


def test_endpoint_settings_fixed_at_start_are_refused_unless_unchanged():
    kit = Kit()
    assert update(kit, sw="n1", vaprt=8101, vwf=2).status == 200  # same port: ignored
    resp = update(kit, sw="n1", vaprt=9999, vwf=4)
    assert resp.status == 400
    assert "cannot be changed at runtime" in text(resp)
    assert kit.lb.member("n1").lbfactor == 2


def test_wildcards_in_sw_update_every_matching_member():
    kit = Kit()
    update(kit, sw="n[1]?", vwd=1)  # brackets are literal characters, not a class
    update(kit, sw="n*", vwd=2)
    assert [m.distance for m in kit.lb.members] == [2, 2, 2]
    update(kit, sw="?2", vwd=5)
    assert [m.distance for m in kit.lb.members] == [2, 5, 2]


def test_one_attribute_for_all_members_by_index():
    kit = Kit()
    resp = update(kit, att="vwf", val0=4, val2=6)
    assert resp.status == 200
    assert [m.lbfactor for m in kit.lb.members] == [4, 1, 6]
    update(kit, att="vwa", val1="s")
    assert kit.lb.member("n2").activation is Activation.STOPPED


def test_an_unknown_attribute_is_refused():
    resp = update(Kit(), att="vxx", val0=1)
    assert resp.status == 400


def test_a_single_member_worker_takes_endpoint_settings():
    kit = Kit()
    resp = kit.post({"cmd": "update", "w": "solo", "mime": "txt", "var": 4, "vart": 2000})
    assert resp.status == 200
    m = kit.engines["solo"].members[0]
    assert (m.retries, m.reply_timeout) == (4, 2000)
    resp = kit.post({"cmd": "update", "w": "solo", "sw": "solo", "mime": "txt", "var": 1})
    assert resp.status == 400
    assert "worker type has no sub workers" in text(resp)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "NULL or EMPTY worker param"),
        ({"w": ""}, 400, "NULL or EMPTY worker param"),
        ({"w": "nope"}, 404, "Could not find given worker"),
        ({"w": "jkstatus"}, 404, "Could not find given worker"),
        ({"w": "lb", "sw": "n9"}, 404, "could not find sub worker"),
        ({"w": "lb", "sw": "x*"}, 404, "could not find sub worker"),
        ({"w": "lb", "sw": ""}, 400, "EMPTY sub worker param"),
    ],
)
def test_worker_lookup_errors(params, status, message):
    resp = Kit().post({"cmd": "update", "mime": "txt", "vwf": 2, **params})
    assert resp.status == status
    assert text(resp) == f'Result: type=ERROR message="{message}"\n'


# -- reset and recover ------------------------------------------------------------------------


def test_reset_of_an_lb_clears_every_member_and_keeps_activations():
    kit = Kit()
    update(kit, sw="n2", vwa="d")
    load(kit)
    kit.drive({"n1": REFUSED, "n3": REFUSED})
    kit.now += 5
    resp = kit.post({"cmd": "reset", "w": "lb", "mime": "txt"})
    assert resp.status == 200
    for m in kit.lb.members:
        assert (m.elected, m.errors, m.lb_value, m.bytes_read) == (0, 0, 0, 0)
        assert m.state is State.OK_IDLE
        assert m.last_reset == kit.now
    assert kit.lb.member("n2").activation is Activation.DISABLED
    assert kit.lb.last_reset == kit.now


def test_reset_of_one_member_leaves_the_others():
    kit = Kit()
    load(kit)
    kit.post({"cmd": "reset", "w": "lb", "sw": "n1", "mime": "txt"})
    assert kit.lb.member("n1").elected == 0
    assert kit.lb.member("n2").elected > 0


def test_reset_takes_no_wildcard():
    resp = Kit().post({"cmd": "reset", "w": "lb", "sw": "n*", "mime": "txt"})
    assert resp.status == 400
    assert "wildcard not allowed in sub worker for this command" in text(resp)


def test_recover_marks_an_err_member_for_recovery_at_the_highest_lb_value():
    kit = Kit()
    load(kit)
    kit.drive({"n1": REFUSED}, cookie="JSESSIONID=abc.n1")
    n1 = kit.lb.member("n1")
    assert n1.state is State.ERR
    resp = kit.post({"cmd": "recover", "w": "lb", "sw": "n1", "mime": "txt"})
    assert resp.status == 200
    assert n1.state is State.ERR_REC
    assert n1.lb_value == max(m.lb_value for m in kit.lb.members)
    assert n1.reply_timeouts == 0


def test_recover_of_a_member_not_in_error_is_a_conflict():
    kit = Kit()
    resp = kit.post({"cmd": "recover", "w": "lb", "sw": "n1", "mime": "txt"})
    assert resp.status == 409
    assert text(resp) == 'Result: type=ERROR message="Marking worker for recovery failed"\n'
    assert kit.lb.member("n1").state is State.OK_IDLE


def test_recover_needs_a_member():
    resp = Kit().post({"cmd": "recover", "w": "lb", "mime": "txt"})
    assert resp.status == 400
    assert "NULL or EMPTY sub_worker param" in text(resp)


def test_recover_of_a_single_member_worker_needs_no_member_name():
    kit = Kit()
    kit.drive({"solo": REFUSED}, engine="solo")
    solo = kit.engines["solo"].members[0]
    assert solo.state is State.ERR
    assert kit.post({"cmd": "recover", "w": "solo", "mime": "txt"}).status == 200
    assert solo.state is State.ERR_REC
