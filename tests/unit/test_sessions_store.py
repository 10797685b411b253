"""The session store and its request views: ids, values, limits, expiry, deltas."""

from __future__ import annotations

import re

import pytest

from worker.delta import SessionDelta, SessionState, UnknownSessionError, apply_delta
from worker.session_ids import split_session_id
from worker.sessions import (
    SessionClosedError,
    SessionInvalidatedError,
    SessionStore,
    SessionTooLarge,
    TooManySessions,
)
from worker.values import AttributeValueError

T0 = 1_700_000_000.0


def new_session(store: SessionStore, now: float = T0, **attrs: object) -> str:
    view = store.create(now)
    view.update(attrs)
    store.commit(view, now)
    return view.id


# -- ids --------------------------------------------------------------------------------------
def test_session_id_is_32_uppercase_hex_a_dot_and_the_route():
    store = SessionStore("node1")
    view = store.create(T0)
    assert re.fullmatch(r"[0-9A-F]{32}\.node1", view.id)
    assert view.route == "node1"


def test_session_ids_are_unique_across_many_sessions():
    store = SessionStore("node1", max_active_sessions=5000)
    ids = {store.create(T0).id for _ in range(2000)}
    assert len(ids) == 2000


def test_store_never_reissues_a_random_part_of_a_live_or_ended_session():
    parts = iter(["A" * 32, "A" * 32, "B" * 32, "B" * 32, "C" * 32])
    store = SessionStore("n1", random_part=lambda: next(parts))
    first = store.create(T0)
    store.commit(first, T0)
    second = store.create(T0)  # "A" is live: the store draws again
    assert second.id == "B" * 32 + ".n1"
    second.invalidate()
    store.commit(second, T0)
    third = store.create(T0)  # "B" has ended: still not reused
    assert third.id == "C" * 32 + ".n1"


def test_a_random_source_that_repeats_itself_is_an_error_not_a_shared_session():
    store = SessionStore("n1", random_part=lambda: "D" * 32)
    store.create(T0)
    with pytest.raises(RuntimeError, match="already used"):
        store.create(T0)


@pytest.mark.parametrize("text", ["", "abc", "a" * 32 + ".n1", "A" * 31 + ".n1", "A" * 32 + ".n 1"])
def test_malformed_session_ids_are_not_ours(text):
    assert split_session_id(text) is None


def test_route_is_everything_after_the_first_dot():
    assert split_session_id("A" * 32 + ".dom.n1") == ("A" * 32, "dom.n1")
    assert split_session_id("A" * 32) == ("A" * 32, None)


@pytest.mark.parametrize("route", ["", "a b", "n1;x", ".n1", "n" * 64])
def test_store_refuses_a_route_that_cannot_travel_in_a_cookie(route):
    with pytest.raises(ValueError, match="session route"):
        SessionStore(route)


# -- values -----------------------------------------------------------------------------------
def test_json_safe_values_round_trip_through_the_store():
    store = SessionStore("n1")
    value = {"s": "é\u2028", "i": -(2**70), "f": 0.1, "b": True, "n": None, "l": [[], {}, [1.5]]}
    sid = new_session(store, v=value)
    view = store.begin(sid, T0)
    assert view["v"] == value
    assert type(view["v"]["f"]) is float and type(view["v"]["i"]) is int


@pytest.mark.parametrize(
    ("value", "path", "what"),
    [
        ({1, 2}, "cart", "builtins.set is not allowed"),
        ((1, 2), "cart", "use a list"),
        ([1, {"x": b"raw"}], "cart[1]['x']", "builtins.bytes"),
        ({"a": [float("nan")]}, "cart['a'][0]", "not a finite float"),
        ({"a": {3: "x"}}, "cart['a']", "dict key 3 is a int"),
        ([object()], "cart[0]", "builtins.object"),
    ],
)
def test_setting_a_non_json_value_names_the_attribute_and_the_path(value, path, what):
    view = SessionStore("n1").create(T0)
    with pytest.raises(AttributeValueError) as info:
        view["cart"] = value
    assert f"'cart': {path}:" in str(info.value)
    assert what in str(info.value)
    assert isinstance(info.value, TypeError)
    assert "cart" not in view


