"""Key placement (replication/placement.py): rendezvous hashing over the live members — owners
are distinct live members, keys spread evenly, a join or a leave moves only the keys it must,
and the rebalance plan every member computes copies exactly those keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.election import preferred
from replication.placement import Placement, RateLimit, rank, rebalance, score

MEMBER = st.text(alphabet="0123456789abcdef", min_size=4, max_size=8)
MEMBERS = st.sets(MEMBER, min_size=1, max_size=9)
KEYS = st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=40, unique=True)
OWNERS = st.integers(min_value=1, max_value=4)


def ids(n: int) -> list[str]:
    return [f"member{i:02d}" for i in range(n)]


# -- who owns a key ---------------------------------------------------------------------------
@given(MEMBERS, KEYS, OWNERS)
def test_owners_are_distinct_live_members_and_as_many_as_asked(
    members: set[str], keys: list[str], owners: int
) -> None:
    placement = Placement.of(members, owners)
    for key in keys:
        held = placement.owners_of(key)
        assert len(held) == min(owners, len(members))
        assert len(set(held)) == len(held)
        assert set(held) <= members
        assert placement.primary(key) == held[0]


@given(MEMBERS, KEYS, OWNERS)
def test_every_member_with_the_same_view_picks_the_same_owners(
    members: set[str], keys: list[str], owners: int
) -> None:
    # the order in which a member learned of the others must not matter
    forward = Placement.of(sorted(members), owners)
    backward = Placement.of(sorted(members, reverse=True), owners)
    assert all(forward.owners_of(k) == backward.owners_of(k) for k in keys)


@given(MEMBERS, KEYS)
def test_the_primary_is_the_member_the_singleton_election_prefers(
    members: set[str], keys: list[str]
) -> None:
    placement = Placement.of(members, 1)
    assert all(placement.primary(k) == preferred(k, members) for k in keys)


def test_owners_are_ranked_by_descending_weight() -> None:
    members = ids(7)
    for key in ("a", "b", "cart:42", ""):
        held = rank(key, members, 7)
        weights = [score(key, m) for m in held]
        assert weights == sorted(weights, reverse=True)


def test_no_members_means_no_owner() -> None:
    placement = Placement.of([], 2)
    assert placement.owners_of("k") == ()
    assert placement.primary("k") is None
    assert placement.copies == 0


def test_owners_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="owners must be >= 1"):
        Placement.of(ids(3), 0)


@given(MEMBERS, KEYS, OWNERS, st.data())
def test_a_pinned_live_member_is_the_primary_and_backups_come_from_the_hash(
    members: set[str], keys: list[str], owners: int, data: st.DataObject
) -> None:
    pin = data.draw(st.sampled_from(sorted(members)))
    placement = Placement.of(members, owners)
    for key in keys:
        held = placement.owners_of(key, pinned=pin)
        assert held[0] == pin
        assert len(set(held)) == len(held) == min(owners, len(members))
        assert held[1:] == rank(key, members - {pin}, len(held) - 1)


def test_a_pinned_member_that_is_gone_falls_back_to_the_hash() -> None:
    placement = Placement.of(ids(4), 2)
    assert placement.owners_of("sess", pinned="gone") == placement.owners_of("sess")


# -- balance ----------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 3, 5, 8])
def test_primaries_and_copies_spread_evenly(count: int) -> None:
    placement = Placement.of(ids(count), 2)
    keys = [f"key-{i}" for i in range(12_000)]
    primaries = dict.fromkeys(placement.members, 0)
    copies = dict.fromkeys(placement.members, 0)
    for key in keys:
        held = placement.owners_of(key)
        primaries[held[0]] += 1
        for member in held:
            copies[member] += 1
    fair_primary = len(keys) / count
    fair_copies = len(keys) * min(2, count) / count
    # 12 000 keys: a fair share's standard deviation is under 1 %; 10 % is far outside chance
    assert all(abs(n - fair_primary) < 0.10 * fair_primary for n in primaries.values())
    assert all(abs(n - fair_copies) < 0.10 * fair_copies for n in copies.values())


@settings(max_examples=40)
@given(st.integers(min_value=2, max_value=8), st.integers(min_value=0, max_value=10_000))
def test_no_member_gets_much_more_than_its_share(count: int, salt: int) -> None:
    placement = Placement.of([f"{salt}-{i}" for i in range(count)], 1)
    keys = [f"k{i}" for i in range(4_000)]
    load = dict.fromkeys(placement.members, 0)
    for key in keys:
        load[placement.primary(key) or ""] += 1
    assert max(load.values()) < 1.25 * len(keys) / count


# -- minimal movement -------------------------------------------------------------------------
@given(MEMBERS, MEMBER, KEYS, OWNERS)
def test_a_join_moves_only_keys_the_newcomer_now_holds(
    members: set[str], newcomer: str, keys: list[str], owners: int
) -> None:
    if newcomer in members:
        return
    before = Placement.of(members, owners)
    after = Placement.of(members | {newcomer}, owners)
    for key in keys:
        old, new = before.owners_of(key), after.owners_of(key)
        if newcomer not in new:
            assert old == new
        else:
            # the newcomer took one seat; every other holder was a holder already
            assert set(new) - {newcomer} <= set(old)
            assert len(set(old) - set(new)) <= 1


@given(MEMBERS, KEYS, OWNERS, st.data())
def test_a_leave_moves_only_keys_the_leaver_held(
    members: set[str], keys: list[str], owners: int, data: st.DataObject
) -> None:
    leaver = data.draw(st.sampled_from(sorted(members)))
    before = Placement.of(members, owners)
    after = Placement.of(members - {leaver}, owners)
    for key in keys:
        old, new = before.owners_of(key), after.owners_of(key)
        if leaver not in old:
            assert old == new
        else:
            # every survivor keeps its copy (and its relative rank); one new holder at most
            assert [m for m in old if m != leaver] == [m for m in new if m in old]
            assert len(set(new) - set(old)) <= 1


def test_a_join_to_four_members_moves_about_a_fifth_of_the_copies() -> None:
    keys = [f"key-{i}" for i in range(10_000)]
    plan = rebalance(Placement.of(ids(4), 2), Placement.of(ids(5), 2), keys)
    # the newcomer's fair share is 2/5 of the keys, one copy each; a ring without enough
    # virtual nodes would move noticeably more
    assert plan.moved == pytest.approx(len(keys) * 2 / 5, rel=0.05)
    assert not plan.lost


# -- the rebalance plan -----------------------------------------------------------------------
def holders_after(plan_old: Placement, plan_new: Placement, keys: list[str]) -> dict[str, set]:
    """Simulate the plan: who holds each key once transfers and drops are done."""
    plan = rebalance(plan_old, plan_new, keys)
    held = {k: {m for m in plan_old.owners_of(k) if m in plan_new.members} for k in keys}
    for transfer in plan.transfers:
        assert transfer.source in held[transfer.key]  # only a holder can send it
        held[transfer.key] |= set(transfer.to)
    for member, dropped in plan.drops.items():
        for key in dropped:
            held[key].discard(member)
    return held


@given(MEMBERS, MEMBERS, KEYS, OWNERS)
def test_after_the_plan_every_key_sits_exactly_on_its_new_owners(
    old_members: set[str], new_members: set[str], keys: list[str], owners: int
) -> None:
    old, new = Placement.of(old_members, owners), Placement.of(new_members, owners)
    plan = rebalance(old, new, keys)
    held = holders_after(old, new, keys)
    for key in keys:
        if key in plan.lost:
            assert not set(old.owners_of(key)) & new_members
        else:
            assert held[key] == set(new.owners_of(key))


@given(MEMBERS, KEYS, st.integers(min_value=2, max_value=4), st.data())
def test_losing_fewer_than_owners_members_loses_no_key(
    members: set[str], keys: list[str], owners: int, data: st.DataObject
) -> None:
    gone = data.draw(st.sets(st.sampled_from(sorted(members)), max_size=owners - 1))
    if gone == members:
        return
    plan = rebalance(Placement.of(members, owners), Placement.of(members - gone, owners), keys)
    assert plan.lost == ()


def test_the_source_of_a_transfer_is_the_best_surviving_holder_and_only_it_sends() -> None:
    old, new = Placement.of(ids(5), 2), Placement.of(ids(5)[1:], 2)
    keys = [f"k{i}" for i in range(500)]
    plan = rebalance(old, new, keys)
    assert plan.transfers
    for transfer in plan.transfers:
        survivors = [m for m in old.owners_of(transfer.key) if m in new.members]
        assert transfer.source == survivors[0]
    assert sum(len(plan.sends(m)) for m in new.members) == len(plan.transfers)


def test_an_unchanged_view_plans_nothing() -> None:
    placement = Placement.of(ids(4), 3)
    plan = rebalance(placement, placement, [f"k{i}" for i in range(100)])
    assert plan.transfers == () and dict(plan.drops) == {} and plan.lost == ()


def test_sessions_stay_on_their_route_owner_through_a_join() -> None:
    keys = [f"S{i}" for i in range(300)]
    pins = {k: ids(3)[i % 3] for i, k in enumerate(keys)}
    old, new = Placement.of(ids(3), 2), Placement.of(ids(4), 2)
    plan = rebalance(old, new, keys, pinned=pins)
    for transfer in plan.transfers:
        # only backups move: the route owner never gives up its own sessions
        assert pins[transfer.key] not in transfer.to
    for member, dropped in plan.drops.items():
        assert all(pins[k] != member for k in dropped)


# -- the rebalance byte rate -------------------------------------------------------------------
def test_the_rate_limit_lets_a_burst_through_then_paces_at_the_rate() -> None:
    bucket = RateLimit(rate=1000.0, burst=500.0)
    assert bucket.delay(500, now=0.0) == 0.0
    assert bucket.delay(250, now=0.0) == pytest.approx(0.25)
    # the caller waited 0.25 s and sent; the next 1000 bytes wait a full second
    assert bucket.delay(1000, now=0.25) == pytest.approx(1.0)


@given(st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=50))
def test_a_sender_that_waits_what_it_is_told_never_beats_the_rate(sizes: list[int]) -> None:
    rate, burst = 10_000.0, 2_000.0
    bucket = RateLimit(rate=rate, burst=burst)
    now = 0.0
    for size in sizes:
        now += bucket.delay(size, now)
    # everything sent by `now`: at most the burst plus what the rate allows in that time
    assert sum(sizes) <= burst + rate * now + 1e-6


def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=0.0, burst=1.0)
