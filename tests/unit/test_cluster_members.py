"""The dynamic lb's decisions (balancer.cluster_members): heartbeats and readiness in,
members, refusals, leaving and removal out. Pure: no sockets, time passed in."""

from __future__ import annotations

from dataclasses import replace

from balancer.cluster_members import (
    DISABLED,
    JOINED,
    NO_ADDRESS,
    NOT_ALLOWED,
    REFUSED,
    REMOVED,
    ROUTE_IN_USE,
    DynamicLb,
)
from balancer.config.model import MemberConfig
from replication.codec import MemberInfo

LOOPBACK = ("127.0.0.0/8", "::1/128")
N4 = MemberInfo("4" * 32, "node4", "127.0.0.1", 4004, 1000.0, "127.0.0.1", 8104, 2)
N5 = MemberInfo("5" * 32, "node5", "127.0.0.1", 4005, 1001.0, "127.0.0.1", 8105, 1)


def lb(**kw) -> DynamicLb:
    return DynamicLb("lb", allow=kw.pop("allow", LOOPBACK), probe_interval=0.5, **kw)


def admit(pool: DynamicLb, info: MemberInfo, now: float = 0.0) -> list:
    assert pool.heard(info, now) == []
    assert info in pool.probes_due(now)
    return pool.ready_result(info.id, True, wall=1_700_000_000.0)


def test_a_node_becomes_a_member_only_once_its_ready_endpoint_answers_200():
    pool = lb()
    assert pool.heard(N4, 0.0) == []
    assert pool.members() == ()
    assert pool.probes_due(0.0) == [N4]
    assert pool.probes_due(0.2) == []  # paced: every probe_interval
    assert pool.ready_result(N4.id, False, wall=1.0) == []  # 503: state transfer running
    assert pool.members() == ()
    assert pool.probes_due(0.5) == [N4]
    [change] = pool.ready_result(N4.id, True, wall=1_700_000_000.0)
    assert (change.state, change.reason, change.member) == (JOINED, "ready", "node4")
    assert "lb=lb member=node4 state=JOINED reason=ready origin=cluster" in str(change)
    [member] = pool.members()
    assert (member.name, member.route, member.type) == ("node4", "node4", "http")
    assert (member.host, member.port, member.lbfactor) == ("127.0.0.1", 8104, 2)
    assert (member.origin, member.joined_at) == ("cluster", 1_700_000_000.0)
    assert pool.probes_due(10.0) == []  # members are not probed for readiness again


def test_dynamic_members_copy_the_template_but_keep_their_own_address_route_and_weight():
    template = MemberConfig(
        name="template", type="http", host="10.9.9.9", port=1, reply_timeout=30000,
        fail_on_status=(-503,), health_check_interval=2000, route="template",
    )  # fmt: skip
    pool = lb(template=template)
    admit(pool, N4)
    [member] = pool.members()
    assert (member.name, member.host, member.port, member.route) == ("node4", "127.0.0.1", 8104,
                                                                      "node4")  # fmt: skip
    assert member.reply_timeout == 30000 and member.fail_on_status == (-503,)
    assert member.health_check_interval == 2000


def test_an_address_outside_the_allow_list_is_refused_once_and_counted():
    pool = lb()
    outside = replace(N4, http_host="10.1.2.3")
    [change] = pool.heard(outside, 0.0)
    assert (change.state, change.reason) == (REFUSED, NOT_ALLOWED)
    assert "address=10.1.2.3:8104" in str(change)
    assert pool.heard(outside, 0.5) == []  # logged once per node and reason
    assert pool.probes_due(1.0) == [] and pool.members() == ()
    assert pool.counters["refused_address-not-allowed"] == 1


def test_a_node_without_an_http_address_is_refused():
    [change] = lb().heard(replace(N4, http_host="", http_port=0), 0.0)
    assert change.reason == NO_ADDRESS


def test_the_allow_list_is_the_lbs():
    pool = lb(allow=("10.0.0.0/8",))
    assert pool.heard(N4, 0.0)[0].reason == NOT_ALLOWED
    assert pool.heard(replace(N5, http_host="10.0.0.5"), 0.0) == []


def test_a_route_in_use_by_a_live_member_is_refused_and_free_again_once_it_left():
    pool = lb()
    admit(pool, N4)
    twin = replace(N4, id="6" * 32, http_port=8106)
    [change] = pool.heard(twin, 0.0)
    assert (change.state, change.reason) == (REFUSED, ROUTE_IN_USE)
    pool.left(N4, "dropped")
    assert pool.heard(twin, 1.0) == []  # the same route comes back: the same member again
    [joined] = pool.ready_result(twin.id, True, wall=2.0) if pool.probes_due(1.0) else []
    assert joined.state == JOINED
    assert [m.port for m in pool.members()] == [8106]


def test_a_static_members_route_or_name_is_never_taken_by_a_dynamic_one():
    static = MemberConfig(name="node4", type="http", host="127.0.0.1", port=8101, route="r1")
    pool = lb(static=[static])
    assert pool.heard(N4, 0.0)[0].reason == ROUTE_IN_USE
    assert pool.heard(replace(N5, route="r1"), 0.0)[0].reason == ROUTE_IN_USE


def test_a_static_member_heartbeating_is_neither_added_nor_refused():
    static = MemberConfig(name="node4", type="http", host="127.0.0.1", port=8104, route="node4")
    pool = lb(static=[static])
    assert pool.heard(N4, 0.0) == []
    assert pool.probes_due(0.0) == [] and pool.members() == ()


def test_a_leaving_member_is_disabled_at_once_and_removed_when_it_is_gone():
    pool = lb()
    admit(pool, N4)
    admit(pool, N5)
    [change] = pool.heard(replace(N4, leaving=True), 1.0)
    assert (change.state, change.reason) == (DISABLED, "leaving")
    assert pool.leaving() == {"node4"}
    assert pool.heard(replace(N4, leaving=True), 1.5) == []  # said once
    assert [m.name for m in pool.members()] == ["node4", "node5"]  # sticky requests drain
    [gone] = pool.left(N4, "shutdown")
    assert (gone.state, gone.reason) == (REMOVED, "shutdown")
    assert [m.name for m in pool.members()] == ["node5"]
    assert pool.leaving() == frozenset()


def test_a_node_leaving_before_it_was_ready_is_never_added():
    pool = lb()
    pool.heard(N4, 0.0)
    pool.heard(replace(N4, leaving=True), 0.1)
    assert pool.probes_due(1.0) == []
    assert pool.ready_result(N4.id, True, wall=1.0) == []
    assert pool.members() == ()


def test_a_node_that_dies_is_removed_with_its_reason():
    pool = lb()
    admit(pool, N4)
    [change] = pool.left(N4, "dropped")
    assert str(change).startswith("lb=lb member=node4 state=REMOVED reason=dropped")
    assert pool.left(N4, "dropped") == []


def test_members_are_listed_in_route_order_whatever_the_join_order():
    pool = lb()
    admit(pool, N5)
    admit(pool, N4)
    assert [m.name for m in pool.members()] == ["node4", "node5"]