def test_a_value_that_contains_itself_is_refused():
    loop: list[object] = []
    loop.append(loop)
    view = SessionStore("n1").create(T0)
    with pytest.raises(AttributeValueError, match="cycle"):
        view["x"] = loop


def test_subclasses_of_allowed_types_are_refused_because_they_would_not_come_back():
    class Tag(str):
        pass

    view = SessionStore("n1").create(T0)
    with pytest.raises(AttributeValueError, match="Tag"):
        view["x"] = Tag("a")


def test_attribute_names_must_be_non_empty_strings():
    view = SessionStore("n1").create(T0)
    with pytest.raises(TypeError):
        view[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        view[""] = "x"


# -- limits -----------------------------------------------------------------------------------
def test_creating_past_max_active_sessions_raises_and_keeps_live_ones():
    store = SessionStore("n1", max_active_sessions=3)
    ids = [new_session(store) for _ in range(3)]
    with pytest.raises(TooManySessions, match="limit"):
        store.create(T0)
    assert all(sid in store for sid in ids)


def test_an_ended_session_frees_its_place_under_the_limit():
    store = SessionStore("n1", max_active_sessions=1)
    view = store.begin(new_session(store), T0)
    view.invalidate()
    store.commit(view, T0)
    store.create(T0)


def test_a_set_that_would_pass_the_size_limit_raises_at_the_set():
    store = SessionStore("n1", max_session_bytes=100)
    view = store.create(T0)
    view["a"] = "x" * 50
    with pytest.raises(SessionTooLarge, match="'b'"):
        view["b"] = "y" * 50
    assert "b" not in view
    view["b"] = "small"


def test_in_place_growth_past_the_limit_fails_the_commit_and_keeps_nothing():
    store = SessionStore("n1", max_session_bytes=100)
    sid = new_session(store, items=[], other=1)
    view = store.begin(sid, T0 + 1)
    view["other"] = 2
    view["items"].extend(["z" * 45, "z" * 45])
    with pytest.raises(SessionTooLarge, match="grew in place"):
        store.commit(view, T0 + 2)
    after = store.begin(sid, T0 + 3)
    assert after["items"] == [] and after["other"] == 1


def test_a_non_json_value_put_in_place_fails_the_commit_naming_the_path():
    store = SessionStore("n1")
    sid = new_session(store, cart={"items": []})
    view = store.begin(sid, T0)
    view["cart"]["items"].append({1, 2})
    with pytest.raises(AttributeValueError, match=r"cart\['items'\]\[0\]"):
        store.commit(view, T0)
    assert store.begin(sid, T0)["cart"] == {"items": []}


def test_a_session_created_by_a_failed_request_never_existed():
    store = SessionStore("n1")
    view = store.create(T0)
    view["x"] = 1
    store.abort(view)
    assert len(store) == 0 and view.id not in store


# -- expiry -----------------------------------------------------------------------------------
def test_session_expires_after_max_inactive_interval_without_access():
    store = SessionStore("n1", max_inactive_interval=60)
    sid = new_session(store)
    assert store.expire(T0 + 60) == []
    assert store.expire(T0 + 60.5) == [sid]
    assert store.begin(sid, T0 + 61) is None


def test_each_access_restarts_the_inactivity_clock():
    store = SessionStore("n1", max_inactive_interval=60)
    sid = new_session(store)
    store.commit(store.begin(sid, T0 + 50), T0 + 50)
    assert store.expire(T0 + 100) == []
    assert store.expire(T0 + 111) == [sid]


def test_a_session_is_not_handed_out_once_idle_too_long_even_before_a_sweep():
    store = SessionStore("n1", max_inactive_interval=10)
    sid = new_session(store)
    assert store.begin(sid, T0 + 11) is None
    assert sid not in store


def test_per_session_interval_overrides_the_default_and_zero_or_less_never_expires():
    store = SessionStore("n1", max_inactive_interval=10)
    short, forever = store.create(T0), store.create(T0)
    short.max_inactive_interval = 5
    forever.max_inactive_interval = -1
    store.commit(short, T0)
    store.commit(forever, T0)
    assert store.expire(T0 + 6) == [short.id]
    assert store.expire(T0 + 10**9) == []


def test_a_session_in_use_is_not_expired_under_the_request():
    store = SessionStore("n1", max_inactive_interval=10)
    sid = new_session(store)
    view = store.begin(sid, T0 + 5)
    assert store.expire(T0 + 100) == []
    store.commit(view, T0 + 100)
    assert sid in store


def test_replicas_routed_elsewhere_get_the_grace_factor():
    store = SessionStore("n1", max_inactive_interval=10, replica_grace=2.0)
    replica = "E" * 32 + ".n2"
    store.apply(SessionDelta(replica, T0, created=T0, max_inactive=10.0))
    assert store.expire(T0 + 15) == []
    assert store.expire(T0 + 21) == [replica]


# -- deltas -----------------------------------------------------------------------------------
def test_read_only_request_creates_no_delta_but_refreshes_access_time():
    store = SessionStore("n1")
    sid = new_session(store, cart=["a"], n=1)
    view = store.begin(sid, T0 + 5)
    assert view["cart"] == ["a"] and view.get("n") == 1 and list(view) == ["cart", "n"]
    assert store.commit(view, T0 + 5) is None
    assert store.get_state(sid).last_accessed == T0 + 5


def test_creating_request_delta_carries_creation_time_and_interval():
    store = SessionStore("n1", max_inactive_interval=900)
    view = store.create(T0)
    delta = store.commit(view, T0 + 1)
    assert delta == SessionDelta(view.id, T0 + 1, created=T0, max_inactive=900.0)
    assert view.is_new


def test_repeated_sets_coalesce_to_the_last_value_per_attribute():
    store = SessionStore("n1")
    sid = new_session(store, a=0, gone=1)
    view = store.begin(sid, T0)
    for i in range(5):
        view["a"] = i
    view["b"] = "tmp"
    del view["b"]
    view["gone"] = 2
    del view["gone"]
    delta = store.commit(view, T0)
    assert delta.set_attributes == (("a", "4"),)
    assert delta.removed_attributes == ("gone",)


def test_setting_a_value_back_to_what_it_was_is_no_change():
    store = SessionStore("n1")
    sid = new_session(store, a=[1])
    view = store.begin(sid, T0)
    view["a"] = [2]
    view["a"] = [1]
    assert store.commit(view, T0) is None


def test_in_place_mutation_of_a_read_value_is_recorded_without_set_again():
    store = SessionStore("n1")
    sid = new_session(store, cart={"items": [{"sku": "a", "qty": 1}]})
    view = store.begin(sid, T0)
    view["cart"]["items"][0]["qty"] += 1
    view["cart"]["items"].append({"sku": "b", "qty": 1})
    delta = store.commit(view, T0)
    assert delta.set_values == {"cart": {"items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]}}
    assert store.begin(sid, T0)["cart"]["items"][1]["sku"] == "b"


def test_a_value_mutated_after_set_is_recorded_as_it_is_at_the_end():
    store = SessionStore("n1")
    sid = new_session(store)
    view = store.begin(sid, T0)
    items: list[int] = []
    view["items"] = items
    items.append(7)
    assert store.commit(view, T0).set_values == {"items": [7]}


def test_each_request_gets_its_own_copy_of_values():
    store = SessionStore("n1")
    sid = new_session(store, items=[1])
    one, two = store.begin(sid, T0), store.begin(sid, T0)
    one["items"].append(2)
    assert two["items"] == [1]


def test_concurrent_requests_merge_by_attribute_last_commit_wins():
    store = SessionStore("n1")
    sid = new_session(store, a=0, b=0)
    one, two = store.begin(sid, T0), store.begin(sid, T0)
    one["a"] = 1
    two["b"] = 2
    two["a"] = 3
    store.commit(two, T0)
    store.commit(one, T0)
    view = store.begin(sid, T0)
    assert (view["a"], view["b"]) == (1, 2)


def test_max_inactive_change_is_recorded():
    store = SessionStore("n1")
    sid = new_session(store)
    view = store.begin(sid, T0)
    view.max_inactive_interval = 42
    assert store.commit(view, T0 + 1) == SessionDelta(sid, T0 + 1, max_inactive=42.0)


def test_invalidate_records_only_the_invalidation_and_removes_the_session():
    store = SessionStore("n1")
    sid = new_session(store, a=1)
    view = store.begin(sid, T0)
    view["a"] = 2
    view.invalidate()
    with pytest.raises(SessionInvalidatedError):
        view["a"]
    assert store.commit(view, T0 + 1) == SessionDelta(sid, T0 + 1, invalidated=True)
    assert sid not in store and store.begin(sid, T0) is None


def test_a_session_created_and_invalidated_in_one_request_leaves_no_trace():
    store = SessionStore("n1")
    view = store.create(T0)
    view.invalidate()
    assert store.commit(view, T0) is None
    assert len(store) == 0


def test_route_change_keeps_the_random_part_and_is_recorded_as_a_rename():
    store = SessionStore("n2")
    old = "F" * 32 + ".n1"
    store.apply(SessionDelta(old, T0, created=T0, max_inactive=60.0, set_attributes=(("a", "1"),)))
    view = store.begin(old, T0 + 1)
    view.change_route("n2")
    assert view.id == "F" * 32 + ".n2"
    delta = store.commit(view, T0 + 1)
    assert delta == SessionDelta(old, T0 + 1, new_id="F" * 32 + ".n2")
    assert store.get_state(old).id == "F" * 32 + ".n2"
    assert store.begin("F" * 32 + ".n2", T0 + 2)["a"] == 1


def test_an_empty_session_is_still_truthy():
    view = SessionStore("n1").create(T0)
    assert len(view) == 0 and view


def test_a_view_cannot_be_used_after_its_request_ended():
    store = SessionStore("n1")
    view = store.create(T0)
    store.commit(view, T0)
    with pytest.raises(SessionClosedError):
        view["a"] = 1
    with pytest.raises(SessionClosedError):
        store.commit(view, T0)


def test_commit_applies_exactly_what_apply_delta_computes():
    store = SessionStore("n1")
    sid = new_session(store, a=[1], b="x")
    before = store.get_state(sid)
    view = store.begin(sid, T0 + 3)
    view["a"].append(2)
    del view["b"]
    view["c"] = {"k": None}
    delta = store.commit(view, T0 + 4)
    assert apply_delta(before, delta) == store.get_state(sid)


def test_apply_delta_to_unknown_session_without_create_is_an_error():
    with pytest.raises(UnknownSessionError):
        apply_delta(None, SessionDelta("A" * 32 + ".n1", T0, set_attributes=(("a", "1"),)))


def test_apply_delta_never_moves_the_access_time_back():
    state = SessionState("A" * 32 + ".n1", T0, T0 + 10, 60.0)
    after = apply_delta(state, SessionDelta(state.id, T0 + 5, set_attributes=(("a", "1"),)))
    assert after.last_accessed == T0 + 10


def test_each_commit_moves_the_last_access_strictly_forward_even_with_a_clock_behind_it():
    # a takeover from a node whose clock ran ahead: this node's clock is behind the session's
    # last access; two requests committed one after the other must not tie (distributed
    # mode's merge orders a session's puts by it: a tie let the older state win)
    store = SessionStore("n1")
    sid = new_session(store, T0 + 3600, a=0)
    ahead = store.get_state(sid).last_accessed  # type: ignore[union-attr]
    one, two, reader = (store.begin(sid, T0) for _ in range(3))
    assert one is not None and two is not None and reader is not None
    one["a"] = 1
    two["b"] = 2
    first = store.commit(one, T0)
    second = store.commit(two, T0)
    assert first is not None and second is not None
    assert ahead < first.at < second.at  # the replicas' last access: the deltas' times
    after_two = store.get_state(sid).last_accessed  # type: ignore[union-attr]
    assert after_two == second.at
    assert store.commit(reader, T0) is None  # read-only: an access all the same
    assert store.get_state(sid).last_accessed > after_two  # type: ignore[union-attr]
    # with the clock ahead of it, the last access is the clock, as before
    later = store.begin(sid, T0 + 3700)
    assert later is not None
    store.commit(later, T0 + 3700)
    assert store.get_state(sid).last_accessed == T0 + 3700  # type: ignore[union-attr]
